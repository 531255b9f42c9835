//! The `stats()` dictionary.

use std::sync::atomic::Ordering::Relaxed;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use headrace_core::dead_letter::{DeadLetter, DeadLetters};
use headrace_core::metrics::{Health, Metrics};

use crate::ages::Reading;

type Value = Py<PyAny>;

/// The reactor's health, derived from its accumulators' (as the seed design
/// defines it): degraded while any source is disconnected, any accumulator
/// is stale (past its `max_age`), checkpoints or journal appends fail,
/// warming while any is still starting or connecting.
fn reactor_health(metrics: &Metrics, closed: bool, now: Reading) -> &'static str {
    if closed {
        return "stopped";
    }
    let states: Vec<Health> = metrics.accumulators.iter().map(|m| m.health()).collect();
    let stale = (0..states.len()).any(|i| metrics.stale_for(i, now.stamp).is_some());
    let failing = metrics.checkpoint_failing.load(Relaxed) || metrics.journal.failing.load(Relaxed);
    if stale || states.contains(&Health::Disconnected) || failing {
        "degraded"
    } else if states.iter().any(|h| matches!(h, Health::Starting | Health::Connecting)) {
        "warming"
    } else {
        "live"
    }
}

/// The few counters a heartbeat needs, read from the metrics' atomics: no
/// per-accumulator dicts, no dead letters (`stats()` builds those, up to
/// `dead_letter_limit` of them).
#[pyclass(frozen, get_all, module = "headrace._core")]
pub struct Counters {
    /// Events taken, over every accumulator.
    pub events: u64,
    /// Successful fires.
    pub fires: u64,
    pub fires_failed: u64,
    pub queue_depth: usize,
    /// Boundaries waiting to fire (sequential queue, or a dirty latest set).
    pub pending: usize,
    pub paused: bool,
    /// As `stats()["health"]` reports it, before any checkpoint-writer health.
    pub health: &'static str,
}

#[pymethods]
impl Counters {
    fn __repr__(&self) -> String {
        format!(
            "Counters(events={}, fires={}, fires_failed={}, queue_depth={}, pending={}, paused={}, health='{}')",
            self.events,
            self.fires,
            self.fires_failed,
            self.queue_depth,
            self.pending,
            if self.paused { "True" } else { "False" },
            self.health
        )
    }
}

pub fn counters(metrics: &Metrics, queue_depth: usize, closed: bool, now: Reading) -> Counters {
    Counters {
        events: metrics.accumulators.iter().map(|m| m.events.load(Relaxed)).sum(),
        fires: metrics.fires.load(Relaxed),
        fires_failed: metrics.fires_failed.load(Relaxed),
        queue_depth,
        pending: metrics.pending.load(Relaxed),
        paused: metrics.paused.load(Relaxed),
        health: reactor_health(metrics, closed, now),
    }
}

pub fn dead_letter_list<'py, 'a>(
    py: Python<'py>,
    names: &[String],
    letters: impl Iterator<Item = &'a DeadLetter<Value>>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for d in letters {
        let e = PyDict::new(py);
        e.set_item("accumulator", &names[d.acc])?;
        e.set_item("stage", d.stage.label())?;
        e.set_item("value", d.value.bind(py))?;
        e.set_item("error", &d.error)?;
        e.set_item("attempts", d.attempts)?;
        list.append(e)?;
    }
    Ok(list)
}

#[allow(clippy::too_many_arguments)]
pub fn build<'py>(
    py: Python<'py>,
    graph: &str,
    mode: &str,
    names: &[String],
    metrics: &Metrics,
    dead_letters: &DeadLetters<Value>,
    queue_depth: usize,
    queue_capacity: usize,
    closed: bool,
    now: Reading,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("graph", graph)?;
    d.set_item("mode", mode)?;
    d.set_item("health", reactor_health(metrics, closed, now))?;
    d.set_item("fire_count", metrics.fires.load(Relaxed))?;
    d.set_item("fires_failed", metrics.fires_failed.load(Relaxed))?;
    d.set_item("retries", metrics.retries.load(Relaxed))?;
    let last = metrics.last_fired_at_us.load(Relaxed);
    d.set_item("last_fired_at", (last > 0).then(|| last as f64 / 1e6))?;
    d.set_item("last_error", metrics.last_error())?;
    d.set_item("queue_depth", queue_depth)?;
    d.set_item("queue_capacity", queue_capacity)?;
    d.set_item("pending", metrics.pending.load(Relaxed))?;
    d.set_item("paused", metrics.paused.load(Relaxed))?;
    let accs = PyDict::new(py);
    for (i, (name, m)) in names.iter().zip(&metrics.accumulators).enumerate() {
        let a = PyDict::new(py);
        let stale = metrics.stale_for(i, now.stamp);
        // Stale says more than "live" or "socket_only", less than "disconnected".
        let health = match (stale, m.health()) {
            (Some(_), Health::Live | Health::SocketOnly) => "stale",
            (_, health) => health.label(),
        };
        a.set_item("health", health)?;
        a.set_item("age", metrics.age(i, now.stamp).as_secs_f64())?;
        let max_age = m.max_age_ns.load(Relaxed);
        a.set_item("max_age", (max_age > 0).then(|| max_age as f64 / 1e9))?;
        a.set_item("stale_since", stale.map(|d| now.seconds - d.as_secs_f64()))?;
        a.set_item("events", m.events.load(Relaxed))?;
        a.set_item("boundaries", m.boundaries.load(Relaxed))?;
        a.set_item("suppressed", m.suppressed.load(Relaxed))?;
        a.set_item("errors", m.errors.load(Relaxed))?;
        a.set_item("refused", m.refused.load(Relaxed))?;
        a.set_item("buffered", m.buffered.load(Relaxed))?;
        a.set_item("last_error", m.last_error())?;
        accs.set_item(name, a)?;
    }
    d.set_item("accumulators", accs)?;
    let journal = PyDict::new(py);
    journal.set_item("failing", metrics.journal.failing.load(Relaxed))?;
    journal.set_item("unrecorded", metrics.journal.unrecorded.load(Relaxed))?;
    journal.set_item("last_error", metrics.journal.last_error())?;
    d.set_item("journal", journal)?;
    let (letters, dropped) = dead_letters.with(|l, dropped| (dead_letter_list(py, names, l.iter()), dropped));
    d.set_item("dead_letters", letters?)?;
    d.set_item("dead_letters_dropped", dropped)?;
    Ok(d)
}
