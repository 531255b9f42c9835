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

use crate::checkpoint::{self, CodecId};
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

/// A record other than an event.
pub(super) enum Mark {
    Advance,
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

    pub(super) fn journal_event(
        &mut self,
        acc: usize,
        input: &Input<V>,
        position: Option<&SourcePosition>,
        now: &Now,
        calls: &mut dyn Calls<V, E>,
    ) {
        let Some(writer) = self.journal.clone() else { return };
        let payload = match input {
            Input::Bytes { data, codec } => {
                let tag = match codec {
                    Codec::Json => PAYLOAD_JSON,
                    Codec::Msgpack => PAYLOAD_MSGPACK,
                };
                let mut payload = Vec::with_capacity(data.len() + 1);
                payload.push(tag);
                payload.extend_from_slice(data);
                payload
            }
            Input::Value(v) => {
                let sealed = calls
                    .to_value(v)
                    .map_err(|e| e.message)
                    .and_then(|value| checkpoint::encode(&value, CodecId::Bincode).map_err(|e| e.to_string()));
                match sealed {
                    Ok(sealed) => {
                        let mut payload = Vec::with_capacity(sealed.len() + 1);
                        payload.push(PAYLOAD_VALUE);
                        payload.extend_from_slice(&sealed);
                        payload
                    }
                    Err(message) => {
                        let name = &self.plan.accumulators[acc].name;
                        self.metrics.journal.unrecorded(format!("accumulator '{name}': event not journaled: {message}"));
                        return;
                    }
                }
            }
        };
        // An event's source position is the next offset to read; the journal
        // keeps the message's own.
        let own = position.map(|p| SourcePosition { offset: p.offset - 1, ..p.clone() });
        let t = self.time(now).as_nanos();
        let written = writer.append_event(acc as u32, t, &payload, own.as_ref());
        self.journal_written(written);
    }

    pub(super) fn journal_mark(&mut self, mark: Mark, t: Time) {
        let Some(writer) = self.journal.clone() else { return };
        let t = t.as_nanos();
        let written = match mark {
            Mark::Advance => writer.append_advance(t),
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
