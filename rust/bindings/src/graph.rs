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

use crate::errors::{Error, LogLimiter};
use crate::fire::{Names, OnOutput};
use crate::options::optional_seconds;

pub struct AccCall {
    /// None for a passthrough declared without a function (never called).
    pub function: Py<PyAny>,
    /// Passed as the second argument (stream accumulators declared with `state=`).
    pub state: Option<Py<PyAny>>,
    pub codec: Codec,
    /// With `check_checkpointable`: the last `State.value` that could be
    /// checkpointed, put back when a call leaves one that cannot.
    pub good_state: Mutex<Option<CheckpointValue>>,
    /// `async def`: its coroutine is awaited on the runtime's loop.
    pub is_async: bool,
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
    /// `on_fire=hr.on_output(node, fn)`: (plan position of that terminal
    /// node, fn), called with the node's value alone; no `FireResult` is built.
    pub on_output: Option<(usize, Py<PyAny>)>,
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
    /// Some node or accumulator is `async def` (the runtime needs a loop).
    pub has_async: bool,
    /// By accumulator: the runner its pushed events may go through as a
    /// chain run (`chain.rs`), if any.
    pub runners: Vec<Option<crate::chain::Runner>>,
    /// `push_pairs`' runner, if the graph allows one (`chain.rs`).
    pub pairs: Option<crate::chain::PairsRunner>,
    /// The accumulators' ages, for `input_age` (set once the processor exists).
    pub ages: Option<Arc<crate::ages::AgeView>>,
}

/// The Python checkpoint writer (`submit(id, components)`, `fail(id, message)`)
/// and the codec to seal components with.
pub struct CheckpointSink {
    pub writer: Py<PyAny>,
    pub codec: headrace_core::checkpoint::CodecId,
    /// Id of the last checkpoint handed to the writer (shared with `Engine`,
    /// which reads it without any lock).
    pub last_id: Arc<std::sync::atomic::AtomicU64>,
}

impl Callables {
    /// Every Python object held here (for the GC).
    pub fn for_each_object(&self, f: &mut dyn FnMut(&Py<PyAny>)) {
        for a in &self.accs {
            f(&a.function);
            a.state.iter().for_each(&mut *f);
        }
        self.nodes.iter().for_each(|n| {
            f(&n.function);
            n.equal.iter().for_each(&mut *f);
        });
        self.on_fire.iter().chain(&self.on_undecodable).for_each(&mut *f);
        if let Some((_, sink)) = &self.on_output {
            f(sink);
        }
        if let Some(sink) = &self.checkpoint {
            f(&sink.writer);
        }
        self.runners.iter().flatten().for_each(|r| {
            f(&r.keep);
            f(&r.count);
            f(&r.one);
            f(&r.suppressed);
        });
        if let Some(p) = &self.pairs {
            f(&p.function);
        }
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

/// An accumulator setting in seconds, as a `Duration`.
fn seconds(v: Option<f64>, what: &str, name: &str) -> PyResult<Option<Duration>> {
    Ok(optional_seconds(v, &format!("accumulator '{name}': {what}"))?)
}

/// An optional entry: absent and None read alike (older specs lack it).
fn optional<'py, T: FromPyObjectOwned<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => item(d, key).map(Some),
        _ => Ok(None),
    }
}

/// A deadline in seconds, as a positive duration.
fn deadline(d: &Bound<'_, PyDict>, key: &str, whose: &str) -> PyResult<Option<Duration>> {
    match optional::<f64>(d, key)? {
        Some(s) if s > 0.0 => Duration::try_from_secs_f64(s).map(Some).map_err(|_| bad_deadline(whose, key, s)),
        Some(s) => Err(bad_deadline(whose, key, s)),
        None => Ok(None),
    }
}

fn bad_deadline(whose: &str, key: &str, s: f64) -> PyErr {
    let message = format!("{whose}: {key} must be a positive, finite number of seconds, got {s}");
    Error::Setting { what: key.into(), message }.into()
}

