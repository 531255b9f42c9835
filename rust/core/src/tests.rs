//! Core semantics, exercised through a fake host with plain Rust values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::wall_now;
use crate::channel::{merge_channel, Item, PushError};
use crate::driver::{self, Attach};
use crate::host::{Calls, Codec, NodeOutput, Report, Trigger, Unsupported};
use crate::plan::{Plan, Problem};
use crate::processor::{Config, Input, Now, Processor, SourcePosition};
use crate::spec::*;

#[derive(Clone, Debug, PartialEq)]
enum Val {
    Nil,
    Int(i64),
    List(Vec<Val>),
    /// A value no checkpoint can hold.
    Opaque,
}

type NodeFn = Box<dyn FnMut(&[Option<&Val>]) -> Result<NodeOutput<Val>, String> + Send>;

#[derive(Debug, PartialEq)]
struct Fired {
    trigger: Trigger,
    seq: u64,
    outputs: Vec<(usize, Val)>,
    failed_node: Option<usize>,
    /// Plan positions of the timed nodes (with `profile`).
    timed: Option<Vec<usize>>,
    /// With `record_inputs`.
    inputs: Option<Vec<(usize, Option<Val>)>>,
}

struct Fake {
    nodes: Vec<NodeFn>,
    fires: Vec<Fired>,
    acc_failures: usize,
    saved: Vec<crate::checkpoint::snapshot::EngineSnapshot>,
    refused: Vec<(usize, bool)>,
    checkpoint_failures: usize,
    /// Calls of `accumulate`, by accumulator.
    accumulated: Vec<usize>,
    /// A fake clock: each node advances it by its cost (plan position → cost).
    clock: Instant,
    costs: Vec<Duration>,
    clock_reads: usize,
    /// The runs of async nodes awaited together, by plan position.
    batches: Vec<Vec<usize>>,
    /// The errors of failed fires, in order.
    errors: Vec<String>,
    /// Set: the fake runs chain runs itself (`Calls::run_chain`), as a host
    /// with a runner would, recording each fire as `report` would.
    chain_plan: Option<Arc<Plan>>,
    chain_runs: usize,
    /// When each reported fire started.
    starts: Vec<std::time::SystemTime>,
    polls: i64,
}

impl Fake {
    fn new(nodes: Vec<NodeFn>) -> Self {
        Fake {
            nodes,
            fires: vec![],
            acc_failures: 0,
            saved: vec![],
            refused: vec![],
            checkpoint_failures: 0,
            accumulated: vec![],
            clock: Instant::now(),
            costs: vec![],
            clock_reads: 0,
            batches: vec![],
            errors: vec![],
            chain_plan: None,
            chain_runs: 0,
            starts: vec![],
            polls: 0,
        }
    }

    fn cost(&self, node: usize) -> Duration {
        self.costs.get(node).copied().unwrap_or_default()
    }
}

fn to_cp(v: &Val) -> crate::checkpoint::Value {
    try_cp(v).expect("checkpointable")
}

fn try_cp(v: &Val) -> Result<crate::checkpoint::Value, Unsupported> {
    use crate::checkpoint::Value as C;
    Ok(match v {
        Val::Nil => C::None,
        Val::Int(i) => C::Int(*i),
        Val::List(l) => C::List(l.iter().map(try_cp).collect::<Result<_, _>>()?),
        Val::Opaque => {
            return Err(Unsupported { path: "value".into(), type_name: "Opaque".into(), message: "value: Opaque".into() })
        }
    })
}

fn from_cp(v: crate::checkpoint::Value) -> Result<Val, String> {
    use crate::checkpoint::Value as C;
    match v {
        C::None => Ok(Val::Nil),
        C::Int(i) => Ok(Val::Int(i)),
        C::List(l) => l.into_iter().map(from_cp).collect::<Result<_, _>>().map(Val::List),
        other => Err(format!("unexpected {other:?}")),
    }
}

