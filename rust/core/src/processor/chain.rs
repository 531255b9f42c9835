//! Runs of events through a chain graph, fired back to back by the host.
//!
//! When a graph's fires are one straight line of sync calls
//! (`Plan::chain_terminal`) and nothing waits in the processor (no queue, no
//! retry, no pause, no batch buffered), each boundary of a criteria member
//! fires at once and alone: there is nothing between one event and the next
//! for the processor to decide. The host may then call the accumulator and the
//! nodes over a whole run of events in one loop of its own (for Python: in the
//! interpreter's own loop, where a call costs least), and afterwards tell the
//! processor what the run did. [`Processor::chain_ran`] does in one step the
//! bookkeeping those fires would have done one by one. The event a run stopped
//! at (something raised) goes the ordinary way through
//! [`Processor::chain_failed`], with what already ran: nothing is called twice.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crate::clock::{elapsed, Ticks};

use crate::accumulator::AccState;
use crate::clock::Now;
pub use crate::host::{AccRun, ChainFailure};
use crate::host::{Calls, ChainOutcome, MixedOutcome, Trigger};
use crate::event::Input;
use crate::spec::{CriteriaKind, InputStrategy};

use super::{Processor, Ran};

/// What the fires of a run are reported with: ids from `first_fire` on, in
/// order, all with `trigger`.
#[derive(Debug, Clone, Copy)]
pub struct ChainRan {
    pub first_fire: u64,
    pub trigger: Trigger,
    /// Wall-clock time of the run's start.
    pub started_at: SystemTime,
}

/// What one run did, as the host counted it.
pub struct Run<V> {
    pub acc: usize,
    /// Events taken, each of which either fired successfully or gave no boundary.
    pub taken: u64,
    /// Of those, the ones that gave a boundary (and fired).
    pub fired: u64,
    /// The last boundary (None when none fired).
    pub last: Option<V>,
    pub started: Ticks,
    pub ended: Ticks,
}

impl<V, E> Processor<V, E> {
    /// Whether accumulator `acc`'s next events may run as a chain: each would
    /// be taken by a plain function (or none) and fire at once and alone
    /// against the inputs as they are. (What a fire records, `profile` and
    /// `record_inputs`, the host's run records too, and it checks boundaries
    /// with `check_checkpointable`.)
    pub fn chain_ready(&self, acc: usize) -> bool {
        self.journal.is_none() && self.run_ready(acc)
    }

    /// [`Processor::chain_ready`] for a run the processor holds (a batch's),
    /// whose events it can record in the journal itself.
    pub(super) fn run_ready(&self, acc: usize) -> bool {
        if !matches!(self.accs[acc], AccState::Plain | AccState::Forward) {
            return false;
        }
        let criteria = &self.plan.criteria;
        let fires = criteria.member[acc]
            && (criteria.kind == CriteriaKind::Any || self.missing - usize::from(self.cache[acc].is_none()) == 0);
        fires && self.run_clean()
    }

    /// Whether nothing waits in the processor (see the module docs), on a
    /// chain graph: a run of several accumulators' events may start.
    pub fn chain_clean(&self) -> bool {
        // The events of a run the host reads itself never pass the processor,
        // so the journal could not record them.
        self.journal.is_none() && self.run_clean()
    }

    pub(super) fn run_clean(&self) -> bool {
        self.plan.chain_terminal.is_some()
            // A run's fires are timed as a whole, on the wall clock.
            && self.anchor.simulated().is_none()
            && !self.paused
            && self.queue.is_empty()
            && !self.any_dirty
            && self.attempts == 0
            && self.retry_at.is_none()
            && self.burst_pending == 0
            && self.accs.iter().all(|a| a.buffered() == 0 && !a.is_held())
    }

    /// Fires after which a checkpoint falls due by count (None: no count
    /// policy): a run must stop there, so that the checkpoint is taken where
    /// the ordinary path would take it.
    pub fn fires_until_checkpoint(&self) -> Option<u64> {
        let every = self.config.checkpoint_fires;
        (every > 0).then(|| {
            let since = self.metrics.fires.load(Relaxed) - self.checkpointed_fires;
            every.saturating_sub(since).max(1)
        })
    }

    /// The bookkeeping of a run that went through (see the module docs):
    /// sequence numbers, counters, the input cache, fire ids.
    pub fn chain_ran(&mut self, run: Run<V>) -> ChainRan {
        let Run { acc, taken, fired, last, started, ended } = run;
        let trigger = match self.plan.inputs[acc] {
            InputStrategy::Sequential => Trigger::Boundary(acc),
            _ => Trigger::Criteria,
        };
        let run = AccRun { suppressed: taken - fired, boundaries: fired, last };
        self.book(std::iter::once((acc, run)), fired, trigger, started, ended)
    }

    /// Like [`Processor::chain_ran`], for a run of several accumulators'
    /// events (`push_pairs`): `accs` by index. Under `when_all`, boundaries
    /// taken before every member had one fired nothing (`fired` counts fires).
    /// The fires' triggers are the host's to tell.
    pub fn chain_ran_each(&mut self, accs: Vec<AccRun<V>>, fired: u64, started: Ticks, ended: Ticks) -> ChainRan {
        self.book(accs.into_iter().enumerate(), fired, Trigger::Criteria, started, ended)
    }

