//! Chain runs (core `processor::chain`): runs of events go to a runner built
//! once per accumulator by `headrace._chain`, a Python loop that calls the
//! accumulator and the nodes directly; the processor is told afterwards what
//! the run did. Inline `push_many` hands its iterable over as it is (and keeps
//! the outputs for its `FireList`); the processor thread hands over a batch's
//! run of events through `Calls::run_chain` (and keeps nothing).


use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList, PyString, PyTuple};

use headrace_core::host::{FireDetail, Unsupported};
use headrace_core::plan::{Plan, Source};
use headrace_core::channel::Item;
use headrace_core::clock::{elapsed, elapsed_ns, ticks, Ticks};
use headrace_core::processor::{AccRun, ChainFailure, ChainRun, Input, Now};
use headrace_core::spec::{AccKind, CriteriaKind, InputStrategy};

use crate::calls::InlineOutcome;
use crate::fire::{Kept, RunFires};
use crate::graph::{AccCall, Callables, NodeCall};
use crate::inline::{self, Proc};

type Value = Py<PyAny>;

/// Where a runner stopped (`headrace._chain`): the iterable raised.
const ITERATION: i64 = -2;
/// Where a runner stopped: the accumulator function raised.
const ACCUMULATOR: i64 = -1;
/// Where a runner stopped: the boundary cannot be checkpointed.
const REFUSED: i64 = -3;

/// What a runner returns (`headrace._chain.Outcome`): events that gave no
/// boundary, fires, the last boundary that fired, and where it stopped if
/// something raised: (stage, event, boundary, exception).
type Outcome = (u64, u64, Option<Value>, Option<(i64, Value, Value, Value)>);

/// One accumulator's runners (keeping each fire's output, or only counting
/// fires), and the other accumulators its nodes read (their values are
/// constants during a run, passed in this order).
pub struct Runner {
    pub keep: Value,
    pub count: Value,
    /// For a single event: `headrace._chain.One`.
    pub one: Value,
    /// What `one` returns for an event that gave no boundary.
    pub suppressed: Value,
    pub consts: Vec<usize>,
    /// Some node reads the run's own accumulator.
    pub reads_own: bool,
    pub acc: usize,
    /// Nodes in the plan (each fire runs them all).
    pub nodes: usize,
    pub records: Records,
}

/// What the runtime records of each fire (`profile`, `record_inputs`): the
/// keeping runner records them too.
#[derive(Debug, Clone, Copy, Default)]
pub struct Records {
    pub node_ns: bool,
    pub inputs: bool,
    /// `check_checkpointable`: each boundary is checked before any node runs.
    pub check: bool,
}

/// A keeping run's records, read back per fire by its `RunFires`.
pub struct RunRecords {
    /// `perf_counter_ns` stamps: one before the first node and one after
    /// each node of every fire (see `headrace._chain`).
    pub stamps: Option<Py<PyList>>,
    /// Each fire's boundary.
    pub seen: Option<Py<PyList>>,
    /// `(accumulator, value)` for every accumulator some node reads, in
    /// index order; the run's own accumulator's entry is each fire's boundary.
    pub inputs: Vec<(usize, Option<Value>)>,
    pub own: usize,
    pub nodes: usize,
}

impl RunRecords {
    /// Fire `k`'s records, as the engine keeps them.
    pub fn detail(&self, py: Python<'_>, k: usize, ran: usize) -> PyResult<Option<Box<FireDetail<Value>>>> {
        if self.stamps.is_none() && self.seen.is_none() {
            return Ok(None);
        }
        let node_ns = match &self.stamps {
            None => None,
            Some(stamps) => {
                let stamps = stamps.bind(py);
                let first = k * (self.nodes + 1);
                let mut laps = smallvec::SmallVec::new();
                for pos in 0..ran {
                    let (a, b): (u64, u64) = (stamps.get_item(first + pos)?.extract()?, stamps.get_item(first + pos + 1)?.extract()?);
                    laps.push((pos, elapsed_ns(a, b.max(a))));
                }
                Some(laps)
            }
        };
        let inputs = match &self.seen {
            None => None,
            Some(seen) => {
                let boundary = seen.bind(py).get_item(k)?.unbind();
                let mut boundary = Some(boundary);
                Some(
                    self.inputs
                        .iter()
                        .map(|(acc, v)| match *acc == self.own {
                            true => (*acc, boundary.take()),
                            false => (*acc, v.as_ref().map(|v| v.clone_ref(py))),
                        })
                        .collect(),
                )
            }
        };
        Ok(Some(Box::new(FireDetail { node_ns, inputs })))
    }
}

