//! The processor: accumulators → reactor → graph, for one graph.
//!
//! It owns every piece of mutable engine state (accumulator buffers, the input
//! cache, dirty flags, the sequential queue) and is driven by exactly one thread
//! at a time: the driver loop in thread mode, the pushing caller in inline mode.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

mod apply;
mod chain;
mod journaled;
mod timed;
mod values;
mod state;

pub use crate::clock::{Now, Time};
use crate::clock::Anchor;
use timed::Timed;
pub use crate::event::{Input, SourcePosition};
pub use apply::Applied;
pub use journaled::{seal_payload, PAYLOAD_JSON, PAYLOAD_MSGPACK, PAYLOAD_VALUE};
use journaled::Mark;
pub use chain::{AccRun, ChainFailure, ChainRan, Run as ChainRun};

use crate::accumulator::{AccState, Flushed, Taken};
use crate::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::executor::{Executor, Recording};
use crate::host::{Calls, FireRecord, NodeFailure, Report, Trigger, Unsupported};
use crate::metrics::{bump, Health, Metrics};
use crate::plan::Plan;
use crate::spec::{AccKind, CriteriaKind, InputStrategy};

/// How the processor treats failing fires.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Tries of the same inputs before a sequential boundary is dead-lettered
    /// (and before timer retries of a latest fire stop until new data arrives).
    pub max_attempts: u32,
    /// Delay before a timer-driven retry (thread mode). New arrivals retry at once.
    pub retry_backoff: Duration,
    /// Dead-letter entries kept; older ones are dropped and counted.
    pub dead_letter_limit: usize,
    /// Checkpoint after this many fires (0: not by count).
    pub checkpoint_fires: u64,
    /// Checkpoint this long after the first unsaved change (None: not by time).
    pub checkpoint_interval: Option<Duration>,
    /// Check every value that would enter checkpointed state when its event is
    /// taken, and refuse that event alone if one cannot be checkpointed (see
    /// [`Report::Refused`]), instead of failing every later checkpoint.
    pub check_checkpointable: bool,
    /// Time each node of every fire (`FireDetail::node_ns`).
    pub profile: bool,
    /// Run on a simulated clock starting at this time instead of the wall
    /// clock: time moves only by [`Item::Advance`](crate::channel::Item),
    /// which first runs every timer due on the way, in time order.
    pub simulated: Option<Time>,
    /// Keep the accumulator values each fire's nodes received (`FireDetail::inputs`).
    pub record_inputs: bool,
    /// Replaying a journal: latest and burst inputs settle where the journal
    /// says the live processor settled ([`Item::Settle`](crate::channel::Item)),
    /// not after each event as a simulated clock otherwise makes them.
    pub settle_as_recorded: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_attempts: 3,
            retry_backoff: Duration::from_millis(100),
            dead_letter_limit: 10_000,
            checkpoint_fires: 0,
            checkpoint_interval: None,
            check_checkpointable: false,
            profile: false,
            simulated: None,
            record_inputs: false,
            settle_as_recorded: false,
        }
    }
}

/// A boundary accepted and not yet taken up: a sequential one waiting for its
/// fire, or any other accepted behind one (it must not be seen before it).
struct Pending<V> {
    acc: usize,
    value: V,
    seq: u64,
    attempts: u32,
}

