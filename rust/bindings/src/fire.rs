//! `Route` and `FireResult`: the two values user code sees from the engine.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

use crate::errors::Error;
use pyo3::types::{PyDict, PyList, PySlice, PyString};

use headrace_core::host::{FireDetail, FireRecord, Outputs, Trigger};

type Record = FireRecord<Py<PyAny>, PyErr>;

/// Interned names, shared by every result of one runtime.
pub struct Names {
    pub nodes: Vec<Py<PyString>>,
    pub accumulators: Vec<Py<PyString>>,
    /// By plan position: whether the node is terminal (has an output).
    pub terminal: Vec<bool>,
}

impl Names {
    /// Plan position of terminal node `name`, or a `HeadraceError` naming the terminals.
    fn terminal(&self, py: Python<'_>, name: &str) -> PyResult<usize> {
        let found = self.nodes.iter().position(|n| n.bind(py).to_str().is_ok_and(|s| s == name));
        match found {
            Some(i) if self.terminal[i] => Ok(i),
            _ => {
                let terminals: Vec<String> = (0..self.nodes.len())
                    .filter(|i| self.terminal[*i])
                    .map(|i| self.nodes[i].bind(py).to_string())
                    .collect();
                let call = format!("outputs('{name}')");
                Err(Error::NotTerminal { call, name: name.into(), found: found.is_some(), terminals, definition: false }.into())
            }
        }
    }
}

/// `on_fire=hr.on_output(node, fn)`: call `fn(value)` with terminal `node`'s
/// value for every successful fire in which it ran, instead of `on_fire(FireResult)`.
/// No `FireResult` is built, so the sink costs one call. Failed fires are
/// raised (inline) or logged (thread mode) as without `on_fire`.
#[pyclass(frozen, module = "headrace", name = "OnOutput")]
pub struct OnOutput {
    /// The terminal node whose value is handed over.
    #[pyo3(get)]
    pub node: Py<PyString>,
    /// Called with that value.
    #[pyo3(get)]
    pub function: Py<PyAny>,
}

#[pymethods]
impl OnOutput {
    #[new]
    fn new(node: Bound<'_, PyString>, function: Bound<'_, PyAny>) -> PyResult<Self> {
        if !function.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "on_output('{node}', fn): fn must be callable, got {}",
                function.repr()?
            )));
        }
        Ok(OnOutput { node: node.unbind(), function: function.unbind() })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("on_output({}, {})", self.node.bind(py).repr()?, self.function.bind(py).repr()?))
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.function)
    }
}

/// A routing node's choice: only the nodes on branch `label` run, and they
/// receive `value`.
#[pyclass(frozen, freelist = 256, module = "headrace", name = "Route")]
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
///
/// Deliberately not tracked by the cyclic GC: a run of `push_many` creates one
/// per event, and tracking them made collections dominate the hot path. No
/// cycle can pass through it: it is immutable and built after its outputs
/// and recorded inputs.
#[pyclass(frozen, freelist = 1024, module = "headrace", name = "FireResult")]
pub struct FireResult {
    /// Fire number within this runtime, from 1.
    #[pyo3(get)]
    pub id: u64,
    /// What caused the fire: an accumulator name, "criteria" or "manual".
    #[pyo3(get)]
    pub trigger: Py<PyString>,
    outputs: Outputs<Py<PyAny>>,
    names: Arc<Names>,
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
    /// Node timings and inputs, when the runtime records them; converted to
    /// Python only when read.
    detail: Option<Box<FireDetail<Py<PyAny>>>>,
}

