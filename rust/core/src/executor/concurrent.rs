//! Async nodes: the ready ones are handed to the host together, so that a
//! fan-out of two I/O calls takes as long as the slower, not the sum.

use smallvec::SmallVec;

use super::{Executor, Slot};
use crate::deadline::{Budget, Deadlines};
use crate::host::{AsyncCall, Calls};
use crate::plan::{Plan, Source};

/// The nodes one concurrent run awaited, and how it ended.
pub(crate) struct Run<E> {
    pub nodes: SmallVec<[usize; 8]>,
    pub result: Result<(), (usize, E)>,
}

impl<V> Executor<V> {
    /// Runs async node `start` together with every later async node that is
    /// ready now: not run yet, not skipped, and fed only by nodes before
    /// `start` (so by none of the run). They run earlier than plan order, which
    /// no node can observe: nothing between them feeds them. The first failure
    /// in plan order fails the fire, once all have finished. A node that
    /// change cutoff may skip is not taken along: whether it runs is decided
    /// when its turn comes.
    pub(super) fn run_concurrently<'a, E>(
        &mut self,
        start: usize,
        plan: &Plan,
        input: &impl Fn(usize) -> Option<&'a V>,
        calls: &mut dyn Calls<V, E>,
        deadlines: Option<&Deadlines>,
    ) -> Run<E>
    where
        V: 'a,
    {
        let run: SmallVec<[usize; 8]> =
            plan.async_nodes.iter().copied().filter(|&j| j == start || (j > start && self.ready(plan, j, start))).collect();
        let result = self.await_run(&run, plan, input, calls, deadlines);
        Run { nodes: run, result }
    }

    fn await_run<'a, E>(
        &mut self,
        run: &[usize],
        plan: &Plan,
        input: &impl Fn(usize) -> Option<&'a V>,
        calls: &mut dyn Calls<V, E>,
        deadlines: Option<&Deadlines>,
    ) -> Result<(), (usize, E)>
    where
        V: 'a,
    {
        let now = deadlines.map(|_| calls.now());
        let budgets: SmallVec<[Option<Budget>; 8]> = run
            .iter()
            .map(|&j| deadlines.zip(now).and_then(|(d, now)| d.budget(&plan.nodes[j], now)))
            .collect();
        let results = {
            let batch: SmallVec<[AsyncCall<'_, V>; 8]> = run
                .iter()
                .zip(&budgets)
                .map(|(&j, budget)| AsyncCall {
                    node: j,
                    args: plan.nodes[j]
                        .inputs
                        .iter()
                        .map(|s| match *s {
                            Source::Acc(i) => input(i),
                            Source::Node(k) => self.slots[k].value(),
                        })
                        .collect(),
                    budget: budget.map(|b| b.left),
                })
                .collect();
            calls.call_nodes_concurrently(&batch)
        };
        debug_assert_eq!(results.len(), run.len(), "one result per async call");
        let after = deadlines.map(|_| calls.now());
        let mut failure = None;
        for ((&j, budget), result) in run.iter().zip(&budgets).zip(results) {
            match result {
                Some(Ok(out)) => {
                    let mut slot = Slot::from(out);
                    let node = &plan.nodes[j];
                    if let (true, Some(cutoff)) = (node.cuttable, &mut self.cutoff) {
                        if let Err(e) = cutoff.ran(j, node, &mut slot, calls) {
                            failure.get_or_insert((j, e));
                        }
                    }
                    self.slots[j] = slot;
                }
                Some(Err(e)) => {
                    failure.get_or_insert((j, e));
                }
                None if failure.is_none() => {
                    let budget = budget.expect("only a node with a budget is cancelled");
                    failure = Some((j, calls.overran(&budget.cancelled(j))));
                }
                None => {}
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        // The fire's own deadline may have passed while they ran.
        if let (Some(d), Some(now)) = (deadlines, after) {
            let last = run[run.len() - 1];
            if let Some(overrun) = d.check(last, &plan.nodes[last], None, now) {
                return Err((last, calls.overran(&overrun)));
            }
        }
        Ok(())
    }

    fn ready(&self, plan: &Plan, j: usize, start: usize) -> bool {
        let node = &plan.nodes[j];
        matches!(self.slots[j], Slot::Empty)
            && !node.cuttable
            && node.inputs.iter().all(|s| !matches!(*s, Source::Node(k) if k >= start))
            && !self.skipped(node)
    }
}