pub struct Processor<V, E> {
    plan: Arc<Plan>,
    config: Config,
    accs: Vec<AccState<V>>,
    /// The latest boundary of every accumulator (the reactor's input cache).
    cache: Vec<Option<V>>,
    /// Bumped each time a boundary is stored in `cache` (change cutoff).
    versions: Vec<u64>,
    /// Latest strategy: criteria members updated since the last successful fire.
    dirty: Vec<bool>,
    any_dirty: bool,
    /// Criteria members without a value yet (`when_all` waits for zero).
    missing: usize,
    /// Sequential boundaries, and every boundary accepted behind one, in
    /// acceptance order.
    queue: VecDeque<Pending<V>>,
    /// Burst inputs: every boundary accepted since the last successful fire,
    /// oldest first (empty for other inputs).
    burst: Vec<Vec<V>>,
    /// Entries in all burst lists (part of the `pending` metric).
    burst_pending: usize,
    /// The burst accumulators, whose list a fire delivers instead of the cache.
    burst_accs: Vec<usize>,
    executor: Executor<V>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<DeadLetters<V>>,
    next_fire_id: u64,
    next_seq: u64,
    /// Latest strategy: newest event reflected in the dirty inputs.
    latest_seq: u64,
    /// Latest strategy: failed tries of the current dirty inputs.
    attempts: u32,
    retry_at: Option<Time>,
    /// Wall clock and monotonic clock read together once, so that a fire's
    /// wall-clock start costs no second clock read; or the simulated time.
    anchor: Anchor,
    /// Stream sources: (accumulator, topic, partition) -> next offset to read,
    /// for every message already taken into accumulator state.
    positions: BTreeMap<(usize, String, i32), i64>,
    /// While paused, boundaries are accepted and cached but nothing fires.
    paused: bool,
    /// Time-based criteria (see [`crate::spec::CriteriaSpec`]).
    timed: Timed,
    /// Under a simulated clock, each polling accumulator's next poll (the
    /// processor polls on its own timers; on the wall clock a poller does).
    polls: Vec<Option<Time>>,
    /// Where every input is recorded, if anywhere.
    journal: Option<Arc<crate::journal::JournalWriter>>,
    /// The payload of the event being recorded (kept to reuse its allocation).
    journal_buf: Vec<u8>,
    /// Events of a batch's run recorded before the run: the next this many
    /// events taken are not recorded again.
    journaled_ahead: usize,
    /// Fires at the last checkpoint, and whether anything changed since.
    checkpointed_fires: u64,
    unsaved_since: Option<Time>,
    /// A fire the host already ran (a chain run's failing one): the next
    /// fire reports this failure instead of running the nodes again.
    ran: Option<Ran<V, E>>,
    _error: PhantomData<fn() -> E>,
}

impl<V, E> Processor<V, E> {
    pub fn new(plan: Arc<Plan>, config: Config) -> Self {
        let accs: Vec<AccState<V>> = plan.accumulators.iter().map(AccState::new).collect();
        let mut metrics = Metrics::new(accs.len());
        metrics.simulated = config.simulated.is_some();
        metrics.origin.store(metrics.stamp(config.simulated), Relaxed);
        metrics.sim_now.store(config.simulated.unwrap_or_default().as_nanos(), Relaxed);
        for (m, spec) in metrics.accumulators.iter().zip(&plan.accumulators) {
            m.max_age_ns.store(spec.max_age.map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64), Relaxed);
            m.set_health(match spec.kind {
                AccKind::Polling { .. } => Health::Starting,
                _ => Health::SocketOnly,
            });
        }
        let n = accs.len();
        let burst_accs = (0..n).filter(|&i| plan.inputs[i] == InputStrategy::Burst).collect();
        let start = config.simulated.unwrap_or_else(crate::clock::wall_now);
        let polls = plan
            .accumulators
            .iter()
            .map(|a| matches!(a.kind, AccKind::Polling { .. }).then_some(start).filter(|_| config.simulated.is_some()))
            .collect();
        let timed = Timed { next_tick: plan.criteria.every.map(|every| start + every), ..Timed::default() };
        Processor {
            missing: plan.criteria.member.iter().filter(|m| **m).count(),
            executor: Executor::new(&plan, Recording { profile: config.profile, inputs: config.record_inputs }),
            dead_letters: Arc::new(DeadLetters::new(config.dead_letter_limit)),
            metrics: Arc::new(metrics),
            plan,
            config,
            accs,
            cache: (0..n).map(|_| None).collect(),
            versions: vec![0; n],
            dirty: vec![false; n],
            any_dirty: false,
            queue: VecDeque::new(),
            burst: (0..n).map(|_| Vec::new()).collect(),
            burst_pending: 0,
            burst_accs,
            next_fire_id: 1,
            next_seq: 1,
            latest_seq: 0,
            attempts: 0,
            retry_at: None,
            anchor: Anchor::new(config.simulated),
            positions: BTreeMap::new(),
            paused: false,
            timed,
            polls,
            journal: None,
            journal_buf: Vec::new(),
            journaled_ahead: 0,
            checkpointed_fires: 0,
            unsaved_since: None,
            ran: None,
            _error: PhantomData,
        }
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn dead_letters(&self) -> &Arc<DeadLetters<V>> {
        &self.dead_letters
    }