impl FireResult {
    /// Builds the Python object, taking the record's values over.
    pub fn from_record(py: Python<'_>, record: Record, names: &Arc<Names>) -> FireResult {
        let (node, error, attempt, dead_lettered) = match record.failure {
            Some(f) => (
                Some(names.nodes[f.node].clone_ref(py)),
                Some(f.error.into_value(py).into_any()),
                f.attempt,
                f.dead_lettered,
            ),
            None => (None, None, 1, false),
        };
        FireResult {
            id: record.id,
            trigger: trigger_name(py, record.trigger, names),
            outputs: record.outputs,
            names: names.clone(),
            outputs_dict: OnceLock::new(),
            node,
            error,
            attempt,
            dead_lettered,
            started_at: seconds_since_epoch(record.started_at),
            duration_ns: record.duration.as_nanos() as u64,
            detail: record.detail,
        }
    }

    /// Builds the Python object from a kept record (values shared, not moved).
    fn from_kept(py: Python<'_>, record: &Record, names: &Arc<Names>) -> FireResult {
        let copy = FireRecord {
            id: record.id,
            trigger: record.trigger,
            seq: record.seq,
            outputs: record.outputs.iter().map(|(i, v)| (*i, v.clone_ref(py))).collect(),
            failure: record.failure.as_ref().map(|f| headrace_core::host::NodeFailure {
                node: f.node,
                error: f.error.clone_ref(py),
                attempt: f.attempt,
                dead_lettered: f.dead_lettered,
            }),
            started_at: record.started_at,
            duration: record.duration,
            detail: record.detail.as_ref().map(|d| Box::new(share_detail(py, d))),
        };
        FireResult::from_record(py, copy, names)
    }

    /// Builds the Python object from a plain kept fire, taking its values over.
    fn from_plain(py: Python<'_>, fire: Plain, names: &Arc<Names>) -> FireResult {
        FireResult {
            id: fire.id,
            trigger: trigger_name(py, fire.trigger, names),
            outputs: fire.output.into_iter().collect(),
            names: names.clone(),
            outputs_dict: OnceLock::new(),
            node: None,
            error: None,
            attempt: 1,
            dead_lettered: false,
            started_at: seconds_since_epoch(fire.started_at),
            duration_ns: fire.duration_ns,
            detail: fire.detail,
        }
    }
}

/// Another reference to a fire's records.
fn share_detail(py: Python<'_>, d: &FireDetail<Py<PyAny>>) -> FireDetail<Py<PyAny>> {
    FireDetail {
        node_ns: d.node_ns.clone(),
        inputs: d.inputs.as_ref().map(|inputs| inputs.iter().map(|(i, v)| (*i, v.as_ref().map(|v| v.clone_ref(py)))).collect()),
    }
}

fn seconds_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn trigger_name(py: Python<'_>, trigger: Trigger, names: &Names) -> Py<PyString> {
    match trigger {
        Trigger::Boundary(acc) => names.accumulators[acc].clone_ref(py),
        Trigger::Criteria => pyo3::intern!(py, "criteria").clone().unbind(),
        Trigger::Manual => pyo3::intern!(py, "manual").clone().unbind(),
        Trigger::Schedule => pyo3::intern!(py, "schedule").clone().unbind(),
    }
}

/// A fire an inline call kept, for a caller that may never look at it: no
/// Python allocation on the hot path, and small, since `push_many` keeps one
/// per event (a whole record is three times the size of a plain fire, and
/// writing a million of them cost more than the fires' own bookkeeping).
pub enum Kept {
    /// A successful fire with at most one output: nearly every fire of a run.
    Plain(Plain),
    /// Any other fire, as the core reported it.
    Record(Box<Record>),
    /// The object, already built (it was handed to `on_fire`, or raised).
    Built(Py<FireResult>),
    /// The successful fires of one chain run, one per output.
    Run(Box<RunFires>),
}

/// The fires of one chain run (`chain.rs`): one per value in `outputs`, with
/// ids from `first_id` on. A run is timed as a whole, so each fire is given
/// an equal share of its time, in order.
pub struct RunFires {
    pub first_id: u64,
    pub trigger: Trigger,
    /// For a run of several accumulators' events (`push_pairs`): each fire's
    /// triggering accumulator, by index (else every fire has `trigger`).
    pub triggers: Option<Py<PyList>>,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// Plan position of the terminal node the outputs are of.
    pub terminal: usize,
    pub outputs: Py<PyList>,
    /// Node timings and inputs, when the runtime records them.
    pub records: Option<crate::chain::RunRecords>,
}