    /// `accs`: `(accumulator, its part)` for the accumulators that took part.
    fn book(
        &mut self,
        accs: impl IntoIterator<Item = (usize, AccRun<V>)>,
        fired: u64,
        trigger: Trigger,
        started: Ticks,
        ended: Ticks,
    ) -> ChainRan {
        let stamp = self.anchor.stamp(started);
        let ran = ChainRan { first_fire: self.next_fire_id, trigger, started_at: stamp.wall };
        let mut taken = 0;
        for (acc, run) in accs {
            taken += run.suppressed + run.boundaries;
            let m = &self.metrics.accumulators[acc];
            add(&m.events, run.suppressed + run.boundaries);
            add(&m.suppressed, run.suppressed);
            add(&m.boundaries, run.boundaries);
            if run.boundaries > 0 {
                m.last_boundary.store(ended, Relaxed);
            }
            if let Some(last) = run.last.filter(|_| run.boundaries > 0) {
                self.store(acc, last);
                self.versions[acc] += run.boundaries - 1;
            }
        }
        if taken == 0 {
            return ran;
        }
        if self.unsaved_since.is_none() && self.checkpoints_enabled() {
            self.unsaved_since = Some(self.anchor.clock_at(stamp.since));
        }
        let first_seq = self.next_seq;
        self.next_seq += taken;
        if fired > 0 {
            self.next_fire_id += fired;
            self.latest_seq = first_seq + taken - 1;
            add(&self.metrics.fires, fired);
            // The last fire's start, as far as a run can tell.
            let per_fire = elapsed(started, ended.max(started)) / fired as u32;
            let last_start = per_fire * (fired - 1) as u32;
            self.metrics.last_fired_at_us.store(stamp.wall_us + last_start.as_micros() as u64, Relaxed);
        }
        ran
    }

    /// The event a run stopped at, taken the ordinary way with what already
    /// ran: an accumulator failure is dead-lettered; a node failure is the
    /// first attempt of the boundary's fire (retried and dead-lettered as any
    /// other). Returns the event's sequence number.
    pub fn chain_failed(
        &mut self,
        acc: usize,
        event: V,
        failure: ChainFailure<V, E>,
        calls: &mut dyn Calls<V, E>,
        now: &Now,
    ) -> u64 {
        let seq = self.begin_event(acc, now);
        match failure {
            ChainFailure::Accumulator { error } => self.accumulator_failed(acc, seq, event, error, 1, calls),
            ChainFailure::Refused { error } => {
                let stand_in = calls.stand_in(&event);
                self.refuse(acc, seq, stand_in, error, false, calls);
            }
            ChainFailure::Node { boundary, node, error, detail } => {
                drop(event);
                self.ran = Some(Ran { node, error, detail });
                self.accept(acc, boundary, seq, calls);
                self.settle_inner(calls, now, false);
                debug_assert!(self.ran.is_none(), "the failed fire was reported");
            }
        }
        seq
    }
}

/// Adds `n` to a counter only the processor's holder writes.
impl<V, E> Processor<V, E> {
    /// A run of accumulator `acc`'s events from a batch (thread mode): as
    /// chain runs through the host while the processor is ready for one,
    /// one by one the ordinary way while it is not (after a failure, until
    /// the failed boundary is retried or dead-lettered).
    pub(crate) fn apply_events(&mut self, acc: usize, events: Vec<V>, calls: &mut dyn Calls<V, E>, now: &Now) {
        if self.journal.is_some() {
            self.journal_ahead(events.iter().map(|e| (acc, e)), now, calls);
        }
        let mut events = events.into_iter();
        loop {
            if self.run_ready(acc) && calls.chains(acc) {
                let run: Vec<V> = events.collect();
                if run.is_empty() {
                    return;
                }
                let ChainOutcome { fired, suppressed, last, started, ended, stopped, untaken } =
                    calls.run_chain(acc, run, &self.cache);
                self.taken_ahead(fired + suppressed + u64::from(stopped.is_some()));
                self.chain_ran(Run { acc, taken: fired + suppressed, fired, last, started, ended });
                let went_on = fired + suppressed > 0 || stopped.is_some();
                if let Some((event, failure)) = stopped {
                    self.chain_failed(acc, event, failure, calls, now);
                }
                events = untaken.into_iter();
                if went_on {
                    continue;
                }
            }
            let Some(event) = events.next() else { return };
            self.ingest(acc, Input::Value(event), calls, now);
            self.settle(calls, now);
        }
    }
}

impl<V, E> Processor<V, E> {
    /// A run of several accumulators' events from a batch (thread mode), as
    /// `apply_events` takes one accumulator's: through the host while nothing
    /// waits, one by one the ordinary way while something does.
    pub(crate) fn apply_mixed(&mut self, events: Vec<(usize, V)>, calls: &mut dyn Calls<V, E>, now: &Now) {
        if self.journal.is_some() {
            self.journal_ahead(events.iter().map(|(acc, e)| (*acc, e)), now, calls);
        }
        let mut events = events.into_iter();
        loop {
            if self.run_clean() {
                let run: Vec<(usize, V)> = events.collect();
                if run.is_empty() {
                    return;
                }
                let MixedOutcome { accs, fired, started, ended, stopped, untaken } = calls.run_mixed(run, &self.cache);
                let taken: u64 = accs.iter().map(|a| a.suppressed + a.boundaries).sum();
                self.taken_ahead(taken + u64::from(stopped.is_some()));
                let went_on = stopped.is_some() || accs.iter().any(|a| a.suppressed + a.boundaries > 0);
                self.chain_ran_each(accs, fired, started, ended);
                if let Some((acc, event, failure)) = stopped {
                    self.chain_failed(acc, event, failure, calls, now);
                }
                events = untaken.into_iter();
                if went_on {
                    continue;
                }
            }
            let Some((acc, event)) = events.next() else { return };
            self.ingest(acc, Input::Value(event), calls, now);
            self.settle(calls, now);
        }
    }
}

fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}
