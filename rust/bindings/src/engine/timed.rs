//! Events that carry their time, and moving a simulated clock: an event at
//! `t` is an [`Item::Advance`] to `t` (which runs the timers due before it)
//! followed by the event, both handed over in one crossing.

use std::sync::atomic::Ordering::SeqCst;

use pyo3::prelude::*;
use pyo3::types::PyString;

use headrace_core::channel::Item;
use headrace_core::clock::Time;
use headrace_core::event::Input;

use super::{Engine, Value};
use crate::calls::InlineOutcome;
use crate::errors::Error;
use crate::mode::{Fires, Wait};
use crate::time::to_time;

impl Engine {
    /// `at` as a time on this runtime's simulated clock, which it moves
    /// forward; a `SettingError` under the wall clock, whose time no event
    /// can move.
    pub(super) fn event_time(&self, at: &Bound<'_, PyAny>) -> Result<Time, Error> {
        if self.sim_time.is_none() {
            return Err(Error::Setting {
                what: "at".into(),
                message: format!(
                    "graph '{}': at= needs a simulated clock (Runtime(graph, clock=headrace.SimClock(...))); under the wall clock an event's time is when it is pushed",
                    self.graph
                ),
            });
        }
        let t = to_time(at, "at")?;
        self.clock_reaches(t);
        Ok(t)
    }

    /// The simulated clock's newest time is at least `t` (what `clock_time`
    /// and the `SimClock` read); nothing under the wall clock.
    pub(super) fn clock_reaches(&self, t: Time) {
        if let Some(clock) = &self.sim_time {
            clock.fetch_max(t.as_nanos(), SeqCst);
        }
    }

    /// Moves the simulated clock to `t`, running the timers due on the way.
    /// Inline, a failure of a timer's fire is logged, not raised, as thread
    /// mode does: it is not the caller's event (and a clock moves every
    /// runtime on it), and like any fire it reaches `on_fire`, the counters
    /// and the dead letters.
    pub(super) fn advance_to(&self, py: Python<'_>, t: Time, wait: Wait) -> Result<(), Error> {
        let mut out = InlineOutcome::new();
        match self.submit(py, Item::Advance(t), wait, &mut out) {
            Err(Error::Python(e)) if crate::errors::is_fire_failure(py, &e) => {
                crate::errors::log(py, "warning", &format!("graph '{}': a timer's fire failed: {e}", self.graph));
                Ok(())
            }
            other => other,
        }
    }

    /// A journal's records as items: `(kind, time_ns, accumulator, payload)`
    /// as `headrace.journal` reads them. An event's payload tag says how it
    /// reads back (`processor::PAYLOAD_*`); every record is first stamped
    /// with its time, except a timer step, which advances to it.
    pub(super) fn recorded_items(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<Vec<Item<Value>>> {
        let mut items = Vec::new();
        for record in records.try_iter()? {
            let (kind, t, acc, payload): (String, i64, Option<Bound<'_, PyString>>, Vec<u8>) = record?.extract()?;
            let t = Time::from_nanos(t);
            if kind == "advance" {
                items.push(Item::Advance(t));
                continue;
            }
            items.push(Item::Stamp(t));
            items.push(match kind.as_str() {
                "event" => {
                    let name = acc.ok_or_else(|| Error::Setting { what: "record".into(), message: "an event record names no accumulator".into() })?;
                    let acc = self.acc_index_of(&name)?;
                    Item::Event { acc, input: recorded_input(py, &payload)? }
                }
                "settle" => Item::Settle,
                "fire" => Item::Fire,
                "pause" => Item::Pause(payload.first() == Some(&1)),
                other => {
                    return Err(Error::Setting { what: "record".into(), message: format!("unknown journal record kind '{other}'") }.into())
                }
            });
        }
        Ok(items)
    }

    /// `push_many`/`push_pairs` with a time for each event: each event is
    /// preceded by an advance to its time.
    pub(super) fn submit_timed<'py>(
        &self,
        py: Python<'py>,
        events: impl Iterator<Item = PyResult<Item<Value>>>,
        times: &Bound<'py, PyAny>,
        wait: Wait,
        lp: Option<&Value>,
    ) -> PyResult<Option<Fires>> {
        let mut times = times.try_iter()?;
        let mut items = Vec::new();
        for event in events {
            let Some(at) = times.next() else {
                return Err(Error::Setting { what: "at".into(), message: "at has fewer times than there are events".into() }.into());
            };
            items.push(Item::Advance(self.event_time(&at?)?));
            items.push(event?);
        }
        if times.next().is_some() {
            return Err(Error::Setting { what: "at".into(), message: "at has more times than there are events".into() }.into());
        }
        let size = items.len();
        Ok(self.mode.submit_all(py, &self.graph, items.into_iter().map(Ok), size, wait, lp)?)
    }
}

/// An event's journal payload as the input it was.
fn recorded_input(py: Python<'_>, payload: &[u8]) -> PyResult<Input<Value>> {
    use headrace_core::event::Codec;
    use headrace_core::processor::{PAYLOAD_JSON, PAYLOAD_MSGPACK, PAYLOAD_VALUE};
    let bad = |message: String| Error::Setting { what: "record".into(), message };
    let (&tag, data) = payload.split_first().ok_or_else(|| bad("an event record with an empty payload".into()))?;
    Ok(match tag {
        PAYLOAD_VALUE => {
            let value: headrace_core::checkpoint::Value =
                headrace_core::checkpoint::decode(data).map_err(|e| bad(format!("an event's value cannot be read: {e}")))?;
            Input::Value(crate::convert::to_python(py, value)?)
        }
        PAYLOAD_JSON => Input::Bytes { data: data.to_vec(), codec: Codec::Json },
        PAYLOAD_MSGPACK => Input::Bytes { data: data.to_vec(), codec: Codec::Msgpack },
        other => return Err(bad(format!("an event payload with unknown tag {other}")).into()),
    })
}
