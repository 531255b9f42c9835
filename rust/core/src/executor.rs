//! Running a [`Plan`] once over the current inputs.

use crate::clock::{elapsed_ns, ticks, Ticks};

use smallvec::SmallVec;

use crate::cutoff::Cutoff;
use crate::deadline::Deadlines;
use crate::host::{Calls, FireDetail, NodeOutput, Outputs};
use crate::plan::{Plan, Source};

mod concurrent;

pub(crate) enum Slot<V> {
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
    pub(crate) fn value(&self) -> Option<&V> {
        match self {
            Slot::Value(v) | Slot::Routed(_, v) => Some(v),
            Slot::Empty | Slot::Skipped => None,
        }
    }

    pub(crate) fn share<E>(&self, calls: &mut dyn Calls<V, E>) -> Slot<V> {
        match self {
            Slot::Value(v) => Slot::Value(calls.share(v)),
            Slot::Routed(label, v) => Slot::Routed(*label, calls.share(v)),
            Slot::Empty => Slot::Empty,
            Slot::Skipped => Slot::Skipped,
        }
    }
}

/// What a fire records besides its outputs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recording {
    /// Time each node that runs.
    pub profile: bool,
    /// Keep the accumulator values the nodes received.
    pub inputs: bool,
}

/// Scratch space for node results, reused from fire to fire.
pub(crate) struct Executor<V> {
    slots: Vec<Slot<V>>,
    /// Present only for a plan with cuttable nodes.
    cutoff: Option<Cutoff<V>>,
    recording: Recording,
    /// With `recording.inputs`: the accumulators some node reads, in index order.
    read: Vec<usize>,
    /// The current fire's records (with `recording` on), until taken.
    detail: Option<Box<FireDetail<V>>>,
}

impl<V> Executor<V> {
    pub(crate) fn new(plan: &Plan, recording: Recording) -> Self {
        let mut read: Vec<usize> = Vec::new();
        if recording.inputs {
            let accs = plan.nodes.iter().flat_map(|n| &n.inputs);
            read = accs.filter_map(|s| if let Source::Acc(i) = *s { Some(i) } else { None }).collect();
            read.sort_unstable();
            read.dedup();
        }
        Executor {
            slots: plan.nodes.iter().map(|_| Slot::Empty).collect(),
            cutoff: Cutoff::new(plan),
            recording,
            read,
            detail: None,
        }
    }

    /// Runs every node whose branch is live, in plan order. Returns the terminal
    /// results, or the failing node's plan position and error. `version(i)` is
    /// the version of accumulator `i`'s input (asked only by change cutoff).
    pub(crate) fn run<'a, E>(
        &mut self,
        plan: &Plan,
        input: impl Fn(usize) -> Option<&'a V>,
        version: impl Fn(usize) -> u64,
        calls: &mut dyn Calls<V, E>,
    ) -> Result<Outputs<V>, (usize, E)>
    where
        V: 'a,
    {
        if self.recording.profile || self.recording.inputs {
            self.begin_detail(&input, calls);
        }
        if let Some(cutoff) = &mut self.cutoff {
            cutoff.begin();
        }
        let result = self.run_nodes(plan, input, &version, calls);
        let outputs = match result {
            Ok(()) => {
                if let Some(cutoff) = &mut self.cutoff {
                    cutoff.remember(plan, &self.slots, &version, calls);
                }
                Ok(self.take_outputs(plan))
            }
            Err(failure) => Err(failure),
        };
        for slot in &mut self.slots {
            *slot = Slot::Empty;
        }
        outputs
    }

    /// The last fire's records, if any were asked for.
    pub(crate) fn take_detail(&mut self) -> Option<Box<FireDetail<V>>> {
        self.detail.take()
    }

    fn begin_detail<'a, E>(&mut self, input: &impl Fn(usize) -> Option<&'a V>, calls: &mut dyn Calls<V, E>)
    where
        V: 'a,
    {
        self.detail = Some(Box::new(FireDetail {
            node_ns: self.recording.profile.then(SmallVec::new),
            inputs: self
                .recording
                .inputs
                .then(|| self.read.iter().map(|&i| (i, input(i).map(|v| calls.share(v)))).collect()),
        }));
    }

    fn run_nodes<'a, E>(
        &mut self,
        plan: &Plan,
        input: impl Fn(usize) -> Option<&'a V>,
        version: &impl Fn(usize) -> u64,
        calls: &mut dyn Calls<V, E>,
    ) -> Result<(), (usize, E)>
    where
        V: 'a,
    {
        let deadlines = Deadlines::start(plan, || calls.now());
        // Profiling laps: each node that runs is charged the time since the
        // previous one finished (one clock read per node).
        let mut lap = self.recording.profile.then(ticks);
        for (pos, node) in plan.nodes.iter().enumerate() {
            if self.skipped(node) {
                self.slots[pos] = Slot::Skipped;
                continue;
            }
            if node.cuttable {
                if let Some(held) = self.cutoff.as_mut().and_then(|c| c.hold(pos, node, version, calls)) {
                    self.slots[pos] = held;
                    continue;
                }
            }
            if node.is_async {
                // It may have run already, awaited with an earlier async node.
                if matches!(self.slots[pos], Slot::Empty) {
                    let run = self.run_concurrently(pos, plan, &input, calls, deadlines.as_ref());
                    self.lap_all(&run, &mut lap);
                    run.result?;
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
            let mut slot = match output {
                Ok(out) => Slot::from(out),
                Err(e) => {
                    self.lap(pos, &mut lap);
                    return Err((pos, e));
                }
            };
            if node.cuttable {
                if let Some(cutoff) = &mut self.cutoff {
                    if let Err(e) = cutoff.ran(pos, node, &mut slot, calls) {
                        self.lap(pos, &mut lap);
                        return Err((pos, e));
                    }
                }
            }
            self.slots[pos] = slot;
            self.lap(pos, &mut lap);
            if let Some(d) = &deadlines {
                if let Some(overrun) = d.check(pos, node, started, calls.now()) {
                    return Err((pos, calls.overran(&overrun)));
                }
            }
        }
        Ok(())
    }

    /// With profiling: charges node `pos` the time since the last lap.
    #[inline]
    fn lap(&mut self, pos: usize, lap: &mut Option<Ticks>) {
        if let (Some(last), Some(node_ns)) = (lap.as_mut(), self.detail.as_mut().and_then(|d| d.node_ns.as_mut())) {
            let now = ticks();
            node_ns.push((pos, elapsed_ns(*last, now.max(*last))));
            *last = now;
        }
    }

    /// With profiling: charges every node of a concurrent run the run's time
    /// (they ran side by side).
    fn lap_all<E>(&mut self, run: &concurrent::Run<E>, lap: &mut Option<Ticks>) {
        if let (Some(last), Some(node_ns)) = (lap.as_mut(), self.detail.as_mut().and_then(|d| d.node_ns.as_mut())) {
            let now = ticks();
            let ns = elapsed_ns(*last, now.max(*last));
            node_ns.extend(run.nodes.iter().map(|&j| (j, ns)));
            *last = now;
        }
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
