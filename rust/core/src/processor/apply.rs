//! The one meaning of each channel [`Item`], whoever hands it over: the
//! driver loop on the processor thread (thread mode) or the pushing caller
//! (inline mode). The two modes differ only in who calls these.

use crate::channel::Item;
use crate::clock::Now;
use crate::event::Input;
use crate::host::{Calls, CheckpointError};

use super::journaled::Mark;
use super::Processor;

/// What applying items did, for the caller that waits on it.
#[derive(Debug, Default)]
pub struct Applied {
    /// A [`Item::Stop`] was applied: the processor has shut down and taken its
    /// final checkpoint.
    pub stopped: bool,
    /// The outcome of the last checkpoint an item asked for ([`Item::Checkpoint`],
    /// or [`Item::Stop`] with a checkpoint policy); None if none was taken. A
    /// failure was also reported to the host.
    pub checkpoint: Option<Result<(), CheckpointError>>,
}

impl<V, E> Processor<V, E> {
    /// Applies one item, settling what it calls for before returning.
    pub fn apply(&mut self, item: Item<V>, calls: &mut dyn Calls<V, E>, now: &Now) -> Applied {
        let mut applied = Applied::default();
        if self.apply_item(item, &mut applied, calls, now) {
            self.settle_marked(calls, now);
        }
        applied
    }

    /// Settles after events, and records in the journal that it did where a
    /// replay could not tell (latest and burst inputs collapse up to here).
    fn settle_marked(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        self.settle(calls, now);
        if self.journal.is_some() && !self.settles_per_event() {
            self.journal_mark(Mark::Settle, self.time(now));
        }
    }

    /// Applies a run of items in order. Events settle one by one under the
    /// sequential strategy; under latest, a run of events settles once, so that
    /// their updates collapse into one fire. A control item first settles the
    /// events before it: it acts on everything queued ahead of it.
    pub fn apply_batch(
        &mut self,
        items: impl IntoIterator<Item = Item<V>>,
        calls: &mut dyn Calls<V, E>,
        now: &Now,
    ) -> Applied {
        let per_event = self.settles_per_event();
        let mut unsettled = false;
        let mut applied = Applied::default();
        let mut items = items.into_iter().peekable();
        while let Some(item) = items.next() {
            // A run of one accumulator's events that each fire alone may go
            // through the host as a chain run (see `chain`); a lone event
            // gains nothing from one.
            let item = match item {
                // Events of several accumulators interleaved (`push_pairs`):
                // the same, when the host runs such runs.
                Item::Event { acc, input: Input::Value(value) }
                    if per_event && next_is_event_of_another(items.peek(), acc) && calls.chains_mixed() && self.run_clean() =>
                {
                    let mut run = vec![(acc, value)];
                    while let Some(Item::Event { input: Input::Value(_), .. }) = items.peek() {
                        let Some(Item::Event { acc, input: Input::Value(value) }) = items.next() else { unreachable!() };
                        run.push((acc, value));
                    }
                    self.apply_mixed(run, calls, now);
                    continue;
                }
                Item::Event { acc, input: Input::Value(value) }
                    if per_event && next_is_event_of(items.peek(), acc) && calls.chains(acc) && self.run_ready(acc) =>
                {
                    let mut run = vec![value];
                    while let Some(Item::Event { acc: next, input: Input::Value(_) }) = items.peek() {
                        if *next != acc {
                            break;
                        }
                        let Some(Item::Event { input: Input::Value(value), .. }) = items.next() else { unreachable!() };
                        run.push(value);
                    }
                    self.apply_events(acc, run, calls, now);
                    continue;
                }
                item => item,
            };
            // A stamp only sets a replay's clock: it leaves a run of events open.
            let event = matches!(item, Item::Event { .. } | Item::SourceEvent { .. } | Item::Stamp(_));
            if unsettled && !event {
                self.settle_marked(calls, now);
                unsettled = false;
            }
            unsettled |= self.apply_item(item, &mut applied, calls, now);
            if unsettled && per_event {
                self.settle(calls, now);
                unsettled = false;
            }
        }
        if unsettled {
            self.settle_marked(calls, now);
        }
        applied
    }

    /// What one item means. Returns true for an event: taken in, not yet
    /// settled (the caller decides when).
    #[inline]
    fn apply_item(&mut self, item: Item<V>, applied: &mut Applied, calls: &mut dyn Calls<V, E>, now: &Now) -> bool {
        match item {
            Item::Event { acc, input } => {
                self.ingest(acc, input, calls, now);
                return true;
            }
            Item::SourceEvent { acc, input, position } => {
                self.ingest_from_source(acc, input, *position, calls, now);
                return true;
            }
            Item::Fire => {
                self.fire_manual(calls, now);
            }
            // Asked for explicitly: taken whatever the policy (the host asks
            // only when it has somewhere to put it).
            Item::Checkpoint => applied.checkpoint = Some(self.checkpoint(calls)),
            Item::Pause(paused) => self.set_paused(paused, calls, now),
            Item::Advance(t) => self.advance(t, calls),
            Item::Stamp(t) => self.stamp(t),
            // What it stands for happened before it was applied (see `apply_batch`).
            Item::Settle => {}
            Item::Stop => {
                self.shutdown(calls, now);
                applied.checkpoint = self.checkpoints_enabled().then(|| self.checkpoint(calls));
                applied.stopped = true;
            }
        }
        false
    }

    /// Between runs of items (thread mode, after each batch): flushes batches
    /// and retries whose time has come, then checkpoints if the policy says so.
    pub fn on_idle(&mut self, calls: &mut dyn Calls<V, E>) {
        let now = self.now();
        self.on_timer(calls, &now);
        self.checkpoint_if_due(calls, &now);
    }

    /// Checkpoints if the policy calls for one now. A failure was reported to
    /// the host (and the next try comes at the policy's pace).
    #[inline]
    pub fn checkpoint_if_due(&mut self, calls: &mut dyn Calls<V, E>, now: &Now) {
        if self.checkpoint_due(now) {
            let _ = self.checkpoint(calls);
        }
    }
}

fn next_is_event_of<V>(next: Option<&Item<V>>, acc: usize) -> bool {
    matches!(next, Some(Item::Event { acc: a, input: Input::Value(_) }) if *a == acc)
}

fn next_is_event_of_another<V>(next: Option<&Item<V>>, acc: usize) -> bool {
    matches!(next, Some(Item::Event { acc: a, input: Input::Value(_) }) if *a != acc)
}
