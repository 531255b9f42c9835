//! Fire deadlines, on the fake clock: checked between nodes, async nodes cut
//! at their budget, a timed-out fire failed like a raising one.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::wall_now;
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn chain(strategy: InputStrategy, fire_timeout: Option<Duration>) -> GraphSpec {
    let mut spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![node("n1", &["a"]), node("n2", &["n1"]), node("n3", &["n2"])],
        CriteriaKind::Any,
        &[],
        strategy,
    );
    spec.fire_timeout = fire_timeout;
    spec
}

/// An echo that counts its calls.
fn counted(calls: &Arc<AtomicUsize>) -> NodeFn {
    let calls = calls.clone();
    let mut inner = echo();
    Box::new(move |args| {
        calls.fetch_add(1, Relaxed);
        inner(args)
    })
}

#[test]
fn without_deadlines_no_clock_is_read() {
    let (mut p, mut f) = setup(&chain(InputStrategy::Sequential, None), vec![echo(), echo(), echo()]);
    f.costs = vec![ms(3); 3];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.clock_reads, 0);
    assert_eq!(f.fires[0].failed_node, None);
}

#[test]
fn past_the_fire_timeout_the_rest_is_skipped_and_the_overrunning_node_named() {
    let third = Arc::new(AtomicUsize::new(0));
    let (mut p, mut f) = setup(&chain(InputStrategy::Sequential, Some(ms(5))), vec![echo(), echo(), counted(&third)]);
    f.costs = vec![ms(3); 3];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].failed_node, Some(1));
    assert_eq!(f.errors, vec!["node 1 overran Fire 5ms by 1ms"]);
    assert_eq!(third.load(Relaxed), 0, "n3 never ran");
    assert_eq!(f.clock_reads, 3, "one read at the start, one after each node that ran");
}

#[test]
fn a_timed_out_sequential_boundary_is_retried_then_dead_lettered() {
    let (mut p, mut f) = setup(&chain(InputStrategy::Sequential, Some(ms(5))), vec![echo(), echo(), echo()]);
    f.costs = vec![ms(3); 3];
    push(&mut p, &mut f, 0, Val::Int(1));
    p.on_timer(&mut f, &Now::at(wall_now()));
    p.on_timer(&mut f, &Now::at(wall_now()));
    assert_eq!(f.fires.iter().filter(|x| x.failed_node == Some(1)).count(), 3);
    let letters = p.dead_letters().take();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value, Val::Int(1));
    assert_eq!(letters[0].attempts, 3);
}

#[test]
fn a_timed_out_latest_fire_keeps_its_inputs() {
    let (mut p, mut f) = setup(&chain(InputStrategy::Latest, Some(ms(5))), vec![echo(), echo(), echo()]);
    f.costs = vec![ms(3); 3];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].failed_node, Some(1));
    f.costs = vec![ms(1); 3];
    p.on_timer(&mut f, &Now::at(wall_now()));
    let last = f.fires.last().unwrap();
    assert_eq!(last.failed_node, None);
    let deep = Val::List(vec![Val::List(vec![Val::List(vec![Val::Int(1)])])]);
    assert_eq!(last.outputs, vec![(2, deep)]);
}

#[test]
fn a_sync_node_past_its_own_timeout_fails_the_fire() {
    let mut spec = chain(InputStrategy::Latest, None);
    spec.nodes[0].timeout = Some(ms(1));
    let (mut p, mut f) = setup(&spec, vec![echo(), echo(), echo()]);
    f.costs = vec![ms(3), ms(100), ms(100)];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].failed_node, Some(0));
    assert_eq!(f.errors, vec!["node 0 overran Node 1ms by 2ms"]);
}

#[test]
fn a_node_within_its_own_timeout_but_past_the_fire_timeout_names_the_fire() {
    let mut spec = chain(InputStrategy::Latest, Some(ms(4)));
    spec.nodes[1].timeout = Some(ms(10));
    let (mut p, mut f) = setup(&spec, vec![echo(), echo(), echo()]);
    f.costs = vec![ms(2), ms(3), ms(0)];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.errors, vec!["node 1 overran Fire 4ms by 1ms"]);
}

fn fan_out(x_timeout: Option<Duration>, fire_timeout: Option<Duration>) -> GraphSpec {
    let mut spec = graph(
        vec![acc("a", AccKind::Passthrough)],
        vec![
            NodeSpec { is_async: true, timeout: x_timeout, ..node("x", &["a"]) },
            NodeSpec { is_async: true, ..node("y", &["a"]) },
            node("join", &["x", "y"]),
        ],
        CriteriaKind::Any,
        &[],
        InputStrategy::Latest,
    );
    spec.fire_timeout = fire_timeout;
    spec
}

#[test]
fn an_async_node_is_cancelled_at_its_own_timeout() {
    let (mut p, mut f) = setup(&fan_out(Some(ms(10)), None), vec![echo(), echo(), echo()]);
    f.costs = vec![ms(50), ms(20), ms(0)];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].failed_node, Some(0));
    assert_eq!(f.errors, vec!["node 0 overran Node 10ms by 0ns"]);
}

#[test]
fn an_async_node_is_cancelled_at_what_is_left_of_the_fire() {
    let (mut p, mut f) = setup(&fan_out(Some(ms(100)), Some(ms(15))), vec![echo(), echo(), echo()]);
    f.costs = vec![ms(50), ms(5), ms(0)];
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.errors, vec!["node 0 overran Fire 15ms by 0ns"]);
    // Within budget, the same graph fires.
    f.costs = vec![ms(5), ms(5), ms(0)];
    p.on_timer(&mut f, &Now::at(wall_now()));
    assert_eq!(f.fires.last().unwrap().failed_node, None);
}
