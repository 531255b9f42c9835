//! Change cutoff: which cuttable nodes a fire may skip, and what they remember
//! from one successful fire to the next.
//!
//! "Unchanged", relative to the previous successful fire:
//! - an accumulator input is unchanged when its boundary (by version) is the
//!   one that fire saw;
//! - a cutoff node's value is unchanged when `equal(previous, current)` holds;
//!   its value then stays the previous one (the new output is dropped), so that
//!   every consumer sees what the skipped ones were computed from;
//! - a cuttable node all of whose inputs are unchanged is skipped (held): it
//!   keeps its previous output, which counts as unchanged. A held terminal node
//!   is absent from the fire's outputs.
//!
//! A node that did not run in the previous successful fire (gated off by a
//! router, first fire after start) has nothing to keep and runs. A failed fire
//! remembers nothing. Only cuttable nodes are tracked; the others always run.

use crate::executor::Slot;
use crate::host::Calls;
use crate::plan::{Plan, PlanNode, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Did not run in this fire (gated off, or not reached yet).
    Off,
    Held,
    Ran,
    /// A cutoff node that ran and whose output equals its previous one.
    RanSame,
}

pub(crate) struct Cutoff<V> {
    /// Each cuttable node's value in the last successful fire (Empty: none).
    prev: Vec<Slot<V>>,
    /// What each cuttable node did in the current fire.
    marks: Vec<Mark>,
    /// The accumulator versions the last successful fire saw.
    seen: Vec<u64>,
}

impl<V> Cutoff<V> {
    /// None for a plan without cuttable nodes.
    pub(crate) fn new(plan: &Plan) -> Option<Self> {
        plan.has_cutoff().then(|| Cutoff {
            prev: plan.nodes.iter().map(|_| Slot::Empty).collect(),
            marks: vec![Mark::Off; plan.nodes.len()],
            seen: vec![u64::MAX; plan.accumulators.len()],
        })
    }

    pub(crate) fn begin(&mut self) {
        self.marks.fill(Mark::Off);
    }

    /// For cuttable node `pos` about to run: the slot standing in for it if
    /// every input is unchanged (its previous value; Empty for a terminal node,
    /// which nothing reads and the outputs omit), else None.
    pub(crate) fn hold<E>(
        &mut self,
        pos: usize,
        node: &PlanNode,
        version: &impl Fn(usize) -> u64,
        calls: &mut dyn Calls<V, E>,
    ) -> Option<Slot<V>> {
        if matches!(self.prev[pos], Slot::Empty) {
            return None;
        }
        let unchanged = node.inputs.iter().all(|s| match *s {
            Source::Acc(i) => version(i) == self.seen[i],
            Source::Node(j) => matches!(self.marks[j], Mark::Held | Mark::RanSame),
        });
        if !unchanged {
            return None;
        }
        self.marks[pos] = Mark::Held;
        Some(if node.terminal { Slot::Empty } else { self.prev[pos].share(calls) })
    }

    /// After cuttable node `pos` ran and returned `slot`: compares a cutoff
    /// node's output with its previous value, which replaces it when equal.
    pub(crate) fn ran<E>(
        &mut self,
        pos: usize,
        node: &PlanNode,
        slot: &mut Slot<V>,
        calls: &mut dyn Calls<V, E>,
    ) -> Result<(), E> {
        let same = match (node.cutoff, self.prev[pos].value(), slot.value()) {
            (true, Some(previous), Some(current)) => calls.cutoff_equal(pos, previous, current)?,
            _ => false,
        };
        if same {
            *slot = self.prev[pos].share(calls);
        }
        self.marks[pos] = if same { Mark::RanSame } else { Mark::Ran };
        Ok(())
    }

    /// After a successful fire: what it ran and saw becomes "previous".
    pub(crate) fn remember<E>(
        &mut self,
        plan: &Plan,
        slots: &[Slot<V>],
        version: &impl Fn(usize) -> u64,
        calls: &mut dyn Calls<V, E>,
    ) {
        for (pos, node) in plan.nodes.iter().enumerate() {
            match self.marks[pos] {
                _ if !node.cuttable => {}
                Mark::Held | Mark::RanSame => {}
                Mark::Ran => self.prev[pos] = slots[pos].share(calls),
                Mark::Off => self.prev[pos] = Slot::Empty,
            }
        }
        for (i, seen) in self.seen.iter_mut().enumerate() {
            *seen = version(i);
        }
    }
}
