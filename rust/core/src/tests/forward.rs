//! A passthrough without a function: the event is the boundary, and the host
//! is never asked to call anything for it.

use super::*;

fn forward(name: &str) -> AccSpec {
    AccSpec { function: false, ..acc(name, AccKind::Passthrough) }
}

#[test]
fn forwards_each_event_as_the_boundary_without_calling_the_host() {
    for strategy in [InputStrategy::Sequential, InputStrategy::Latest] {
        let spec = graph(vec![forward("a")], vec![node("n", &["a"])], CriteriaKind::Any, &[], strategy);
        let (mut p, mut f) = setup(&spec, vec![echo()]);
        // -1 would make the fake's accumulator function fail: it is never called.
        for v in [1, -1, 7] {
            push(&mut p, &mut f, 0, Val::Int(v));
        }
        assert!(f.accumulated.iter().all(|n| *n == 0), "{strategy:?}: {:?}", f.accumulated);
        let outputs: Vec<_> = f.fires.iter().map(|x| x.outputs[0].1.clone()).collect();
        let expected: Vec<_> = [1, -1, 7].iter().map(|v| Val::List(vec![Val::Int(*v)])).collect();
        assert_eq!(outputs, expected, "{strategy:?}");
        assert_eq!(f.acc_failures, 0);
    }
}

#[test]
fn a_none_event_emits_nothing_as_a_function_returning_it_would() {
    let spec = graph(vec![forward("a")], vec![node("n", &["a"])], CriteriaKind::Any, &[], InputStrategy::Sequential);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 0, Val::Nil);
    push(&mut p, &mut f, 0, Val::Int(3));
    assert_eq!(f.fires.len(), 1);
    assert_eq!(p.metrics().accumulators[0].suppressed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn only_the_accumulator_without_a_function_skips_the_call() {
    let spec = graph(
        vec![forward("a"), acc("b", AccKind::Passthrough)],
        vec![node("n", &["a", "b"])],
        CriteriaKind::All,
        &[],
        InputStrategy::Sequential,
    );
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 0, Val::Int(1));
    push(&mut p, &mut f, 1, Val::Int(2));
    push(&mut p, &mut f, 0, Val::Int(3));
    assert_eq!(f.accumulated, vec![0, 1]);
    let last = &f.fires.last().expect("fired").outputs[0].1;
    assert_eq!(*last, Val::List(vec![Val::Int(3), Val::Int(2)]));
}

#[test]
fn refused_when_the_event_cannot_be_checkpointed() {
    let spec = graph(vec![forward("a")], vec![node("n", &["a"])], CriteriaKind::Any, &[], InputStrategy::Sequential);
    let plan = Arc::new(Plan::compile(&spec).expect("valid graph"));
    let mut p: Processor<Val, String> = Processor::new(plan, Config { check_checkpointable: true, ..Config::default() });
    let mut f = Fake::new(vec![echo()]);
    push(&mut p, &mut f, 0, Val::Opaque);
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.refused, vec![(0, false)]);
    assert_eq!(f.fires.len(), 1);
}

#[test]
fn only_a_passthrough_may_have_no_function() {
    let mut state = acc("s", AccKind::State { capacity: 2 });
    state.function = false;
    let spec = graph(vec![state], vec![node("n", &["s"])], CriteriaKind::Any, &[], InputStrategy::Sequential);
    let err = Plan::compile(&spec).unwrap_err();
    assert!(err.problems.iter().any(|p| p.to_string().contains("'s': a state accumulator needs a function")), "{err:?}");
}
