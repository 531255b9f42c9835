//! What reaches a fire: every batched event exactly once under `latest`, and
//! only successful fires counted as fires.

use std::sync::atomic::Ordering::Relaxed;

use crate::clock::wall_now;
use super::*;

fn batch_graph(strategy: InputStrategy) -> GraphSpec {
    graph(
        vec![acc("b", AccKind::Batch { max_buffer_size: Some(4), flush_interval: None })],
        vec![node("n", &["b"])],
        CriteriaKind::Any,
        &[],
        strategy,
    )
}

/// The events every successful fire saw, flattened.
fn seen(f: &Fake) -> Vec<Val> {
    f.fires
        .iter()
        .filter(|x| x.failed_node.is_none())
        .flat_map(|x| match &x.outputs[0].1 {
            Val::List(items) => items.clone(),
            other => vec![other.clone()],
        })
        .collect()
}

fn ints(range: std::ops::Range<i64>) -> Vec<Val> {
    range.map(Val::Int).collect()
}

/// Thread mode takes a whole queue of events before it settles once.
fn ingest_all(p: &mut Processor<Val, String>, f: &mut Fake, acc: usize, values: Vec<Val>) {
    let now = Now::at(wall_now());
    for v in values {
        p.ingest(acc, Input::Value(v), f, &now);
    }
    p.settle(f, &now);
}

#[test]
fn latest_batch_keeps_every_event_of_several_flushes_before_a_fire() {
    let (mut p, mut f) = setup(&batch_graph(InputStrategy::Latest), vec![echo_first()]);
    ingest_all(&mut p, &mut f, 0, ints(0..12));
    assert_eq!(seen(&f), ints(0..12), "the first batch fires, the rest follow in one batch");
    assert_eq!(p.buffered(0), 0);
}

#[test]
fn latest_batch_holds_its_boundary_while_fires_fail() {
    let (mut p, mut f) = setup(&batch_graph(InputStrategy::Latest), vec![flaky_first(4)]);
    for chunk in 0..4 {
        ingest_all(&mut p, &mut f, 0, ints(chunk * 4..chunk * 4 + 4));
        p.on_timer(&mut f, &Now::at(wall_now()));
    }
    // Four failures, then [0..4] fires, then everything buffered behind it.
    ingest_all(&mut p, &mut f, 0, ints(16..20));
    assert_eq!(seen(&f), ints(0..20));
    assert_eq!(f.fires.iter().filter(|x| x.failed_node.is_some()).count(), 4);
}

#[test]
fn a_held_batch_survives_a_restore() {
    let spec = batch_graph(InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![flaky_first(1)]);
    ingest_all(&mut p, &mut f, 0, ints(0..6)); // [0..4] fails; 4, 5 buffered behind it
    let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
    let (mut q, mut g) = setup(&spec, vec![echo_first()]);
    q.import(super::encode_all(&snap), &mut super::from_cp).unwrap();
    q.settle(&mut g, &Now::at(wall_now()));
    assert_eq!(seen(&g), ints(0..6));
}

#[test]
fn fire_count_counts_successful_fires_only() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![flaky(2)]);
    for i in 0..3 {
        push(&mut p, &mut f, 0, Val::Int(i));
    }
    let m = p.metrics();
    assert_eq!((m.fires.load(Relaxed), m.fires_failed.load(Relaxed)), (3, 2), "{:?}", f.fires);
}

/// Echoes its first argument (the batch).
fn echo_first() -> NodeFn {
    Box::new(|args| Ok(NodeOutput::Value(args[0].cloned().unwrap_or(Val::Nil))))
}

fn flaky_first(failures: usize) -> NodeFn {
    flaky(failures)
}
