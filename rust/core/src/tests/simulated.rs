//! A simulated clock: time moves only by `Item::Advance`, which runs the
//! timers due on the way in time order, each at its own time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Time;
use super::*;

/// 2026-01-02 03:04:05 UTC, in nanoseconds.
const T0: i64 = 1_767_323_045_000_000_000;

fn at_ms(ms: i64) -> Time {
    Time::from_nanos(T0 + ms * 1_000_000)
}

fn system_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos((T0 + ms * 1_000_000) as u64)
}

fn simulated(spec: &GraphSpec, nodes: Vec<NodeFn>, backoff: Duration) -> (Processor<Val, String>, Fake) {
    let plan = Arc::new(Plan::compile(spec).expect("valid graph"));
    let config = Config { max_attempts: 3, retry_backoff: backoff, simulated: Some(at_ms(0)), ..Config::default() };
    (Processor::new(plan, config), Fake::new(nodes))
}

fn batch_graph() -> GraphSpec {
    graph(
        vec![
            acc("tick", AccKind::Passthrough),
            acc("fills", AccKind::Batch { max_buffer_size: None, flush_interval: Some(Duration::from_millis(5)) }),
        ],
        vec![node("n", &["tick", "fills"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    )
}

fn apply(p: &mut Processor<Val, String>, f: &mut Fake, item: Item<Val>) {
    let now = p.now();
    p.apply(item, f, &now);
}

#[test]
fn timers_due_before_an_event_run_first_each_at_its_own_time() {
    let (mut p, mut f) = simulated(&batch_graph(), vec![echo()], Duration::ZERO);
    assert_eq!(p.simulated(), Some(at_ms(0)));
    assert_eq!(p.wall_deadline(), None, "a simulated clock never waits on the wall clock");
    apply(&mut p, &mut f, Item::Event { acc: 1, input: Input::Value(Val::Int(7)) });
    assert_eq!(p.next_deadline(), Some(at_ms(5)));
    // The wall clock's timer tick does nothing under a simulated clock.
    p.on_timer(&mut f, &Now::lazy());
    assert!(f.fires.is_empty());
    apply(&mut p, &mut f, Item::Advance(at_ms(20)));
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    assert_eq!(f.starts, vec![system_ms(5), system_ms(20)], "the flush fired at 5 ms, the event at 20 ms");
    assert_eq!(f.fires[0].outputs, vec![(0, Val::List(vec![Val::Nil, Val::List(vec![Val::Int(7)])]))]);
    assert_eq!(p.simulated(), Some(at_ms(20)));
    assert_eq!(p.metrics().last_fired_at_us.load(std::sync::atomic::Ordering::Relaxed), at_ms(20).as_micros());
}

#[test]
fn retries_back_off_in_simulated_time() {
    let (mut p, mut f) = simulated(&one_acc(InputStrategy::Latest), vec![flaky(2)], Duration::from_millis(10));
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    apply(&mut p, &mut f, Item::Advance(at_ms(9)));
    assert_eq!(f.fires.len(), 1, "not yet due");
    apply(&mut p, &mut f, Item::Advance(at_ms(100)));
    assert_eq!(f.starts, vec![system_ms(0), system_ms(10), system_ms(20)]);
    assert_eq!(f.fires.iter().map(|x| x.failed_node.is_some()).collect::<Vec<_>>(), vec![true, true, false]);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn time_never_goes_back() {
    let (mut p, mut f) = simulated(&one_acc(InputStrategy::Latest), vec![echo()], Duration::ZERO);
    apply(&mut p, &mut f, Item::Advance(at_ms(50)));
    apply(&mut p, &mut f, Item::Advance(at_ms(10)));
    assert_eq!(p.simulated(), Some(at_ms(50)));
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    assert_eq!(f.starts, vec![system_ms(50)]);
}

#[test]
fn a_checkpoint_interval_counts_simulated_time() {
    let (mut p, mut f) = {
        let plan = Arc::new(Plan::compile(&one_acc(InputStrategy::Latest)).expect("valid graph"));
        let config = Config {
            checkpoint_interval: Some(Duration::from_secs(1)),
            simulated: Some(at_ms(0)),
            ..Config::default()
        };
        (Processor::new(plan, config), Fake::new(vec![echo()]))
    };
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    p.on_idle(&mut f);
    assert!(f.saved.is_empty());
    apply(&mut p, &mut f, Item::Advance(at_ms(999)));
    assert!(f.saved.is_empty());
    apply(&mut p, &mut f, Item::Advance(at_ms(1_000)));
    assert_eq!(f.saved.len(), 1);
}

#[test]
fn a_retry_with_no_backoff_waits_for_the_next_advance_instead_of_spinning() {
    let (mut p, mut f) = simulated(&one_acc(InputStrategy::Latest), vec![flaky(5)], Duration::ZERO);
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    apply(&mut p, &mut f, Item::Advance(at_ms(1)));
    apply(&mut p, &mut f, Item::Advance(at_ms(2)));
    assert_eq!(f.starts, vec![system_ms(0), system_ms(0), system_ms(1)], "one retry per advance, then no attempts left");
}

#[test]
fn the_driver_gives_the_fires_applying_one_by_one_gives() {
    let items = || {
        vec![
            Item::Event { acc: 1, input: Input::Value(Val::Int(7)) },
            Item::Event { acc: 0, input: Input::Value(Val::Int(1)) },
            Item::Advance(at_ms(3)),
            Item::Event { acc: 0, input: Input::Value(Val::Int(2)) },
            Item::Event { acc: 1, input: Input::Value(Val::Int(8)) },
            Item::Advance(at_ms(30)),
            Item::Event { acc: 0, input: Input::Value(Val::Int(3)) },
        ]
    };
    let (mut p, mut f) = simulated(&batch_graph(), vec![echo()], Duration::ZERO);
    for item in items() {
        apply(&mut p, &mut f, item);
    }
    let (q, g) = simulated(&batch_graph(), vec![echo()], Duration::ZERO);
    let (tx, rx, progress) = merge_channel::<Val>(64);
    for item in items() {
        assert!(tx.push(item, None).is_ok());
    }
    assert!(tx.push(Item::Stop, None).is_ok());
    let q = std::sync::Mutex::new(q);
    struct Host(Fake);
    impl Attach<Val, String> for Host {
        fn attached(&mut self, work: &mut dyn FnMut(&mut dyn Calls<Val, String>)) {
            work(&mut self.0);
        }
    }
    let mut host = Host(g);
    driver::run(&rx, &q, &mut host, &progress, Duration::ZERO);
    // Stop without a store flushes what is buffered: the one-by-one side too.
    apply(&mut p, &mut f, Item::Stop);
    assert_eq!(host.0.fires, f.fires);
    assert_eq!(host.0.starts, f.starts);
}

fn timed(criteria: impl FnOnce(&mut CriteriaSpec)) -> GraphSpec {
    let mut spec = graph(vec![acc("a", AccKind::Passthrough)], vec![node("n", &["a"])], CriteriaKind::Any, &[], InputStrategy::Latest);
    criteria(&mut spec.criteria);
    spec
}

#[test]
fn debounce_holds_the_fire_until_the_members_are_quiet() {
    let spec = timed(|c| c.debounce = Some(Duration::from_millis(10)));
    let (mut p, mut f) = simulated(&spec, vec![echo()], Duration::ZERO);
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    apply(&mut p, &mut f, Item::Advance(at_ms(5)));
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(2)) });
    assert_eq!(p.next_deadline(), Some(at_ms(15)));
    apply(&mut p, &mut f, Item::Advance(at_ms(100)));
    assert_eq!(f.starts, vec![system_ms(15)]);
    assert_eq!(f.fires[0].outputs, vec![(0, Val::List(vec![Val::Int(2)]))]);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn while_paused_no_reactor_time_is_due() {
    let spec = timed(|c| {
        c.throttle = Some(Duration::from_millis(10));
        c.every = Some(Duration::from_millis(50));
    });
    let (mut p, mut f) = simulated(&spec, vec![echo()], Duration::ZERO);
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(1)) });
    apply(&mut p, &mut f, Item::Event { acc: 0, input: Input::Value(Val::Int(2)) });
    assert_eq!(p.next_deadline(), Some(at_ms(10)), "the trailing fire");
    apply(&mut p, &mut f, Item::Pause(true));
    assert_eq!(p.next_deadline(), None);
    apply(&mut p, &mut f, Item::Advance(at_ms(120)));
    assert_eq!(f.starts, vec![system_ms(0)]);
    apply(&mut p, &mut f, Item::Pause(false));
    // Resuming fires what waited, once; the schedule goes on from now.
    assert_eq!(f.starts, vec![system_ms(0), system_ms(120)]);
    assert_eq!(p.next_deadline(), Some(at_ms(150)), "the ticks missed while paused are skipped");
}

