//! Turning the Python description of a graph into a core spec plus the
//! callables, ordered as the compiled plan wants them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use headrace_core::checkpoint::Value as CheckpointValue;
use headrace_core::host::Codec;
use headrace_core::plan::Plan;
use headrace_core::spec::{
    AccKind, AccSpec, CriteriaKind, CriteriaSpec, GraphSpec, InputStrategy, NodeSpec, RouteSpec,
};

use crate::errors::{self, LogLimiter};
use crate::fire::Names;

pub struct AccCall {
    pub function: Py<PyAny>,
    /// Passed as the second argument (stream accumulators declared with `state=`).
    pub state: Option<Py<PyAny>>,
    pub codec: Codec,
    /// With `check_checkpointable`: the last `State.value` that could be
    /// checkpointed, put back when a call leaves one that cannot.
    pub good_state: Mutex<Option<CheckpointValue>>,
}

pub struct NodeCall {
    pub function: Py<PyAny>,
    /// Route labels of a routing node, indexed as the plan indexes them.
    pub labels: Vec<String>,
    /// A cutoff node's own `equal(previous, current)`; None compares with `==`.
    pub equal: Option<Py<PyAny>>,
}

/// Everything the engine calls into, in plan order.
pub struct Callables {
    pub plan: Arc<Plan>,
    pub accs: Vec<AccCall>,
    pub nodes: Vec<NodeCall>,
    pub on_fire: Option<Py<PyAny>>,
    /// Interned once so that building a fire's outputs allocates no strings.
    pub names: Arc<Names>,
    /// Where checkpoints go; None without a store.
    pub checkpoint: Option<CheckpointSink>,
    /// Called as `(accumulator, data, topic, partition, offset, error)` for an
    /// undecodable stream message (a dead-letter topic, for instance).
    pub on_undecodable: Option<Py<PyAny>>,
    /// Thread mode logs refused events through this (one line per event
    /// would flood the log when a producer keeps sending them).
    pub refusals: LogLimiter,
}

/// The Python checkpoint writer (`submit(id, components)`, `fail(id, message)`)
/// and the codec to seal components with.
pub struct CheckpointSink {
    pub writer: Py<PyAny>,
    pub codec: headrace_core::checkpoint::CodecId,
    /// Id of the last checkpoint handed to the writer.
    pub last_id: std::sync::atomic::AtomicU64,
}

impl Callables {
    pub fn traverse(&self, visit: &pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for a in &self.accs {
            visit.call(&a.function)?;
            visit.call(&a.state)?;
        }
        for n in &self.nodes {
            visit.call(&n.function)?;
            visit.call(&n.equal)?;
        }
        visit.call(&self.on_fire)?;
        visit.call(&self.on_undecodable)?;
        if let Some(sink) = &self.checkpoint {
            visit.call(&sink.writer)?;
        }
        Ok(())
    }
}

fn item<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match d.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|e| {
            let e: PyErr = e.into();
            pyo3::exceptions::PyTypeError::new_err(format!("graph spec field '{key}': {e}"))
        }),
        None => Err(pyo3::exceptions::PyKeyError::new_err(format!("graph spec is missing '{key}'"))),
    }
}

use pyo3::conversion::FromPyObjectOwned;

fn seconds(v: Option<f64>, what: &str, name: &str) -> PyResult<Option<Duration>> {
    v.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "accumulator '{name}': {what} must be a finite, non-negative number of seconds, got {s}"
            ))
        })
    })
    .transpose()
}

fn acc_kind(kind: &str, config: &Bound<'_, PyDict>, name: &str) -> PyResult<AccKind> {
    let get_f = |k: &str| -> PyResult<Option<f64>> {
        Ok(match config.get_item(k)? { Some(v) if !v.is_none() => Some(v.extract()?), _ => None })
    };
    let get_u = |k: &str| -> PyResult<Option<usize>> {
        Ok(match config.get_item(k)? { Some(v) if !v.is_none() => Some(v.extract()?), _ => None })
    };
    Ok(match kind {
        "passthrough" => AccKind::Passthrough,
        "stream" => AccKind::Stream,
        "polling" => AccKind::Polling {
            interval: seconds(get_f("interval")?, "interval", name)?.unwrap_or(Duration::ZERO),
        },
        "batch" => AccKind::Batch {
            max_buffer_size: get_u("max_buffer_size")?,
            flush_interval: seconds(get_f("flush_interval")?, "flush_interval", name)?,
        },
        "state" => AccKind::State { capacity: get_u("capacity")?.unwrap_or(0) },
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "accumulator '{name}': unknown kind '{other}'"
            )))
        }
    })
}

