//! Time-based criteria: `debounce` (fire once the members have been quiet
//! for a while), `throttle` (at most one fire per window, the first at once
//! and the rest collapsed into one trailing fire at the window's end) and
//! `every` (also fire on a schedule). They hold or add fires of the latest
//! and burst path; the times come from the runtime's clock, so they run in
//! simulated time as in real time.

use crate::clock::{Now, Time};
use crate::event::Input;
use crate::host::{Calls, Trigger};
use crate::metrics::Health;
use crate::spec::{AccKind, CriteriaKind};

use super::{Fire, Processor};

/// The reactor's times, beside its flags.
#[derive(Debug, Default)]
pub(super) struct Timed {
    /// A member took a new boundary since the last settle: the debounce
    /// quiet period starts again at that settle.
    pub touched: bool,
    /// Debounce: when the members will have been quiet long enough.
    pub quiet_until: Option<Time>,
    /// Throttle: the end of the window the last criteria fire opened.
    pub window_end: Option<Time>,
    /// Every: the next scheduled fire.
    pub next_tick: Option<Time>,
}

impl<V, E> Processor<V, E> {
    /// The criteria are met by the dirty inputs (whatever time says).
    pub(super) fn criteria_ready(&self) -> bool {
        self.any_dirty && (self.plan.criteria.kind == CriteriaKind::Any || self.missing == 0)
    }

    /// When a fire that debounce or throttle holds back comes due; None when
    /// none is held (nothing ready, or a retry's own time governs it).
    pub(super) fn criteria_due(&self) -> Option<Time> {
        if !self.criteria_ready() || self.attempts > 0 {
            return None;
        }
        self.timed.quiet_until.or(self.timed.window_end)
    }

    /// Whether debounce or throttle holds back a fire the criteria call for
    /// now. A retry of a failed fire is not held again.
    pub(super) fn time_holds(&mut self, now: &Now) -> bool {
        let criteria = &self.plan.criteria;
        if criteria.debounce.is_none() && criteria.throttle.is_none() {
            return false;
        }
        let t = self.time(now);
        if let Some(quiet) = criteria.debounce {
            if std::mem::take(&mut self.timed.touched) {
                self.timed.quiet_until = Some(t + quiet);
            }
        }
        if self.attempts > 0 {
            return false;
        }
        let until = self.timed.quiet_until.or(self.timed.window_end);
        until.is_some_and(|until| until > t)
    }

    /// A criteria fire starts: the quiet period is over, and a throttle
    /// window opens.
    pub(super) fn criteria_firing(&mut self, now: &Now) {
        self.timed.quiet_until = None;
        if let Some(window) = self.plan.criteria.throttle {
            self.timed.window_end = Some(self.time(now) + window);
        }
    }

    /// Under a simulated clock: polls every polling accumulator whose poll is
    /// due and takes the result as the poller's push would be taken (None or
    /// an unchanged value emits nothing); a raising poll is counted and marks
    /// the accumulator disconnected until a poll succeeds.
    pub(super) fn poll_due(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        let t = self.time(now);
        for acc in 0..self.polls.len() {
            let (Some(due), AccKind::Polling { interval }) = (self.polls[acc], &self.plan.accumulators[acc].kind) else {
                continue;
            };
            if due > t {
                continue;
            }
            let interval = (*interval).max(std::time::Duration::from_nanos(1));
            let mut next = due + interval;
            while next <= t {
                next = next + interval;
            }
            self.polls[acc] = Some(next);
            match calls.poll(acc) {
                Ok(value) => {
                    self.metrics.accumulators[acc].set_health(Health::Live);
                    self.ingest(acc, Input::Value(value), calls, now);
                    self.settle(calls, now);
                }
                Err(error) => {
                    let name = &self.plan.accumulators[acc].name;
                    let text = format!("poll of accumulator '{name}' raised {}", calls.describe(&error));
                    let m = &self.metrics.accumulators[acc];
                    m.record_error(text);
                    m.set_health(Health::Disconnected);
                }
            }
        }
    }

    /// Moves the schedule to its first tick after `t`.
    pub(super) fn skip_ticks_to(&mut self, t: Time) {
        let (Some(every), Some(mut next)) = (self.plan.criteria.every, self.timed.next_tick) else { return };
        while next <= t {
            next = next + every;
        }
        self.timed.next_tick = Some(next);
    }

    /// Fires on the schedule if a tick is due: once, however many ticks the
    /// wall clock skipped (the next tick is the first one still ahead); under
    /// a simulated clock each tick comes due at its own time.
    pub(super) fn tick_if_due(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        let Some(tick) = self.timed.next_tick else { return };
        let t = self.time(now);
        if tick > t || self.paused {
            return;
        }
        self.skip_ticks_to(t);
        if self.plan.criteria.kind == CriteriaKind::All && self.missing > 0 {
            return;
        }
        let seq = self.take_seq();
        let fire = Fire { trigger: Trigger::Schedule, seq, attempt: 1, dead_letter_on_failure: false };
        if self.run(fire, false, calls).is_ok() {
            // It saw the newest values: nothing is held back any more.
            self.timed.quiet_until = None;
            self.clear_dirty();
            self.flush_batches(seq, calls);
        }
    }
}
