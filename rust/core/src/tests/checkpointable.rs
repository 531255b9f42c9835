//! Checkpointability: refused on entry with `check_checkpointable`, or a
//! checkpoint failure reported (and the reactor degraded) without it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::*;
use crate::dead_letter::Stage;

fn checked(spec: &GraphSpec) -> (Processor<Val, String>, Fake) {
    let plan = Arc::new(Plan::compile(spec).expect("valid graph"));
    let config = Config { check_checkpointable: true, checkpoint_fires: 1, ..Config::default() };
    (Processor::new(plan, config), Fake::new(vec![echo()]))
}

#[test]
fn an_uncheckpointable_event_is_refused_alone() {
    let spec = graph(
        vec![
            acc("a", AccKind::Passthrough),
            acc("b", AccKind::Batch { max_buffer_size: Some(2), flush_interval: None }),
            acc("s", AccKind::State { capacity: 2 }),
            acc("p", AccKind::Polling { interval: std::time::Duration::from_secs(1) }),
        ],
        vec![node("n", &["a", "b", "s", "p"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let (mut p, mut f) = checked(&spec);
    for acc in 0..4 {
        push(&mut p, &mut f, acc, Val::Int(1));
        push(&mut p, &mut f, acc, Val::Opaque);
    }
    assert_eq!(f.refused, vec![(0, false), (1, false), (2, false), (3, false)]);
    let stages = p.dead_letters().with(|l, _| l.iter().map(|d| (d.acc, d.stage, d.value.clone())).collect::<Vec<_>>());
    assert_eq!(stages, (0..4).map(|a| (a, Stage::Checkpoint, Val::Nil)).collect::<Vec<_>>());
    for m in &p.metrics().accumulators {
        assert_eq!(m.refused.load(Relaxed), 1);
    }
    assert_eq!(p.cache()[1], Some(Val::List(vec![Val::Int(1)])), "the batch kept its good event only");
    p.checkpoint(&mut f).expect("everything accepted can be checkpointed");
    assert!(!p.metrics().checkpoint_failing.load(Relaxed));
}

#[test]
fn without_the_check_a_failed_checkpoint_is_reported_and_degrades() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Latest), vec![echo()]);
    push(&mut p, &mut f, 0, Val::Opaque);
    let err = p.checkpoint(&mut f).unwrap_err();
    assert!(matches!(err, crate::host::CheckpointError::Unsupported(ref u) if u.type_name == "Opaque"), "{err:?}");
    assert_eq!(f.checkpoint_failures, 1);
    assert!(p.metrics().checkpoint_failing.load(Relaxed));
    push(&mut p, &mut f, 0, Val::Int(2));
    p.checkpoint(&mut f).expect("the bad value is gone from the cache");
    assert!(!p.metrics().checkpoint_failing.load(Relaxed));
}