/// One call of a runner.
pub struct Ran {
    pub suppressed: u64,
    pub fired: u64,
    pub last: Option<Value>,
    pub started: Ticks,
    pub ended: Ticks,
    /// Where it stopped: (stage, event, boundary, what raised or the refusal).
    pub stopped: Option<(i64, Value, Value, Value)>,
    /// A keeping run's records (None when the runtime records nothing).
    pub records: Option<RunRecords>,
}

impl Runner {
    /// Runs `events` (an iterable); with `out`, each fire's output is
    /// appended to it. Other inputs are read from `cache`.
    pub fn call(&self, py: Python<'_>, events: &Bound<'_, PyAny>, out: Option<&Bound<'_, PyList>>, cache: &[Option<Value>]) -> PyResult<Ran> {
        let consts = self.consts_of(py, cache)?;
        let recording = out.is_some() && self.recording();
        let stamps = (recording && self.records.node_ns).then(|| PyList::empty(py));
        let seen = (recording && self.records.inputs).then(|| PyList::empty(py));
        let function = if out.is_some() { &self.keep } else { &self.count };
        let started = ticks();
        let outcome = function.bind(py).call1((events, out, consts, &stamps, &seen))?;
        let ended = ticks();
        let (suppressed, fired, last, stopped): Outcome = outcome.extract()?;
        let records = recording.then(|| self.run_records(py, cache, stamps, seen));
        Ok(Ran { suppressed, fired, last, started, ended, stopped, records })
    }

    /// The other accumulators' values, in the order the runners take them.
    fn consts_of<'py>(&self, py: Python<'py>, cache: &[Option<Value>]) -> PyResult<Bound<'py, PyTuple>> {
        match self.consts.as_slice() {
            [] => Ok(PyTuple::empty(py)),
            accs => PyTuple::new(py, accs.iter().map(|&a| cache[a].as_ref().map(|v| v.clone_ref(py)))),
        }
    }

    fn recording(&self) -> bool {
        self.records.node_ns || self.records.inputs
    }

    fn run_records(&self, py: Python<'_>, cache: &[Option<Value>], stamps: Option<Bound<'_, PyList>>, seen: Option<Bound<'_, PyList>>) -> RunRecords {
        let mut inputs: Vec<(usize, Option<Value>)> =
            self.consts.iter().map(|&a| (a, cache[a].as_ref().map(|v| v.clone_ref(py)))).collect();
        if self.reads_own {
            inputs.push((self.acc, None));
            inputs.sort_by_key(|(a, _)| *a);
        }
        RunRecords { stamps: stamps.map(Bound::unbind), seen: seen.map(Bound::unbind), inputs, own: self.acc, nodes: self.nodes }
    }
}

/// The core's failure for where a run stopped, with the failing fire's
/// records (`fired`: fires before it); `Err` for `ITERATION` (the iterable
/// itself raised: not an event's failure).
pub fn failure(
    py: Python<'_>,
    stage: i64,
    boundary: Value,
    raised: Value,
    records: Option<&RunRecords>,
    fired: u64,
) -> Result<ChainFailure<Value, PyErr>, PyErr> {
    if stage == REFUSED {
        let (path, type_name, message): (String, String, String) = raised.extract(py)?;
        return Ok(ChainFailure::Refused { error: Unsupported { path, type_name, message } });
    }
    let error = PyErr::from_value(raised.into_bound(py));
    match stage {
        ITERATION => Err(error),
        ACCUMULATOR => Ok(ChainFailure::Accumulator { error }),
        node => {
            let node = node as usize;
            let detail = match records {
                Some(r) => r.detail(py, fired as usize, node + 1)?,
                None => None,
            };
            Ok(ChainFailure::Node { boundary, node, error, detail })
        }
    }
}