#[test]
fn timed_criteria_problems_are_named() {
    let mut spec = timed(|c| {
        c.debounce = Some(Duration::from_millis(1));
        c.throttle = Some(Duration::ZERO);
    });
    spec.strategy = InputStrategy::Sequential;
    let problems = Plan::compile(&spec).unwrap_err().problems;
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "criteria: throttle must be longer than zero",
            "criteria: debounce and throttle cannot be combined (debounce waits for quiet, throttle fires at once)",
            "criteria: debounce collapses updates into one fire on the newest values, so its members need input_strategy 'latest' or 'burst'; sequential: 'a'",
        ]
    );
}

#[test]
fn ages_count_from_the_simulated_start() {
    let (p, _f) = simulated(&one_acc(InputStrategy::Latest), vec![echo()], Duration::ZERO);
    let m = p.metrics();
    assert_eq!(m.age(0, at_ms(1500).as_nanos() as u64), Duration::from_millis(1500));
}

#[test]
fn a_simulated_clock_polls_on_its_own_timers() {
    let spec = graph(
        vec![acc("price", AccKind::Polling { interval: Duration::from_millis(100) })],
        vec![node("n", &["price"])],
        CriteriaKind::Any,
        &[],
        InputStrategy::Sequential,
    );
    let (mut p, mut f) = simulated(&spec, vec![echo()], Duration::ZERO);
    assert_eq!(p.next_deadline(), Some(at_ms(0)), "the first poll at the start");
    apply(&mut p, &mut f, Item::Advance(at_ms(250)));
    assert_eq!(f.starts, vec![system_ms(0), system_ms(100), system_ms(200)]);
    assert_eq!(p.next_deadline(), Some(at_ms(300)));
}