impl RunFires {
    /// A run's fires as the processor booked them; `triggers`: each fire's
    /// triggering accumulator, for a run of several.
    pub fn new(
        booked: headrace_core::processor::ChainRan,
        duration: Duration,
        plan: &headrace_core::plan::Plan,
        outputs: Bound<'_, PyList>,
        triggers: Option<Bound<'_, PyList>>,
        records: Option<crate::chain::RunRecords>,
    ) -> Self {
        RunFires {
            first_id: booked.first_fire,
            trigger: booked.trigger,
            triggers: triggers.map(Bound::unbind),
            started_at: booked.started_at,
            duration,
            terminal: plan.chain_terminal.expect("a runner implies a chain"),
            outputs: outputs.unbind(),
            records,
        }
    }

    fn len(&self, py: Python<'_>) -> usize {
        self.outputs.bind(py).len()
    }

    /// The `k`-th fire of the run.
    fn fire(&self, py: Python<'_>, k: usize, names: &Arc<Names>) -> PyResult<FireResult> {
        let n = self.len(py);
        let each = self.duration / n.max(1) as u32;
        let value = self.outputs.bind(py).get_item(k)?.unbind();
        Ok(FireResult::from_plain(
            py,
            Plain {
                id: self.first_id + k as u64,
                trigger: match &self.triggers {
                    Some(t) => Trigger::Boundary(t.bind(py).get_item(k)?.extract()?),
                    None => self.trigger,
                },
                started_at: self.started_at + each * k as u32,
                duration_ns: each.as_nanos() as u64,
                output: Some((self.terminal, value)),
                detail: match &self.records {
                    Some(r) => r.detail(py, k, r.nodes)?,
                    None => None,
                },
            },
            names,
        ))
    }
}

pub struct Plain {
    id: u64,
    trigger: Trigger,
    started_at: SystemTime,
    duration_ns: u64,
    /// `(plan position, value)` of the one terminal node that ran, if any.
    output: Option<(usize, Py<PyAny>)>,
    detail: Option<Box<FireDetail<Py<PyAny>>>>,
}

impl Kept {
    /// A chain runner's single successful fire (`chain::push_one`).
    pub fn plain(
        ran: headrace_core::processor::ChainRan,
        duration: Duration,
        output: (usize, Py<PyAny>),
        detail: Option<Box<FireDetail<Py<PyAny>>>>,
    ) -> Kept {
        Kept::Plain(Plain {
            id: ran.first_fire,
            trigger: ran.trigger,
            started_at: ran.started_at,
            duration_ns: duration.as_nanos() as u64,
            output: Some(output),
            detail,
        })
    }

    /// Keeps a reported fire in the smallest form that holds all of it.
    pub fn record(record: Record) -> Kept {
        if record.failure.is_some() || record.outputs.len() > 1 {
            return Kept::Record(Box::new(record));
        }
        Kept::Plain(Plain {
            id: record.id,
            trigger: record.trigger,
            started_at: record.started_at,
            duration_ns: record.duration.as_nanos() as u64,
            output: record.outputs.into_iter().next(),
            detail: record.detail,
        })
    }

    pub fn into_object(self, py: Python<'_>, names: &Arc<Names>) -> PyResult<Py<FireResult>> {
        match self {
            Kept::Built(b) => Ok(b),
            Kept::Record(r) => Py::new(py, FireResult::from_record(py, *r, names)),
            Kept::Plain(p) => Py::new(py, FireResult::from_plain(py, p, names)),
            // Only lists hold runs; one fire's result is never one.
            Kept::Run(r) => Py::new(py, r.fire(py, 0, names)?),
        }
    }

    /// Fires this entry holds.
    fn len(&self, py: Python<'_>) -> usize {
        match self {
            Kept::Run(r) => r.len(py),
            _ => 1,
        }
    }