    /// Whether each event should be settled as it arrives (some input is
    /// sequential), or a whole batch at once so that its updates collapse into
    /// one fire (latest and burst inputs only).
    pub fn settles_per_event(&self) -> bool {
        // Under a simulated clock, so that a batch's fires do not depend on
        // how the events happened to be batched: the same events at the same
        // times give the same fires in either mode.
        self.plan.any_sequential || (self.anchor.simulated().is_some() && !self.config.settle_as_recorded)
    }

    /// The cached boundary of every accumulator.
    pub fn cache(&self) -> &[Option<V>] {
        &self.cache
    }

    /// Events buffered in a batch accumulator.
    pub fn buffered(&self, acc: usize) -> usize {
        self.accs[acc].buffered()
    }

    /// The runtime's clock as its callers should read it: the wall clock,
    /// lazily, or the simulated time.
    pub fn now(&self) -> Now {
        self.anchor.simulated().map_or_else(Now::lazy, Now::at)
    }

    /// The time `now` stands for: the wall clock's, or the simulated time
    /// whatever `now` says (so that a caller's stale reading cannot move it).
    #[inline]
    fn time(&self, now: &Now) -> Time {
        self.anchor.simulated().unwrap_or_else(|| now.get())
    }

    /// The simulated time, or None when the processor follows the wall clock.
    pub fn simulated(&self) -> Option<Time> {
        self.anchor.simulated()
    }

    /// When the driver should wake for [`Processor::on_timer`] by the wall
    /// clock. Never under a simulated clock, whose timers run as time is advanced.
    pub fn wall_deadline(&self) -> Option<std::time::Instant> {
        match self.anchor.simulated() {
            Some(_) => None,
            None => self.next_deadline().map(crate::clock::instant_of),
        }
    }

    /// The next time at which [`Processor::on_timer`] has work: a batch flush
    /// deadline, a retry after backoff or a checkpoint by interval.
    pub fn next_deadline(&self) -> Option<Time> {
        let flush = self.accs.iter().filter_map(AccState::flush_due).min();
        let checkpoint = match (self.unsaved_since, self.config.checkpoint_interval) {
            (Some(since), Some(every)) => Some(since + every),
            _ => None,
        };
        // While paused nothing fires, so the reactor's own times wait too
        // (a due one would wake the driver for nothing, again and again).
        let reactor = match self.paused {
            true => [None; 3],
            false => [self.retry_at, self.criteria_due(), self.timed.next_tick],
        };
        let polls = self.polls.iter().flatten().min().copied();
        [flush, checkpoint, polls].into_iter().chain(reactor).flatten().min()
    }

    /// Takes one event into accumulator `acc`. Returns the event's sequence number.
    /// Fires happen in [`Processor::settle`].
    pub fn ingest(&mut self, acc: usize, input: Input<V>, calls: &mut dyn Calls<V, E>, now: &Now) -> u64 {
        self.ingest_at(acc, input, None, calls, now)
    }

