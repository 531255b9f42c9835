//! Raising the exception classes of `headrace.errors` from Rust.
//!
//! The classes are defined once, in Python; Rust looks each up once and keeps it.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

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
error_class!(accumulator_error, "AccumulatorError");
error_class!(backpressure_error, "BackpressureError");
error_class!(checkpoint_error, "CheckpointError");

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
