//! `Engine`: the running graph. `headrace.Runtime` subclasses it in Python, so
//! `rt.push(...)` lands here directly, with no Python frame in between.
//!
//! Each method extracts its arguments, turns them into a channel item and
//! hands it to [`Mode::submit`]; what the item means is the core's, and who
//! runs it is the mode's. The helpers live in one submodule per concept:
//! `start` (building from options and a restore), `names` (accumulator names
//! to indices), `source` (stream messages to items), `submit` (handing items
//! to the mode).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use headrace_core::channel::Item;
use headrace_core::clock::Time;
use headrace_core::dead_letter::DeadLetters;
use headrace_core::error::Named;
use headrace_core::event::{Codec, Input, SourcePosition};
use headrace_core::metrics::{Health, Metrics};

use crate::aio::Aio;
use crate::calls::{decode, InlineOutcome};
use crate::errors::{self, Error};
use crate::fire::{FireList, FireResult, Names};
use crate::gc;
use crate::mode::{Mode, Wait};
use crate::options::{optional_seconds, EngineOptions};
use crate::stats;

mod names;
mod source;
mod start;
mod submit;
mod timed;

type Value = Py<PyAny>;

/// The engine behind `headrace.Runtime`.
#[pyclass(frozen, subclass, module = "headrace._core")]
pub struct Engine {
    graph: String,
    mode: Mode,
    acc_names: Vec<String>,
    names: Arc<Names>,
    codecs: Vec<Codec>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<DeadLetters<Value>>,
    push_timeout: Option<Duration>,
    closed: AtomicBool,
    /// Id of the last checkpoint handed to the writer; None without a store.
    checkpoint_ids: Option<Arc<AtomicU64>>,
    /// Stream positions found in the checkpoint restored at start.
    restored_positions: Vec<(usize, SourcePosition)>,
    /// The loop async callables run on when no `apush` lends one.
    aio: Aio,
    /// The graph has async nodes or accumulators.
    has_async: bool,
    /// The simulated clock's time (None: the wall clock).
    sim_time: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// The accumulators' ages (stats, staleness).
    ages: Arc<crate::ages::AgeView>,
}

#[pymethods]
impl Engine {
    /// Compiles `spec` and starts the engine with `options` (a
    /// `headrace._options.EngineOptions`).
    #[new]
    fn new(py: Python<'_>, spec: &Bound<'_, PyDict>, options: EngineOptions) -> PyResult<Self> {
        start::start(py, spec, options)
    }

    /// The graph's name.
    #[getter]
    fn graph_name(&self) -> &str {
        &self.graph
    }

    /// "inline" or "thread".
    #[getter]
    fn mode(&self) -> &'static str {
        self.mode.kind().as_str()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Pushes one event into accumulator `name`.
    ///
    /// Inline mode runs the whole path on this thread and returns the fire's
    /// `FireResult` (None when the reactor did not fire). Thread mode returns
    /// None once the event is accepted, waiting for room up to `timeout`
    /// seconds (default: the runtime's `push_timeout`; None waits as long as it
    /// takes) and raising `BackpressureError` if there is none.
    ///
    /// `at` (a simulated clock only): the event's time, seconds since the
    /// epoch or a datetime. The clock moves there first, running every timer
    /// due before it; an `at` behind the clock is taken at the clock's time.
    #[pyo3(signature = (name, event, *, timeout=None, at=None))]
    fn push(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        event: Value,
        timeout: Option<f64>,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index_of(name)?;
        let wait = self.room(timeout)?;
        if let Some(at) = at {
            let t = self.event_time(at)?;
            self.advance_to(py, t, wait)?;
        }
        self.submit_fire(py, Item::Event { acc, input: Input::Value(event) }, wait)
    }

