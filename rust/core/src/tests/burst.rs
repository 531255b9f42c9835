//! Per-accumulator input strategies: burst lists, and latest, sequential and
//! burst inputs mixed in one graph.


use crate::clock::wall_now;
use super::*;
use crate::checkpoint::snapshot::{decode_components, encode_components};
use crate::checkpoint::CodecId;
use crate::error::Named;

fn with_input(mut a: AccSpec, input: InputStrategy) -> AccSpec {
    a.input = Some(input);
    a
}

/// `s` sequential, `l` latest, `b` burst; one node echoing (s, l, b).
fn mixed(kind: CriteriaKind, members: &[&str]) -> GraphSpec {
    graph(
        vec![
            with_input(acc("s", AccKind::Passthrough), InputStrategy::Sequential),
            with_input(acc("l", AccKind::Passthrough), InputStrategy::Latest),
            with_input(acc("b", AccKind::Passthrough), InputStrategy::Burst),
        ],
        vec![node("n", &["s", "l", "b"])],
        kind,
        members,
        InputStrategy::Latest,
    )
}

fn list(items: &[i64]) -> Val {
    Val::List(items.iter().map(|i| Val::Int(*i)).collect())
}

/// (s, l, b) of every successful fire.
fn ok_inputs(f: &Fake) -> Vec<Val> {
    f.fires.iter().filter(|x| x.failed_node.is_none()).map(|x| x.outputs[0].1.clone()).collect()
}

fn row(s: Option<i64>, l: Option<i64>, b: Option<&[i64]>) -> Val {
    let opt = |v: Option<i64>| v.map(Val::Int).unwrap_or(Val::Nil);
    Val::List(vec![opt(s), opt(l), b.map(list).unwrap_or(Val::Nil)])
}

fn ingest(p: &mut Processor<Val, String>, f: &mut Fake, acc: usize, v: i64) {
    p.ingest(acc, Input::Value(Val::Int(v)), f, &Now::at(wall_now()));
}

fn settle(p: &mut Processor<Val, String>, f: &mut Fake) {
    p.settle(f, &Now::at(wall_now()));
}

#[test]
fn each_input_resolves_its_own_strategy_or_the_graphs() {
    let mut spec = mixed(CriteriaKind::Any, &[]);
    spec.accumulators[1].input = None;
    spec.strategy = InputStrategy::Sequential;
    let plan = Plan::compile(&spec).unwrap();
    assert_eq!(plan.inputs, vec![InputStrategy::Sequential, InputStrategy::Sequential, InputStrategy::Burst]);
    assert!(plan.any_sequential);
    spec.accumulators[0].input = Some(InputStrategy::Latest);
    spec.strategy = InputStrategy::Burst;
    let plan = Plan::compile(&spec).unwrap();
    assert_eq!(plan.inputs, vec![InputStrategy::Latest, InputStrategy::Burst, InputStrategy::Burst]);
    assert!(!plan.any_sequential, "no sequential input: a batch of events settles at once");
    for s in <InputStrategy as Named>::ALL.iter().copied() {
        assert_eq!(s.as_str().parse::<InputStrategy>().ok(), Some(s));
    }
    assert!("fifo".parse::<InputStrategy>().is_err());
}

#[test]
fn a_burst_input_is_none_before_its_first_boundary_then_a_list_of_every_boundary_since_the_last_fire() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::Any, &["l", "b"]), vec![echo()]);
    ingest(&mut p, &mut f, 1, 10);
    settle(&mut p, &mut f);
    for v in 0..5 {
        ingest(&mut p, &mut f, 2, v);
    }
    settle(&mut p, &mut f);
    ingest(&mut p, &mut f, 1, 11);
    settle(&mut p, &mut f);
    assert_eq!(
        ok_inputs(&f),
        vec![row(None, Some(10), None), row(None, Some(10), Some(&[0, 1, 2, 3, 4])), row(None, Some(11), Some(&[]))]
    );
    assert_eq!(p.cache()[2], Some(Val::Int(4)), "the cache keeps the newest boundary");
}

