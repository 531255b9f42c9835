//! Change cutoff, per-node timing and recorded inputs.

use std::sync::{Arc, Mutex};

use crate::clock::wall_now;
use super::*;

type Log = Arc<Mutex<Vec<&'static str>>>;

/// A node that logs its name and returns `f` of its integer arguments (Nil as 0).
fn logged(log: &Log, name: &'static str, f: fn(&[i64]) -> i64) -> NodeFn {
    let log = log.clone();
    Box::new(move |args| {
        log.lock().unwrap().push(name);
        let ints: Vec<i64> = args
            .iter()
            .map(|a| match a {
                Some(Val::Int(i)) => *i,
                _ => 0,
            })
            .collect();
        Ok(NodeOutput::Value(Val::Int(f(&ints))))
    })
}

fn cut(mut n: NodeSpec) -> NodeSpec {
    n.cutoff = true;
    n
}

fn ran(log: &Log) -> Vec<&'static str> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn outputs(f: &Fake, i: usize) -> Vec<(usize, Val)> {
    f.fires[i].outputs.clone()
}

/// a -> mid (cutoff: a / 10) -> quote (mid * 2)
fn chain(strategy: InputStrategy) -> (Processor<Val, String>, Fake, Log) {
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![cut(node("mid", &["a"])), node("quote", &["mid"])],
        CriteriaKind::Any,
        &[],
        strategy,
    );
    let log = Log::default();
    let (p, f) = setup(&spec, vec![logged(&log, "mid", |x| x[0] / 10), logged(&log, "quote", |x| x[0] * 2)]);
    (p, f, log)
}

