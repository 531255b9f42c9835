//! How long since each accumulator last emitted a boundary, by the runtime's
//! clock: `stats()`'s `age`/`stale_since`, the `stale` health, and
//! `headrace.input_age(name)` for node functions, which finds its runtime
//! through the thread it runs on (the processor thread, or the inline caller
//! while it holds the processor).

use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

use headrace_core::clock::Time;
use headrace_core::metrics::Metrics;

use crate::errors::Error;

/// What ages are read from, for one runtime.
pub struct AgeView {
    pub graph: String,
    pub names: Vec<String>,
    pub metrics: Arc<Metrics>,
    /// The simulated clock's time (None: the wall clock).
    pub sim: Option<Arc<AtomicI64>>,
}

/// A reading of the runtime's clock: as the metrics stamp boundaries, and in
/// seconds since the epoch.
#[derive(Clone, Copy)]
pub struct Reading {
    pub stamp: u64,
    pub seconds: f64,
}

impl AgeView {
    pub fn read(&self) -> Reading {
        match &self.sim {
            // The processor's time, not the clock's newest: a node reads the
            // time of the event it runs for.
            Some(_) => {
                let t = Time::from_nanos(self.metrics.sim_now.load(SeqCst));
                Reading { stamp: self.metrics.stamp(Some(t)), seconds: crate::time::to_seconds(t) }
            }
            None => {
                let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                Reading { stamp: self.metrics.stamp(None), seconds }
            }
        }
    }

    fn age_of(&self, name: &str) -> Result<Duration, Error> {
        let Some(acc) = self.names.iter().position(|n| n == name) else {
            return Err(Error::UnknownAccumulator { graph: self.graph.clone(), name: name.into(), known: self.names.clone() });
        };
        Ok(self.metrics.age(acc, self.read().stamp))
    }
}

thread_local! {
    /// The runtime whose processor this thread runs.
    static CURRENT: RefCell<Option<Arc<AgeView>>> = const { RefCell::new(None) };
}

/// While alive, `input_age` on this thread reads `view`; dropping it puts
/// back the runtime that was there (a node of one runtime pushing into
/// another inline). When `view` already is the thread's, entering costs a
/// comparison and nothing is put back later.
pub struct Entered(Option<Option<Arc<AgeView>>>);

pub fn enter(view: &Arc<AgeView>) -> Entered {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if current.as_ref().is_some_and(|v| Arc::ptr_eq(v, view)) {
            return Entered(None);
        }
        let previous = current.replace(view.clone());
        // A thread that ran no runtime before keeps this one: its next push
        // then enters for free.
        Entered(previous.is_some().then_some(previous))
    })
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
        }
    }
}

/// Seconds since accumulator `name` of the running graph last emitted a
/// boundary (since the runtime started, if it never did), by the runtime's
/// clock. For node functions: a node can refuse to act on stale inputs.
#[pyfunction]
pub fn input_age(name: &str) -> PyResult<f64> {
    let view = CURRENT.with(|current| current.borrow().clone());
    match view {
        Some(view) => Ok(view.age_of(name)?.as_secs_f64()),
        None => Err(Error::NotInNode { what: "input_age()" }.into()),
    }
}