#[test]
fn a_failed_fire_keeps_the_burst_list_and_the_next_try_delivers_everything() {
    let spec = graph(
        vec![with_input(acc("b", AccKind::Passthrough), InputStrategy::Burst)],
        vec![node("n", &["b"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let (mut p, mut f) = setup(&spec, vec![flaky(2)]);
    push(&mut p, &mut f, 0, Val::Int(1)); // fails
    push(&mut p, &mut f, 0, Val::Int(2)); // fails
    assert_eq!(p.metrics().pending.load(std::sync::atomic::Ordering::Relaxed), 2);
    push(&mut p, &mut f, 0, Val::Int(3));
    assert_eq!(ok_inputs(&f), vec![list(&[1, 2, 3])]);
    assert_eq!(f.fires.len(), 3);
    assert_eq!(p.metrics().pending.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_timer_retry_delivers_the_same_list() {
    let spec = graph(
        vec![with_input(acc("b", AccKind::Passthrough), InputStrategy::Burst)],
        vec![node("n", &["b"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, vec![flaky(1)]);
    push(&mut p, &mut f, 0, Val::Int(1)); // fails
    p.on_timer(&mut f, &Now::at(wall_now())); // backoff zero: retried at once
    assert_eq!(ok_inputs(&f), vec![list(&[1])]);
    assert_eq!(f.fires.len(), 2);
}

#[test]
fn sequential_boundaries_fire_in_order_taking_the_updates_accepted_before_them() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::Any, &[]), vec![echo()]);
    let now = Now::lazy();
    p.set_paused(true, &mut f, &now);
    for (acc, v) in [(1, 1), (2, 1), (0, 1), (1, 2), (2, 2), (2, 3), (0, 2), (2, 4), (1, 3)] {
        ingest(&mut p, &mut f, acc, v);
    }
    settle(&mut p, &mut f);
    assert!(f.fires.is_empty(), "paused");
    p.set_paused(false, &mut f, &now);
    assert_eq!(
        ok_inputs(&f),
        vec![
            row(Some(1), Some(1), Some(&[1])),
            row(Some(2), Some(2), Some(&[2, 3])),
            // What came after the last sequential boundary collapses into one fire.
            row(Some(2), Some(3), Some(&[4])),
        ]
    );
    assert_eq!(f.fires.iter().map(|x| x.trigger).collect::<Vec<_>>(), vec![Trigger::Boundary(0), Trigger::Boundary(0), Trigger::Criteria]);
}

#[test]
fn updates_wait_behind_a_failing_sequential_boundary() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::Any, &[]), vec![flaky(1)]);
    ingest(&mut p, &mut f, 0, 1);
    settle(&mut p, &mut f); // fails; s=1 stays queued
    ingest(&mut p, &mut f, 1, 7);
    ingest(&mut p, &mut f, 2, 8);
    assert_eq!(p.cache()[1], None, "accepted after the failing boundary: not seen by its retry");
    settle(&mut p, &mut f);
    // flaky echoes its first argument only.
    assert_eq!(ok_inputs(&f), vec![Val::Int(1), Val::Int(1)]);
    assert_eq!(p.cache()[1], Some(Val::Int(7)));
    assert_eq!(f.fires.iter().map(|x| x.trigger).collect::<Vec<_>>(), vec![Trigger::Boundary(0), Trigger::Boundary(0), Trigger::Criteria]);
}

#[test]
fn a_dead_lettered_sequential_boundary_leaves_the_burst_list_for_the_next_fire() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::Any, &[]), vec![echo()]);
    // Fail every fire while the burst list holds 5.
    f.nodes[0] = Box::new(|args| match args[2] {
        Some(Val::List(l)) if l.contains(&Val::Int(5)) && args[0] == Some(&Val::Int(1)) => Err("boom".into()),
        _ => Ok(NodeOutput::Value(Val::List(args.iter().map(|a| a.cloned().unwrap_or(Val::Nil)).collect()))),
    });
    ingest(&mut p, &mut f, 2, 5);
    ingest(&mut p, &mut f, 0, 1);
    for _ in 0..3 {
        settle(&mut p, &mut f);
        p.on_timer(&mut f, &Now::at(wall_now()));
    }
    assert_eq!(p.dead_letters().with(|l, _| l.len()), 1);
    ingest(&mut p, &mut f, 0, 2);
    settle(&mut p, &mut f);
    assert_eq!(ok_inputs(&f), vec![row(Some(2), None, Some(&[5]))]);
}