/// What runners are built from: the compiled graph, whether an `on_fire`
/// wants each `FireResult` as it happens, and the `on_output` sink.
#[derive(Clone, Copy)]
pub struct Graph<'a> {
    pub plan: &'a Plan,
    pub accs: &'a [AccCall],
    pub nodes: &'a [NodeCall],
    pub on_fire: bool,
    pub sink: Option<&'a Value>,
}

/// Runners for every accumulator whose events can run as a chain: the plan
/// is a chain, no `on_fire` wants each `FireResult` as it happens, and the
/// accumulator is a sync passthrough or stream criteria member. `sink`: the
/// `on_output` function, called by the runner for each fire's value.
pub fn runners(py: Python<'_>, graph: &Graph<'_>, records: Records) -> PyResult<Vec<Option<Runner>>> {
    let Graph { plan, accs, nodes, on_fire, sink } = *graph;
    let Some(terminal) = plan.chain_terminal.filter(|_| !on_fire) else {
        return Ok(accs.iter().map(|_| None).collect());
    };
    let module = py.import("headrace._chain")?;
    let build = module.getattr("build")?;
    let describe = module.getattr("Chain")?;
    let suppressed = module.getattr("SUPPRESSED")?;
    let route = <crate::fire::Route as pyo3::PyTypeInfo>::type_object(py);
    let mut out = Vec::with_capacity(accs.len());
    for (i, (spec, call)) in plan.accumulators.iter().zip(accs).enumerate() {
        let plain = matches!(spec.kind, AccKind::Passthrough | AccKind::Stream);
        // A stream's state is checked (and put back) by the engine alone.
        let checked_state = records.check && call.state.is_some();
        if !plain || call.is_async || !plan.criteria.member[i] || checked_state {
            out.push(None);
            continue;
        }
        let (described, consts) = describe_nodes(py, plan, nodes, Some(i));
        let reads_own = plan.nodes.iter().flat_map(|n| &n.inputs).any(|s| *s == Source::Acc(i));
        let accumulate = if spec.function { Some(call.function.clone_ref(py)) } else { None };
        let state = call.state.as_ref().map(|s| s.clone_ref(py));
        let clock = match records.node_ns {
            true => Some(wrap_pyfunction!(read_ticks, py)?),
            false => None,
        };
        let check = match records.check {
            true => Some(wrap_pyfunction!(check_boundary, py)?),
            false => None,
        };
        let chain = describe.call1((accumulate, state, described, terminal, &route, sink, plan.graph.as_str(), check))?;
        let (keep, count, one): (Value, Value, Value) = build.call1((chain, clock, records.inputs))?.extract()?;
        let suppressed = suppressed.clone().unbind();
        out.push(Some(Runner { keep, count, one, suppressed, consts, reads_own, acc: i, nodes: nodes.len(), records }));
    }
    Ok(out)
}

/// The runners' clock for `profile=True`: the engine's own (core `clock`),
/// whose ticks are scaled to nanoseconds afterwards (`time.perf_counter_ns`
/// costs ~70 ns a read, and a fire of W1 reads it three times).
#[pyfunction(name = "ticks")]
fn read_ticks() -> u64 {
    ticks()
}

/// `check_checkpointable` for the runners: None when `boundary` can be
/// checkpointed, else `(path, type name, message)`.
#[pyfunction]
fn check_boundary(boundary: &Bound<'_, PyAny>) -> Option<(String, String, String)> {
    crate::checkable::check(boundary, "boundary").err().map(|u| (u.path, u.type_name, u.message))
}

/// `push_pairs`' runner: the graph's accumulators all taking part.
pub struct PairsRunner {
    pub function: Value,
}