    fn ingest_at(
        &mut self,
        acc: usize,
        input: Input<V>,
        position: Option<&SourcePosition>,
        calls: &mut dyn Calls<V, E>,
        now: &Now,
    ) -> u64 {
        if self.journal.is_some() {
            self.journal_event(acc, &input, position, now, calls);
        }
        let seq = self.begin_event(acc, now);
        let event = match input {
            Input::Value(v) => v,
            Input::Bytes { data, codec } => match calls.decode(acc, &data, codec) {
                Ok(v) => v,
                Err(error) => {
                    let text = calls.describe(&error);
                    self.metrics.accumulators[acc].record_error(text);
                    // `position` holds the next offset; report the message's own.
                    let position = position.map(|p| SourcePosition { offset: p.offset - 1, ..p.clone() });
                    calls.report(Report::DecodeFailed { acc, seq, error, data, position });
                    return seq;
                }
            },
        };
        let simulated;
        let now = match self.anchor.simulated() {
            Some(t) => {
                simulated = Now::at(t);
                &simulated
            }
            None => now,
        };
        match self.accs[acc].take(acc, event, self.config.check_checkpointable, calls, now) {
            Taken::Emit(boundary) => self.accept(acc, boundary, seq, calls),
            Taken::Suppressed => {
                bump(&self.metrics.accumulators[acc].suppressed);
            }
            Taken::Buffered { full } => {
                self.metrics.accumulators[acc].buffered.store(self.accs[acc].buffered(), Relaxed);
                if full {
                    self.flush(acc, seq, calls);
                }
            }
            Taken::Failed { event, error } => {
                self.accumulator_failed(acc, seq, event, error, 1, calls);
            }
            Taken::Refused { event, error } => {
                let stand_in = calls.stand_in(&event);
                self.refuse(acc, seq, stand_in, error, false, calls);
            }
        }
        seq
    }

    /// An event arrives: its sequence number, counted.
    fn begin_event(&mut self, acc: usize, now: &Now) -> u64 {
        let seq = self.take_seq();
        if self.unsaved_since.is_none() && self.checkpoints_enabled() {
            self.unsaved_since = Some(self.time(now));
        }
        bump(&self.metrics.accumulators[acc].events);
        seq
    }

    /// Like [`Processor::ingest`], for a message from a stream source: once it is
    /// taken in, `position` (its offset: the next one to read) is what a
    /// checkpoint saves.
    pub fn ingest_from_source(
        &mut self,
        acc: usize,
        input: Input<V>,
        position: SourcePosition,
        calls: &mut dyn Calls<V, E>,
        now: &Now,
    ) -> u64 {
        let seq = self.ingest_at(acc, input, Some(&position), calls, now);
        let SourcePosition { topic, partition, offset: next } = position;
        let slot = self.positions.entry((acc, topic, partition)).or_insert(next);
        *slot = (*slot).max(next);
        seq
    }