    /// Like `push`, but never waits: a full queue raises `BackpressureError`
    /// at once. (Inline mode has no queue; this is `push`.)
    fn try_push(&self, py: Python<'_>, name: &Bound<'_, PyString>, event: Value) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index_of(name)?;
        self.submit_fire(py, Item::Event { acc, input: Input::Value(event) }, Wait::Never)
    }

    /// Pushes every event of `events` into accumulator `name` in one crossing,
    /// with the same semantics as calling `push` for each. Inline mode returns
    /// the list of fires that happened; thread mode returns None once all are
    /// accepted.
    ///
    /// `at` (a simulated clock only): one time per event, as `push` takes
    /// it; the fires of timers these times run are part of the list.
    #[pyo3(signature = (name, events, *, timeout=None, at=None))]
    fn push_many(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        events: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<FireList>>> {
        let acc = self.acc_index_of(name)?;
        self.check_open()?;
        let lp = self.inline_loop(py, false)?;
        if let Some(times) = at {
            let items = events.try_iter()?.map(|e| Ok(Item::Event { acc, input: Input::Value(e?.unbind()) }));
            let fires = self.submit_timed(py, items, times, self.room(timeout)?, lp.as_ref())?;
            return self.fire_list(py, fires);
        }
        let size = events.len().unwrap_or(0);
        let fires = self.mode.submit_events(py, &self.graph, acc, events, size, self.room(timeout)?, lp.as_ref())?;
        self.fire_list(py, fires)
    }

    /// Pushes `(accumulator name, event)` pairs in order, in one crossing:
    /// events for several accumulators, interleaved as they happened. Same
    /// semantics and return value as `push_many`, `at` included (one time
    /// per pair).
    #[pyo3(signature = (pairs, *, timeout=None, at=None))]
    fn push_pairs(
        &self,
        py: Python<'_>,
        pairs: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<FireList>>> {
        self.check_open()?;
        let lp = self.inline_loop(py, false)?;
        let mut to_item = self.pair_reader();
        if let Some(times) = at {
            let items = pairs.try_iter()?.map(|pair| to_item(pair?));
            let fires = self.submit_timed(py, items, times, self.room(timeout)?, lp.as_ref())?;
            return self.fire_list(py, fires);
        }
        let size = pairs.len().unwrap_or(0);
        let fires = self.mode.submit_pairs(py, &self.graph, pairs, &mut to_item, size, self.room(timeout)?, lp.as_ref())?;
        self.fire_list(py, fires)
    }

    /// Pushes raw JSON (or msgpack) bytes. They are decoded here, on the
    /// caller's thread, so an undecodable payload raises `PayloadError` at once
    /// and nothing else is affected.
    #[pyo3(signature = (name, data, *, codec=None, timeout=None))]
    fn push_bytes(&self, py: Python<'_>, name: &Bound<'_, PyString>, data: &[u8], codec: Option<&str>, timeout: Option<f64>) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index_of(name)?;
        let codec = match codec {
            None => self.codecs[acc],
            Some(text) => text.parse().map_err(Error::from)?,
        };
        let event = decode(py, &self.acc_names[acc], data, codec)?;
        self.submit_fire(py, Item::Event { acc, input: Input::Value(event) }, self.room(timeout)?)
    }

    /// Fires once on the current inputs, whatever the criteria say. Inline mode
    /// returns the `FireResult`; thread mode queues the fire behind what was
    /// already pushed and returns None.
    fn fire(&self, py: Python<'_>) -> PyResult<Option<Py<FireResult>>> {
        self.submit_fire(py, Item::Fire, Wait::Room(None))
    }

    /// Moves a simulated clock to `nanos` (since the epoch), running every
    /// timer due on the way in time order. `headrace.SimClock` calls it.
    fn _advance_clock(&self, py: Python<'_>, nanos: i64) -> PyResult<()> {
        let t = Time::from_nanos(nanos);
        self.clock_reaches(t);
        Ok(self.advance_to(py, t, self.room(None)?)?)
    }

    /// Replays journal records (`(kind, time_ns, accumulator, payload)`, as
    /// `headrace.journal` reads them) as one batch, inline. `headrace.replay`
    /// calls it.
    fn _replay(&self, py: Python<'_>, records: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_open()?;
        let items = self.recorded_items(py, records)?;
        let lp = self.inline_loop(py, true)?;
        Ok(self.mode.apply_recorded(py, &self.graph, items, lp.as_ref())?)
    }

    /// The simulated clock's time in seconds since the epoch (the newest an
    /// event or an advance asked for), or None under the wall clock.
    #[getter]
    fn clock_time(&self) -> Option<f64> {
        self.sim_time.as_ref().map(|c| crate::time::to_seconds(Time::from_nanos(c.load(SeqCst))))
    }

    /// Waits until everything pushed before this call has been processed
    /// (thread mode), or retries pending failed inputs (inline mode). Raises
    /// `TimeoutError` if `timeout` seconds pass first.
    #[pyo3(signature = (timeout=None))]
    fn drain(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let lp = self.inline_loop(py, true)?;
        Ok(self.mode.drain(py, &self.graph, optional_seconds(timeout, "timeout")?, lp.as_ref())?)
    }

    /// Flushes batch accumulators, fires for what that yields, takes a final
    /// checkpoint, and stops the processor. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, SeqCst) {
            return Ok(());
        }
        let stopped = match self.inline_loop(py, true) {
            Ok(lp) => self.mode.stop(py, &self.graph, lp.as_ref()),
            Err(e) => Err(Error::Python(e)),
        };
        let stopped = match stopped {
            // Raising a fire's failure here would mask whatever ended the `with`
            // block; it is in stats and was given to on_fire.
            Err(Error::Python(e)) => {
                errors::log(py, "warning", &format!("graph '{}': at close: {e}", self.graph));
                Ok(())
            }
            other => other,
        };
        self.aio.stop(py)?;
        Ok(stopped?)
    }

    /// Takes a checkpoint of everything accepted so far (thread mode: queues
    /// it and waits until the processor has taken it). Returns an id: every
    /// checkpoint with a larger id holds what was accepted before this call,
    /// so the writer's `wait(id)` returns once it is durable.
    fn request_checkpoint(&self, py: Python<'_>) -> PyResult<u64> {
        let Some(before) = self.last_checkpoint_id() else {
            return Err(Error::NoStore { graph: self.graph.clone() }.into());
        };
        // Thread mode waits until the processor has taken it: a periodic
        // checkpoint taken while our events were still queued would get a
        // newer id and satisfy the wait without holding them.
        let mut out = InlineOutcome::new();
        self.submit(py, Item::Checkpoint, Wait::Handled("a checkpoint requested"), &mut out)?;
        if let Some(Err(error)) = out.applied.checkpoint {
            return Err(Error::Checkpoint { graph: self.graph.clone(), error }.into());
        }
        // Every checkpoint from the one our request produced on holds what was
        // accepted before the request.
        Ok(self.last_checkpoint_id().unwrap_or(before).max(before + 1) - 1)
    }

    /// Stops firing: events are still accepted and accumulated; fires wait.
    /// Durable with a store: a paused graph restarts paused.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        self.submit_fire(py, Item::Pause(true), Wait::Room(None)).map(drop)
    }

    /// Resumes firing, and fires for what was accepted while paused.
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        self.submit_fire(py, Item::Pause(false), Wait::Room(None)).map(drop)
    }

    /// Pushes one raw message from a stream source, with its position
    /// (topic, partition, offset). It is decoded on the processor thread (a bad
    /// payload is counted and logged, not raised), and once taken into state its
    /// next offset is what checkpoints save.
    fn push_from_source(&self, py: Python<'_>, name: &Bound<'_, PyString>, data: Vec<u8>, topic: String, partition: i32, offset: i64) -> PyResult<()> {
        let acc = self.acc_index_of(name)?;
        let item = self.source_item(acc, data, SourcePosition { topic, partition, offset });
        Ok(self.submit(py, item, Wait::Room(self.push_timeout), &mut InlineOutcome::new())?)
    }

    /// Pushes a batch of confluent-kafka messages (or any objects with
    /// `value()`, `topic()`, `partition()`, `offset()` and `error()`) from a
    /// stream source, in one crossing. Messages whose `error()` is set are not
    /// pushed; they are returned for the source to handle.
    fn push_messages<'py>(&self, py: Python<'py>, name: &Bound<'py, PyString>, messages: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let acc = self.acc_index_of(name)?;
        let (items, failed) = self.message_items(py, acc, messages)?;
        let n = items.len();
        let lp = self.inline_loop(py, true)?;
        self.mode.submit_all(py, &self.graph, items.into_iter().map(Ok), n, Wait::Room(self.push_timeout), lp.as_ref())?;
        Ok(failed)
    }

    /// Stream positions restored from the checkpoint:
    /// `[(accumulator, topic, partition, next offset), ...]`.
    fn restored_positions(&self) -> Vec<(String, String, i32, i64)> {
        self.restored_rows()
    }

    /// Counters, health and dead letters (see `headrace.Runtime.stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (depth, capacity) = self.mode.queue();
        let now = self.ages.read();
        stats::build(py, &self.graph, self.mode(), &self.acc_names, &self.metrics, &self.dead_letters, depth, capacity, self.closed(), now)
    }

    /// A heartbeat's read: events, fires, queue depth, pending, paused, health
    /// (see `headrace.Runtime.counters`), without building `stats()`.
    fn counters(&self) -> stats::Counters {
        stats::counters(&self.metrics, self.mode.queue().0, self.closed(), self.ages.read())
    }

    /// Sets an accumulator's health (sources report their connection state).
    #[pyo3(signature = (name, health, error=None))]
    fn set_health(&self, name: &Bound<'_, PyString>, health: &str, error: Option<String>) -> PyResult<()> {
        let acc = self.acc_index_of(name)?;
        let health: Health = health.parse().map_err(Error::from)?;
        let m = &self.metrics.accumulators[acc];
        m.set_health(health);
        if let Some(text) = error {
            m.record_error(text);
        }
        Ok(())
    }

    /// Records a source-side failure (a raising poll) against accumulator `name`.
    fn record_error(&self, name: &Bound<'_, PyString>, error: String) -> PyResult<()> {
        let acc = self.acc_index_of(name)?;
        self.metrics.accumulators[acc].record_error(error);
        Ok(())
    }

    /// Removes and returns the dead letters (e.g. to replay them).
    fn take_dead_letters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let letters = self.dead_letters.take();
        stats::dead_letter_list(py, &self.acc_names, letters.iter())
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        gc::traverse(&visit, |f| self.mode.for_each_object(f))?;
        self.aio.traverse(&visit)
    }

    fn __clear__(&self) {
        self.closed.store(true, SeqCst);
        self.mode.clear(&self.dead_letters);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.closed.load(SeqCst) {
            self.mode.abandon();
        }
    }
}