/// One call of a pairs runner: per accumulator what it took (a failing
/// fire's boundary left out: the ordinary way takes it), the fires, and where
/// it stopped: (stage, accumulator, item, event, boundary, what raised).
pub struct PairsRan {
    pub accs: Vec<AccRun<Value>>,
    pub fired: u64,
    pub started: Ticks,
    pub ended: Ticks,
    pub stopped: Option<(i64, usize, Value, Value, Value, Value)>,
}

impl PairsRunner {
    /// Runs `pairs` (an iterable of `(name, event)`), appending each fire's
    /// output to `outputs` and its triggering accumulator to `trig`; every
    /// input starts from `cache`.
    pub fn call(
        &self,
        py: Python<'_>,
        pairs: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyList>,
        trig: &Bound<'_, PyList>,
        cache: &[Option<Value>],
        members: &[bool],
    ) -> PyResult<PairsRan> {
        let values = PyTuple::new(py, cache.iter().map(|v| v.as_ref().map(|v| v.clone_ref(py))))?;
        let missing = cache.iter().zip(members).filter(|(v, m)| **m && v.is_none()).count();
        let started = ticks();
        let outcome = self.function.bind(py).call1((pairs, outputs, trig, values, missing))?;
        let ended = ticks();
        let (counts, after, stopped): PairsOutcome = outcome.extract()?;
        let node_failed_at = stopped.as_ref().filter(|s| s.0 >= 0).map(|s| s.1 as usize);
        let mut old = stopped.as_ref().and_then(|s| s.5.as_ref().map(|v| v.clone_ref(py)));
        let accs = counts
            .into_iter()
            .zip(after)
            .enumerate()
            .map(|(i, ((suppressed, boundaries), value))| {
                // A failing fire's boundary is not the input's yet: the
                // ordinary way takes it, and keeps the value before it meanwhile.
                let last = if node_failed_at == Some(i) { old.take() } else { value };
                AccRun { suppressed, boundaries, last }
            })
            .collect();
        let stopped = stopped.map(|(stage, acc, pair, event, boundary, _, raised)| (stage, acc as usize, pair, event, boundary, raised));
        Ok(PairsRan { accs, fired: outputs.len() as u64, started, ended, stopped })
    }
}

/// A `push_pairs` runner when every accumulator of a chain graph is a sync
/// passthrough or stream criteria member with sequential input (each event
/// fires alone, or only fills an input under `when_all`), and no `on_fire`
/// wants each `FireResult` as it happens.
pub fn pairs_runner(py: Python<'_>, graph: &Graph<'_>, check: bool) -> PyResult<Option<PairsRunner>> {
    let Graph { plan, accs, nodes, on_fire, sink } = *graph;
    let Some(terminal) = plan.chain_terminal.filter(|_| !on_fire) else { return Ok(None) };
    let eligible = plan.accumulators.iter().zip(accs).enumerate().all(|(i, (spec, call))| {
        matches!(spec.kind, AccKind::Passthrough | AccKind::Stream)
            && !call.is_async
            && plan.criteria.member[i]
            && plan.inputs[i] == InputStrategy::Sequential
            && !(check && call.state.is_some())
    });
    if !eligible {
        return Ok(None);
    }
    let module = py.import("headrace._chain")?;
    let described_accs: Vec<(&str, Option<Value>, Option<Value>)> = plan
        .accumulators
        .iter()
        .zip(accs)
        .map(|(spec, call)| {
            let accumulate = spec.function.then(|| call.function.clone_ref(py));
            (spec.name.as_str(), accumulate, call.state.as_ref().map(|s| s.clone_ref(py)))
        })
        .collect();
    let (described_nodes, _) = describe_nodes(py, plan, nodes, None);
    let route = <crate::fire::Route as pyo3::PyTypeInfo>::type_object(py);
    let check = match check {
        true => Some(wrap_pyfunction!(check_boundary, py)?),
        false => None,
    };
    let when_all = plan.criteria.kind == CriteriaKind::All;
    let names: Vec<Bound<'_, PyString>> = plan.accumulators.iter().map(|a| PyString::intern(py, &a.name)).collect();
    let described_accs: Vec<_> = described_accs.into_iter().zip(names).map(|((_, f, s), n)| (n, f, s)).collect();
    let nodes_only = (None::<Value>, None::<Value>, described_nodes, terminal, &route, sink, plan.graph.as_str(), check);
    let chain = module.getattr("Chain")?.call1(nodes_only)?;
    let chain = module.getattr("PairsChain")?.call1((described_accs, when_all, chain))?;
    Ok(Some(PairsRunner { function: module.getattr("build_pairs")?.call1((chain,))?.unbind() }))
}