    /// Pauses or resumes firing. Resuming fires for whatever was accepted meanwhile.
    pub fn set_paused(&mut self, paused: bool, calls: &mut dyn Calls<V, E>, now: &Now) {
        self.journal_mark(Mark::Pause(paused), self.time(now));
        self.paused = paused;
        self.metrics.paused.store(paused, Relaxed);
        if self.unsaved_since.is_none() && self.checkpoints_enabled() {
            self.unsaved_since = Some(self.time(now));
        }
        if !paused {
            // Ticks that came due while paused are skipped, not fired in a burst.
            self.skip_ticks_to(self.time(now));
            self.settle_inner(calls, now, false);
        }
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Fires for whatever the accepted boundaries call for.
    pub fn settle(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        self.settle_inner(calls, now, false);
    }

    /// Fires once on the current inputs, whatever the criteria say. Returns the
    /// sequence number the fire is reported with.
    pub fn fire_manual(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) -> u64 {
        self.journal_mark(Mark::Fire, self.time(now));
        let seq = self.take_seq();
        let ok = self
            .run(Fire { trigger: Trigger::Manual, seq, attempt: 1, dead_letter_on_failure: false }, false, calls)
            .is_ok();
        if ok {
            self.clear_dirty();
            self.flush_batches(seq, calls);
        }
        self.settle_inner(calls, now, false);
        seq
    }

    /// Flushes batches whose interval has run out and retries after backoff.
    /// Under a simulated clock timers run only as [`Processor::advance`]
    /// moves time, so this does nothing.
    pub fn on_timer(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        if self.anchor.simulated().is_some() {
            return;
        }
        // A replay steps its clock here and runs the same timers.
        if self.journal.is_some() {
            let t = self.time(now);
            if self.next_deadline().is_some_and(|due| due <= t) {
                self.journal_mark(Mark::Advance, t);
            }
        }
        self.run_timers(calls, now);
    }

    /// A simulated clock moves to `t`: first every timer due on the way runs,
    /// in time order, each at its own time (the clock reads that time while it
    /// runs); then the clock reads `t`. Time never goes back: a `t` before the
    /// clock's time leaves it where it is. Under the wall clock, an event's own
    /// time moves nothing, and this does nothing.
    pub fn advance(&mut self, t: Time, calls: &mut dyn Calls<V, E>) {
        let Some(mut at) = self.anchor.simulated() else { return };
        self.journal_mark(Mark::Advance, t);
        while let Some(due) = self.next_deadline().filter(|due| *due <= t) {
            at = at.max(due);
            self.set_sim_time(at);
            let now = Now::at(at);
            self.run_timers(calls, &now);
            self.checkpoint_if_due(calls, &now);
            // What is still due now cannot run at this time (paused, or a
            // retry with no backoff): it waits for the next advance rather
            // than spin here.
            if self.next_deadline().is_some_and(|due| due <= at) {
                break;
            }
        }
        self.set_sim_time(t);
    }

    /// A simulated clock reads `t` (never back) without running the timers
    /// due by then ([`Item::Stamp`](crate::channel::Item::Stamp)).
    pub fn stamp(&mut self, t: Time) {
        self.set_sim_time(t);
    }

    /// Moves the simulated clock (never back) and shows readers its time.
    fn set_sim_time(&mut self, t: Time) {
        self.anchor.set_simulated(t);
        if let Some(now) = self.anchor.simulated() {
            self.metrics.sim_now.store(now.as_nanos(), Relaxed);
        }
    }

    fn run_timers(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        for acc in 0..self.accs.len() {
            if self.accs[acc].flush_due().is_some_and(|due| due <= self.time(now)) {
                let seq = self.take_seq();
                self.flush(acc, seq, calls);
            }
        }
        self.poll_due(calls, now);
        self.tick_if_due(calls, now);
        self.settle_inner(calls, now, true);
    }

    /// Stopping. Without a store, batch buffers are flushed (and fired for),
    /// since nothing else would keep those events. With one, they are left for
    /// the final checkpoint, so a restart continues exactly where this run stopped.
    pub fn shutdown(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        if !self.checkpoints_enabled() {
            let seq = self.take_seq();
            self.flush_batches(seq, calls);
        }
        self.settle_inner(calls, now, false);
    }

    /// The sequence number the next `ingest` or `fire_manual` will use.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn accept(&mut self, acc: usize, value: V, seq: u64, calls: &mut dyn Calls<V, E>) {
        let m = &self.metrics.accumulators[acc];
        bump(&m.boundaries);
        m.last_boundary.store(self.metrics.stamp(self.anchor.simulated()), Relaxed);
        // A sequential boundary waits for its own fire; any boundary accepted
        // behind one waits too, so that its fire sees the inputs as of its
        // acceptance. With nothing queued, latest and burst boundaries take
        // effect at once (the common path: no queue at all).
        if self.plan.inputs[acc] == InputStrategy::Sequential || !self.queue.is_empty() {
            self.queue.push_back(Pending { acc, value, seq, attempts: 0 });
            self.set_pending();
        } else {
            self.take_effect(acc, value, seq, calls);
        }
    }

    /// A latest or burst boundary takes effect: it becomes the cached value (a
    /// burst one is also appended to the list the next fire delivers) and, for
    /// a criteria member, calls for a fire that collapses every such update.
    fn take_effect(&mut self, acc: usize, value: V, seq: u64, calls: &mut dyn Calls<V, E>) {
        if self.plan.inputs[acc] == InputStrategy::Burst {
            let newest = calls.share(&value);
            self.burst[acc].push(value);
            self.burst_pending += 1;
            self.set_pending();
            self.store(acc, newest);
        } else {
            self.store(acc, value);
        }
        if self.plan.criteria.member[acc] {
            self.dirty[acc] = true;
            self.any_dirty = true;
            self.timed.touched = true;
            self.latest_seq = seq;
            self.attempts = 0;
            self.retry_at = None;
        }
    }

    fn set_pending(&self) {
        self.metrics.pending.store(self.queue.len() + self.burst_pending, Relaxed);
    }