impl Calls<Val, String> for Fake {
    fn accumulate(&mut self, acc: usize, event: &Val) -> Result<Option<Val>, String> {
        if self.accumulated.len() <= acc {
            self.accumulated.resize(acc + 1, 0);
        }
        self.accumulated[acc] += 1;
        match event {
            Val::Nil => Ok(None),
            Val::Int(i) if *i < 0 => Err(format!("negative {i}")),
            v => Ok(Some(v.clone())),
        }
    }
    fn accumulate_batch(&mut self, _acc: usize, events: &[Val]) -> Result<Option<Val>, String> {
        Ok(Some(Val::List(events.to_vec())))
    }
    fn call_node(&mut self, node: usize, args: &[Option<&Val>]) -> Result<NodeOutput<Val>, String> {
        self.clock += self.cost(node);
        (self.nodes[node])(args)
    }
    /// Awaited together: the clock advances by the slowest, each cut at its budget.
    fn call_nodes_concurrently(
        &mut self,
        batch: &[crate::host::AsyncCall<'_, Val>],
    ) -> Vec<Option<Result<NodeOutput<Val>, String>>> {
        self.batches.push(batch.iter().map(|c| c.node).collect());
        let mut slowest = Duration::ZERO;
        let results = batch
            .iter()
            .map(|c| {
                let cost = self.cost(c.node);
                let cut = c.budget.is_some_and(|b| cost > b);
                slowest = slowest.max(if cut { c.budget.unwrap_or_default() } else { cost });
                (!cut).then(|| (self.nodes[c.node])(&c.args))
            })
            .collect();
        self.clock += slowest;
        results
    }
    fn overran(&mut self, o: &crate::host::Overrun) -> String {
        format!("node {} overran {:?} {:?} by {:?}", o.node, o.kind, o.limit, o.by)
    }
    /// Polls count: the n-th poll of any accumulator returns n.
    fn poll(&mut self, _acc: usize) -> Result<Val, String> {
        self.polls += 1;
        Ok(Val::Int(self.polls))
    }
    fn now(&mut self) -> Instant {
        self.clock_reads += 1;
        self.clock
    }
    fn decode(&mut self, _acc: usize, bytes: &[u8], _codec: Codec) -> Result<Val, String> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Val::Int)
            .ok_or_else(|| "bad bytes".to_string())
    }
    fn is_none(&mut self, value: &Val) -> bool {
        *value == Val::Nil
    }
    fn equal(&mut self, a: &Val, b: &Val) -> Result<bool, String> {
        Ok(a == b)
    }
    fn share(&mut self, value: &Val) -> Val {
        value.clone()
    }
    fn list(&mut self, items: &mut dyn Iterator<Item = &Val>) -> Val {
        Val::List(items.cloned().collect())
    }
    fn describe(&mut self, error: &String) -> String {
        error.clone()
    }
    fn to_value(&mut self, value: &Val) -> Result<crate::checkpoint::Value, Unsupported> {
        try_cp(value)
    }
    fn checkpointable(&mut self, _root: &str, value: &Val) -> Result<(), Unsupported> {
        try_cp(value).map(drop)
    }
    fn user_state_checkpointable(&mut self, _acc: usize) -> Result<(), Unsupported> {
        Ok(())
    }
    fn stand_in(&mut self, _value: &Val) -> Val {
        Val::Nil
    }
    fn persist(&mut self, snapshot: crate::checkpoint::snapshot::EngineSnapshot) -> Result<(), crate::host::CheckpointError> {
        self.saved.push(snapshot);
        Ok(())
    }
    fn chains(&self, _acc: usize) -> bool {
        self.chain_plan.is_some()
    }
    fn run_chain(&mut self, acc: usize, events: Vec<Val>, cache: &[Option<Val>]) -> crate::host::ChainOutcome<Val, String> {
        chain::run(self, acc, events, cache)
    }
    fn report(&mut self, report: Report<Val, String>) {
        match report {
            Report::Fired(r) => self.fires.push({
                self.starts.push(r.started_at);
                Fired {
                trigger: r.trigger,
                seq: r.seq,
                outputs: r.outputs.into_vec(),
                failed_node: r.failure.map(|f| {
                    self.errors.push(f.error);
                    f.node
                }),
                timed: r.detail.as_ref().and_then(|d| d.node_ns.as_ref()).map(|t| t.iter().map(|t| t.0).collect()),
                inputs: r.detail.and_then(|d| d.inputs),
            }
            }),
            Report::AccumulatorFailed { .. } | Report::DecodeFailed { .. } => self.acc_failures += 1,
            Report::Refused { acc, batch, .. } => self.refused.push((acc, batch)),
            Report::CheckpointFailed(_) => self.checkpoint_failures += 1,
        }
    }
}