/// The kind named by `label`, with the settings from `config`.
fn acc_kind(label: &str, config: &Bound<'_, PyDict>, name: &str) -> PyResult<AccKind> {
    let get_f = |k: &str| -> PyResult<Option<f64>> {
        Ok(match config.get_item(k)? { Some(v) if !v.is_none() => Some(v.extract()?), _ => None })
    };
    let get_u = |k: &str| -> PyResult<Option<usize>> {
        Ok(match config.get_item(k)? { Some(v) if !v.is_none() => Some(v.extract()?), _ => None })
    };
    let kind: AccKind = label.parse().map_err(Error::from)?;
    Ok(match kind {
        AccKind::Passthrough | AccKind::Stream => kind,
        AccKind::Polling { .. } => AccKind::Polling {
            interval: seconds(get_f("interval")?, "interval", name)?.unwrap_or(Duration::ZERO),
        },
        AccKind::Batch { .. } => AccKind::Batch {
            max_buffer_size: get_u("max_buffer_size")?,
            flush_interval: seconds(get_f("flush_interval")?, "flush_interval", name)?,
        },
        AccKind::State { .. } => AccKind::State { capacity: get_u("capacity")?.unwrap_or(0) },
    })
}

/// A spelling from the spec, as its core enum.
fn named<T: std::str::FromStr<Err = headrace_core::Error>>(text: &str) -> PyResult<T> {
    Ok(text.parse::<T>().map_err(Error::from)?)
}

pub struct Parsed {
    pub spec: GraphSpec,
    pub accs: Vec<AccCall>,
    /// In spec order.
    pub nodes: Vec<NodeCall>,
}

pub fn parse(spec: &Bound<'_, PyDict>) -> PyResult<Parsed> {
    let name: String = item(spec, "name")?;
    let strategy = match spec.get_item("input_strategy")?.map(|s| s.extract::<String>()).transpose()? {
        None => InputStrategy::default(),
        Some(text) => named(&text)?,
    };
    let criteria: Bound<'_, PyDict> = item(spec, "criteria")?;
    let kind: CriteriaKind = named(&item::<String>(&criteria, "kind")?)?;
    let members: Vec<String> = item(&criteria, "members")?;
    let mut criteria_spec = CriteriaSpec::new(kind, members);
    criteria_spec.debounce = deadline(&criteria, "debounce", "criteria")?;
    criteria_spec.throttle = deadline(&criteria, "throttle", "criteria")?;
    criteria_spec.every = deadline(&criteria, "every", "criteria")?;
    let criteria = criteria_spec;

    let mut accumulators = Vec::new();
    let mut accs = Vec::new();
    for a in item::<Bound<'_, PyList>>(spec, "accumulators")?.iter() {
        let a = a.cast_into::<PyDict>()?;
        let acc_name: String = item(&a, "name")?;
        let config: Bound<'_, PyDict> = item(&a, "config")?;
        let kind = acc_kind(&item::<String>(&a, "kind")?, &config, &acc_name)?;
        let codec: Codec = named(&item::<String>(&a, "codec")?)?;
        let state: Option<Py<PyAny>> = a.get_item("state")?.filter(|s| !s.is_none()).map(Bound::unbind);
        let function: Py<PyAny> = item(&a, "function")?;
        let has_function = !function.is_none(a.py());
        let is_async = optional(&a, "is_async")?.unwrap_or(false);
        accs.push(AccCall { function, state, codec, good_state: Mutex::new(None), is_async });
        let input = match a.get_item("input")?.filter(|s| !s.is_none()) {
            Some(label) => Some(named(&label.extract::<String>()?)?),
            None => None,
        };
        let max_age = deadline(&a, "max_age", &format!("accumulator '{acc_name}'"))?;
        accumulators.push(AccSpec { name: acc_name, kind, input, function: has_function, max_age });
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
        let node_name: String = item(&n, "name")?;
        nodes.push(NodeSpec {
            timeout: deadline(&n, "timeout", &format!("node '{node_name}'"))?,
            name: node_name,
            params: item(&n, "params")?,
            routes: routes.into_iter().map(|(label, targets)| RouteSpec { label, targets }).collect(),
            is_async: optional(&n, "is_async")?.unwrap_or(false),
            cutoff,
        });
    }
    let fire_timeout = deadline(spec, "fire_timeout", &format!("graph '{name}'"))?;
    Ok(Parsed {
        spec: GraphSpec { name, accumulators, nodes, criteria, strategy, fire_timeout },
        accs,
        nodes: node_calls,
    })
}

