//! `Processor::apply`: the meaning of each channel item, as inline mode uses
//! it (one item at a time, on the caller's thread) and as the driver uses it
//! (a run of items at a time).

use std::time::Duration;

use super::*;
use crate::processor::Applied;

fn ev(acc: usize, v: i64) -> Item<Val> {
    Item::Event { acc, input: Input::Value(Val::Int(v)) }
}

fn apply(p: &mut Processor<Val, String>, f: &mut Fake, item: Item<Val>) -> Applied {
    p.apply(item, f, &Now::lazy())
}

fn outputs(f: &Fake) -> Vec<Val> {
    f.fires.iter().map(|x| x.outputs[0].1.clone()).collect()
}

fn batch_acc(strategy: InputStrategy) -> GraphSpec {
    graph(
        vec![acc("b", AccKind::Batch { max_buffer_size: None, flush_interval: None })],
        vec![node("n", &["b"])],
        CriteriaKind::Any,
        &[],
        strategy,
    )
}

fn with_policy(spec: &GraphSpec, checkpoint_fires: u64) -> (Processor<Val, String>, Fake) {
    let plan = Arc::new(Plan::compile(spec).unwrap());
    let config = Config { checkpoint_fires, ..Config::default() };
    (Processor::new(plan, config), Fake::new(vec![echo()]))
}

#[test]
fn an_event_settles_before_apply_returns_in_either_strategy() {
    for strategy in [InputStrategy::Latest, InputStrategy::Sequential] {
        let (mut p, mut f) = setup(&one_acc(strategy), vec![echo()]);
        for i in 0..3 {
            apply(&mut p, &mut f, ev(0, i));
            assert_eq!(f.fires.len(), i as usize + 1, "{strategy:?}");
        }
    }
}

#[test]
fn a_run_of_events_collapses_under_latest_and_not_under_sequential() {
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Latest), vec![echo()]);
    p.apply_batch((0..5).map(|i| ev(0, i)), &mut f, &Now::lazy());
    assert_eq!(outputs(&f), vec![Val::List(vec![Val::Int(4)])]);

    let (mut p, mut f) = setup(&one_acc(InputStrategy::Sequential), vec![echo()]);
    p.apply_batch((0..5).map(|i| ev(0, i)), &mut f, &Now::lazy());
    assert_eq!(outputs(&f), (0..5).map(|i| Val::List(vec![Val::Int(i)])).collect::<Vec<_>>());
}

#[test]
fn a_control_item_acts_on_everything_before_it() {
    // Latest: the events before `Pause` fire before the pause takes effect.
    let (mut p, mut f) = setup(&one_acc(InputStrategy::Latest), vec![echo()]);
    p.apply_batch([ev(0, 1), ev(0, 2), Item::Pause(true), ev(0, 3)], &mut f, &Now::lazy());
    assert_eq!(outputs(&f), vec![Val::List(vec![Val::Int(2)])]);
    apply(&mut p, &mut f, Item::Pause(false));
    assert_eq!(outputs(&f).last(), Some(&Val::List(vec![Val::Int(3)])));
}

#[test]
fn fire_runs_on_the_current_inputs_whatever_the_criteria() {
    let spec = two_acc(CriteriaKind::All, &[], InputStrategy::Sequential);
    let (mut p, mut f) = setup(&spec, vec![echo()]);
    apply(&mut p, &mut f, ev(0, 7));
    assert!(f.fires.is_empty(), "when_all waits for b");
    let seq = p.next_seq();
    apply(&mut p, &mut f, Item::Fire);
    assert_eq!(f.fires.len(), 1);
    assert_eq!((f.fires[0].trigger, f.fires[0].seq), (Trigger::Manual, seq));
    assert_eq!(f.fires[0].outputs[0].1, Val::List(vec![Val::Int(7), Val::Nil]));
}

#[test]
fn stop_without_a_store_flushes_batches_and_fires_for_them() {
    for strategy in [InputStrategy::Latest, InputStrategy::Sequential] {
        let (mut p, mut f) = setup(&batch_acc(strategy), vec![echo()]);
        apply(&mut p, &mut f, ev(0, 1));
        apply(&mut p, &mut f, ev(0, 2));
        assert!(f.fires.is_empty());
        let applied = apply(&mut p, &mut f, Item::Stop);
        assert!(applied.stopped && applied.checkpoint.is_none());
        assert_eq!(outputs(&f), vec![Val::List(vec![Val::List(vec![Val::Int(1), Val::Int(2)])])], "{strategy:?}");
        assert!(f.saved.is_empty());
    }
}