#[test]
fn plan_marks_cutoff_nodes_and_everything_below_them_cuttable() {
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![node("top", &["a"]), cut(node("mid", &["top"])), node("quote", &["mid", "a"]), node("side", &["top"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let plan = Plan::compile(&spec).unwrap();
    let flags: Vec<(&str, bool, bool)> = plan.nodes.iter().map(|n| (n.name.as_str(), n.cutoff, n.cuttable)).collect();
    assert_eq!(
        flags,
        vec![("top", false, false), ("mid", true, true), ("quote", false, true), ("side", false, false)]
    );
    assert!(plan.has_cutoff());
    let plain = two_acc(CriteriaKind::Any, &[], InputStrategy::Sequential);
    assert!(!Plan::compile(&plain).unwrap().has_cutoff());
}

#[test]
fn a_routing_node_cannot_be_cut_off() {
    let mut r = cut(node("r", &["a"]));
    r.routes = vec![RouteSpec { label: "x".into(), targets: vec!["x".into()] }];
    let spec = graph(vec![acc("a", AccKind::Passthrough)], vec![r, node("x", &["r"])], CriteriaKind::Any, &[], InputStrategy::Latest);
    let err = Plan::compile(&spec).unwrap_err();
    assert_eq!(err.problems, vec![Problem::CutoffRouter { node: "r".into() }]);
}

#[test]
fn an_unchanged_cutoff_output_skips_its_consumer_in_both_strategies() {
    for strategy in [InputStrategy::Sequential, InputStrategy::Latest] {
        let (mut p, mut f, log) = chain(strategy);
        push(&mut p, &mut f, 0, Val::Int(11));
        assert_eq!(ran(&log), ["mid", "quote"], "the first fire runs everything");
        assert_eq!(outputs(&f, 0), vec![(1, Val::Int(2))]);
        push(&mut p, &mut f, 0, Val::Int(15));
        assert_eq!(ran(&log), ["mid"]);
        assert_eq!(outputs(&f, 1), vec![], "a held terminal node is absent from outputs");
        push(&mut p, &mut f, 0, Val::Int(23));
        assert_eq!(ran(&log), ["mid", "quote"]);
        assert_eq!(outputs(&f, 2), vec![(1, Val::Int(4))]);
    }
}

#[test]
fn a_held_node_passes_its_previous_output_to_consumers_that_run() {
    // a -> mid (cutoff) -> quote -> sink(quote, b); b changes on its own.
    let spec = graph(
        vec![acc("a", AccKind::Passthrough), acc("b", AccKind::Passthrough)],
        vec![cut(node("mid", &["a"])), node("quote", &["mid"]), node("sink", &["quote", "b"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let log = Log::default();
    let fns = vec![
        logged(&log, "mid", |x| x[0] / 10),
        logged(&log, "quote", |x| x[0] * 2),
        logged(&log, "sink", |x| x[0] * 1000 + x[1]),
    ];
    let (mut p, mut f) = setup(&spec, fns);
    push(&mut p, &mut f, 0, Val::Int(31));
    push(&mut p, &mut f, 1, Val::Int(7));
    assert_eq!(ran(&log), ["mid", "quote", "sink", "sink"], "an accumulator only cuttable nodes read");
    assert_eq!(outputs(&f, 1), vec![(2, Val::Int(6007))]);
    // b unchanged, a moved within the same mid: nothing below mid runs.
    push(&mut p, &mut f, 0, Val::Int(32));
    assert_eq!(ran(&log), ["mid"]);
    assert_eq!(outputs(&f, 2), vec![]);
}

#[test]
fn a_cutoff_node_on_an_unchanged_accumulator_is_held_too() {
    // when_any(a, b): a fire for b leaves a's boundary unchanged.
    let spec = graph(
        vec![acc("a", AccKind::Passthrough), acc("b", AccKind::Passthrough)],
        vec![cut(node("mid", &["a"])), node("out", &["mid", "b"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let log = Log::default();
    let (mut p, mut f) = setup(&spec, vec![logged(&log, "mid", |x| x[0]), logged(&log, "out", |x| x[0] + x[1])]);
    push(&mut p, &mut f, 0, Val::Int(1));
    push(&mut p, &mut f, 1, Val::Int(10));
    assert_eq!(ran(&log), ["mid", "out", "out"]);
    assert_eq!(outputs(&f, 1), vec![(1, Val::Int(11))]);
    // The same value again is a new boundary: mid runs, compares equal.
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(ran(&log), ["mid"]);
}

#[test]
fn a_failed_fire_remembers_nothing() {
    // quote fails on the fire where mid first moves to 1; under latest the
    // next event retries, and mid (still 1) must count as changed again.
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![cut(node("mid", &["a"])), node("quote", &["mid"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let log = Log::default();
    let failing = {
        let log = log.clone();
        let mut failed = false;
        Box::new(move |args: &[Option<&Val>]| {
            log.lock().unwrap().push("quote");
            let Some(Val::Int(m)) = args[0] else { unreachable!() };
            if *m == 1 && !failed {
                failed = true;
                return Err("boom".to_string());
            }
            Ok(NodeOutput::Value(Val::Int(m * 2)))
        }) as NodeFn
    };
    let (mut p, mut f) = setup(&spec, vec![logged(&log, "mid", |x| x[0] / 10), failing]);
    push(&mut p, &mut f, 0, Val::Int(5));
    push(&mut p, &mut f, 0, Val::Int(12));
    assert_eq!(f.fires[1].failed_node, Some(1));
    assert_eq!(ran(&log), ["mid", "quote", "mid", "quote"]);
    push(&mut p, &mut f, 0, Val::Int(13));
    assert_eq!(ran(&log), ["mid", "quote"], "compared with the last successful fire's mid (0)");
    assert_eq!(outputs(&f, 2), vec![(1, Val::Int(2))]);
}

#[test]
fn a_held_router_keeps_its_branch_and_a_gated_node_forgets_its_output() {
    // a -> mid (cutoff: a / 10) -> decide (router: hi above 100) -> hi | lo
    let mut decide = node("decide", &["mid"]);
    decide.routes = vec![
        RouteSpec { label: "hi".into(), targets: vec!["hi".into()] },
        RouteSpec { label: "lo".into(), targets: vec!["lo".into()] },
    ];
    let spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![cut(node("mid", &["a"])), decide, node("hi", &["decide"]), node("lo", &["decide"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let log = Log::default();
    let route = {
        let log = log.clone();
        Box::new(move |args: &[Option<&Val>]| {
            log.lock().unwrap().push("decide");
            let Some(Val::Int(v)) = args[0] else { unreachable!() };
            Ok(NodeOutput::Routed { label: usize::from(*v <= 100), value: Val::Int(*v) })
        }) as NodeFn
    };
    let (mut p, mut f) = setup(&spec, vec![logged(&log, "mid", |x| x[0] / 10), route, logged(&log, "hi", |x| x[0]), logged(&log, "lo", |x| x[0])]);
    let names = ["mid", "decide", "hi", "lo"];
    let terminals = |f: &Fake, i: usize| -> Vec<&str> { f.fires[i].outputs.iter().map(|(pos, _)| names[*pos]).collect() };
    push(&mut p, &mut f, 0, Val::Int(2000));
    assert_eq!(ran(&log), ["mid", "decide", "hi"]);
    push(&mut p, &mut f, 0, Val::Int(2005));
    assert_eq!(ran(&log), ["mid"], "decide is held with its label; hi is held");
    assert_eq!(terminals(&f, 1), Vec::<&str>::new());
    push(&mut p, &mut f, 0, Val::Int(50));
    assert_eq!(ran(&log), ["mid", "decide", "lo"]);
    assert_eq!(terminals(&f, 2), ["lo"]);
    push(&mut p, &mut f, 0, Val::Int(2000));
    assert_eq!(ran(&log), ["mid", "decide", "hi"], "hi was gated off in between: it runs");
    assert_eq!(terminals(&f, 3), ["hi"]);
}

#[test]
fn profile_times_the_nodes_that_ran_and_inputs_are_the_values_received() {
    let spec = graph(
        vec![acc("a", AccKind::Passthrough), acc("b", AccKind::Passthrough), acc("unread", AccKind::Passthrough)],
        vec![node("n", &["a", "b"]), node("m", &["n"])],
        CriteriaKind::Any,
        &["a", "b"],
        InputStrategy::Sequential,
    );
    let plan = Arc::new(Plan::compile(&spec).unwrap());
    let config = Config { profile: true, record_inputs: true, ..Config::default() };
    let mut p: Processor<Val, String> = Processor::new(plan, config);
    let mut f = Fake::new(vec![echo(), echo()]);
    let now = Now::at(wall_now());
    // Two queued boundaries of a: each fire sees its own as a's input.
    p.ingest(1, Input::Value(Val::Int(9)), &mut f, &now);
    p.ingest(0, Input::Value(Val::Int(1)), &mut f, &now);
    p.ingest(0, Input::Value(Val::Int(2)), &mut f, &now);
    p.settle(&mut f, &now);
    let inputs: Vec<_> = f.fires.iter().map(|x| x.inputs.clone().unwrap()).collect();
    assert_eq!(
        inputs,
        vec![
            vec![(0, None), (1, Some(Val::Int(9)))],
            vec![(0, Some(Val::Int(1))), (1, Some(Val::Int(9)))],
            vec![(0, Some(Val::Int(2))), (1, Some(Val::Int(9)))],
        ]
    );
    assert!(f.fires.iter().all(|x| x.timed.as_deref() == Some(&[0, 1][..])));
    // A failing node is timed; the nodes after it are not.
    f.nodes[0] = Box::new(|_| Err("no".into()));
    p.ingest(0, Input::Value(Val::Int(3)), &mut f, &now);
    p.settle(&mut f, &now);
    let last = f.fires.last().unwrap();
    assert_eq!((last.failed_node, last.timed.as_deref()), (Some(0), Some(&[0][..])));
    assert_eq!(last.inputs.as_ref().unwrap()[0], (0, Some(Val::Int(3))));
}

#[test]
fn without_profile_or_inputs_a_fire_records_nothing() {
    let (mut p, mut f, _log) = chain(InputStrategy::Sequential);
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!((f.fires[0].timed.as_ref(), f.fires[0].inputs.as_ref()), (None, None));
}