    fn store(&mut self, acc: usize, value: V) {
        if self.cache[acc].is_none() && self.plan.criteria.member[acc] {
            self.missing -= 1;
        }
        self.cache[acc] = Some(value);
        self.versions[acc] += 1;
    }

    /// After a successful fire: every boundary in the cache has been seen,
    /// and every burst list delivered.
    fn clear_dirty(&mut self) {
        if self.any_dirty {
            self.dirty.fill(false);
            self.any_dirty = false;
        }
        if self.burst_pending > 0 {
            for list in &mut self.burst {
                list.clear();
            }
            self.burst_pending = 0;
            self.set_pending();
        }
        for i in 0..self.accs.len() {
            // A held batch whose boundary still waits in the queue was not seen.
            if self.accs[i].is_held() && !self.queue.iter().any(|p| p.acc == i) {
                self.accs[i].release();
            }
        }
        self.attempts = 0;
        // A failing sequential head keeps its retry time.
        if self.queue.is_empty() {
            self.retry_at = None;
        }
    }

    /// A timer tick retries failed inputs only once their backoff has passed;
    /// new arrivals retry at once.
    fn backing_off(&self, timer: bool, attempts: u32, now: &Now) -> bool {
        timer && attempts > 0 && self.retry_at.is_none_or(|t| t > self.time(now))
    }

    /// Sequential boundaries fire first, in order, each taking along the latest
    /// and burst updates accepted before it. What is left (updates with no
    /// sequential boundary behind them) collapses into one fire.
    fn settle_inner(&mut self, calls: &mut dyn Calls<V, E>, now: &Now, timer: bool) {
        if self.paused {
            return;
        }
        loop {
            self.pump(calls, now, timer);
            // A sequential head still waiting (failed, backing off) keeps
            // everything accepted after it waiting too.
            if !self.queue.is_empty() || !self.settle_latest(calls, now, timer) {
                break;
            }
        }
    }

    /// One fire for the latest and burst updates if the criteria are met.
    /// Returns true when it succeeded and the batch flush that follows
    /// produced new boundaries.
    fn settle_latest(&mut self, calls: &mut dyn Calls<V, E>, now: &Now, timer: bool) -> bool {
        if !self.criteria_ready() || self.backing_off(timer, self.attempts, now) || self.time_holds(now) {
            return false;
        }
        let seq = self.latest_seq;
        let attempt = self.attempts + 1;
        let fire = Fire { trigger: Trigger::Criteria, seq, attempt, dead_letter_on_failure: false };
        self.criteria_firing(now);
        let result = self.run(fire, false, calls);
        match result {
            Ok(()) => {
                self.clear_dirty();
                self.flush_batches(seq, calls)
            }
            Err(_) => {
                // The dirty flags stay: the inputs are retried with whatever is newest.
                self.attempts = attempt;
                self.retry_at = (attempt < self.config.max_attempts).then(|| self.time(now) + self.config.retry_backoff);
                false
            }
        }
    }

    /// Fires the queued sequential boundaries in order, each against the
    /// inputs as of its acceptance; latest and burst boundaries queued behind
    /// them take effect as they come up. A failing head stays at the front
    /// (later boundaries wait behind it) until it succeeds or runs out of attempts.
    fn pump(&mut self, calls: &mut dyn Calls<V, E>, now: &Now, timer: bool) {
        while let Some(head) = self.queue.front() {
            let acc = head.acc;
            if self.plan.inputs[acc] != InputStrategy::Sequential {
                let p = self.queue.pop_front().expect("head exists");
                self.take_effect(p.acc, p.value, p.seq, calls);
                continue;
            }
            let member = self.plan.criteria.member[acc];
            let missing_after = self.missing - usize::from(member && self.cache[acc].is_none());
            let fires = member && (self.plan.criteria.kind == CriteriaKind::Any || missing_after == 0);
            if !fires {
                self.pop_into_cache();
                continue;
            }
            if self.backing_off(timer, head.attempts, now) {
                break;
            }
            let attempt = head.attempts + 1;
            let seq = head.seq;
            let last_try = attempt >= self.config.max_attempts;
            let fire = Fire { trigger: Trigger::Boundary(acc), seq, attempt, dead_letter_on_failure: last_try };
            match self.run(fire, true, calls) {
                Ok(()) => {
                    self.pop_into_cache();
                    // It took the latest and burst updates before it along.
                    self.clear_dirty();
                    self.retry_at = None;
                    self.flush_batches(seq, calls);
                }
                Err(text) if last_try => {
                    let head = self.queue.front().expect("head was just fired");
                    let letter = DeadLetter {
                        acc,
                        stage: Stage::Fire,
                        value: calls.share(&head.value),
                        error: text,
                        attempts: attempt,
                        seq: head.seq,
                    };
                    self.dead_letters.push(letter);
                    self.retry_at = None;
                    // Later boundaries still see this one in the cache: it was accepted.
                    self.pop_into_cache();
                }
                Err(_) => {
                    if let Some(head) = self.queue.front_mut() {
                        head.attempts = attempt;
                    }
                    self.retry_at = Some(self.time(now) + self.config.retry_backoff);
                    break;
                }
            }
        }
        self.set_pending();
    }