/// A node as `headrace._chain` reads it: function, arguments, and what it
/// raises when it returns a `Route` (it declares no routes).
type NodeDescription = (Value, Vec<(&'static str, usize)>, String);

/// The nodes in plan order for a runner of accumulator `own`'s events (its
/// input is the run's boundary, the others are constants, returned in index
/// order), or of every accumulator's (`None`: every input is a constant).
fn describe_nodes(py: Python<'_>, plan: &Plan, nodes: &[NodeCall], own: Option<usize>) -> (Vec<NodeDescription>, Vec<usize>) {
    let mut consts: Vec<usize> = Vec::new();
    let described = plan
        .nodes
        .iter()
        .zip(nodes)
        .map(|(node, call)| {
            let args = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Acc(a) if Some(a) == own => ("boundary", 0),
                    Source::Acc(a) => {
                        consts.push(a);
                        ("const", a)
                    }
                    Source::Node(j) => ("node", j),
                })
                .collect();
            (call.function.clone_ref(py), args, crate::calls::route_without_routes(&node.name))
        })
        .collect();
    consts.sort_unstable();
    consts.dedup();
    (described, consts)
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
        let item = Item::Event { acc, input: Input::Value(event?.unbind()) };
        take_item(py, processor, cx, item, aio, into);
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
    let limit = checkpoint_limit(processor);
    let source = match limit {
        Some(n) => islice(py, events, n)?,
        None => events.clone().into_any(),
    };
    let outputs = PyList::empty(py);
    let ran = runner.call(py, &source, Some(&outputs), processor.cache())?;
    let Ran { suppressed, fired, last, started, ended, stopped, records } = ran;
    let taken = fired + suppressed;
    let booked = processor.chain_ran(ChainRun { acc, taken, fired, last, started, ended });
    // The failing fire's records are read before the run's are kept.
    let stopped = match stopped {
        Some((stage, event, boundary, error)) => Some((event, failure(py, stage, boundary, error, records.as_ref(), fired)?)),
        None => None,
    };
    if fired > 0 {
        let fires = RunFires::new(booked, elapsed(started, ended.max(started)), &cx.plan, outputs, None, records);
        into.fires.push(Kept::Run(Box::new(fires)));
    }
    let Some((event, failure)) = stopped else {
        return Ok(match ran_out(py, processor, cx, aio, into, limit, taken) {
            true => Stopped::Exhausted,
            false => Stopped::Limit,
        });
    };
    let mut out = InlineOutcome::new();
    take_failed(py, processor, cx, aio, &mut out, (acc, event, failure));
    keep(into, out);
    Ok(Stopped::Failed)
}

