//! Raising the exception classes of `headrace.errors` from Rust.
//!
//! The classes are defined once, in Python; Rust looks each up once and keeps it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use headrace_core::error::Named;
use headrace_core::host::{CheckpointError, Codec, Unsupported};
use headrace_core::journal::JournalError;
use headrace_core::plan::DefinitionError;

fn class<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyType>>, name: &str) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "headrace.errors", name)
}

macro_rules! error_class {
    ($fn_name:ident, $py_name:literal) => {
        fn $fn_name(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
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

error_class!(setting_error, "SettingError");
error_class!(journal_error, "JournalError");

/// Everything the bindings raise on headrace's own account. Each variant holds
/// what its message and attributes need; [`From<Error> for PyErr`] is the one
/// place that picks the `headrace.errors` class and builds the exception.
pub enum Error {
    /// The runtime was closed (or its processor stopped).
    Closed { graph: String },
    /// The queue stayed full; `waited` is None for a push that never waits.
    Backpressure { graph: String, capacity: usize, waited: Option<Duration> },
    Definition(DefinitionError),
    /// A checkpoint of `graph` was not taken.
    Checkpoint { graph: String, error: CheckpointError },
    /// Stored checkpoint data that cannot be read or written (corrupt,
    /// truncated, an unknown component, a value this process cannot rebuild).
    CheckpointData(String),
    /// A value that cannot be checkpointed, named by path and type.
    Uncheckpointable(Box<Uncheckpointable>),
    /// A setting outside its allowed values or range.
    Setting { what: String, message: String },
    /// A node named where a terminal node is needed: `call` names the call
    /// (`outputs('fmt')`), `found` whether it is a node at all. `definition`:
    /// raised while building a runtime (`GraphDefinitionError`).
    NotTerminal { call: String, name: String, found: bool, terminals: Vec<String>, definition: bool },
    /// push/fire from inside one of the same inline runtime's fires.
    Reentrant { graph: String },
    /// A call that waits for the processor, made on the processor's own thread.
    OwnThread { what: &'static str },
    /// A call meant for node functions, made where no graph runs.
    NotInNode { what: &'static str },
    /// `drain()` ran out of time.
    DrainTimeout { graph: String, unprocessed: u64 },
    UnknownAccumulator { graph: String, name: String, known: Vec<String> },
    NoStore { graph: String },
    /// The processor thread could not start, or panicked.
    Thread { graph: String, what: String },
    /// An accumulator's function raised `cause`; the event is dead-lettered.
    Accumulator { message: String, accumulator: Py<PyString>, cause: PyErr },
    /// A node raised during a fire.
    Node(Box<NodeRaised>),
    /// Undecodable bytes.
    Payload(Box<Undecodable>),
    /// An input journal that cannot be written or read.
    Journal(JournalError),
    /// A Python error passed through unchanged.
    Python(PyErr),
}

pub struct Uncheckpointable {
    pub message: String,
    pub unsupported: Unsupported,
    /// The accumulator the refused event was pushed to, if any.
    pub accumulator: Option<String>,
}

pub struct NodeRaised {
    pub message: String,
    pub graph: String,
    pub node: String,
    /// The failed `FireResult`.
    pub fire: Py<PyAny>,
    /// The node's exception.
    pub cause: Option<PyErr>,
}

pub struct Undecodable {
    pub message: String,
    pub accumulator: String,
    /// The byte offset, where the decoder says.
    pub offset: Option<usize>,
    pub codec: Codec,
    /// The decoder's exception.
    pub cause: PyErr,
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        Error::Journal(e)
    }
}

impl From<headrace_core::Error> for Error {
    fn from(e: headrace_core::Error) -> Self {
        match e {
            headrace_core::Error::Definition(d) => Error::Definition(d),
            headrace_core::Error::Checkpoint(error) => Error::Checkpoint { graph: String::new(), error },
            e @ headrace_core::Error::Codec { .. } => Error::CheckpointData(e.to_string()),
            e @ headrace_core::Error::Setting { what, .. } => Error::Setting { what: what.into(), message: e.to_string() },
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| build(py, e).unwrap_or_else(|failed| failed))
    }
}

fn build(py: Python<'_>, e: Error) -> PyResult<PyErr> {
    let plain = |cls: &Bound<'_, PyType>, message: String| raise(cls, message, &[]);
    Ok(match e {
        Error::Closed { graph } => plain(headrace_error(py)?, format!("runtime of graph '{graph}' is closed")),
        Error::Backpressure { graph, capacity, waited } => {
            let waited = match waited {
                None => "without waiting".to_string(),
                Some(t) => format!("after waiting {t:?}"),
            };
            raise(
                backpressure_error(py)?,
                format!("graph '{graph}': queue full ({capacity} items), event not accepted {waited}; push it again later"),
                &[("capacity", capacity.into_pyobject(py)?.into_any())],
            )
        }
        Error::Definition(err) => {
            let problems: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
            raise(definition_error(py)?, err.to_string(), &[("problems", problems.into_pyobject(py)?.into_any())])
        }
        Error::Checkpoint { graph, error } => {
            let message = format!("graph '{graph}': checkpoint not taken: {error}");
            match error {
                CheckpointError::Unsupported(unsupported) => {
                    let refused = Uncheckpointable { message, unsupported, accumulator: None };
                    return build(py, Error::Uncheckpointable(Box::new(refused)));
                }
                CheckpointError::Persist(_) => plain(checkpoint_error(py)?, message),
            }
        }
        Error::CheckpointData(message) => plain(checkpoint_error(py)?, message),
        Error::Uncheckpointable(e) => {
            let Uncheckpointable { message, unsupported, accumulator } = *e;
            raise(
            uncheckpointable_error(py)?,
            message,
            &[
                ("path", unsupported.path.as_str().into_pyobject(py)?.into_any()),
                ("value_type", unsupported.type_name.as_str().into_pyobject(py)?.into_any()),
                ("accumulator", accumulator.into_pyobject(py)?.into_any()),
            ],
            )
        }
        Error::Setting { what, message } => raise(
            setting_error(py)?,
            message,
            &[("setting", what.into_pyobject(py)?.into_any())],
        ),
        Error::NotTerminal { call, name, found, terminals, definition } => {
            let what = if found { "is not a terminal node (another node takes its value)" } else { "is not a node of this graph" };
            let class = if definition { definition_error(py)? } else { headrace_error(py)? };
            plain(class, format!("{call}: '{name}' {what}; the terminal nodes are: {}", terminals.join(", ")))
        }
        Error::Reentrant { graph } => plain(
            headrace_error(py)?,
            format!(
                "graph '{graph}': called from inside one of its own fires, or on the event loop while an apush of it awaits \
                 its async nodes; in inline mode a fire cannot start another (use mode=\"thread\"), and on the loop use \
                 apush/apush_many/afire, which wait their turn"
            ),
        ),
        Error::OwnThread { what } => plain(headrace_error(py)?, format!("{what} called from inside a fire would wait for itself")),
        Error::NotInNode { what } => plain(
            headrace_error(py)?,
            format!("{what} reads the graph whose node is running; call it from a node function"),
        ),
        Error::DrainTimeout { graph, unprocessed } => pyo3::exceptions::PyTimeoutError::new_err(format!(
            "drain() of graph '{graph}' timed out with {unprocessed} item(s) unprocessed"
        )),
        Error::UnknownAccumulator { graph, name, known } => plain(
            headrace_error(py)?,
            format!("graph '{graph}' has no accumulator '{name}' (it has: {})", known.join(", ")),
        ),
        Error::NoStore { graph } => {
            plain(headrace_error(py)?, format!("graph '{graph}' has no checkpoint store (pass store=... to Runtime)"))
        }
        Error::Thread { graph, what } => plain(headrace_error(py)?, format!("processor thread of graph '{graph}' {what}")),
        Error::Payload(e) => {
            let Undecodable { message, accumulator, offset, codec, cause } = *e;
            let err = raise(
                payload_error(py)?,
                message,
                &[
                    ("accumulator", accumulator.into_pyobject(py)?.into_any()),
                    ("offset", offset.into_pyobject(py)?.into_any()),
                    ("codec", codec.as_str().into_pyobject(py)?.into_any()),
                ],
            );
            with_cause(py, err, &cause)
        }
        Error::Accumulator { message, accumulator, cause } => {
            let err = raise(accumulator_error(py)?, message, &[("accumulator", accumulator.into_bound(py).into_any())]);
            with_cause(py, err, &cause)
        }
        Error::Node(e) => {
            let NodeRaised { message, graph, node, fire, cause } = *e;
            let err = raise(
                node_error(py)?,
                message,
                &[
                    ("graph", graph.into_pyobject(py)?.into_any()),
                    ("node", node.into_pyobject(py)?.into_any()),
                    ("fire", fire.into_bound(py)),
                ],
            );
            match cause {
                Some(c) => with_cause(py, err, &c),
                None => err,
            }
        }
        Error::Journal(JournalError::Setting { what, message }) => {
            let message = format!("journal option {what}: {message}");
            raise(setting_error(py)?, message, &[("setting", what.into_pyobject(py)?.into_any())])
        }
        Error::Journal(e) => {
            let (path, offset) = (e.path().map(|p| p.display().to_string()), e.offset());
            raise(
                journal_error(py)?,
                e.to_string(),
                &[("path", path.into_pyobject(py)?.into_any()), ("offset", offset.into_pyobject(py)?.into_any())],
            )
        }
        Error::Python(e) => e,
    })
}

/// Builds an instance of `class(message, **kwargs)` as a `PyErr`.
fn raise(class: &Bound<'_, PyType>, message: String, kwargs: &[(&str, Bound<'_, PyAny>)]) -> PyErr {
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
fn with_cause(py: Python<'_>, err: PyErr, cause: &PyErr) -> PyErr {
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

/// Whether `e` reports a failed fire or accumulator call (`NodeError`,
/// `AccumulatorError`), as opposed to a misuse or an engine failure.
pub fn is_fire_failure(py: Python<'_>, e: &PyErr) -> bool {
    [node_error(py), accumulator_error(py)].into_iter().flatten().any(|class| e.is_instance(py, class))
}
