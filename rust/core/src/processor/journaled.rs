//! Recording what the processor takes in to an input journal
//! ([`crate::journal`]), in the order it takes it: every event as received
//! (with its time and source position), every timer step, manual fire and
//! pause. Replaying the records on a simulated clock runs the same fires.
//!
//! An event's payload starts with a tag saying how to read it back:
//! [`PAYLOAD_VALUE`] (a value pushed as an object, sealed as a checkpoint
//! value is), [`PAYLOAD_JSON`] or [`PAYLOAD_MSGPACK`] (bytes as received).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::clock::{Now, Time};
use crate::event::{Codec, Input, SourcePosition};
use crate::host::Calls;
use crate::journal::{JournalError, JournalWriter};

use super::Processor;

/// A value pushed as an object: a checkpoint value, sealed (bincode).
pub const PAYLOAD_VALUE: u8 = 0;
/// JSON bytes as received.
pub const PAYLOAD_JSON: u8 = 1;
/// MessagePack bytes as received.
pub const PAYLOAD_MSGPACK: u8 = 2;

/// A checkpoint value as a journal payload: the [`PAYLOAD_VALUE`] tag, then
/// the value sealed as a checkpoint component is (bincode).
pub fn seal_payload(value: &crate::checkpoint::Value, out: &mut Vec<u8>) -> Result<(), crate::host::Unsupported> {
    let sealed = crate::checkpoint::encode(value, crate::checkpoint::CodecId::Bincode).map_err(|e| crate::host::Unsupported {
        path: "event".into(),
        type_name: String::new(),
        message: e.to_string(),
    })?;
    out.push(PAYLOAD_VALUE);
    out.extend_from_slice(&sealed);
    Ok(())
}

/// A record other than an event.
pub(super) enum Mark {
    Advance,
    Settle,
    Fire,
    Pause(bool),
}

impl<V, E> Processor<V, E> {
    /// Records every input from now on to `writer`. Chain runs stop: their
    /// events never pass through the processor one by one.
    pub fn set_journal(&mut self, writer: Arc<JournalWriter>) {
        self.journal = Some(writer);
    }

    pub fn journal(&self) -> Option<&Arc<JournalWriter>> {
        self.journal.as_ref()
    }

    /// Records a batch's run of events before it goes to the host as a
    /// chain run (whose events never pass the processor one by one); the
    /// processor then takes the first `events.len()` without recording them
    /// again, however they are taken ([`Processor::taken_ahead`], or one by
    /// one).
    pub(super) fn journal_ahead<'a>(
        &mut self,
        events: impl Iterator<Item = (usize, &'a V)>,
        now: &Now,
        calls: &mut dyn Calls<V, E>,
    ) where
        V: 'a,
    {
        let mut n = 0;
        for (acc, event) in events {
            self.record_value(acc, event, now, calls);
            n += 1;
        }
        self.journaled_ahead += n;
    }

    /// A chain run took `n` events recorded ahead.
    pub(super) fn taken_ahead(&mut self, n: u64) {
        self.journaled_ahead = self.journaled_ahead.saturating_sub(n as usize);
    }

    fn record_value(&mut self, acc: usize, event: &V, now: &Now, calls: &mut dyn Calls<V, E>) {
        let mut payload = std::mem::take(&mut self.journal_buf);
        payload.clear();
        match calls.journal_payload(event, &mut payload) {
            Ok(()) => self.append_event(acc, &payload, None, now),
            Err(e) => {
                let name = &self.plan.accumulators[acc].name;
                self.metrics.journal.unrecorded(format!("accumulator '{name}': event not journaled: {}", e.message));
            }
        }
        self.journal_buf = payload;
    }

    fn append_event(&self, acc: usize, payload: &[u8], position: Option<&SourcePosition>, now: &Now) {
        let Some(writer) = self.journal.as_ref() else { return };
        let t = self.time(now).as_nanos();
        self.journal_written(writer.append_event(acc as u32, t, payload, position));
    }

    /// Records an event the processor is taking (the caller checked that
    /// there is a journal).
    pub(super) fn journal_event(
        &mut self,
        acc: usize,
        input: &Input<V>,
        position: Option<&SourcePosition>,
        now: &Now,
        calls: &mut dyn Calls<V, E>,
    ) {
        if self.journaled_ahead > 0 {
            self.journaled_ahead -= 1;
            return;
        }
        match input {
            Input::Bytes { data, codec } => {
                let mut payload = std::mem::take(&mut self.journal_buf);
                payload.clear();
                payload.push(match codec {
                    Codec::Json => PAYLOAD_JSON,
                    Codec::Msgpack => PAYLOAD_MSGPACK,
                });
                payload.extend_from_slice(data);
                // An event's source position is the next offset to read; the
                // journal keeps the message's own.
                let own = position.map(|p| SourcePosition { offset: p.offset - 1, ..p.clone() });
                self.append_event(acc, &payload, own.as_ref(), now);
                self.journal_buf = payload;
            }
            Input::Value(v) => self.record_value(acc, v, now, calls),
        }
    }

    pub(super) fn journal_mark(&mut self, mark: Mark, t: Time) {
        let Some(writer) = self.journal.clone() else { return };
        let t = t.as_nanos();
        let written = match mark {
            Mark::Advance => writer.append_advance(t),
            Mark::Settle => writer.append_settle(t),
            Mark::Fire => writer.append_fire(t),
            Mark::Pause(paused) => writer.append_pause(t, paused),
        };
        self.journal_written(written);
    }

    fn journal_written(&self, written: Result<u64, JournalError>) {
        let health = &self.metrics.journal;
        match written {
            Ok(_) => health.failing.store(false, Relaxed),
            Err(e) => health.failed(e.to_string()),
        }
    }
}