#[test]
fn when_all_counts_a_burst_input_once_it_has_had_a_boundary_and_an_empty_list_after() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::All, &["l", "b"]), vec![echo()]);
    ingest(&mut p, &mut f, 1, 1);
    settle(&mut p, &mut f);
    assert!(f.fires.is_empty(), "b missing");
    ingest(&mut p, &mut f, 2, 1);
    settle(&mut p, &mut f);
    ingest(&mut p, &mut f, 1, 2);
    settle(&mut p, &mut f);
    assert_eq!(ok_inputs(&f), vec![row(None, Some(1), Some(&[1])), row(None, Some(2), Some(&[]))]);
}

#[test]
fn manual_fire_delivers_and_consumes_the_burst_list() {
    let (mut p, mut f) = setup(&mixed(CriteriaKind::Any, &["l"]), vec![echo()]);
    ingest(&mut p, &mut f, 2, 1);
    ingest(&mut p, &mut f, 2, 2);
    settle(&mut p, &mut f);
    assert!(f.fires.is_empty(), "b is not a member");
    p.fire_manual(&mut f, &Now::lazy());
    ingest(&mut p, &mut f, 1, 9);
    settle(&mut p, &mut f);
    assert_eq!(ok_inputs(&f), vec![row(None, None, Some(&[1, 2])), row(None, Some(9), Some(&[]))]);
    assert_eq!(f.fires[0].trigger, Trigger::Manual);
}

