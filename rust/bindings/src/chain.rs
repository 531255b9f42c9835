//! Chain runs (core `processor::chain`): an inline `push_many` hands runs of
//! its events to a runner built once per accumulator by `headrace._chain`,
//! a Python loop that calls the accumulator and the nodes directly, and then
//! tells the processor what the run did.

use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList, PyTuple};

use headrace_core::plan::{Plan, Source};
use headrace_core::processor::{ChainFailure, ChainRun, Now};
use headrace_core::spec::AccKind;

use crate::calls::InlineOutcome;
use crate::fire::{Kept, RunFires};
use crate::graph::{AccCall, Callables, NodeCall};
use crate::inline::{self, Proc};

type Value = Py<PyAny>;

/// Where a runner stopped (`headrace._chain`): the iterator raised.
const ITERATION: i64 = -2;
/// Where a runner stopped: the accumulator function raised.
const ACCUMULATOR: i64 = -1;

/// What a runner returns (`headrace._chain.Outcome`): events that gave no
/// boundary, the last boundary that fired, and where it stopped if something
/// raised: (stage, event, boundary, exception).
type Outcome = (u64, Option<Value>, Option<(i64, Value, Value, Value)>);

/// One accumulator's runner, and the other accumulators its nodes read (their
/// values are constants during a run, passed in this order).
pub struct Runner {
    pub function: Value,
    pub consts: Vec<usize>,
}

/// A runner for every accumulator whose pushed events can run as a chain:
/// the plan is a chain, nothing watches single fires (`on_fire`), and the
/// accumulator is a sync passthrough or stream criteria member.
pub fn runners(py: Python<'_>, plan: &Plan, accs: &[AccCall], nodes: &[NodeCall], watched: bool) -> PyResult<Vec<Option<Runner>>> {
    let Some(terminal) = plan.chain_terminal.filter(|_| !watched) else {
        return Ok(accs.iter().map(|_| None).collect());
    };
    let build = py.import("headrace._chain")?.getattr("build")?;
    let route = <crate::fire::Route as pyo3::PyTypeInfo>::type_object(py);
    let mut out = Vec::with_capacity(accs.len());
    for (i, (spec, call)) in plan.accumulators.iter().zip(accs).enumerate() {
        let plain = matches!(spec.kind, AccKind::Passthrough | AccKind::Stream);
        if !plain || call.is_async || !plan.criteria.member[i] {
            out.push(None);
            continue;
        }
        let mut consts: Vec<usize> = Vec::new();
        let mut described = Vec::with_capacity(nodes.len());
        for (node, call) in plan.nodes.iter().zip(nodes) {
            let args: Vec<(&str, usize)> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Acc(a) if a == i => ("boundary", 0),
                    Source::Acc(a) => {
                        consts.push(a);
                        ("const", a)
                    }
                    Source::Node(j) => ("node", j),
                })
                .collect();
            described.push((call.function.clone_ref(py), args, node.name.as_str()));
        }
        consts.sort_unstable();
        consts.dedup();
        let accumulate = if spec.function { Some(call.function.clone_ref(py)) } else { None };
        let state = call.state.as_ref().map(|s| s.clone_ref(py));
        let function = build.call1((accumulate, state, described, terminal, &route))?.unbind();
        out.push(Some(Runner { function, consts }));
    }
    Ok(out)
}

/// What `push_events` collects for the caller.
pub struct Collected {
    pub fires: Vec<Kept>,
    pub first_error: Option<PyErr>,
}

/// Inline `push_many` of accumulator `acc`'s `events`: runs of them through
/// the chain runner while the processor allows one, every other event the
/// ordinary way. An error of the iterable itself is raised at once, as on
/// the ordinary path.
pub fn push_events(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    acc: usize,
    events: &mut Bound<'_, PyIterator>,
    aio: Option<&Value>,
    into: &mut Collected,
) -> PyResult<()> {
    let runner = cx.runners.get(acc).and_then(Option::as_ref);
    loop {
        if let Some(runner) = runner.filter(|_| processor.chain_ready(acc)) {
            match run(py, processor, cx, acc, runner, events, aio, into)? {
                Stopped::Exhausted => return Ok(()),
                Stopped::Limit | Stopped::Failed => continue,
            }
        }
        let Some(event) = events.next() else { return Ok(()) };
        let item = headrace_core::channel::Item::Event { acc, input: headrace_core::processor::Input::Value(event?.unbind()) };
        let mut out = InlineOutcome::new();
        inline::step(py, processor, cx, &mut out, aio, |p, calls| p.apply(item, calls, &Now::lazy()));
        keep(into, out);
    }
}