fn acc(name: &str, kind: AccKind) -> AccSpec {
    AccSpec { name: name.into(), kind, input: None, function: true, max_age: None }
}

fn node(name: &str, params: &[&str]) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        params: params.iter().map(|s| s.to_string()).collect(),
        routes: vec![],
        is_async: false,
        timeout: None,
        cutoff: false,
    }
}

fn graph(accs: Vec<AccSpec>, nodes: Vec<NodeSpec>, kind: CriteriaKind, members: &[&str], strategy: InputStrategy) -> GraphSpec {
    GraphSpec {
        name: "g".into(),
        accumulators: accs,
        nodes,
        criteria: CriteriaSpec::new(kind, members.iter().map(|s| s.to_string()).collect()),
        strategy,
        fire_timeout: None,
    }
}

/// A node that returns its arguments as a list (missing ones as Nil).
fn echo() -> NodeFn {
    Box::new(|args| Ok(NodeOutput::Value(Val::List(args.iter().map(|a| a.cloned().unwrap_or(Val::Nil)).collect()))))
}

fn setup(spec: &GraphSpec, nodes: Vec<NodeFn>) -> (Processor<Val, String>, Fake) {
    let plan = Arc::new(Plan::compile(spec).expect("valid graph"));
    let processor = Processor::new(plan, Config { max_attempts: 3, retry_backoff: Duration::ZERO, dead_letter_limit: 100, ..Config::default() });
    (processor, Fake::new(nodes))
}

fn push(p: &mut Processor<Val, String>, f: &mut Fake, acc: usize, v: Val) -> u64 {
    let now = wall_now();
    let seq = p.ingest(acc, Input::Value(v), f, &Now::at(now));
    p.settle(f, &Now::at(now));
    seq
}

fn two_acc(kind: CriteriaKind, members: &[&str], strategy: InputStrategy) -> GraphSpec {
    graph(
        vec![acc("a", AccKind::Passthrough), acc("b", AccKind::Passthrough)],
        vec![node("n", &["a", "b"])],
        kind,
        members,
        strategy,
    )
}

#[test]
fn compile_reports_every_problem_by_name() {
    let mut spec = graph(
        vec![acc("a", AccKind::Passthrough), acc("a", AccKind::Passthrough)],
        vec![node("x", &["a", "nope"]), node("y", &["z"]), node("z", &["y"]), node("lonely", &[])],
        CriteriaKind::Any,
        &["ghost"],
        InputStrategy::Latest,
    );
    spec.nodes[0].routes = vec![RouteSpec { label: "l".into(), targets: vec!["lonely".into()] }];
    let err = Plan::compile(&spec).unwrap_err();
    let p = &err.problems;
    assert!(p.contains(&Problem::DuplicateName { name: "a".into(), first: "an accumulator", second: "an accumulator" }));
    assert!(p.contains(&Problem::UnknownParameter { node: "x".into(), parameter: "nope".into() }));
    assert!(p.contains(&Problem::UnknownCriteriaMember { name: "ghost".into() }));
    assert!(p.contains(&Problem::RouteTargetNotConsumer { router: "x".into(), label: "l".into(), target: "lonely".into() }));
    assert!(p.iter().any(|q| matches!(q, Problem::Cycle { path } if path.contains(&"y".to_string()) && path.contains(&"z".to_string()))));
    let text = err.to_string();
    assert!(text.contains("'nope'") && text.contains("cycle"), "{text}");
}