    fn object(&self, py: Python<'_>, names: &Arc<Names>) -> PyResult<Py<FireResult>> {
        match self {
            Kept::Built(b) => Ok(b.clone_ref(py)),
            Kept::Record(r) => Py::new(py, FireResult::from_kept(py, r, names)),
            Kept::Plain(p) => {
                let copy = Plain {
                    id: p.id,
                    trigger: p.trigger,
                    started_at: p.started_at,
                    duration_ns: p.duration_ns,
                    output: p.output.as_ref().map(|(i, v)| (*i, v.clone_ref(py))),
                    detail: p.detail.as_ref().map(|d| Box::new(share_detail(py, d))),
                };
                Py::new(py, FireResult::from_plain(py, copy, names))
            }
            Kept::Run(r) => Py::new(py, r.fire(py, 0, names)?),
        }
    }

    /// The `k`-th fire this entry holds.
    fn object_at(&self, py: Python<'_>, k: usize, names: &Arc<Names>) -> PyResult<Py<FireResult>> {
        match self {
            Kept::Run(r) => Py::new(py, r.fire(py, k, names)?),
            _ => self.object(py, names),
        }
    }

    /// Terminal node `pos`'s value in this fire, if it ran.
    fn output(&self, pos: usize) -> Option<&Py<PyAny>> {
        fn find(outputs: &Outputs<Py<PyAny>>, pos: usize) -> Option<&Py<PyAny>> {
            outputs.iter().find(|(p, _)| *p == pos).map(|(_, v)| v)
        }
        match self {
            Kept::Plain(p) => p.output.as_ref().filter(|(p, _)| *p == pos).map(|(_, v)| v),
            Kept::Record(r) => find(&r.outputs, pos),
            Kept::Built(b) => find(&b.get().outputs, pos),
            Kept::Run(_) => None,
        }
    }
}

/// The fires of one `push_many`/`push_pairs` call, in order: a read-only
/// sequence of `FireResult`. The fires are kept compactly and each
/// `FireResult` is built when it is looked at, so a call that pushes a million
/// events does not allocate a million Python objects up front.
#[pyclass(frozen, sequence, module = "headrace", name = "FireList")]
pub struct FireList {
    items: Vec<Kept>,
    /// With chain runs among the items: the index of each item's first fire
    /// (a run holds many); None when every item is one fire.
    starts: Option<Vec<usize>>,
    len: usize,
    names: Arc<Names>,
}

impl FireList {
    pub fn new(py: Python<'_>, items: Vec<Kept>, names: Arc<Names>) -> Self {
        if !items.iter().any(|k| matches!(k, Kept::Run(_))) {
            return FireList { len: items.len(), items, starts: None, names };
        }
        let mut len = 0;
        let starts = items
            .iter()
            .map(|k| {
                let start = len;
                len += k.len(py);
                start
            })
            .collect();
        FireList { items, starts: Some(starts), len, names }
    }

    /// Fire `i` (in range) as a Python object.
    fn fire(&self, py: Python<'_>, i: usize) -> PyResult<Py<FireResult>> {
        match &self.starts {
            None => self.items[i].object(py, &self.names),
            Some(starts) => {
                let item = starts.partition_point(|&s| s <= i) - 1;
                self.items[item].object_at(py, i - starts[item], &self.names)
            }
        }
    }
}

#[pymethods]
impl FireList {
    fn __len__(&self) -> usize {
        self.len
    }