pub struct Parsed {
    pub spec: GraphSpec,
    pub accs: Vec<AccCall>,
    /// In spec order.
    pub nodes: Vec<NodeCall>,
}

pub fn parse(spec: &Bound<'_, PyDict>) -> PyResult<Parsed> {
    let name: String = item(spec, "name")?;
    let strategy = match spec.get_item("input_strategy")?.map(|s| s.extract::<String>()).transpose()?.as_deref() {
        None => InputStrategy::default(),
        Some("latest") => InputStrategy::Latest,
        Some("sequential") => InputStrategy::Sequential,
        Some(other) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "input_strategy must be 'latest' or 'sequential', got '{other}'"
            )))
        }
    };
    let criteria: Bound<'_, PyDict> = item(spec, "criteria")?;
    let kind = match item::<String>(&criteria, "kind")?.as_str() {
        "when_any" => CriteriaKind::Any,
        "when_all" => CriteriaKind::All,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "criteria kind must be 'when_any' or 'when_all', got '{other}'"
            )))
        }
    };
    let members: Vec<String> = item(&criteria, "members")?;

    let mut accumulators = Vec::new();
    let mut accs = Vec::new();
    for a in item::<Bound<'_, PyList>>(spec, "accumulators")?.iter() {
        let a = a.cast_into::<PyDict>()?;
        let acc_name: String = item(&a, "name")?;
        let config: Bound<'_, PyDict> = item(&a, "config")?;
        let kind = acc_kind(&item::<String>(&a, "kind")?, &config, &acc_name)?;
        let codec = match item::<String>(&a, "codec")?.as_str() {
            "json" => Codec::Json,
            "msgpack" => Codec::Msgpack,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "accumulator '{acc_name}': codec must be 'json' or 'msgpack', got '{other}'"
                )))
            }
        };
        let state: Option<Py<PyAny>> = a.get_item("state")?.filter(|s| !s.is_none()).map(Bound::unbind);
        accs.push(AccCall { function: item(&a, "function")?, state, codec, good_state: Mutex::new(None) });
        accumulators.push(AccSpec { name: acc_name, kind });
    }

    let mut nodes = Vec::new();
    let mut node_calls = Vec::new();
    for n in item::<Bound<'_, PyList>>(spec, "nodes")?.iter() {
        let n = n.cast_into::<PyDict>()?;
        let routes: Vec<(String, Vec<String>)> = item(&n, "routes")?;
        let equal: Option<Py<PyAny>> = n.get_item("equal")?.filter(|e| !e.is_none()).map(Bound::unbind);
        let cutoff = equal.is_some() || n.get_item("cutoff")?.map(|c| c.is_truthy()).transpose()?.unwrap_or(false);
        let labels = routes.iter().map(|r| r.0.clone()).collect();
        node_calls.push(NodeCall { function: item(&n, "function")?, labels, equal });
        nodes.push(NodeSpec {
            name: item(&n, "name")?,
            params: item(&n, "params")?,
            routes: routes.into_iter().map(|(label, targets)| RouteSpec { label, targets }).collect(),
            cutoff,
        });
    }
    Ok(Parsed {
        spec: GraphSpec { name, accumulators, nodes, criteria: CriteriaSpec { kind, members }, strategy },
        accs,
        nodes: node_calls,
    })
}

/// Validates and compiles a spec; raises `GraphDefinitionError` naming every problem.
pub fn compile(py: Python<'_>, parsed: Parsed, on_fire: Option<Py<PyAny>>) -> PyResult<Callables> {
    let plan = Arc::new(Plan::compile(&parsed.spec).map_err(|e| errors::definition(py, &e))?);
    let mut by_spec: Vec<Option<NodeCall>> = parsed.nodes.into_iter().map(Some).collect();
    let nodes = plan.nodes.iter().map(|n| by_spec[n.spec_index].take().expect("each node once")).collect();
    Ok(Callables {
        names: Arc::new(Names {
            accumulators: plan.accumulators.iter().map(|a| PyString::intern(py, &a.name).unbind()).collect(),
            nodes: plan.nodes.iter().map(|n| PyString::intern(py, &n.name).unbind()).collect(),
        }),
        plan,
        accs: parsed.accs,
        nodes,
        on_fire,
        checkpoint: None,
        on_undecodable: None,
        refusals: LogLimiter::new(Duration::from_secs(10)),
    })
}