/// Validates and compiles a spec; raises `GraphDefinitionError` naming every problem.
pub fn compile(py: Python<'_>, parsed: Parsed, on_fire: Option<Py<PyAny>>, chain: Option<crate::chain::Records>) -> PyResult<Callables> {
    let plan = Arc::new(Plan::compile(&parsed.spec).map_err(Error::Definition)?);
    let (on_fire, on_output) = match on_fire {
        Some(f) => match f.bind(py).cast::<OnOutput>() {
            Ok(sink) => (None, Some(output_sink(py, &plan, sink.get())?)),
            Err(_) => (Some(f), None),
        },
        None => (None, None),
    };
    let mut by_spec: Vec<Option<NodeCall>> = parsed.nodes.into_iter().map(Some).collect();
    let nodes: Vec<NodeCall> = plan.nodes.iter().map(|n| by_spec[n.spec_index].take().expect("each node once")).collect();
    let has_async = !plan.async_nodes.is_empty() || parsed.accs.iter().any(|a| a.is_async);
    let sink = on_output.as_ref().map(|(_, f)| f);
    // `chain`: what chain runs record; None: events never go through one.
    let graph = crate::chain::Graph { plan: &plan, accs: &parsed.accs, nodes: &nodes, on_fire: on_fire.is_some(), sink };
    let runners = match chain {
        Some(records) => crate::chain::runners(py, &graph, records)?,
        None => parsed.accs.iter().map(|_| None).collect(),
    };
    // It records nothing per fire: with `profile`/`record_inputs`, pairs go one by one.
    let pairs = match chain.filter(|r| !r.node_ns && !r.inputs) {
        Some(records) => crate::chain::pairs_runner(py, &graph, records.check)?,
        None => None,
    };
    Ok(Callables {
        runners,
        pairs,
        has_async,
        names: Arc::new(Names {
            accumulators: plan.accumulators.iter().map(|a| PyString::intern(py, &a.name).unbind()).collect(),
            nodes: plan.nodes.iter().map(|n| PyString::intern(py, &n.name).unbind()).collect(),
            terminal: plan.nodes.iter().map(|n| n.terminal).collect(),
        }),
        plan,
        accs: parsed.accs,
        nodes,
        on_fire,
        on_output,
        checkpoint: None,
        on_undecodable: None,
        refusals: LogLimiter::new(Duration::from_secs(10)),
        ages: None,
    })
}

/// Resolves `hr.on_output(node, fn)` against the plan: the node must be a
/// terminal node (only those have a value in a fire's outputs).
fn output_sink(py: Python<'_>, plan: &Plan, sink: &OnOutput) -> PyResult<(usize, Py<PyAny>)> {
    let name = sink.node.bind(py).to_str()?;
    match plan.nodes.iter().position(|n| n.name == name) {
        Some(i) if plan.nodes[i].terminal => Ok((i, sink.function.clone_ref(py))),
        found => {
            let terminals = plan.nodes.iter().filter(|n| n.terminal).map(|n| n.name.clone()).collect();
            let call = format!("graph '{}': on_output('{name}')", plan.graph);
            Err(Error::NotTerminal { call, name: name.into(), found: found.is_some(), terminals, definition: true }.into())
        }
    }
}