#[test]
fn stop_with_a_store_keeps_batches_for_the_final_checkpoint() {
    let (mut p, mut f) = with_policy(&batch_acc(InputStrategy::Sequential), 1000);
    apply(&mut p, &mut f, ev(0, 1));
    let applied = apply(&mut p, &mut f, Item::Stop);
    assert!(applied.stopped);
    assert_eq!(applied.checkpoint, Some(Ok(())));
    assert!(f.fires.is_empty());
    assert_eq!(f.saved.len(), 1);
    assert_eq!(f.saved[0].accumulators[0].1.buffer, vec![to_cp(&Val::Int(1))]);
}

#[test]
fn checkpoint_is_taken_when_asked_and_a_failure_is_returned_and_reported() {
    let (mut p, mut f) = with_policy(&one_acc(InputStrategy::Sequential), 1000);
    apply(&mut p, &mut f, ev(0, 1));
    assert_eq!(apply(&mut p, &mut f, Item::Checkpoint).checkpoint, Some(Ok(())));
    assert_eq!(f.saved.len(), 1);
    // A value no checkpoint can hold, now in the cache.
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Opaque) });
    let applied = apply(&mut p, &mut f, Item::Checkpoint);
    assert!(matches!(applied.checkpoint, Some(Err(crate::host::CheckpointError::Unsupported(_)))));
    assert_eq!(f.checkpoint_failures, 1);
    assert!(!applied.stopped);
}

#[test]
fn a_source_event_records_its_position_and_an_undecodable_one_reports_its_own_offset() {
    struct Positions(Fake, Vec<Option<SourcePosition>>);
    let (mut p, f) = setup(&one_acc(InputStrategy::Sequential), vec![echo()]);
    let mut host = Positions(f, vec![]);
    let source = |data: &[u8], offset| Item::SourceEvent {
        acc: 0,
        input: Input::Bytes { data: data.to_vec(), codec: Codec::Json },
        position: Box::new(SourcePosition::new("t", 3, offset)),
    };
    impl Calls<Val, String> for Positions {
        fn accumulate(&mut self, a: usize, e: &Val) -> Result<Option<Val>, String> { self.0.accumulate(a, e) }
        fn accumulate_batch(&mut self, a: usize, e: &[Val]) -> Result<Option<Val>, String> { self.0.accumulate_batch(a, e) }
        fn call_node(&mut self, n: usize, a: &[Option<&Val>]) -> Result<NodeOutput<Val>, String> { self.0.call_node(n, a) }
        fn call_nodes_concurrently(&mut self, b: &[crate::host::AsyncCall<'_, Val>]) -> Vec<Option<Result<NodeOutput<Val>, String>>> {
            self.0.call_nodes_concurrently(b)
        }
        fn overran(&mut self, o: &crate::host::Overrun) -> String { self.0.overran(o) }
        fn poll(&mut self, a: usize) -> Result<Val, String> { self.0.poll(a) }
        fn decode(&mut self, a: usize, b: &[u8], c: Codec) -> Result<Val, String> { self.0.decode(a, b, c) }
        fn is_none(&mut self, v: &Val) -> bool { self.0.is_none(v) }
        fn equal(&mut self, a: &Val, b: &Val) -> Result<bool, String> { self.0.equal(a, b) }
        fn share(&mut self, v: &Val) -> Val { self.0.share(v) }
        fn list(&mut self, i: &mut dyn Iterator<Item = &Val>) -> Val { self.0.list(i) }
        fn describe(&mut self, e: &String) -> String { e.clone() }
        fn to_value(&mut self, v: &Val) -> Result<crate::checkpoint::Value, Unsupported> { self.0.to_value(v) }
        fn checkpointable(&mut self, r: &str, v: &Val) -> Result<(), Unsupported> { self.0.checkpointable(r, v) }
        fn user_state_checkpointable(&mut self, a: usize) -> Result<(), Unsupported> { self.0.user_state_checkpointable(a) }
        fn stand_in(&mut self, v: &Val) -> Val { self.0.stand_in(v) }
        fn persist(&mut self, s: crate::checkpoint::snapshot::EngineSnapshot) -> Result<(), crate::host::CheckpointError> { self.0.persist(s) }
        fn report(&mut self, report: Report<Val, String>) {
            if let Report::DecodeFailed { position, .. } = &report {
                self.1.push(position.clone());
            }
            self.0.report(report)
        }
    }
    p.apply(source(b"5", 11), &mut host, &Now::lazy());
    p.apply(source(b"not a number", 12), &mut host, &Now::lazy());
    assert_eq!(host.0.fires.len(), 1);
    assert_eq!(host.1, vec![Some(SourcePosition::new("t", 3, 11))], "the message's own offset");
    // Both were taken in (one failed to decode): the next offset to read is 12.
    assert_eq!(p.positions(), vec![(0, SourcePosition::new("t", 3, 12))]);
}

/// A small deterministic generator: the same seeds every run, many shapes.
fn items(seed: u64, n: usize) -> Vec<Item<Val>> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            match (x >> 33) % 10 {
                0 => Item::Fire,
                1 => Item::Pause((x >> 40) % 2 == 0),
                k => ev(((x >> 45) % 2) as usize, (k as i64) - 4),
            }
        })
        .collect()
}