    /// Runs the graph once; with `head_input`, the sequential queue's head
    /// stands in for its accumulator's cached value.
    fn run(&mut self, fire: Fire, head_input: bool, calls: &mut dyn Calls<V, E>) -> Result<(), String> {
        let newest = self.lend_bursts(calls);
        let override_input = if head_input { self.queue.front().map(|h| (h.acc, &h.value)) } else { None };
        let result = execute(
            &mut self.executor,
            &self.plan,
            &self.cache,
            &self.versions,
            &self.metrics,
            &mut self.next_fire_id,
            &mut self.anchor,
            fire,
            override_input,
            self.ran.take(),
            calls,
        );
        self.return_bursts(newest);
        result
    }

    /// A burst input's nodes see the list of its pending boundaries: built by
    /// the host and put in the cache for the fire (so that a fire reads one
    /// source), the newest boundary set aside to be put back after. Before its
    /// first boundary the input stays `None`; after, it is a list, empty when
    /// nothing arrived since the last successful fire.
    fn lend_bursts(&mut self, calls: &mut dyn Calls<V, E>) -> Vec<(usize, V)> {
        let mut newest = Vec::new();
        for k in 0..self.burst_accs.len() {
            let b = self.burst_accs[k];
            if self.cache[b].is_some() {
                let list = calls.list(&mut self.burst[b].iter());
                if let Some(v) = self.cache[b].replace(list) {
                    newest.push((b, v));
                }
            }
        }
        newest
    }

    fn return_bursts(&mut self, newest: Vec<(usize, V)>) {
        for (b, v) in newest {
            self.cache[b] = Some(v);
        }
    }

    fn pop_into_cache(&mut self) {
        if let Some(p) = self.queue.pop_front() {
            self.store(p.acc, p.value);
        }
    }

    /// After a successful fire every batch accumulator hands over its buffer.
    /// Returns whether any boundary came of it.
    fn flush_batches(&mut self, seq: u64, calls: &mut dyn Calls<V, E>) -> bool {
        let mut emitted = false;
        for acc in 0..self.accs.len() {
            if self.accs[acc].is_batch() {
                emitted |= self.flush(acc, seq, calls);
            }
        }
        emitted
    }

    fn flush(&mut self, acc: usize, seq: u64, calls: &mut dyn Calls<V, E>) -> bool {
        let flushed = self.accs[acc].flush(acc, self.config.check_checkpointable, calls);
        self.metrics.accumulators[acc].buffered.store(self.accs[acc].buffered(), Relaxed);
        match flushed {
            Flushed::Empty => false,
            Flushed::Emit(boundary) => {
                // Only a latest input would overwrite an unfired batch; a burst
                // input keeps every flush in its list, a sequential one queues it.
                if self.plan.inputs[acc] == InputStrategy::Latest {
                    self.accs[acc].hold();
                }
                self.accept(acc, boundary, seq, calls);
                true
            }
            Flushed::Refused { events, error } => {
                self.refuse(acc, seq, events, error, true, calls);
                false
            }
            Flushed::Suppressed => {
                bump(&self.metrics.accumulators[acc].suppressed);
                false
            }
            Flushed::Failed { events, error } => {
                self.accumulator_failed(acc, seq, events, error, 1, calls);
                false
            }
        }
    }

