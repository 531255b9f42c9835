//! Chain runs: a host that fires a batch's run of events itself, and tells
//! the processor afterwards, leaves the processor exactly as the ordinary
//! path does: the same fires in the same order, counters, inputs, sequence
//! numbers, retries and dead letters.

use crate::clock::wall_now;
use super::*;
use crate::host::{ChainFailure, ChainOutcome};
use crate::plan::Source;
use std::sync::atomic::Ordering::Relaxed;

/// The fake's runner: the accumulator and every node for each event, in one
/// loop of its own; the first failure stops it.
pub(super) fn run(f: &mut Fake, acc: usize, events: Vec<Val>, cache: &[Option<Val>]) -> ChainOutcome<Val, String> {
    let plan = f.chain_plan.clone().expect("a chain host");
    let terminal = plan.chain_terminal.expect("a chain plan");
    f.chain_runs += 1;
    let (mut fired, mut suppressed, mut last) = (0, 0, None);
    let mut events = events.into_iter();
    let started = crate::clock::ticks();
    let mut stopped = None;
    'events: for event in events.by_ref() {
        let boundary = match f.accumulate(acc, &event) {
            Ok(None) => {
                suppressed += 1;
                continue;
            }
            Ok(Some(b)) => b,
            Err(error) => {
                stopped = Some((event, ChainFailure::Accumulator { error }));
                break;
            }
        };
        let mut slots: Vec<Option<Val>> = vec![None; plan.nodes.len()];
        for (pos, node) in plan.nodes.iter().enumerate() {
            let args: Vec<Option<&Val>> = node
                .inputs
                .iter()
                .map(|s| match *s {
                    Source::Acc(a) if a == acc => Some(&boundary),
                    Source::Acc(a) => cache[a].as_ref(),
                    Source::Node(j) => slots[j].as_ref(),
                })
                .collect();
            match f.call_node(pos, &args) {
                Ok(NodeOutput::Value(v)) => slots[pos] = Some(v),
                Ok(NodeOutput::Routed { .. }) => unreachable!("a chain has no routes"),
                Err(error) => {
                    stopped = Some((event, ChainFailure::Node { boundary, node: pos, error, detail: None }));
                    break 'events;
                }
            }
        }
        let output = slots[terminal].take().expect("the terminal ran");
        f.fires.push(Fired {
            trigger: Trigger::Boundary(acc),
            seq: 0,
            outputs: vec![(terminal, output)],
            failed_node: None,
            timed: None,
            inputs: None,
        });
        last = Some(boundary);
        fired += 1;
    }
    let ended = crate::clock::ticks();
    ChainOutcome { fired, suppressed, last, started, ended, stopped, untaken: events.collect() }
}

/// Node 0 doubles its input and fails on 13; node 1 adds the other input.
fn nodes() -> Vec<NodeFn> {
    vec![
        Box::new(|args| match args[0] {
            Some(Val::Int(13)) => Err("thirteen".into()),
            Some(Val::Int(i)) => Ok(NodeOutput::Value(Val::Int(i * 2))),
            other => Err(format!("unexpected {other:?}")),
        }),
        Box::new(|args| {
            let other = match args[1] {
                Some(Val::Int(i)) => *i,
                _ => 0,
            };
            match args[0] {
                Some(Val::Int(i)) => Ok(NodeOutput::Value(Val::Int(i + other))),
                other => Err(format!("unexpected {other:?}")),
            }
        }),
    ]
}

fn spec() -> GraphSpec {
    graph(
        vec![acc("a", AccKind::Passthrough), acc("b", AccKind::Passthrough)],
        vec![node("double", &["a"]), node("sum", &["double", "b"])],
        CriteriaKind::Any,
        &["a"],
        InputStrategy::Sequential,
    )
}

/// What the two paths must agree on.
fn observed(p: &Processor<Val, String>, f: &Fake) -> impl PartialEq + std::fmt::Debug {
    let m = p.metrics();
    let acc = |i: usize| {
        let a = &m.accumulators[i];
        [a.events.load(Relaxed), a.boundaries.load(Relaxed), a.suppressed.load(Relaxed), a.errors.load(Relaxed)]
    };
    let fires: Vec<_> = f.fires.iter().map(|x| (x.trigger, x.outputs.clone(), x.failed_node)).collect();
    let letters = p.dead_letters().with(|l, _| l.iter().map(|d| (d.acc, d.attempts, d.value.clone())).collect::<Vec<_>>());
    (
        fires,
        acc(0),
        acc(1),
        [m.fires.load(Relaxed), m.fires_failed.load(Relaxed), m.retries.load(Relaxed)],
        p.cache().to_vec(),
        p.next_seq(),
        letters,
        f.acc_failures,
    )
}

fn run_batches(chain: bool, batches: &[Vec<(usize, Val)>], max_attempts: u32) -> (impl PartialEq + std::fmt::Debug, usize) {
    let spec = spec();
    let plan = Arc::new(Plan::compile(&spec).expect("valid graph"));
    let config = Config { max_attempts, retry_backoff: Duration::ZERO, dead_letter_limit: 100, ..Config::default() };
    let mut p: Processor<Val, String> = Processor::new(plan.clone(), config);
    let mut f = Fake::new(nodes());
    if chain {
        f.chain_plan = Some(plan);
    }
    for batch in batches {
        let items = batch.iter().map(|(acc, v)| Item::Event { acc: *acc, input: Input::Value(v.clone()) });
        p.apply_batch(items, &mut f, &Now::at(wall_now()));
    }
    (observed(&p, &f), f.chain_runs)
}

#[test]
fn a_chain_host_leaves_the_processor_as_the_ordinary_path_does() {
    // Nil: suppressed; -1: the accumulator fails; 13: node "double" fails.
    let a = |v: i64| (0, Val::Int(v));
    let cases: Vec<Vec<Vec<(usize, Val)>>> = vec![
        vec![vec![a(1), a(2), a(3)]],
        vec![vec![(1, Val::Int(100)), a(1), a(2), (0, Val::Nil), a(3)], vec![a(4), a(5)]],
        vec![vec![a(1), a(-1), a(2), a(3)]],
        vec![vec![a(1), a(13), a(2), a(3)], vec![a(4), a(5)]],
        vec![vec![a(13), a(13), a(1)], vec![a(2)]],
    ];
    for attempts in [1, 2, 3] {
        for (k, batches) in cases.iter().enumerate() {
            let (ordinary, no_runs) = run_batches(false, batches, attempts);
            let (chained, runs) = run_batches(true, batches, attempts);
            assert_eq!(no_runs, 0);
            assert!(runs > 0, "case {k}: the host ran no chain");
            assert_eq!(chained, ordinary, "case {k}, max_attempts {attempts}");
        }
    }
}
