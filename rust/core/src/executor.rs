//! Running a [`Plan`] once over the current inputs.

use smallvec::SmallVec;

use crate::deadline::Deadlines;
use crate::host::{Calls, NodeOutput, Outputs};
use crate::plan::{Plan, Source};

mod concurrent;

enum Slot<V> {
    Empty,
    Skipped,
    Value(V),
    Routed(usize, V),
}

impl<V> From<NodeOutput<V>> for Slot<V> {
    fn from(out: NodeOutput<V>) -> Self {
        match out {
            NodeOutput::Value(v) => Slot::Value(v),
            NodeOutput::Routed { label, value } => Slot::Routed(label, value),
        }
    }
}

impl<V> Slot<V> {
    fn value(&self) -> Option<&V> {
        match self {
            Slot::Value(v) | Slot::Routed(_, v) => Some(v),
            Slot::Empty | Slot::Skipped => None,
        }
    }
}

/// Scratch space for node results, reused from fire to fire.
pub(crate) struct Executor<V> {
    slots: Vec<Slot<V>>,
}

impl<V> Executor<V> {
    pub(crate) fn new(plan: &Plan) -> Self {
        Executor { slots: plan.nodes.iter().map(|_| Slot::Empty).collect() }
    }

    /// Runs every node whose branch is live, in plan order. Returns the terminal
    /// results, or the failing node's plan position and error.
    pub(crate) fn run<'a, E>(
        &mut self,
        plan: &Plan,
        input: impl Fn(usize) -> Option<&'a V>,
        calls: &mut dyn Calls<V, E>,
    ) -> Result<Outputs<V>, (usize, E)>
    where
        V: 'a,
    {
        let result = self.run_nodes(plan, input, calls);
        let outputs = match result {
            Ok(()) => Ok(self.take_outputs(plan)),
            Err(failure) => Err(failure),
        };
        for slot in &mut self.slots {
            *slot = Slot::Empty;
        }
        outputs
    }

    fn run_nodes<'a, E>(
        &mut self,
        plan: &Plan,
        input: impl Fn(usize) -> Option<&'a V>,
        calls: &mut dyn Calls<V, E>,
    ) -> Result<(), (usize, E)>
    where
        V: 'a,
    {
        let deadlines = Deadlines::start(plan, || calls.now());
        for (pos, node) in plan.nodes.iter().enumerate() {
            if self.skipped(node) {
                self.slots[pos] = Slot::Skipped;
                continue;
            }
            if node.is_async {
                // It may have run already, awaited with an earlier async node.
                if matches!(self.slots[pos], Slot::Empty) {
                    self.run_concurrently(pos, plan, &input, calls, deadlines.as_ref())?;
                }
                continue;
            }
            let started = match &deadlines {
                Some(_) if Deadlines::times(node) => Some(calls.now()),
                _ => None,
            };
            let output = {
                let args: SmallVec<[Option<&V>; 8]> = node
                    .inputs
                    .iter()
                    .map(|s| match *s {
                        Source::Acc(i) => input(i),
                        Source::Node(j) => self.slots[j].value(),
                    })
                    .collect();
                calls.call_node(pos, &args)
            };
            self.slots[pos] = match output {
                Ok(out) => Slot::from(out),
                Err(e) => return Err((pos, e)),
            };
            if let Some(d) = &deadlines {
                if let Some(overrun) = d.check(pos, node, started, calls.now()) {
                    return Err((pos, calls.overran(&overrun)));
                }
            }
        }
        Ok(())
    }

    /// A node is skipped when an upstream node was skipped, or a router it is
    /// gated on chose a label that does not include it. Skips thus propagate
    /// down a branch however deep it is.
    fn skipped(&self, node: &crate::plan::PlanNode) -> bool {
        let upstream_skipped = node
            .inputs
            .iter()
            .any(|s| matches!(s, Source::Node(j) if matches!(self.slots[*j], Slot::Skipped)));
        upstream_skipped
            || node.gates.iter().any(|g| match self.slots[g.router] {
                Slot::Routed(label, _) => g.allowed & (1u64 << label) == 0,
                _ => true,
            })
    }

    fn take_outputs(&mut self, plan: &Plan) -> Outputs<V> {
        let mut outputs = Outputs::new();
        for (pos, node) in plan.nodes.iter().enumerate() {
            if node.terminal {
                match std::mem::replace(&mut self.slots[pos], Slot::Empty) {
                    Slot::Value(v) | Slot::Routed(_, v) => outputs.push((pos, v)),
                    Slot::Empty | Slot::Skipped => {}
                }
            }
        }
        outputs
    }
}