    /// An event (or a batch's result) whose state could not be checkpointed:
    /// counted, kept in the dead-letter list as `kept`, and reported.
    fn refuse(&mut self, acc: usize, seq: u64, kept: V, error: Unsupported, batch: bool, calls: &mut dyn Calls<V, E>) {
        let name = &self.plan.accumulators[acc].name;
        let text = format!("accumulator '{name}': refused, cannot be checkpointed: {}", error.message);
        self.metrics.accumulators[acc].record_refused(text.clone());
        self.dead_letters.push(DeadLetter { acc, stage: Stage::Checkpoint, value: kept, error: text, attempts: 0, seq });
        calls.report(Report::Refused { acc, seq, error, batch });
    }

    fn accumulator_failed(
        &mut self,
        acc: usize,
        seq: u64,
        event: V,
        error: E,
        attempts: u32,
        calls: &mut dyn Calls<V, E>,
    ) {
        let text = calls.describe(&error);
        self.metrics.accumulators[acc].record_error(text.clone());
        self.dead_letters.push(DeadLetter { acc, stage: Stage::Accumulator, value: event, error: text, attempts, seq });
        calls.report(Report::AccumulatorFailed { acc, seq, error });
    }
}

struct Fire {
    trigger: Trigger,
    seq: u64,
    attempt: u32,
    dead_letter_on_failure: bool,
}

/// A fire the host already ran and saw fail (see `chain`).
struct Ran<V, E> {
    node: usize,
    error: E,
    detail: Option<Box<crate::host::FireDetail<V>>>,
}

/// Runs the plan once and reports the outcome. A free function so that the
/// input override can borrow the sequential queue while the executor is mutable.
#[allow(clippy::too_many_arguments)]
fn execute<V, E>(
    executor: &mut Executor<V>,
    plan: &Plan,
    cache: &[Option<V>],
    versions: &[u64],
    metrics: &Metrics,
    next_fire_id: &mut u64,
    anchor: &mut Anchor,
    fire: Fire,
    override_input: Option<(usize, &V)>,
    ran: Option<Ran<V, E>>,
    calls: &mut dyn Calls<V, E>,
) -> Result<(), String> {
    let id = *next_fire_id;
    *next_fire_id += 1;
    if fire.attempt > 1 {
        bump(&metrics.retries);
    }
    let clock = crate::clock::ticks();
    // One subtraction serves the wall-clock start and the metric's microseconds.
    let stamp = anchor.stamp(clock);
    let (started_at, started_us) = (stamp.wall, stamp.wall_us);
    let input = |i: usize| match override_input {
        Some((acc, v)) if acc == i => Some(v),
        _ => cache[i].as_ref(),
    };
    // The queue head is the boundary stored next, so it gets the next version.
    let version = |i: usize| match override_input {
        Some((acc, _)) if acc == i => versions[i] + 1,
        _ => versions[i],
    };
    let (result, detail) = match ran {
        Some(Ran { node, error, detail }) => (Err((node, error)), detail),
        None => (executor.run(plan, input, version, calls), None),
    };
    let duration = crate::clock::elapsed(clock, crate::clock::ticks());
    let detail = detail.or_else(|| executor.take_detail());
    let record = |outputs, failure| FireRecord {
        id,
        trigger: fire.trigger,
        seq: fire.seq,
        outputs,
        failure,
        started_at,
        duration,
        detail,
    };
    match result {
        Ok(outputs) => {
            metrics.record_fire(started_us, None);
            calls.report(Report::Fired(record(outputs, None)));
            Ok(())
        }
        Err((node, error)) => {
            let text = format!("node '{}' raised {}", plan.nodes[node].name, calls.describe(&error));
            metrics.record_fire(started_us, Some(text.clone()));
            let failure = NodeFailure {
                node,
                error,
                attempt: fire.attempt,
                dead_lettered: fire.dead_letter_on_failure,
            };
            calls.report(Report::Fired(record(Default::default(), Some(failure))));
            Err(text)
        }
    }
}
