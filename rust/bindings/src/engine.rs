//! `Engine`: the running graph. `headrace.Runtime` subclasses it in Python, so
//! `rt.push(...)` lands here directly, with no Python frame in between.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use headrace_core::channel::Item;
use headrace_core::dead_letter::DeadLetters;
use headrace_core::host::Codec;
use headrace_core::metrics::{Health, Metrics};
use headrace_core::processor::{Config, Input, Now, Processor};

use crate::calls::{decode, InlineOutcome, PyCalls};
use crate::errors;
use crate::fire::{FireList, FireResult, Kept, Names};
use crate::convert;
use crate::graph::{self, Callables, CheckpointSink};
use crate::restore::{self, OnCorrupt};
use crate::inline::{Inline, InlineGuard, InlineState};
use crate::stats;
use crate::threaded::ThreadState;

type Value = Py<PyAny>;
type Proc = Processor<Value, PyErr>;

// One per runtime, so its size is irrelevant; boxing the inline state would
// only add an indirection to every inline push.
#[allow(clippy::large_enum_variant)]
enum Mode {
    Inline(Inline),
    Thread(ThreadState),
}

/// The engine behind `headrace.Runtime`.
#[pyclass(frozen, subclass, module = "headrace._core")]
pub struct Engine {
    graph: String,
    mode: Mode,
    /// For the GC: the callables, until cleared.
    callables: StdMutex<Option<Arc<Callables>>>,
    acc_names: Vec<String>,
    names: Arc<Names>,
    codecs: Vec<Codec>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<DeadLetters<Value>>,
    push_timeout: Option<Duration>,
    closed: AtomicBool,
    /// Stream positions found in the checkpoint restored at start.
    restored_positions: Vec<(usize, String, i32, i64)>,
}

