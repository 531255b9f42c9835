//! Raising the exception classes of `headrace.errors` from Rust.
//!
//! The classes are defined once, in Python; Rust looks each up once and keeps it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use headrace_core::host::{CheckpointError, Unsupported};
use headrace_core::plan::DefinitionError;

fn class<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyType>>, name: &str) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "headrace.errors", name)
}

macro_rules! error_class {
    ($fn_name:ident, $py_name:literal) => {
        pub fn $fn_name(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
            static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
            class(py, &CELL, $py_name)
        }
    };
}

error_class!(headrace_error, "HeadraceError");
error_class!(definition_error, "GraphDefinitionError");
error_class!(payload_error, "PayloadError");
error_class!(node_error, "NodeError");
error_class!(fire_timeout_error, "FireTimeoutError");
error_class!(accumulator_error, "AccumulatorError");
error_class!(backpressure_error, "BackpressureError");
error_class!(checkpoint_error, "CheckpointError");
error_class!(uncheckpointable_error, "UncheckpointableError");

/// Builds an instance of `class(message, **kwargs)` as a `PyErr`.
pub fn raise(class: &Bound<'_, PyType>, message: String, kwargs: &[(&str, Bound<'_, PyAny>)]) -> PyErr {
    let py = class.py();
    let built = (|| -> PyResult<Bound<'_, PyAny>> {
        let kw = PyDict::new(py);
        for (k, v) in kwargs {
            kw.set_item(k, v)?;
        }
        class.call((message,), Some(&kw))
    })();
    match built {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

pub fn closed(py: Python<'_>, graph: &str) -> PyErr {
    match headrace_error(py) {
        Ok(cls) => raise(cls, format!("runtime of graph '{graph}' is closed"), &[]),
        Err(e) => e,
    }
}

pub fn definition(py: Python<'_>, err: &DefinitionError) -> PyErr {
    let problems: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    match (definition_error(py), problems.into_pyobject(py)) {
        (Ok(cls), Ok(list)) => raise(cls, err.to_string(), &[("problems", list.into_any())]),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// `UncheckpointableError` naming the value's path and type (and the
/// accumulator whose event it was, if any).
pub fn uncheckpointable(py: Python<'_>, message: String, u: &Unsupported, accumulator: Option<&str>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        Ok(raise(
            uncheckpointable_error(py)?,
            message,
            &[
                ("path", u.path.as_str().into_pyobject(py)?.into_any()),
                ("value_type", u.type_name.as_str().into_pyobject(py)?.into_any()),
                ("accumulator", accumulator.into_pyobject(py)?.into_any()),
            ],
        ))
    };
    build().unwrap_or_else(|e| e)
}

/// The exception for a checkpoint of graph `graph` that was not taken.
pub fn checkpoint(py: Python<'_>, graph: &str, error: &CheckpointError) -> PyErr {
    let message = format!("graph '{graph}': checkpoint not taken: {error}");
    match error {
        CheckpointError::Unsupported(u) => uncheckpointable(py, message, u, None),
        CheckpointError::Persist(_) => match checkpoint_error(py) {
            Ok(cls) => raise(cls, message, &[]),
            Err(e) => e,
        },
    }
}

/// Lets a repeated log line through at most once per interval and counts the
/// lines it held back, so that a failure repeating per event or per batch is
/// seen without filling the log.
pub struct LogLimiter {
    every: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        LogLimiter { every, last: Mutex::new(None), held_back: AtomicU64::new(0) }
    }

    /// `Some(n)` when this line may be logged (`n` lines were held back since
    /// the last one); None when it is held back.
    pub fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.every) {
            self.held_back.fetch_add(1, Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Relaxed))
    }
}

/// A `headrace` exception with `cause` as its `__cause__`.
pub fn with_cause(py: Python<'_>, err: PyErr, cause: &PyErr) -> PyErr {
    err.set_cause(py, Some(cause.clone_ref(py)));
    err
}

/// Logs on the `headrace` logger (the processor thread has nobody to raise to).
pub fn log(py: Python<'_>, level: &str, message: &str) {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("logging")?.call_method1("getLogger", ("headrace",))?.unbind())
    });
    if let Ok(logger) = logger {
        if let Err(e) = logger.bind(py).call_method1(level, (message,)) {
            e.write_unraisable(py, None);
        }
    }
}

/// A duration as people read it: "1.25ms", "40µs", "2.5s".
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (value, unit) = if s >= 1.0 { (s, "s") } else if s >= 1e-3 { (s * 1e3, "ms") } else { (s * 1e6, "µs") };
    let text = format!("{value:.3}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// `FireTimeoutError`: the node that overran which deadline, and by how much.
pub fn fire_timeout(py: Python<'_>, graph: &str, node: &str, o: &headrace_core::host::Overrun) -> PyErr {
    use headrace_core::host::DeadlineKind;
    let (deadline, limit) = match o.kind {
        DeadlineKind::Fire => ("fire", format!("the fire deadline (fire_timeout {})", human(o.limit))),
        DeadlineKind::Node => ("node", format!("its timeout ({})", human(o.limit))),
    };
    let message = if o.cancelled {
        format!("graph '{graph}': async node '{node}' was cancelled at {limit}")
    } else {
        format!("graph '{graph}': node '{node}' overran {limit} by {}; the rest of the fire was skipped", human(o.by))
    };
    let build = || -> PyResult<PyErr> {
        Ok(raise(
            fire_timeout_error(py)?,
            message,
            &[
                ("graph", graph.into_pyobject(py)?.into_any()),
                ("node", node.into_pyobject(py)?.into_any()),
                ("deadline", deadline.into_pyobject(py)?.into_any()),
                ("limit", o.limit.as_secs_f64().into_pyobject(py)?.into_any()),
                ("overrun", o.by.as_secs_f64().into_pyobject(py)?.into_any()),
            ],
        ))
    };
    build().unwrap_or_else(|e| e)
}

/// A failed fire's error, when it is a `FireTimeoutError`: raised as it is,
/// with the failed fire attached, rather than wrapped in `NodeError`.
pub fn as_fire_timeout(py: Python<'_>, error: &Bound<'_, PyAny>, fire: &Py<crate::fire::FireResult>) -> Option<PyErr> {
    let class = fire_timeout_error(py).ok()?;
    if !error.is_instance(class).ok()? {
        return None;
    }
    let _ = error.setattr("fire", fire.bind(py));
    Some(PyErr::from_value(error.clone()))
}

/// A sync call of an inline runtime whose graph has async nodes or accumulators.
pub fn needs_apush(py: Python<'_>, graph: &str) -> PyErr {
    match headrace_error(py) {
        Ok(cls) => raise(
            cls,
            format!(
                "graph '{graph}' has async nodes or accumulators: in inline mode, use `await rt.apush(...)`, \
                 `await rt.apush_many(...)` or `await rt.afire()` from a running event loop (or mode=\"thread\")"
            ),
            &[],
        ),
        Err(e) => e,
    }
}