fn batch_burst(max: usize) -> GraphSpec {
    graph(
        vec![
            with_input(acc("fills", AccKind::Batch { max_buffer_size: Some(max), flush_interval: None }), InputStrategy::Burst),
        ],
        vec![node("n", &["fills"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    )
}

#[test]
fn a_burst_batch_delivers_each_flush_as_one_element_and_never_outgrows_its_buffer() {
    let (mut p, mut f) = setup(&batch_burst(2), vec![flaky(1)]);
    let now = Now::at(wall_now());
    for v in 0..7 {
        p.ingest(0, Input::Value(Val::Int(v)), &mut f, &now);
        assert!(p.buffered(0) < 2, "a burst batch is never held past its size limit");
    }
    p.settle(&mut f, &now); // fails: [[0,1],[2,3],[4,5]]
    p.on_timer(&mut f, &now); // retried: succeeds; then 6 flushes and fires
    assert_eq!(ok_inputs(&f), vec![Val::List(vec![list(&[0, 1]), list(&[2, 3]), list(&[4, 5])]), Val::List(vec![list(&[6])])]);
}

#[test]
fn a_latest_batch_is_still_held_until_a_fire_sees_it() {
    let mut spec = batch_burst(2);
    spec.accumulators[0].input = Some(InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, vec![flaky(1)]);
    let now = Now::at(wall_now());
    for v in 0..5 {
        p.ingest(0, Input::Value(Val::Int(v)), &mut f, &now);
    }
    assert_eq!(p.buffered(0), 3, "held: buffering past its size limit");
}

#[test]
fn the_burst_list_survives_a_checkpoint_in_every_codec() {
    let spec = mixed(CriteriaKind::Any, &["s", "l"]);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    for v in [1, 2, 3] {
        ingest(&mut p, &mut f, 2, v);
    }
    settle(&mut p, &mut f);
    assert!(f.fires.is_empty());
    let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
    assert_eq!(snap.inputs.inputs[2].strategy, "burst");
    assert_eq!(snap.inputs.inputs[0].strategy, "sequential");
    for codec in [CodecId::Bincode, CodecId::Msgpack, CodecId::Json] {
        let back = decode_components(&encode_components(&snap, codec).unwrap()).unwrap();
        assert_eq!(back, snap, "{codec:?}");
        let (mut q, mut g) = setup(&spec, vec![echo()]);
        assert!(q.import(back, &mut from_cp).unwrap().names.is_empty());
        ingest(&mut q, &mut g, 1, 4);
        settle(&mut q, &mut g);
        assert_eq!(ok_inputs(&g), vec![row(None, Some(4), Some(&[1, 2, 3]))]);
    }
}

#[test]
fn a_checkpoint_without_the_inputs_component_still_restores() {
    // What a checkpoint written before per-accumulator inputs holds.
    let spec = mixed(CriteriaKind::Any, &[]);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    push(&mut p, &mut f, 1, Val::Int(3));
    let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
    let older: Vec<_> = encode_components(&snap, CodecId::Bincode)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != crate::checkpoint::snapshot::INPUTS)
        .collect();
    let back = decode_components(&older).unwrap();
    assert!(back.inputs.inputs.is_empty());
    let (mut q, mut g) = setup(&spec, vec![echo()]);
    assert!(q.import(back, &mut from_cp).unwrap().names.is_empty());
    push(&mut q, &mut g, 2, Val::Int(1));
    assert_eq!(ok_inputs(&g), vec![row(None, Some(3), Some(&[1]))]);
}

#[test]
fn a_burst_list_restored_into_a_latest_input_is_reported_not_dropped_silently() {
    let spec = mixed(CriteriaKind::Any, &["s"]);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    ingest(&mut p, &mut f, 2, 1);
    ingest(&mut p, &mut f, 2, 2);
    let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
    let mut changed = spec.clone();
    changed.accumulators[2].input = Some(InputStrategy::Latest);
    let (mut q, _g) = setup(&changed, vec![echo()]);
    let skipped = q.import(snap, &mut from_cp).unwrap();
    assert_eq!(skipped.names, vec!["burst list of 'b' (2 boundaries)".to_string()]);
    assert_eq!(q.cache()[2], Some(Val::Int(2)), "the newest is still the latest input's value");
}

#[test]
fn restore_mid_queue_continues_like_an_uninterrupted_run() {
    let spec = mixed(CriteriaKind::Any, &[]);
    let script: Vec<(usize, i64)> = (0..40).map(|i| ((i * 5 % 3) as usize, i as i64)).collect();
    let run = |split: Option<usize>| {
        let (mut p, mut f) = setup(&spec, vec![echo()]);
        let mut out = Vec::new();
        for (k, (acc, v)) in script.iter().enumerate() {
            if Some(k) == split {
                let snap = p.export(&mut |v: &Val| Ok::<_, String>(to_cp(v))).unwrap();
                out.extend(ok_inputs(&f));
                let (q, g) = setup(&spec, vec![echo()]);
                p = q;
                f = g;
                p.import(encode_all(&snap), &mut from_cp).unwrap();
            }
            // Settle every third event only, so the queue is often non-empty at the split.
            ingest(&mut p, &mut f, *acc, *v);
            if k % 3 == 2 {
                settle(&mut p, &mut f);
            }
        }
        settle(&mut p, &mut f);
        out.extend(ok_inputs(&f));
        out
    };
    let whole = run(None);
    for split in [1, 7, 20, 31] {
        assert_eq!(run(Some(split)), whole, "split at {split}");
    }
}