/// Inline `push` (and each event of `push_pairs`): an event that would fire
/// alone goes through its accumulator's single-event runner, filling `out`
/// as the ordinary path would. Hands the item back when it cannot.
pub fn push_one(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    item: Item<Value>,
    aio: Option<&Value>,
    out: &mut InlineOutcome,
) -> Option<Item<Value>> {
    let (acc, event) = match item {
        Item::Event { acc, input: Input::Value(event) } => (acc, event),
        item => return Some(item),
    };
    let Some(runner) = cx.runners.get(acc).and_then(Option::as_ref).filter(|_| processor.chain_ready(acc)) else {
        return Some(Item::Event { acc, input: Input::Value(event) });
    };
    let consts = match runner.consts_of(py, processor.cache()) {
        Ok(t) => t,
        Err(e) => return error(out, e),
    };
    let recording = runner.recording();
    let stamps = (recording && runner.records.node_ns).then(|| PyList::empty(py));
    let seen = (recording && runner.records.inputs).then(|| PyList::empty(py));
    let started = ticks();
    let result = runner.one.bind(py).call1((&event, consts, &stamps, &seen));
    let ended = ticks();
    let records = recording.then(|| runner.run_records(py, processor.cache(), stamps, seen));
    let result = match result {
        Ok(r) => r,
        // Only the runner's own frame can fail here (no memory): the
        // event's functions did not run.
        Err(e) => {
            out.error = Some(e);
            return None;
        }
    };
    let run = |fired: u64, last: Option<Value>| ChainRun { acc, taken: 1, fired, last, started, ended };
    if result.is(&runner.suppressed) {
        processor.chain_ran(run(0, None));
    } else if let Ok((value, boundary)) = result.extract::<(Value, Value)>() {
        let booked = processor.chain_ran(run(1, Some(boundary)));
        let detail = match records.as_ref().map(|r| r.detail(py, 0, r.nodes)) {
            Some(Ok(d)) => d,
            Some(Err(e)) => return error(out, e),
            None => None,
        };
        let terminal = cx.plan.chain_terminal.expect("a runner implies a chain");
        out.result = Some(Kept::plain(booked, elapsed(started, ended.max(started)), (terminal, value), detail));
    } else {
        let (stage, boundary, raised): (i64, Value, Value) = match result.extract() {
            Ok(t) => t,
            Err(e) => return error(out, e),
        };
        let failure = match failure(py, stage, boundary, raised, records.as_ref(), 0) {
            Ok(f) => f,
            Err(e) => return error(out, e),
        };
        take_failed(py, processor, cx, aio, out, (acc, event, failure));
        return None;
    }
    // The ordinary path checkpoints after every event.
    if processor.checkpoints_enabled() {
        let target = out.target;
        inline::step(py, processor, cx, out, aio, |_, _| ());
        out.target = target;
    }
    None
}

/// The event a run stopped at, `(accumulator, event, what raised)`, taken
/// the ordinary way with what already ran (core `Processor::chain_failed`).
fn take_failed(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    aio: Option<&Value>,
    out: &mut InlineOutcome,
    (acc, event, failure): (usize, Value, ChainFailure<Value, PyErr>),
) {
    inline::step(py, processor, cx, out, aio, |p, calls| {
        p.chain_failed(acc, event, failure, calls, &Now::lazy());
    });
}

fn error(out: &mut InlineOutcome, e: PyErr) -> Option<Item<Value>> {
    out.error.get_or_insert(e);
    None
}

/// An item the ordinary way, as `Mode::submit_all` takes it.
fn take_item(py: Python<'_>, processor: &mut Proc, cx: &Callables, item: Item<Value>, aio: Option<&Value>, into: &mut Collected) {
    let mut out = InlineOutcome::new();
    if let Some(item) = push_one(py, processor, cx, item, aio, &mut out) {
        inline::step(py, processor, cx, &mut out, aio, |p, calls| p.apply(item, calls, &Now::lazy()));
    }
    keep(into, out);
}