    fn __getitem__(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let ind = slice.indices(self.len as isize)?;
            let list = PyList::empty(py);
            let mut i = ind.start;
            for _ in 0..ind.slicelength {
                list.append(self.fire(py, i as usize)?)?;
                i += ind.step;
            }
            return Ok(list.into_any().unbind());
        }
        let i: isize = index.extract()?;
        let n = self.len as isize;
        let at = if i < 0 { i + n } else { i };
        if at < 0 || at >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err("FireList index out of range"));
        }
        Ok(self.fire(py, at as usize)?.into_any())
    }

    fn __iter__(slf: Bound<'_, Self>) -> FireListIter {
        FireListIter { list: slf.unbind(), next: AtomicUsize::new(0) }
    }

    fn __repr__(&self) -> String {
        format!("<FireList of {} fire(s)>", self.len)
    }

    /// Terminal node `node`'s value of every fire, in order, as one list
    /// (None where the node did not run or the fire failed): reading a column
    /// builds no `FireResult` and no outputs dict.
    fn outputs<'py>(&self, py: Python<'py>, node: &str) -> PyResult<Bound<'py, PyList>> {
        let pos = self.names.terminal(py, node)?;
        if let [Kept::Run(run)] = self.items.as_slice() {
            if run.terminal == pos {
                // One run: a copy of its list (the caller may change it).
                return run.outputs.bind(py).get_slice(0, self.len).cast_into::<PyList>().map_err(Into::into);
            }
        }
        let none = py.None();
        let list = PyList::empty(py);
        for item in &self.items {
            match item {
                Kept::Run(run) if run.terminal == pos => {
                    for v in run.outputs.bind(py).iter() {
                        list.append(v)?;
                    }
                }
                Kept::Run(run) => {
                    for _ in 0..run.len(py) {
                        list.append(&none)?;
                    }
                }
                _ => list.append(item.output(pos).unwrap_or(&none))?,
            }
        }
        Ok(list)
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for item in &self.items {
            match item {
                Kept::Built(b) => visit.call(b)?,
                Kept::Run(r) => {
                    visit.call(&r.outputs)?;
                    if let Some(records) = &r.records {
                        visit.call(&records.seen)?;
                        for (_, v) in &records.inputs {
                            visit.call(v)?;
                        }
                    }
                }
                Kept::Plain(p) => {
                    if let Some((_, v)) = &p.output {
                        visit.call(v)?;
                    }
                    for (_, v) in p.detail.iter().flat_map(|d| d.inputs.iter().flatten()) {
                        visit.call(v)?;
                    }
                }
                Kept::Record(r) => {
                    for (_, v) in &r.outputs {
                        visit.call(v)?;
                    }
                    for (_, v) in r.detail.iter().flat_map(|d| d.inputs.iter().flatten()) {
                        visit.call(v)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[pyclass(frozen, module = "headrace")]
pub struct FireListIter {
    list: Py<FireList>,
    next: AtomicUsize,
}

#[pymethods]
impl FireListIter {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<FireResult>>> {
        let list = self.list.get();
        let i = self.next.fetch_add(1, Relaxed);
        if i < list.len {
            list.fire(py, i).map(Some)
        } else {
            Ok(None)
        }
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.list)
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
            d.set_item(self.names.nodes[*pos].bind(py), value.bind(py))?;
        }
        // Attached, so no other thread can have set it meanwhile.
        let _ = self.outputs_dict.set(d.clone().unbind());
        Ok(d)
    }

    /// `{node name: nanoseconds}` for every node that ran (the failing one
    /// included) when the runtime was created with `profile=True`, else None.
    #[getter]
    fn node_ns<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(node_ns) = self.detail.as_ref().and_then(|d| d.node_ns.as_ref()) else { return Ok(None) };
        let d = PyDict::new(py);
        for (pos, ns) in node_ns {
            d.set_item(self.names.nodes[*pos].bind(py), ns)?;
        }
        Ok(Some(d))
    }

    /// `{accumulator name: value}`: the values this fire's nodes received
    /// (None for an accumulator without a boundary yet), for every accumulator
    /// some node reads, when the runtime was created with `record_inputs=True`,
    /// else None.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(inputs) = self.detail.as_ref().and_then(|d| d.inputs.as_ref()) else { return Ok(None) };
        let d = PyDict::new(py);
        for (acc, value) in inputs {
            d.set_item(self.names.accumulators[*acc].bind(py), value.as_ref().map(|v| v.bind(py)))?;
        }
        Ok(Some(d))
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
}