enum Stopped {
    /// The iterable ran out.
    Exhausted,
    /// The run stopped where a checkpoint falls due; more may follow.
    Limit,
    /// An event failed and was taken the ordinary way.
    Failed,
}

fn keep(into: &mut Collected, out: InlineOutcome) {
    into.fires.extend(out.result);
    if into.first_error.is_none() {
        into.first_error = out.error;
    }
}

/// Events a run may take when a checkpoint policy is on: one due by count
/// stops it where the ordinary path would checkpoint, and one due by time is
/// looked at at least this often.
const INTERVAL_CHECK: u64 = 1024;

#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    acc: usize,
    runner: &Runner,
    events: &Bound<'_, PyIterator>,
    aio: Option<&Value>,
    into: &mut Collected,
) -> PyResult<Stopped> {
    let limit = match (processor.fires_until_checkpoint(), processor.checkpoints_enabled()) {
        (Some(n), _) => Some(n.min(INTERVAL_CHECK)),
        (None, true) => Some(INTERVAL_CHECK),
        (None, false) => None,
    };
    let source = match limit {
        Some(n) => islice(py, events, n)?,
        None => events.clone().into_any(),
    };
    let cache = processor.cache();
    let consts = PyTuple::new(py, runner.consts.iter().map(|&a| cache[a].as_ref().map(|v| v.clone_ref(py))))?;
    let outputs = PyList::empty(py);
    let started = Instant::now();
    let outcome = runner.function.bind(py).call1((source, &outputs, consts))?;
    let ended = Instant::now();
    let (suppressed, last, failure): Outcome = outcome.extract()?;
    let fired = outputs.len() as u64;
    let taken = fired + suppressed;
    let ran = processor.chain_ran(ChainRun { acc, taken, fired, last, started, ended });
    if fired > 0 {
        let fires = RunFires {
            first_id: ran.first_fire,
            trigger: ran.trigger,
            started_at: ran.started_at,
            duration: ended.saturating_duration_since(started),
            terminal: cx.plan.chain_terminal.expect("a runner implies a chain"),
            outputs: outputs.unbind(),
        };
        into.fires.push(Kept::Run(Box::new(fires)));
    }
    let Some((stage, event, boundary, error)) = failure else {
        // Without a limit the loop ended because the iterable did; with one,
        // a short run means the same.
        let exhausted = limit.is_none_or(|n| taken < n);
        if !exhausted {
            // The ordinary path checks after every event.
            let mut out = InlineOutcome::new();
            inline::step(py, processor, cx, &mut out, aio, |_, _| ());
            keep(into, out);
        }
        return Ok(if exhausted { Stopped::Exhausted } else { Stopped::Limit });
    };
    let error = PyErr::from_value(error.into_bound(py));
    let failure = match stage {
        ITERATION => return Err(error),
        ACCUMULATOR => ChainFailure::Accumulator { error },
        node => ChainFailure::Node { boundary, node: node as usize, error },
    };
    let mut out = InlineOutcome::new();
    inline::step(py, processor, cx, &mut out, aio, |p, calls| {
        p.chain_failed(acc, event, failure, calls, &Now::lazy());
    });
    keep(into, out);
    Ok(Stopped::Failed)
}

/// `itertools.islice(events, n)`: at most `n` more of them.
fn islice<'py>(py: Python<'py>, events: &Bound<'py, PyIterator>, n: u64) -> PyResult<Bound<'py, PyAny>> {
    static ISLICE: pyo3::sync::PyOnceLock<Value> = pyo3::sync::PyOnceLock::new();
    ISLICE.import(py, "itertools", "islice")?.call1((events, n))
}
