//! Async nodes: the ready ones are awaited together, never a node before its inputs.

use std::time::Duration;

use crate::clock::wall_now;
use super::*;

fn async_node(name: &str, params: &[&str]) -> NodeSpec {
    NodeSpec { is_async: true, ..node(name, params) }
}

fn one(nodes: Vec<NodeSpec>, strategy: InputStrategy) -> GraphSpec {
    graph(vec![acc("a", AccKind::Passthrough)], nodes, CriteriaKind::Any, &[], strategy)
}

fn echoes(n: usize) -> Vec<NodeFn> {
    (0..n).map(|_| echo()).collect()
}

#[test]
fn a_fan_out_of_async_nodes_takes_the_slower_not_the_sum() {
    let spec = one(
        vec![async_node("x", &["a"]), async_node("y", &["a"]), node("join", &["x", "y"])],
        InputStrategy::Sequential,
    );
    let (mut p, mut f) = setup(&spec, echoes(3));
    f.costs = vec![Duration::from_millis(200), Duration::from_millis(200), Duration::ZERO];
    let start = f.clock;
    push(&mut p, &mut f, 0, Val::Int(7));
    assert_eq!(f.batches, vec![vec![0, 1]]);
    assert_eq!(f.clock - start, Duration::from_millis(200));
    let x = Val::List(vec![Val::Int(7)]);
    assert_eq!(f.fires[0].outputs, vec![(2, Val::List(vec![x.clone(), x]))]);
    assert_eq!(f.clock_reads, 0, "no deadline: no clock read");
}

#[test]
fn an_async_node_fed_by_another_is_awaited_after_it() {
    // Plan order x, y, z: z is ready with x, y only once x is done.
    let spec = one(
        vec![async_node("x", &["a"]), async_node("y", &["x"]), async_node("z", &["a"])],
        InputStrategy::Latest,
    );
    let (mut p, mut f) = setup(&spec, echoes(3));
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.batches, vec![vec![0, 2], vec![1]]);
    assert_eq!(f.fires[0].failed_node, None);
    assert_eq!(f.fires[0].outputs.len(), 2);
}

#[test]
fn sync_nodes_before_an_async_run_feed_it() {
    let spec = one(vec![node("s", &["a"]), async_node("x", &["a"]), async_node("y", &["s"])], InputStrategy::Latest);
    let (mut p, mut f) = setup(&spec, echoes(3));
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.batches, vec![vec![1, 2]]);
}

#[test]
fn an_async_node_on_a_branch_not_taken_is_never_awaited() {
    let mut spec = one(vec![node("decide", &["a"]), async_node("fetch", &["decide"]), node("cheap", &["decide"])], InputStrategy::Latest);
    spec.nodes[0].routes = vec![
        RouteSpec { label: "hi".into(), targets: vec!["fetch".into()] },
        RouteSpec { label: "lo".into(), targets: vec!["cheap".into()] },
    ];
    let (mut p, mut f) = setup(&spec, vec![router(), echo(), echo()]);
    push(&mut p, &mut f, 0, Val::Int(5));
    assert!(f.batches.is_empty());
    assert_eq!(f.fires[0].outputs.iter().map(|o| o.0).collect::<Vec<_>>(), vec![2]);
    push(&mut p, &mut f, 0, Val::Int(500));
    assert_eq!(f.batches, vec![vec![1]]);
}

#[test]
fn a_failing_async_node_fails_the_fire_and_its_input_is_retried() {
    let spec = one(vec![async_node("x", &["a"]), async_node("y", &["a"])], InputStrategy::Sequential);
    let (mut p, mut f) = setup(&spec, vec![echo(), flaky(1)]);
    push(&mut p, &mut f, 0, Val::Int(1));
    assert_eq!(f.fires[0].failed_node, Some(1));
    assert_eq!(f.batches, vec![vec![0, 1]], "both were awaited");
    p.on_timer(&mut f, &Now::at(wall_now()));
    assert_eq!(f.fires[1].failed_node, None);
    assert_eq!(f.fires[1].seq, f.fires[0].seq, "the same boundary, retried");
}

/// A small deterministic generator: the same graphs on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Random DAGs, random async flags: every fire gives the outputs the all-sync
/// graph gives (so no node ran before its inputs), each async node is awaited
/// exactly once, and no run holds a node together with one it depends on.
#[test]
fn any_mix_of_async_nodes_computes_what_the_sync_graph_computes() {
    let mut rng = Lcg(42);
    for _ in 0..300 {
        let n = 2 + rng.next(7) as usize;
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut params: Vec<String> = (0..i).filter(|_| rng.next(3) == 0).map(|j| format!("n{j}")).collect();
            if params.is_empty() || rng.next(2) == 0 {
                params.push("a".into());
            }
            let refs: Vec<&str> = params.iter().map(String::as_str).collect();
            let mut spec = node(&format!("n{i}"), &refs);
            spec.is_async = rng.next(2) == 0;
            nodes.push(spec);
        }
        let spec = one(nodes.clone(), InputStrategy::Sequential);
        let sync = one(nodes.into_iter().map(|n| NodeSpec { is_async: false, ..n }).collect(), InputStrategy::Sequential);
        let (mut p, mut f) = setup(&spec, echoes(n));
        let (mut q, mut g) = setup(&sync, echoes(n));
        push(&mut p, &mut f, 0, Val::Int(3));
        push(&mut q, &mut g, 0, Val::Int(3));
        assert_eq!(f.fires, g.fires);
        let plan = p.plan();
        let mut awaited: Vec<usize> = f.batches.concat();
        awaited.sort_unstable();
        assert_eq!(awaited, plan.async_nodes);
        for run in &f.batches {
            for &j in run {
                for s in &plan.nodes[j].inputs {
                    assert!(!matches!(s, crate::plan::Source::Node(k) if run.contains(k)));
                }
            }
        }
    }
}