/// Inline `push_pairs`: runs of pairs through the pairs runner while nothing
/// waits in the processor, every other pair the ordinary way (`to_item`
/// turns a pair into an item, or raises for a bad pair or an unknown name).
pub fn push_pairs(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    pairs: &mut Bound<'_, PyIterator>,
    to_item: &mut dyn FnMut(Bound<'_, PyAny>) -> PyResult<Item<Value>>,
    aio: Option<&Value>,
    into: &mut Collected,
) -> PyResult<()> {
    loop {
        if let Some(runner) = cx.pairs.as_ref().filter(|_| processor.chain_clean()) {
            match run_pairs(py, processor, cx, runner, pairs, aio, into)? {
                PairsStopped::Exhausted => return Ok(()),
                PairsStopped::Again => continue,
                PairsStopped::Handoff(pair) => {
                    let item = to_item(pair)?;
                    take_item(py, processor, cx, item, aio, into);
                    continue;
                }
            }
        }
        let Some(pair) = pairs.next() else { return Ok(()) };
        let item = to_item(pair?)?;
        take_item(py, processor, cx, item, aio, into);
    }
}

enum PairsStopped<'py> {
    Exhausted,
    /// A checkpoint fell due, or a failed event was taken: go on.
    Again,
    /// A pair the runner does not take (an unknown name, not a pair): the
    /// ordinary way says what is wrong with it.
    Handoff(Bound<'py, PyAny>),
}

/// Where a pairs runner stopped (`headrace._chain`).
pub const UNKNOWN: i64 = -4;
pub const NOT_A_PAIR: i64 = -5;

/// (per accumulator (no boundary, boundaries), values after, stop)
type PairsOutcome = (Vec<(u64, u64)>, Vec<Option<Value>>, Option<(i64, i64, Value, Value, Value, Option<Value>, Value)>);

fn run_pairs<'py>(
    py: Python<'py>,
    processor: &mut Proc,
    cx: &Callables,
    runner: &PairsRunner,
    pairs: &Bound<'py, PyIterator>,
    aio: Option<&Value>,
    into: &mut Collected,
) -> PyResult<PairsStopped<'py>> {
    let limit = checkpoint_limit(processor);
    let source = match limit {
        Some(n) => islice(py, pairs, n)?,
        None => pairs.clone().into_any(),
    };
    let (outputs, trig) = (PyList::empty(py), PyList::empty(py));
    let ran = runner.call(py, &source, &outputs, &trig, processor.cache(), &cx.plan.criteria.member)?;
    let PairsRan { accs, fired, started, ended, stopped } = ran;
    let taken: u64 = accs.iter().map(|a| a.suppressed + a.boundaries).sum::<u64>() + u64::from(stopped.is_some());
    let booked = processor.chain_ran_each(accs, fired, started, ended);
    if fired > 0 {
        let fires = RunFires::new(booked, elapsed(started, ended.max(started)), &cx.plan, outputs, Some(trig), None);
        into.fires.push(Kept::Run(Box::new(fires)));
    }
    let Some((stage, acc, pair, event, boundary, raised)) = stopped else {
        return Ok(match ran_out(py, processor, cx, aio, into, limit, taken) {
            true => PairsStopped::Exhausted,
            false => PairsStopped::Again,
        });
    };
    if stage == UNKNOWN || stage == NOT_A_PAIR {
        return Ok(PairsStopped::Handoff(pair.into_bound(py)));
    }
    let failure = failure(py, stage, boundary, raised, None, fired)?;
    let mut out = InlineOutcome::new();
    take_failed(py, processor, cx, aio, &mut out, (acc, event, failure));
    keep(into, out);
    Ok(PairsStopped::Again)
}

/// After a run that went through: whether the iterable ran out (without a
/// limit the loop ended because it did; with one, a short run means the
/// same). If not, the run stopped at its limit: checkpoint if due, as the
/// ordinary path does after every event.
fn ran_out(py: Python<'_>, processor: &mut Proc, cx: &Callables, aio: Option<&Value>, into: &mut Collected, limit: Option<u64>, taken: u64) -> bool {
    let exhausted = limit.is_none_or(|n| taken < n);
    if !exhausted {
        let mut out = InlineOutcome::new();
        inline::step(py, processor, cx, &mut out, aio, |_, _| ());
        keep(into, out);
    }
    exhausted
}

/// Events a run may take when a checkpoint policy is on (see `INTERVAL_CHECK`).
fn checkpoint_limit(processor: &Proc) -> Option<u64> {
    match (processor.fires_until_checkpoint(), processor.checkpoints_enabled()) {
        (Some(n), _) => Some(n.min(INTERVAL_CHECK)),
        (None, true) => Some(INTERVAL_CHECK),
        (None, false) => None,
    }
}

/// `itertools.islice(events, n)`: at most `n` more of them.
fn islice<'py>(py: Python<'py>, events: &Bound<'py, PyIterator>, n: u64) -> PyResult<Bound<'py, PyAny>> {
    static ISLICE: pyo3::sync::PyOnceLock<Value> = pyo3::sync::PyOnceLock::new();
    ISLICE.import(py, "itertools", "islice")?.call1((events, n))
}