fn duration(seconds: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("{what} must be a non-negative number of seconds, got {s}"))
            })
        })
        .transpose()
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (spec, *, mode, on_fire=None, capacity=65536, push_timeout=None, max_attempts=3, retry_backoff=0.1, dead_letter_limit=10000, idle_spin=5e-5, checkpoint_writer=None, checkpoint_codec="bincode", checkpoint_every_fires=1000, checkpoint_interval=None, restore=None, checkpoint_key="", on_corrupt="refuse", on_undecodable=None, check_checkpointable=None, profile=false, record_inputs=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec: &Bound<'_, PyDict>,
        mode: &str,
        on_fire: Option<Py<PyAny>>,
        capacity: usize,
        push_timeout: Option<f64>,
        max_attempts: u32,
        retry_backoff: f64,
        dead_letter_limit: usize,
        idle_spin: f64,
        checkpoint_writer: Option<Py<PyAny>>,
        checkpoint_codec: &str,
        checkpoint_every_fires: u64,
        checkpoint_interval: Option<f64>,
        restore: Option<&Bound<'_, PyDict>>,
        checkpoint_key: &str,
        on_corrupt: &str,
        on_undecodable: Option<Py<PyAny>>,
        check_checkpointable: Option<bool>,
        profile: bool,
        record_inputs: bool,
    ) -> PyResult<Self> {
        if capacity == 0 || max_attempts == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err("capacity and max_attempts must be at least 1"));
        }
        let on_corrupt = OnCorrupt::parse(on_corrupt)?;
        let checkpointing = checkpoint_writer.is_some();
        let config = Config {
            max_attempts,
            retry_backoff: duration(Some(retry_backoff), "retry_backoff")?.unwrap_or_default(),
            dead_letter_limit,
            checkpoint_fires: if checkpointing { checkpoint_every_fires } else { 0 },
            checkpoint_interval: if checkpointing { duration(checkpoint_interval, "checkpoint_interval")? } else { None },
            check_checkpointable: check_checkpointable.unwrap_or(checkpointing),
            profile,
            record_inputs,
        };
        let parsed = graph::parse(spec)?;
        let codecs = parsed.accs.iter().map(|a| a.codec).collect();
        let mut compiled = graph::compile(py, parsed, on_fire)?;
        compiled.checkpoint = match checkpoint_writer {
            Some(writer) => Some(CheckpointSink { writer, codec: convert::codec(checkpoint_codec)?, last_id: AtomicU64::new(0) }),
            None => None,
        };
        compiled.on_undecodable = on_undecodable;
        let callables = Arc::new(compiled);
        let names = callables.names.clone();
        let plan = callables.plan.clone();
        let mut processor: Proc = Processor::new(plan.clone(), config);
        if let Some(components) = restore {
            restore::restore(py, &mut processor, &callables, components, checkpoint_key, on_corrupt)?;
        }
        if config.check_checkpointable {
            remember_good_states(py, &callables);
        }
        let restored_positions = processor.positions();
        let metrics = processor.metrics().clone();
        let dead_letters = processor.dead_letters().clone();
        let mode = match mode {
            "inline" => Mode::Inline(Inline::new(InlineState { processor, callables: Some(callables.clone()) })),
            "thread" => {
                let spin = duration(Some(idle_spin), "idle_spin")?.unwrap_or_default();
                Mode::Thread(ThreadState::spawn(plan.graph.clone(), processor, callables.clone(), capacity, spin)?)
            }
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "mode must be 'inline' or 'thread', got '{other}'"
                )))
            }
        };
        Ok(Engine {
            graph: plan.graph.clone(),
            mode,
            callables: StdMutex::new(Some(callables)),
            acc_names: plan.accumulators.iter().map(|a| a.name.clone()).collect(),
            names,
            codecs,
            metrics,
            dead_letters,
            push_timeout: duration(push_timeout, "push_timeout")?,
            closed: AtomicBool::new(false),
            restored_positions,
        })
    }

    /// The graph's name.
    #[getter]
    fn graph_name(&self) -> &str {
        &self.graph
    }

    /// "inline" or "thread".
    #[getter]
    fn mode(&self) -> &'static str {
        match self.mode {
            Mode::Inline(_) => "inline",
            Mode::Thread(_) => "thread",
        }
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
    #[pyo3(signature = (name, event, *, timeout=None))]
    fn push(&self, py: Python<'_>, name: &Bound<'_, PyString>, event: Value, timeout: Option<f64>) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index_of(py, name)?;
        self.push_value(py, acc, event, timeout, false)
    }

    /// Like `push`, but never waits: a full queue raises `BackpressureError`
    /// at once. (Inline mode has no queue; this is `push`.)
    fn try_push(&self, py: Python<'_>, name: &str, event: Value) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index(py, name)?;
        self.push_value(py, acc, event, None, true)
    }

    /// Pushes every event of `events` into accumulator `name` in one crossing,
    /// with the same semantics as calling `push` for each. Inline mode returns
    /// the list of fires that happened; thread mode returns None once all are
    /// accepted.
    #[pyo3(signature = (name, events, *, timeout=None))]
    fn push_many(&self, py: Python<'_>, name: &str, events: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<Py<FireList>>> {
        let acc = self.acc_index(py, name)?;
        let hint = events.len().unwrap_or(0);
        self.push_iter(py, events.try_iter()?.map(|e| Ok((acc, e?.unbind()))), hint, timeout)
    }

    /// Pushes `(accumulator name, event)` pairs in order, in one crossing:
    /// events for several accumulators, interleaved as they happened. Same
    /// semantics and return value as `push_many`.
    #[pyo3(signature = (pairs, *, timeout=None))]
    fn push_pairs(&self, py: Python<'_>, pairs: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<Option<Py<FireList>>> {
        let hint = pairs.len().unwrap_or(0);
        let mut resolve = NameCache::default();
        let items = pairs.try_iter()?.map(|pair| {
            let pair = pair?;
            let (name, event): (Bound<'_, PyString>, Bound<'_, PyAny>) = pair.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "push_pairs takes (accumulator name, event) pairs, got {}",
                    pair.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
            Ok((resolve.index(self, py, &name)?, event.unbind()))
        });
        self.push_iter(py, items, hint, timeout)
    }

    /// Pushes raw JSON (or msgpack) bytes. They are decoded here, on the
    /// caller's thread, so an undecodable payload raises `PayloadError` at once
    /// and nothing else is affected.
    #[pyo3(signature = (name, data, *, codec=None, timeout=None))]
    fn push_bytes(&self, py: Python<'_>, name: &str, data: &[u8], codec: Option<&str>, timeout: Option<f64>) -> PyResult<Option<Py<FireResult>>> {
        let acc = self.acc_index(py, name)?;
        let codec = match codec {
            None => self.codecs[acc],
            Some("json") => Codec::Json,
            Some("msgpack") => Codec::Msgpack,
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!("codec must be 'json' or 'msgpack', got '{other}'")))
            }
        };
        let event = decode(py, name, data, codec)?;
        self.push_value(py, acc, event, timeout, false)
    }

    /// Fires once on the current inputs, whatever the criteria say. Inline mode
    /// returns the `FireResult`; thread mode queues the fire behind what was
    /// already pushed and returns None.
    fn fire(&self, py: Python<'_>) -> PyResult<Option<Py<FireResult>>> {
        match &self.mode {
            Mode::Inline(_) => self.run_inline(py, |p, calls| {
                p.fire_manual(calls, &Now::lazy());
            }),
            Mode::Thread(t) => {
                self.send(t, py, Item::Fire, None, false)?;
                Ok(None)
            }
        }
    }

    /// Waits until everything pushed before this call has been processed
    /// (thread mode), or retries pending failed inputs (inline mode). Raises
    /// `TimeoutError` if `timeout` seconds pass first.
    #[pyo3(signature = (timeout=None))]
    fn drain(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        match &self.mode {
            Mode::Inline(_) => {
                self.run_inline(py, |p, calls| p.on_timer(calls, &Now::lazy()))?;
                Ok(())
            }
            Mode::Thread(t) => {
                refuse_own_thread(t, py, "drain() called from inside a fire would wait for itself")?;
                let timeout = duration(timeout, "timeout")?;
                let target = t.progress.submitted();
                let progress = t.progress.clone();
                if py.detach(move || progress.wait_for(target, timeout)) {
                    return Ok(());
                }
                if t.progress.is_closed() && t.progress.completed() < target {
                    return Err(errors::closed(py, &self.graph));
                }
                Err(pyo3::exceptions::PyTimeoutError::new_err(format!(
                    "drain() of graph '{}' timed out with {} item(s) unprocessed",
                    self.graph,
                    target.saturating_sub(t.progress.completed())
                )))
            }
        }
    }

    /// Flushes batch accumulators, fires for what that yields, and stops the
    /// processor. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, SeqCst) {
            return Ok(());
        }
        match &self.mode {
            Mode::Inline(_) => {
                let result = self.run_inline(py, |p, calls| {
                    p.shutdown(calls, &Now::lazy());
                    if p.checkpoints_enabled() {
                        let _ = p.checkpoint(calls);
                    }
                });
                self.lock_inline(py)?.callables = None;
                // Raising here would mask whatever ended the `with` block; the
                // failure is in stats and was given to on_fire.
                if let Err(e) = result {
                    errors::log(py, "warning", &format!("graph '{}': at close: {e}", self.graph));
                }
                Ok(())
            }
            Mode::Thread(t) => {
                let sender = t.sender.clone();
                // Blocking until the processor has room: Stop must not be lost.
                let _ = py.detach(move || sender.push(Item::Stop, None).map_err(|_| ()));
                let handle = t.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(h) = handle {
                    if py.detach(move || h.join()).is_err() {
                        return Err(errors::raise(
                            errors::headrace_error(py)?,
                            format!("processor thread of graph '{}' panicked", self.graph),
                            &[],
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Takes a checkpoint of everything accepted so far (thread mode: queues
    /// it and waits until the processor has taken it). Returns an id: every
    /// checkpoint with a larger id holds what was accepted before this call,
    /// so the writer's `wait(id)` returns once it is durable.
    fn request_checkpoint(&self, py: Python<'_>) -> PyResult<u64> {
        let Some(before) = self.last_checkpoint_id() else {
            return Err(errors::raise(
                errors::headrace_error(py)?,
                format!("graph '{}' has no checkpoint store (pass store=... to Runtime)", self.graph),
                &[],
            ));
        };
        match &self.mode {
            Mode::Inline(_) => {
                let mut failure = None;
                self.run_inline(py, |p, calls| failure = p.checkpoint(calls).err())?;
                if let Some(error) = failure {
                    return Err(errors::checkpoint(py, &self.graph, &error));
                }
            }
            Mode::Thread(t) => {
                refuse_own_thread(t, py, "a checkpoint requested from inside a fire would wait for itself")?;
                self.send(t, py, Item::Checkpoint, None, false)?;
                // Wait until the processor has taken it. Returning the id from
                // before the request is not enough: a periodic checkpoint taken
                // while our events were still queued would get a newer id and
                // satisfy the wait without holding them.
                let target = t.progress.submitted();
                let progress = t.progress.clone();
                if !py.detach(move || progress.wait_for(target, None)) {
                    return Err(errors::closed(py, &self.graph));
                }
            }
        }
        // Every checkpoint from the one our request produced on holds what was
        // accepted before the request.
        Ok(self.last_checkpoint_id().unwrap_or(before).max(before + 1) - 1)
    }

    /// Stops firing: events are still accepted and accumulated; fires wait.
    /// Durable with a store: a paused graph restarts paused.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        self.set_paused(py, true)
    }

    /// Resumes firing, and fires for what was accepted while paused.
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        self.set_paused(py, false)
    }

    /// Pushes one raw message from a stream source, with its position
    /// (topic, partition, offset). It is decoded on the processor thread (a bad
    /// payload is counted and logged, not raised), and once taken into state its
    /// next offset is what checkpoints save.
    fn push_from_source(&self, py: Python<'_>, name: &Bound<'_, PyString>, data: Vec<u8>, topic: String, partition: i32, offset: i64) -> PyResult<()> {
        let acc = self.acc_index_of(py, name)?;
        let input = Input::Bytes { data, codec: self.codecs[acc] };
        let position = (topic, partition, offset + 1);
        match &self.mode {
            Mode::Inline(_) => self
                .run_inline(py, |p, calls| {
                    let now = &Now::lazy();
                    p.ingest_from_source(acc, input, position, calls, now);
                    p.settle(calls, now);
                })
                .map(|_| ()),
            Mode::Thread(t) => self.send(t, py, Item::SourceEvent { acc, input, position: Box::new(position) }, self.push_timeout, false),
        }
    }

    /// Pushes a batch of confluent-kafka messages (or any objects with
    /// `value()`, `topic()`, `partition()`, `offset()` and `error()`) from a
    /// stream source, in one crossing. Messages whose `error()` is set are not
    /// pushed; they are returned for the source to handle.
    fn push_messages<'py>(&self, py: Python<'py>, name: &Bound<'py, PyString>, messages: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let acc = self.acc_index_of(py, name)?;
        let codec = self.codecs[acc];
        let failed = PyList::empty(py);
        let mut items = Vec::new();
        for m in messages.try_iter()? {
            let m = m?;
            if !m.call_method0(pyo3::intern!(py, "error"))?.is_none() {
                failed.append(m)?;
                continue;
            }
            let value = m.call_method0(pyo3::intern!(py, "value"))?;
            let data = if value.is_none() { Vec::new() } else { value.extract::<Vec<u8>>()? };
            let topic: String = m.call_method0(pyo3::intern!(py, "topic"))?.extract()?;
            let partition: i32 = m.call_method0(pyo3::intern!(py, "partition"))?.extract()?;
            let offset: i64 = m.call_method0(pyo3::intern!(py, "offset"))?.extract()?;
            items.push((Input::Bytes { data, codec }, (topic, partition, offset + 1)));
        }
        match &self.mode {
            Mode::Inline(_) => {
                self.run_inline(py, |p, calls| {
                    let now = &Now::lazy();
                    for (input, position) in items {
                        p.ingest_from_source(acc, input, position, calls, now);
                        p.settle(calls, now);
                    }
                })?;
            }
            Mode::Thread(t) => {
                for (input, position) in items {
                    self.send(t, py, Item::SourceEvent { acc, input, position: Box::new(position) }, self.push_timeout, false)?;
                }
            }
        }
        Ok(failed)
    }

    /// Stream positions restored from the checkpoint:
    /// `[(accumulator, topic, partition, next offset), ...]`.
    fn restored_positions(&self) -> Vec<(String, String, i32, i64)> {
        self.restored_positions.iter().map(|(a, t, p, o)| (self.acc_names[*a].clone(), t.clone(), *p, *o)).collect()
    }

    /// Counters, health and dead letters (see `headrace.Runtime.stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (depth, capacity) = match &self.mode {
            Mode::Inline(_) => (0, 0),
            Mode::Thread(t) => (t.sender.depth(), t.sender.capacity()),
        };
        stats::build(py, &self.graph, self.mode(), &self.acc_names, &self.metrics, &self.dead_letters, depth, capacity, self.closed())
    }

    /// A heartbeat's read: events, fires, queue depth, pending, paused, health
    /// (see `headrace.Runtime.counters`), without building `stats()`.
    fn counters(&self) -> stats::Counters {
        let depth = match &self.mode {
            Mode::Inline(_) => 0,
            Mode::Thread(t) => t.sender.depth(),
        };
        stats::counters(&self.metrics, depth, self.closed())
    }

    /// Sets an accumulator's health (sources report their connection state).
    #[pyo3(signature = (name, health, error=None))]
    fn set_health(&self, py: Python<'_>, name: &str, health: &str, error: Option<String>) -> PyResult<()> {
        let acc = self.acc_index(py, name)?;
        let h = Health::parse(health).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "unknown health '{health}'; expected one of {:?}",
                Health::ALL.map(Health::label)
            ))
        })?;
        let m = &self.metrics.accumulators[acc];
        m.set_health(h);
        if let Some(text) = error {
            m.record_error(text);
        }
        Ok(())
    }

    /// Records a source-side failure (a raising poll) against accumulator `name`.
    fn record_error(&self, py: Python<'_>, name: &str, error: String) -> PyResult<()> {
        let acc = self.acc_index(py, name)?;
        self.metrics.accumulators[acc].record_error(error);
        Ok(())
    }

    /// Removes and returns the dead letters (e.g. to replay them).
    fn take_dead_letters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let letters = self.dead_letters.take();
        stats::dead_letter_list(py, &self.acc_names, letters.iter())
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        if let Ok(guard) = self.callables.try_lock() {
            if let Some(c) = guard.as_ref() {
                c.traverse(&visit)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.closed.store(true, SeqCst);
        if let Ok(mut guard) = self.callables.try_lock() {
            guard.take();
        }
        match &self.mode {
            Mode::Inline(inline) => {
                if let Some(mut s) = inline.state.try_lock() {
                    s.callables = None;
                }
            }
            Mode::Thread(t) => {
                let _ = t.sender.try_push(Item::Stop);
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A runtime dropped without close(): stop its thread rather than leak it.
        if let Mode::Thread(t) = &self.mode {
            if !self.closed.load(SeqCst) {
                let _ = t.sender.try_push(Item::Stop);
            }
        }
    }
}

/// The initial (or restored) `State.value` of each stream accumulator, as the
/// state a refused event's call is rolled back to.
fn remember_good_states(py: Python<'_>, callables: &Callables) {
    for a in &callables.accs {
        let Some(state) = &a.state else { continue };
        let Ok(value) = state.bind(py).getattr("value") else { continue };
        if let Ok(v) = convert::try_to_value(&value, &mut String::new(), 0) {
            *a.good_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        }
    }
}

/// Runs `f` on the inline processor and collects what the caller gets back:
/// the fire for the first sequence number `f` uses, and the first failure.
fn inline_step(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    f: impl FnOnce(&mut Proc, &mut PyCalls<'_, '_>),
) -> InlineOutcome {
    let mut outcome = InlineOutcome::new();
    outcome.target = processor.next_seq();
    let mut calls = PyCalls { py, cx, inline: Some(&mut outcome) };
    f(processor, &mut calls);
    if processor.checkpoint_due(&Now::lazy()) {
        // A failure is reported to the writer (stats) and retried next time.
        let _ = processor.checkpoint(&mut calls);
    }
    outcome
}

/// Resolves accumulator names, remembering the last one (pairs tend to repeat).
#[derive(Default)]
struct NameCache {
    last: Option<(Py<PyString>, usize)>,
}

impl NameCache {
    fn index(&mut self, engine: &Engine, py: Python<'_>, name: &Bound<'_, PyString>) -> PyResult<usize> {
        if let Some((cached, i)) = &self.last {
            if cached.is(name) {
                return Ok(*i);
            }
        }
        let i = engine.acc_index_of(py, name)?;
        self.last = Some((name.clone().unbind(), i));
        Ok(i)
    }
}

impl Engine {
    /// Pushes `(accumulator, event)` items: inline, each is processed as a
    /// push would be and the fires are returned; thread mode queues them all.
    fn push_iter(
        &self,
        py: Python<'_>,
        items: impl Iterator<Item = PyResult<(usize, Value)>>,
        size_hint: usize,
        timeout: Option<f64>,
    ) -> PyResult<Option<Py<FireList>>> {
        match &self.mode {
            Mode::Inline(_) => {
                let mut fires: Vec<Kept> = Vec::with_capacity(size_hint);
                let mut guard = self.lock_inline(py)?;
                let state = &mut *guard;
                let cx = state.callables.clone().ok_or_else(|| errors::closed(py, &self.graph))?;
                let mut first_error = None;
                for item in items {
                    let (acc, event) = item?;
                    let outcome = inline_step(py, &mut state.processor, &cx, |p, calls| {
                        let now = &Now::lazy();
                        p.ingest(acc, Input::Value(event), calls, now);
                        p.settle(calls, now);
                    });
                    if let Some(r) = outcome.result {
                        fires.push(r);
                    }
                    if first_error.is_none() {
                        first_error = outcome.error;
                    }
                }
                match first_error {
                    Some(e) => Err(e),
                    None => Ok(Some(Py::new(py, FireList::new(fires, cx.names.clone()))?)),
                }
            }
            Mode::Thread(t) => {
                let timeout = duration(timeout, "timeout")?.or(self.push_timeout);
                for item in items {
                    let (acc, event) = item?;
                    self.send(t, py, Item::Event { acc, input: Input::Value(event) }, timeout, false)?;
                }
                Ok(None)
            }
        }
    }
}

impl Engine {
    /// Id of the last checkpoint handed to the writer, if there is a store.
    fn last_checkpoint_id(&self) -> Option<u64> {
        let guard = self.callables.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref()?.checkpoint.as_ref().map(|s| s.last_id.load(SeqCst))
    }

    fn set_paused(&self, py: Python<'_>, paused: bool) -> PyResult<()> {
        match &self.mode {
            Mode::Inline(_) => self.run_inline(py, |p, calls| p.set_paused(paused, calls, &Now::lazy())).map(|_| ()),
            Mode::Thread(t) => self.send(t, py, Item::Pause(paused), None, false),
        }
    }

    /// Resolves an accumulator name. Names in user code are usually interned
    /// string literals, the very objects the engine interned: try identity first.
    fn acc_index_of(&self, py: Python<'_>, name: &Bound<'_, PyString>) -> PyResult<usize> {
        match self.names.accumulators.iter().position(|n| n.is(name)) {
            Some(i) => Ok(i),
            None => self.acc_index(py, name.to_str()?),
        }
    }

    fn acc_index(&self, py: Python<'_>, name: &str) -> PyResult<usize> {
        match self.acc_names.iter().position(|n| n == name) {
            Some(i) => Ok(i),
            None => Err(errors::raise(
                errors::headrace_error(py)?,
                format!("graph '{}' has no accumulator '{name}' (it has: {})", self.graph, self.acc_names.join(", ")),
                &[],
            )),
        }
    }

    fn push_value(&self, py: Python<'_>, acc: usize, event: Value, timeout: Option<f64>, never_wait: bool) -> PyResult<Option<Py<FireResult>>> {
        match &self.mode {
            Mode::Inline(_) => {
                self.run_inline(py, |p, calls| {
                    let now = &Now::lazy();
                    p.ingest(acc, Input::Value(event), calls, now);
                    p.settle(calls, now);
                })
            }
            Mode::Thread(t) => {
                let timeout = duration(timeout, "timeout")?.or(self.push_timeout);
                self.send(t, py, Item::Event { acc, input: Input::Value(event) }, timeout, never_wait)?;
                Ok(None)
            }
        }
    }

    fn send(&self, t: &ThreadState, py: Python<'_>, item: Item<Value>, timeout: Option<Duration>, never_wait: bool) -> PyResult<()> {
        if self.closed.load(SeqCst) {
            return Err(errors::closed(py, &self.graph));
        }
        t.send(py, &self.graph, item, timeout, never_wait)
    }

    fn lock_inline(&self, py: Python<'_>) -> PyResult<InlineGuard<'_>> {
        let Mode::Inline(inline) = &self.mode else { unreachable!("inline only") };
        inline.lock(py, &self.graph)
    }

    /// Runs `f` on the inline processor, then returns the fire for the sequence
    /// number `f` returns, or raises the first failure.
    fn run_inline(&self, py: Python<'_>, f: impl FnOnce(&mut Proc, &mut PyCalls<'_, '_>)) -> PyResult<Option<Py<FireResult>>> {
        let outcome = {
            let mut guard = self.lock_inline(py)?;
            let InlineState { processor, callables } = &mut *guard;
            let Some(cx) = callables.as_deref() else {
                return Err(errors::closed(py, &self.graph));
            };
            inline_step(py, processor, cx, f)
        };
        match (outcome.error, outcome.result) {
            (Some(e), _) => Err(e),
            (None, Some(kept)) => Ok(Some(kept.into_object(py, &self.names)?)),
            (None, None) => Ok(None),
        }
    }
}

/// Refuses a call that waits for the processor when made on the processor's
/// own thread (from a node or on_fire): it would wait for itself.
fn refuse_own_thread(t: &ThreadState, py: Python<'_>, message: &str) -> PyResult<()> {
    if t.on_own_thread() {
        return Err(errors::raise(errors::headrace_error(py)?, message.into(), &[]));
    }
    Ok(())
}
