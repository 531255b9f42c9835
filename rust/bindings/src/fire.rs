//! `Route` and `FireResult`: the two values user code sees from the engine.

use std::sync::{Arc, OnceLock};
use std::time::UNIX_EPOCH;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use headrace_core::host::{FireRecord, Trigger};

/// A routing node's choice: only the nodes on branch `label` run, and they
/// receive `value`.
#[pyclass(frozen, module = "headrace", name = "Route")]
pub struct Route {
    #[pyo3(get)]
    pub label: Py<PyString>,
    #[pyo3(get)]
    pub value: Py<PyAny>,
}

#[pymethods]
impl Route {
    #[new]
    #[pyo3(signature = (label, value = None))]
    fn new(py: Python<'_>, label: Bound<'_, PyString>, value: Option<Py<PyAny>>) -> Self {
        Route { label: label.unbind(), value: value.unwrap_or_else(|| py.None()) }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Route({}, {})", self.label.bind(py).repr()?, self.value.bind(py).repr()?))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<Route>() else { return Ok(false) };
        let other = other.get();
        Ok(self.label.bind(py).as_any().eq(other.label.bind(py))? && self.value.bind(py).eq(other.value.bind(py))?)
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.value)
    }
}

/// The outcome of one fire of a graph.
#[pyclass(frozen, module = "headrace", name = "FireResult")]
pub struct FireResult {
    /// Fire number within this runtime, from 1.
    #[pyo3(get)]
    pub id: u64,
    /// What caused the fire: an accumulator name, "criteria" or "manual".
    #[pyo3(get)]
    pub trigger: Py<PyString>,
    outputs: Vec<(usize, Py<PyAny>)>,
    names: Arc<[Py<PyString>]>,
    outputs_dict: OnceLock<Py<PyDict>>,
    /// Name of the node that raised, or None.
    #[pyo3(get)]
    pub node: Option<Py<PyString>>,
    /// The exception the node raised, or None.
    #[pyo3(get)]
    pub error: Option<Py<PyAny>>,
    /// 1 for the first try of these inputs, more for retries.
    #[pyo3(get)]
    pub attempt: u32,
    /// The failed inputs were moved to the dead-letter list.
    #[pyo3(get)]
    pub dead_lettered: bool,
    /// Wall-clock start, seconds since the Unix epoch.
    #[pyo3(get)]
    pub started_at: f64,
    /// Time spent running the graph's nodes, in nanoseconds.
    #[pyo3(get)]
    pub duration_ns: u64,
}

impl FireResult {
    pub fn from_record(
        py: Python<'_>,
        record: FireRecord<Py<PyAny>, PyErr>,
        names: &Arc<[Py<PyString>]>,
        acc_names: &[Py<PyString>],
    ) -> FireResult {
        let trigger = match record.trigger {
            Trigger::Boundary(acc) => acc_names[acc].clone_ref(py),
            Trigger::Criteria => pyo3::intern!(py, "criteria").clone().unbind(),
            Trigger::Manual => pyo3::intern!(py, "manual").clone().unbind(),
        };
        let (node, error, attempt, dead_lettered) = match record.failure {
            Some(f) => (Some(names[f.node].clone_ref(py)), Some(f.error.into_value(py).into_any()), f.attempt, f.dead_lettered),
            None => (None, None, 1, false),
        };
        FireResult {
            id: record.id,
            trigger,
            outputs: record.outputs,
            names: names.clone(),
            outputs_dict: OnceLock::new(),
            node,
            error,
            attempt,
            dead_lettered,
            started_at: record.started_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
            duration_ns: record.duration.as_nanos() as u64,
        }
    }
}

#[pymethods]
impl FireResult {
    /// `{terminal node name: result}` for every terminal node that ran.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(d) = self.outputs_dict.get() {
            return Ok(d.bind(py).clone());
        }
        let d = PyDict::new(py);
        for (pos, value) in &self.outputs {
            d.set_item(self.names[*pos].bind(py), value.bind(py))?;
        }
        // Attached, so no other thread can have set it meanwhile.
        let _ = self.outputs_dict.set(d.clone().unbind());
        Ok(d)
    }

    /// True when every node that ran returned.
    #[getter]
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match (&self.node, &self.error) {
            (Some(node), Some(error)) => format!(
                "FireResult(id={}, trigger={}, failed in {}: {})",
                self.id,
                self.trigger.bind(py),
                node.bind(py),
                error.bind(py).repr()?
            ),
            _ => format!("FireResult(id={}, trigger={}, outputs={})", self.id, self.trigger.bind(py), self.outputs(py)?.repr()?),
        })
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for (_, v) in &self.outputs {
            visit.call(v)?;
        }
        visit.call(&self.error)?;
        if let Some(d) = self.outputs_dict.get() {
            visit.call(d)?;
        }
        Ok(())
    }
}