#[test]
fn unreachable_nodes_are_named() {
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![node("x", &["a"]), node("island", &[]), node("after_island", &["island"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let err = Plan::compile(&spec).unwrap_err();
    assert_eq!(
        err.problems,
        vec![Problem::Unreachable { node: "island".into() }, Problem::Unreachable { node: "after_island".into() }]
    );
}

#[test]
fn plan_orders_nodes_topologically_and_marks_terminals() {
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![node("late", &["early"]), node("early", &["a"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let plan = Plan::compile(&spec).unwrap();
    let names: Vec<_> = plan.nodes.iter().map(|n| (n.name.as_str(), n.terminal)).collect();
    assert_eq!(names, vec![("early", false), ("late", true)]);
}

#[test]
fn when_all_waits_for_every_member() {
    let spec = two_acc(CriteriaKind::All, &[], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 0, Val::Int(1));
    push(&mut p, &mut f, 0, Val::Int(2));
    assert!(f.fires.is_empty());
    push(&mut p, &mut f, 1, Val::Int(10));
    assert_eq!(f.fires.len(), 1);
    assert_eq!(f.fires[0].outputs, vec![(0, Val::List(vec![Val::Int(2), Val::Int(10)]))]);
}

#[test]
fn when_any_ignores_non_members_but_caches_them() {
    let spec = two_acc(CriteriaKind::Any, &["a"], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 1, Val::Int(5));
    assert!(f.fires.is_empty());
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].outputs[0].1, Val::List(vec![Val::Int(1), Val::Int(5)]));
}

#[test]
fn latest_collapses_a_batch_into_one_fire() {
    let spec = two_acc(CriteriaKind::Any, &[], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    let now = wall_now();
    for i in 0..5 {
        p.ingest(0, Input::Value(Val::Int(i)), &mut f, &Now::at(now));
    }
    p.ingest(1, Input::Value(Val::Int(9)), &mut f, &Now::at(now));
    p.settle(&mut f, &Now::at(now));
    assert_eq!(f.fires.len(), 1);
    assert_eq!(f.fires[0].outputs[0].1, Val::List(vec![Val::Int(4), Val::Int(9)]));
}

#[test]
fn sequential_fires_once_per_boundary_with_inputs_as_of_that_boundary() {
    let spec = two_acc(CriteriaKind::All, &[], InputStrategy::Sequential);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    let now = wall_now();
    // Ingest everything first (as a thread-mode batch would), then settle.
    for (a, v) in [(0, 1), (1, 10), (0, 2), (0, 3), (1, 20)] {
        p.ingest(a, Input::Value(Val::Int(v)), &mut f, &Now::at(now));
    }
    p.settle(&mut f, &Now::at(now));
    let seen: Vec<Val> = f.fires.iter().map(|x| x.outputs[0].1.clone()).collect();
    let pair = |a, b| Val::List(vec![Val::Int(a), Val::Int(b)]);
    assert_eq!(seen, vec![pair(1, 10), pair(2, 10), pair(3, 10), pair(3, 20)]);
}

#[test]
fn routing_skips_the_unchosen_branch_transitively() {
    // a -> decide -(hi)-> hi1 -> hi2 ; decide -(lo)-> lo1 ; decide -> always
    let mut decide = node("decide", &["a"]);
    decide.routes = vec![
        RouteSpec { label: "hi".into(), targets: vec!["hi1".into()] },
        RouteSpec { label: "lo".into(), targets: vec!["lo1".into()] },
    ];
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![decide, node("hi1", &["decide"]), node("hi2", &["hi1"]), node("lo1", &["decide"]), node("always", &["decide"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let plan = Plan::compile(&spec).unwrap();
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    let fns: Vec<NodeFn> = names.iter().map(|n| if *n == "decide" { router() } else { echo() }).collect();
    let (mut p, mut f) = setup(&spec, fns);
    push(&mut p, &mut f, 0, Val::Int(500));
    push(&mut p, &mut f, 0, Val::Int(5));
    let ran = |i: usize| -> Vec<&str> { f.fires[i].outputs.iter().map(|(pos, _)| names[*pos]).collect() };
    assert_eq!(ran(0), vec!["hi2", "always"]);
    assert_eq!(ran(1), vec!["lo1", "always"]);
}

/// Routes to label 0 ("hi") above 100, else label 1 ("lo").
fn router() -> NodeFn {
    Box::new(|args| {
        let Some(Val::Int(v)) = args[0] else { unreachable!() };
        Ok(NodeOutput::Routed { label: usize::from(*v <= 100), value: Val::Int(*v) })
    })
}

#[test]
fn suppressed_boundaries_do_not_fire() {
    let spec = two_acc(CriteriaKind::Any, &[], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 0, Val::Nil);
    assert!(f.fires.is_empty());
    assert_eq!(p.metrics().accumulators[0].suppressed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn batch_flushes_after_a_successful_fire_and_on_size() {
    let spec = graph(
        vec![acc("tick", AccKind::Passthrough), acc("fills", AccKind::Batch { max_buffer_size: Some(3), flush_interval: None })],
        vec![node("n", &["tick", "fills"])],
        CriteriaKind::Any,
        &["tick"],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 1, Val::Int(1));
    push(&mut p, &mut f, 1, Val::Int(2));
    push(&mut p, &mut f, 0, Val::Int(100)); // fires (fills empty), then fills flushes [1, 2]
    push(&mut p, &mut f, 0, Val::Int(101));
    let seen: Vec<Val> = f.fires.iter().map(|x| x.outputs[0].1.clone()).collect();
    let fills = Val::List(vec![Val::Int(1), Val::Int(2)]);
    assert_eq!(seen, vec![Val::List(vec![Val::Int(100), Val::Nil]), Val::List(vec![Val::Int(101), fills.clone()])]);
    // Size flush: 3 events flush at once, each event in exactly one batch.
    for i in 3..6 {
        push(&mut p, &mut f, 1, Val::Int(i));
    }
    assert_eq!(p.cache()[1], Some(Val::List(vec![Val::Int(3), Val::Int(4), Val::Int(5)])));
    assert_eq!(p.buffered(1), 0);
}

#[test]
fn batch_flush_interval_sets_a_deadline() {
    let spec = graph(
        vec![acc("fills", AccKind::Batch { max_buffer_size: None, flush_interval: Some(Duration::from_millis(5)) })],
        vec![node("n", &["fills"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    let t0 = wall_now();
    p.ingest(0, Input::Value(Val::Int(7)), &mut f, &Now::at(t0));
    p.settle(&mut f, &Now::at(t0));
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(5)));
    p.on_timer(&mut f, &Now::at(t0 + Duration::from_millis(1)));
    assert!(f.fires.is_empty());
    p.on_timer(&mut f, &Now::at(t0 + Duration::from_millis(5)));
    assert_eq!(f.fires.len(), 1);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn state_accumulator_emits_its_bounded_window() {
    let spec = graph(
        vec![acc("recent", AccKind::State { capacity: 2 })],
        vec![node("n", &["recent"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    for i in 1..=3 {
        push(&mut p, &mut f, 0, Val::Int(i));
    }
    assert_eq!(p.cache()[0], Some(Val::List(vec![Val::Int(2), Val::Int(3)])));
}

#[test]
fn polling_suppresses_none_and_unchanged_values() {
    let spec = graph(
        vec![acc("cfg", AccKind::Polling { interval: Duration::from_secs(1) })],
        vec![node("n", &["cfg"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    for v in [Val::Int(1), Val::Int(1), Val::Nil, Val::Int(2), Val::Int(2)] {
        push(&mut p, &mut f, 0, v);
    }
    assert_eq!(f.fires.len(), 2);
}

fn flaky(failures: usize) -> NodeFn {
    let mut left = failures;
    Box::new(move |args| {
        if left > 0 {
            left -= 1;
            return Err("boom".into());
        }
        Ok(NodeOutput::Value(args[0].cloned().unwrap_or(Val::Nil)))
    })
}

fn one_acc(strategy: InputStrategy) -> GraphSpec {
    graph(vec![acc("a", AccKind::Passthrough)], vec![node("n", &["a"])], CriteriaKind::Any, &[], strategy)
}

#[test]
fn sequential_keeps_a_failed_boundary_and_retries_it_first() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![flaky(1)]);
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires.len(), 1);
    assert_eq!(f.fires[0].failed_node, Some(0));
    push(&mut p, &mut f, 0, Val::Int(2));
    let ok: Vec<Val> = f.fires.iter().filter(|x| x.failed_node.is_none()).map(|x| x.outputs[0].1.clone()).collect();
    assert_eq!(ok, vec![Val::Int(1), Val::Int(2)]);
}

#[test]
fn sequential_dead_letters_after_the_retry_limit() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![flaky(3)]);
    push(&mut p, &mut f, 0, Val::Int(1)); // attempt 1
    push(&mut p, &mut f, 0, Val::Int(2)); // attempt 2 of 1 (2 waits)
    push(&mut p, &mut f, 0, Val::Int(3)); // attempt 3 of 1 -> dead letter; then 2 and 3 succeed
    let letters = p.dead_letters().with(|l, dropped| (l.iter().map(|d| (d.value.clone(), d.attempts)).collect::<Vec<_>>(), dropped));
    assert_eq!(letters, (vec![(Val::Int(1), 3)], 0));
    let ok: Vec<Val> = f.fires.iter().filter(|x| x.failed_node.is_none()).map(|x| x.outputs[0].1.clone()).collect();
    assert_eq!(ok, vec![Val::Int(2), Val::Int(3)]);
}

#[test]
fn latest_keeps_dirty_flags_after_a_failure() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Latest), vec![flaky(1)]);
    push(&mut p, &mut f, 0, Val::Int(1));
    let now = wall_now();
    p.on_timer(&mut f, &Now::at(now)); // backoff zero: timer retry fires the same inputs
    assert_eq!(f.fires.len(), 2);
    assert_eq!(f.fires[1].outputs, vec![(0, Val::Int(1))]);
}

#[test]
fn accumulator_failures_are_dead_lettered_and_do_not_fire() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Latest), vec![echo()]);
    push(&mut p, &mut f, 0, Val::Int(-1));
    assert!(f.fires.is_empty());
    assert_eq!(f.acc_failures, 1);
    assert_eq!(p.dead_letters().with(|l, _| l.len()), 1);
}

#[test]
fn undecodable_bytes_are_counted_and_skipped() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![echo()]);
    let now = wall_now();
    p.ingest(0, Input::Bytes { data: b"xx".to_vec(), codec: Codec::Json }, &mut f, &Now::at(now));
    p.ingest(0, Input::Bytes { data: b"42".to_vec(), codec: Codec::Json }, &mut f, &Now::at(now));
    p.settle(&mut f, &Now::at(now));
    assert_eq!(f.acc_failures, 1);
    assert_eq!(f.fires.len(), 1);
}

#[test]
fn manual_fire_runs_regardless_of_criteria() {
    let spec = two_acc(CriteriaKind::All, &[], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    p.fire_manual(&mut f, &Now::at(wall_now()));
    assert_eq!(f.fires[0].trigger, Trigger::Manual);
    assert_eq!(f.fires[0].outputs[0].1, Val::List(vec![Val::Nil, Val::Nil]));
}

#[test]
fn channel_pushes_back_when_full_and_never_drops() {
    let (tx, rx, progress) = merge_channel::<Val>(2);
    let ev = |v| Item::Event { acc: 0, input: Input::Value(Val::Int(v)) };
    assert!(tx.try_push(ev(1)).is_ok());
    assert!(tx.try_push(ev(2)).is_ok());
    assert!(matches!(tx.try_push(ev(3)), Err(PushError::Full(_))));
    assert!(matches!(tx.push(ev(3), Some(Duration::from_millis(5))), Err(PushError::Timeout(_))));
    assert_eq!(progress.submitted(), 2);
    drop(rx);
    assert!(matches!(tx.try_push(ev(4)), Err(PushError::Closed(_))));
}

struct FakeAttach(Fake);
impl Attach<Val, String> for FakeAttach {
    fn attached(&mut self, work: &mut dyn FnMut(&mut dyn Calls<Val, String>)) {
        work(&mut self.0)
    }
}

#[test]
fn driver_processes_everything_then_stops() {
    let (p, f) = setup(&one_acc(InputStrategy::Sequential), vec![echo()]);
    let (tx, rx, progress) = merge_channel::<Val>(16);
    let handle = std::thread::spawn(move || {
        let mut host = FakeAttach(f);
        driver::run(&rx, &std::sync::Mutex::new(p), &mut host, &progress, Duration::from_micros(20));
        (host.0, progress)
    });
    for i in 0..100 {
        tx.push(Item::Event { acc: 0, input: Input::Value(Val::Int(i)) }, None).ok().unwrap();
    }
    tx.push(Item::Stop, None).ok().unwrap();
    let (fake, progress) = handle.join().unwrap();
    assert!(progress.is_closed());
    assert_eq!(progress.completed(), 101);
    let seen: Vec<Val> = fake.fires.iter().map(|x| x.outputs[0].1.clone()).collect();
    assert_eq!(seen, (0..100).map(|i| Val::List(vec![Val::Int(i)])).collect::<Vec<_>>());
}

#[test]
fn driver_closes_progress_even_when_it_panics() {
    let (p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![Box::new(|_| panic!("bug"))]);
    f.acc_failures = 0;
    let (tx, rx, progress) = merge_channel::<Val>(4);
    let waiter = progress.clone();
    let handle = std::thread::spawn(move || {
        let mut host = FakeAttach(f);
        driver::run(&rx, &std::sync::Mutex::new(p), &mut host, &progress, Duration::ZERO);
    });
    tx.push(Item::Event { acc: 0, input: Input::Value(Val::Int(1)) }, None).ok().unwrap();
    assert!(handle.join().is_err());
    assert!(!waiter.wait_for(1, None), "a waiter must be released, not hang");
    assert!(waiter.is_closed());
}

fn mixed_graph(strategy: InputStrategy) -> GraphSpec {
    graph(
        vec![
            acc("tick", AccKind::Passthrough),
            acc("fills", AccKind::Batch { max_buffer_size: Some(4), flush_interval: None }),
            acc("recent", AccKind::State { capacity: 3 }),
            acc("cfg", AccKind::Polling { interval: Duration::from_secs(1) }),
        ],
        vec![node("n", &["tick", "fills", "recent", "cfg"])],
        CriteriaKind::Any,
        &["tick", "recent"],
        strategy,
    )
}

fn encode_all(snap: &crate::checkpoint::snapshot::EngineSnapshot) -> crate::checkpoint::snapshot::EngineSnapshot {
    use crate::checkpoint::{decode, encode, CodecId};
    let mut out = crate::checkpoint::snapshot::EngineSnapshot::default();
    for (name, a) in &snap.accumulators {
        out.accumulators.push((name.clone(), decode(&encode(a, CodecId::Bincode).unwrap()).unwrap()));
    }
    out.reactor = decode(&encode(&snap.reactor, CodecId::Msgpack).unwrap()).unwrap();
    out.sources = decode(&encode(&snap.sources, CodecId::Json).unwrap()).unwrap();
    out.control = decode(&encode(&snap.control, CodecId::Bincode).unwrap()).unwrap();
    out.inputs = decode(&encode(&snap.inputs, CodecId::Msgpack).unwrap()).unwrap();
    out
}

#[test]
fn restore_continues_exactly_where_the_snapshot_was_taken() {
    for strategy in [InputStrategy::Latest, InputStrategy::Sequential] {
        let spec = mixed_graph(strategy);
        let script: Vec<(usize, i64)> =
            (0..60).map(|i| ((i * 7 % 4) as usize, if i % 5 == 0 { 3 } else { i as i64 })).collect();
        let (split_a, split_b) = script.split_at(31);

        // Uninterrupted run.
        let (mut whole, mut fw) = setup(&spec, vec![echo()]);
        for (a, v) in &script {
            push(&mut whole, &mut fw, *a, Val::Int(*v));
        }

        // Run, snapshot, restore into a new processor, continue.
        let (mut first, mut f1) = setup(&spec, vec![echo()]);
        for (a, v) in split_a {
            push(&mut first, &mut f1, *a, Val::Int(*v));
        }
        let now = Now::lazy();
        first.ingest_from_source(0, Input::Value(Val::Nil), SourcePosition::new("t", 2, 41), &mut f1, &now);
        let snap = first.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
        let (mut second, mut f2) = setup(&spec, vec![echo()]);
        let skipped = second.import(encode_all(&snap), &mut from_cp).unwrap();
        assert!(skipped.names.is_empty(), "{skipped:?}");
        assert_eq!(second.positions(), vec![(0, SourcePosition::new("t", 2, 41))]);
        for (a, v) in split_b {
            push(&mut second, &mut f2, *a, Val::Int(*v));
        }
        let tail: Vec<Val> = fw.fires[f1.fires.len()..].iter().map(|x| x.outputs[0].1.clone()).collect();
        let resumed: Vec<Val> = f2.fires.iter().map(|x| x.outputs[0].1.clone()).collect();
        assert_eq!(resumed, tail, "{strategy:?}");
        assert_eq!(second.cache(), whole.cache());
    }
}

#[test]
fn pause_holds_fires_and_resume_releases_them() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![echo()]);
    let now = Now::lazy();
    p.set_paused(true, &mut f, &now);
    push(&mut p, &mut f, 0, Val::Int(1));
    push(&mut p, &mut f, 0, Val::Int(2));
    assert!(f.fires.is_empty());
    let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
    assert!(snap.control.paused && snap.reactor.queue.len() == 2);
    p.set_paused(false, &mut f, &now);
    assert_eq!(f.fires.len(), 2);
}

#[test]
fn checkpoint_policy_counts_fires() {
    let spec = one_acc(InputStrategy::Sequential);
    let plan = Arc::new(Plan::compile(&spec).unwrap());
    let config = Config { checkpoint_fires: 3, ..Config::default() };
    let mut p: Processor<Val, String> = Processor::new(plan, config);
    let mut f = Fake::new(vec![echo()]);
    let now = Now::lazy();
    for i in 0..7 {
        push(&mut p, &mut f, 0, Val::Int(i));
        if p.checkpoint_due(&now) {
            p.checkpoint(&mut f).unwrap();
        }
    }
    assert_eq!(f.saved.len(), 2);
    assert_eq!(f.saved[1].reactor.fires, 6);
}

#[test]
fn channel_items_stay_small() {
    // Every slot of the merge channel is this big: keep rare payloads boxed.
    assert!(std::mem::size_of::<Item<Val>>() <= 48, "{}", std::mem::size_of::<Item<Val>>());
}

mod burst;
mod delivery;
mod cutoff;
mod checkpointable;
mod forward;
mod concurrency;
mod deadlines;
mod apply;
mod progress;
mod spin;
mod simulated;
mod chain;
mod journal;