fn copy(items: &[Item<Val>]) -> Vec<Item<Val>> {
    items
        .iter()
        .map(|i| match i {
            Item::Event { acc, input: Input::Value(v) } => Item::Event { acc: *acc, input: Input::Value(v.clone()) },
            Item::Fire => Item::Fire,
            Item::Pause(p) => Item::Pause(*p),
            _ => unreachable!("generated items only"),
        })
        .collect()
}

#[test]
fn sequential_one_at_a_time_is_the_same_as_a_run_and_as_the_driver() {
    let spec = two_acc(CriteriaKind::Any, &[], InputStrategy::Sequential);
    for seed in 0..200 {
        let generated = items(seed, 40);
        let (mut one, mut f_one) = setup(&spec, vec![echo()]);
        for item in copy(&generated) {
            one.apply(item, &mut f_one, &Now::lazy());
        }
        let (mut run, mut f_run) = setup(&spec, vec![echo()]);
        run.apply_batch(copy(&generated), &mut f_run, &Now::lazy());
        assert_eq!(f_one.fires, f_run.fires, "seed {seed}");
        assert_eq!(one.cache(), run.cache(), "seed {seed}");

        let (driven, f) = setup(&spec, vec![echo()]);
        let (tx, rx, progress) = merge_channel::<Val>(64);
        for item in copy(&generated) {
            tx.push(item, None).ok().unwrap();
        }
        tx.push(Item::Stop, None).ok().unwrap();
        let mut host = FakeAttach(f);
        driver::run(&rx, &std::sync::Mutex::new(driven), &mut host, &progress, Duration::ZERO);
        // Stop settles nothing new here (no batches, nothing paused that it resumes).
        assert_eq!(host.0.fires, f_one.fires, "seed {seed}");
    }
}

#[test]
fn latest_one_at_a_time_fires_for_every_event_a_run_for_the_newest() {
    let spec = two_acc(CriteriaKind::Any, &[], InputStrategy::Latest);
    let events: Vec<Item<Val>> = (0..6).map(|i| ev((i % 2) as usize, i)).collect();
    let (mut one, mut f_one) = setup(&spec, vec![echo()]);
    for item in copy(&events) {
        one.apply(item, &mut f_one, &Now::lazy());
    }
    let (mut run, mut f_run) = setup(&spec, vec![echo()]);
    run.apply_batch(copy(&events), &mut f_run, &Now::lazy());
    assert_eq!(f_one.fires.len(), 6);
    assert_eq!(f_run.fires.len(), 1);
    assert_eq!(f_one.fires.last().unwrap().outputs, f_run.fires[0].outputs);
    assert_eq!(one.cache(), run.cache());
}

#[test]
fn every_held_value_is_visited_and_released() {
    let spec = graph(
        vec![
            acc("a", AccKind::Passthrough),
            acc("b", AccKind::Batch { max_buffer_size: None, flush_interval: None }),
            acc("w", AccKind::State { capacity: 2 }),
            acc("p", AccKind::Polling { interval: Duration::from_secs(1) }),
        ],
        vec![node("n", &["a", "b", "w", "p"])],
        CriteriaKind::Any,
        &["a"],
        InputStrategy::Sequential,
    );
    let fails_on_3: NodeFn = Box::new(|args| match args[0] {
        Some(Val::Int(3)) => Err("three".into()),
        _ => Ok(NodeOutput::Value(Val::Nil)),
    });
    let (mut p, mut f) = setup(&spec, vec![fails_on_3]);
    let count = |p: &Processor<Val, String>| {
        let mut n = 0;
        p.for_each_value(&mut |_| n += 1);
        n
    };
    assert_eq!(count(&p), 0);
    apply(&mut p, &mut f, ev(1, 10)); // batch buffer: 1
    apply(&mut p, &mut f, ev(2, 20)); // window entry + its cached list: 2
    apply(&mut p, &mut f, ev(3, 30)); // polling last + cache: 2
    apply(&mut p, &mut f, Item::Pause(true));
    apply(&mut p, &mut f, ev(0, 3)); // queued behind the pause: 1
    assert_eq!(count(&p), 6);
    apply(&mut p, &mut f, Item::Pause(false)); // fails; two retries, then dead letter + cache
    p.on_idle(&mut f);
    p.on_idle(&mut f);
    assert_eq!(p.dead_letters().with(|l, _| l.len()), 1);
    assert_eq!(count(&p), 7);
    p.release_values();
    assert_eq!(count(&p), 0);
}
