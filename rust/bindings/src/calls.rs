//! The Python host for one attached session: calls accumulators and nodes with
//! Rust tuples (vectorcall), decodes payloads, and turns reports into
//! `FireResult`s, callbacks, exceptions or log lines.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::Borrowed;

use headrace_core::checkpoint::snapshot::{encode_components, EngineSnapshot};
use headrace_core::checkpoint::Value as CheckpointValue;
use headrace_core::error::Named;
use headrace_core::event::SourcePosition;
use headrace_core::processor::Applied;
use headrace_core::host::{AsyncCall, Calls, ChainOutcome, CheckpointError, MixedOutcome, Codec, NodeOutput, Outputs, Overrun, Report, Unsupported};
use pyo3::types::PyDict;
use std::sync::atomic::Ordering::SeqCst;

use crate::aio::{self, Done};
use crate::checkable;
use crate::convert;
use crate::errors::{self, Error, NodeRaised, Uncheckpointable, Undecodable};
use crate::fire::{FireResult, Kept, Route};
use crate::graph::Callables;

type Value = Py<PyAny>;

/// What an inline call (push, fire) hands back to its caller. Filled in
/// place (it is large, and the inline push is the hot path).
pub struct InlineOutcome {
    /// Sequence number of the event (or manual fire) the caller is waiting on.
    pub target: u64,
    /// The first fire reflecting `target`.
    pub result: Option<Kept>,
    /// The first failure during the call, raised once the call is done.
    pub error: Option<PyErr>,
    /// What applying the item did (a checkpoint's outcome, a stop).
    pub applied: Applied,
}

impl InlineOutcome {
    pub fn new() -> Self {
        InlineOutcome { target: 0, result: None, error: None, applied: Applied::default() }
    }
}

pub struct PyCalls<'a, 'py> {
    pub py: Python<'py>,
    pub cx: &'a Callables,
    pub inline: Option<&'a mut InlineOutcome>,
    /// The loop async nodes and accumulators run on (None: the graph has none,
    /// or a sync inline call, which refuses them before it starts).
    pub aio: Option<&'a Py<PyAny>>,
}

fn arg<'a, 'py>(py: Python<'py>, v: Option<&'a Value>) -> Borrowed<'a, 'py, PyAny> {
    static NONE: PyOnceLock<Value> = PyOnceLock::new();
    match v {
        Some(v) => v.bind_borrowed(py),
        None => NONE.get_or_init(py, || py.None()).bind_borrowed(py),
    }
}

/// `Route`'s type object, looked up once (it lives as long as the module).
fn route_type(py: Python<'_>) -> *mut pyo3::ffi::PyTypeObject {
    use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};
    static TYPE: AtomicPtr<pyo3::ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());
    let t = TYPE.load(Relaxed);
    if !t.is_null() {
        return t;
    }
    let t = <Route as pyo3::PyTypeInfo>::type_object_raw(py);
    TYPE.store(t, Relaxed);
    t
}

fn loads<'py>(py: Python<'py>, codec: Codec) -> PyResult<&'py Bound<'py, PyAny>> {
    static ORJSON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static MSGPACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    match codec {
        Codec::Json => ORJSON.import(py, "orjson", "loads"),
        Codec::Msgpack => MSGPACK.import(py, "headrace._codecs", "unpack_msgpack"),
    }
}

/// Decodes one payload; a failure is a `PayloadError` naming the accumulator
/// and, where the decoder says, the byte offset.
pub fn decode(py: Python<'_>, acc_name: &str, bytes: &[u8], codec: Codec) -> PyResult<Value> {
    let data = PyBytes::new(py, bytes);
    match loads(py, codec)?.call1((&data,)) {
        Ok(v) => Ok(v.unbind()),
        Err(cause) => {
            let value = cause.value(py);
            let offset: Option<usize> =
                value.getattr("pos").ok().and_then(|p| p.extract().ok());
            let at = offset.map(|o| format!(" at byte {o}")).unwrap_or_default();
            let message = format!(
                "accumulator '{acc_name}': undecodable {} payload{at} ({} bytes): {}",
                codec.as_str(),
                bytes.len(),
                value.str().map(|s| s.to_string()).unwrap_or_default()
            );
            let accumulator = acc_name.to_string();
            Err(Error::Payload(Box::new(Undecodable { message, accumulator, offset, codec, cause })).into())
        }
    }
}

impl<'py> PyCalls<'_, 'py> {
    /// Calls node `node`'s function (for an async node: builds its coroutine).
    #[inline]
    fn invoke(&self, node: usize, args: &[Option<&Value>]) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let f = self.cx.nodes[node].function.bind(py);
        let a = |i: usize| arg(py, args[i]);
        match args.len() {
            0 => f.call0(),
            1 => f.call1((a(0),)),
            2 => f.call1((a(0), a(1))),
            3 => f.call1((a(0), a(1), a(2))),
            4 => f.call1((a(0), a(1), a(2), a(3))),
            5 => f.call1((a(0), a(1), a(2), a(3), a(4))),
            6 => f.call1((a(0), a(1), a(2), a(3), a(4), a(5))),
            n => f.call1(PyTuple::new(py, (0..n).map(a))?),
        }
    }

    /// Awaits one coroutine (an async accumulator's) on the runtime's loop.
    fn await_one(&self, coro: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        match self.await_all(vec![coro], vec![None])?.pop() {
            Some(Done::Returned(v)) => Ok(v.into_bound(py)),
            Some(Done::Raised(e)) => Err(e),
            _ => Err(pyo3::exceptions::PyRuntimeError::new_err("an awaited accumulator gave no result")),
        }
    }

    fn await_all(&self, coros: Vec<Bound<'py, PyAny>>, budgets: Vec<Option<f64>>) -> PyResult<Vec<Done>> {
        match &self.aio {
            Some(lp) => aio::run(self.py, lp, coros, budgets),
            None => {
                for c in &coros {
                    c.call_method0("close")?;
                }
                Err(errors::needs_apush(self.py, &self.cx.plan.graph))
            }
        }
    }

    fn route(&self, node: usize, out: Bound<'_, PyAny>) -> PyResult<NodeOutput<Value>> {
        let labels = &self.cx.nodes[node].labels;
        // Most nodes route nothing and return no Route: one pointer compare
        // (looking the type object up was a measurable share of a node call).
        if labels.is_empty() && out.get_type_ptr() != route_type(self.py) {
            return Ok(NodeOutput::Value(out.unbind()));
        }
        let name = &self.cx.plan.nodes[node].name;
        // Route is final, so an exact type check (a pointer compare) suffices.
        match out.cast_exact::<Route>() {
            Ok(route) => {
                let route = route.get();
                if labels.is_empty() {
                    return Err(pyo3::exceptions::PyTypeError::new_err(route_without_routes(name)));
                }
                let label = route.label.bind(self.py).to_str()?;
                match labels.iter().position(|l| l == label) {
                    Some(i) => Ok(NodeOutput::Routed { label: i, value: route.value.clone_ref(self.py) }),
                    None => Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "node '{name}' returned Route('{label}'), but its routes are {labels:?}"
                    ))),
                }
            }
            Err(_) if !labels.is_empty() => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "node '{name}' declares routes {labels:?} and must return headrace.Route, got {}",
                out.get_type().name()?
            ))),
            Err(_) => Ok(NodeOutput::Value(out.unbind())),
        }
    }

    fn fire_result(&self, record: headrace_core::host::FireRecord<Value, PyErr>) -> PyResult<Py<FireResult>> {
        Py::new(self.py, FireResult::from_record(self.py, record, &self.cx.names))
    }

    fn call_on_fire(&self, result: &Py<FireResult>) {
        if let Some(cb) = &self.cx.on_fire {
            if let Err(e) = cb.bind(self.py).call1((result.bind(self.py),)) {
                errors::log(self.py, "error", &format!(
                    "on_fire callback of graph '{}' raised {e}", self.cx.plan.graph
                ));
            }
        }
    }

    /// `on_output(node, fn)`: the node's value alone, when it ran.
    fn call_on_output(&self, pos: usize, sink: &Value, outputs: &Outputs<Value>) {
        let Some((_, value)) = outputs.iter().find(|(p, _)| *p == pos) else { return };
        if let Err(e) = sink.bind(self.py).call1((value.bind_borrowed(self.py),)) {
            errors::log(self.py, "error", &format!(
                "on_output callback of graph '{}' raised {e}", self.cx.plan.graph
            ));
        }
    }

    fn accumulator_failure(&mut self, acc: usize, error: PyErr, decode: bool) {
        let py = self.py;
        let name = &self.cx.plan.accumulators[acc].name;
        if decode {
            // Already a PayloadError from `decode`.
            self.keep_or_log(error);
            return;
        }
        let message = format!("accumulator '{name}' raised {error}; the event is in the dead-letter list");
        let accumulator = self.cx.names.accumulators[acc].clone_ref(py);
        self.keep_or_log(Error::Accumulator { message, accumulator, cause: error }.into());
    }

    /// A stream message that cannot be decoded does not stop the stream: it is
    /// counted (in stats), logged with where it came from and its first bytes,
    /// and handed to the source's dead-letter hook if it has one.
    fn undecodable_message(&mut self, acc: usize, error: PyErr, data: Vec<u8>, position: SourcePosition) {
        let py = self.py;
        let name = &self.cx.plan.accumulators[acc].name;
        let SourcePosition { topic, partition, offset } = position;
        let head = PyBytes::new(py, &data[..data.len().min(64)]);
        let shown = head.repr().map(|r| r.to_string()).unwrap_or_default();
        errors::log(
            py,
            "warning",
            &format!(
                "accumulator '{name}': skipped undecodable message {topic}[{partition}]@{offset} ({} bytes, starting {shown}): {error}",
                data.len()
            ),
        );
        if let Some(hook) = &self.cx.on_undecodable {
            let args = (name.as_str(), PyBytes::new(py, &data), topic, partition, offset, error.to_string());
            if let Err(e) = hook.bind(py).call1(args) {
                errors::log(py, "error", &format!("accumulator '{name}': dead-letter hook failed: {e}"));
            }
        }
    }

    /// An event refused by `check_checkpointable`. Inline, the push raises
    /// `UncheckpointableError`; otherwise (thread mode, or a batch's result on
    /// events accepted earlier) nobody waits for it: it is logged, rate-limited.
    fn refused(&mut self, acc: usize, error: Unsupported, batch: bool) {
        let py = self.py;
        let name = &self.cx.plan.accumulators[acc].name;
        let graph = &self.cx.plan.graph;
        let what = if batch { "the batch function's result on events accepted earlier" } else { "the event" };
        let message = format!(
            "graph '{graph}', accumulator '{name}': {what} cannot be checkpointed ({}); refused and dead-lettered, nothing of it entered state",
            error.message
        );
        match (&mut self.inline, batch) {
            (Some(outcome), false) => {
                if outcome.error.is_none() {
                    let accumulator = Some(name.clone());
                    let refused = Uncheckpointable { message, unsupported: error, accumulator };
                    outcome.error = Some(Error::Uncheckpointable(Box::new(refused)).into());
                }
            }
            _ => {
                if let Some(held_back) = self.cx.refusals.allow() {
                    let more = if held_back > 0 { format!(" ({held_back} more refusal(s) not logged)") } else { String::new() };
                    errors::log(py, "warning", &format!("{message}{more}"));
                }
            }
        }
    }

    /// A checkpoint not taken: the writer counts it, logs it (rate-limited)
    /// and fails whoever waits for a checkpoint at once.
    fn checkpoint_failed(&mut self, error: CheckpointError) {
        let py = self.py;
        let graph = &self.cx.plan.graph;
        let message = format!("graph '{graph}': checkpoint not taken: {error}");
        let Some(sink) = &self.cx.checkpoint else {
            return errors::log(py, "error", &message);
        };
        let id = sink.last_id.fetch_add(1, SeqCst) + 1;
        let (path, type_name) = match &error {
            CheckpointError::Unsupported(u) => (Some(u.path.as_str()), Some(u.type_name.as_str())),
            CheckpointError::Persist(_) => (None, None),
        };
        if let Err(e) = sink.writer.bind(py).call_method1("fail", (id, error.to_string(), path, type_name)) {
            e.write_unraisable(py, None);
        }
    }

    /// Inline: the first failure is raised when the call is done. Thread mode:
    /// nobody is waiting, so the failure is logged (and counted in stats).
    fn keep_or_log(&mut self, error: PyErr) {
        match &mut self.inline {
            Some(outcome) => {
                if outcome.error.is_none() {
                    outcome.error = Some(error);
                }
            }
            None => errors::log(self.py, "warning", &error.to_string()),
        }
    }
}

impl Calls<Value, PyErr> for PyCalls<'_, '_> {
    fn accumulate(&mut self, acc: usize, event: &Value) -> PyResult<Option<Value>> {
        let a = &self.cx.accs[acc];
        let f = a.function.bind(self.py);
        let mut out = match &a.state {
            Some(state) => f.call1((event.bind_borrowed(self.py), state.bind_borrowed(self.py)))?,
            None => f.call1((event.bind_borrowed(self.py),))?,
        };
        if a.is_async {
            out = self.await_one(out)?;
        }
        Ok(if out.is_none() { None } else { Some(out.unbind()) })
    }

    /// A poll under a simulated clock: the function's value, a coroutine's
    /// awaited on the runtime's loop if it has one, else run to completion
    /// (`asyncio.run`).
    fn poll(&mut self, acc: usize) -> PyResult<Value> {
        let out = self.cx.accs[acc].function.bind(self.py).call0()?;
        if !out.hasattr(pyo3::intern!(self.py, "__await__"))? {
            return Ok(out.unbind());
        }
        let done = match &self.aio {
            Some(_) => self.await_one(out)?,
            None => self.py.import("asyncio")?.call_method1("run", (out,))?,
        };
        Ok(done.unbind())
    }

    fn accumulate_batch(&mut self, acc: usize, events: &[Value]) -> PyResult<Option<Value>> {
        let list = PyList::new(self.py, events.iter().map(|e| e.bind(self.py)))?;
        let mut out = self.cx.accs[acc].function.bind(self.py).call1((list,))?;
        if self.cx.accs[acc].is_async {
            out = self.await_one(out)?;
        }
        Ok(if out.is_none() { None } else { Some(out.unbind()) })
    }

    fn call_node(&mut self, node: usize, args: &[Option<&Value>]) -> PyResult<NodeOutput<Value>> {
        let out = self.invoke(node, args)?;
        self.route(node, out)
    }

    fn call_nodes_concurrently(&mut self, batch: &[AsyncCall<'_, Value>]) -> Vec<Option<PyResult<NodeOutput<Value>>>> {
        let py = self.py;
        // Calling an async function only builds its coroutine; one that raises
        // there (bad arguments) fails alone, and the others still run.
        let mut results: Vec<Option<PyResult<NodeOutput<Value>>>> = Vec::with_capacity(batch.len());
        let (mut coros, mut budgets, mut started) = (Vec::new(), Vec::new(), Vec::new());
        for (k, c) in batch.iter().enumerate() {
            match self.invoke(c.node, &c.args) {
                Ok(coro) => {
                    coros.push(coro);
                    budgets.push(c.budget.map(|b| b.as_secs_f64()));
                    started.push(k);
                }
                Err(e) => results.push(Some(Err(e))),
            }
            if results.len() <= k {
                results.push(None);
            }
        }
        match self.await_all(coros, budgets) {
            Ok(ended) => {
                for (k, done) in started.into_iter().zip(ended) {
                    results[k] = match done {
                        Done::Returned(v) => Some(self.route(batch[k].node, v.into_bound(py))),
                        Done::Raised(e) => Some(Err(e)),
                        Done::TimedOut => None,
                    };
                }
            }
            Err(e) => {
                for k in started {
                    results[k] = Some(Err(e.clone_ref(py)));
                }
            }
        }
        results
    }

    fn overran(&mut self, o: &Overrun) -> PyErr {
        errors::fire_timeout(self.py, &self.cx.plan.graph, &self.cx.plan.nodes[o.node].name, o)
    }

    fn decode(&mut self, acc: usize, bytes: &[u8], codec: Codec) -> PyResult<Value> {
        decode(self.py, &self.cx.plan.accumulators[acc].name, bytes, codec)
    }

    fn is_none(&mut self, value: &Value) -> bool {
        value.is_none(self.py)
    }

    fn equal(&mut self, a: &Value, b: &Value) -> PyResult<bool> {
        a.bind(self.py).eq(b.bind(self.py))
    }

    fn cutoff_equal(&mut self, node: usize, previous: &Value, current: &Value) -> PyResult<bool> {
        let (previous, current) = (previous.bind(self.py), current.bind(self.py));
        match &self.cx.nodes[node].equal {
            Some(equal) => equal.bind(self.py).call1((previous, current))?.is_truthy(),
            None => previous.eq(current),
        }
    }

    fn share(&mut self, value: &Value) -> Value {
        value.clone_ref(self.py)
    }

    fn list(&mut self, items: &mut dyn Iterator<Item = &Value>) -> Value {
        let py = self.py;
        PyList::new(py, items.map(|v| v.bind(py))).map(|l| l.into_any().unbind()).unwrap_or_else(|_| py.None())
    }

    fn describe(&mut self, error: &PyErr) -> String {
        error.to_string()
    }

    fn to_value(&mut self, value: &Value) -> Result<CheckpointValue, Unsupported> {
        let mut path = String::from("value");
        convert::try_to_value(value.bind(self.py), &mut path, 0)
    }

    fn journal_payload(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), Unsupported> {
        crate::recorded::payload(value.bind(self.py), out)
    }

    fn checkpointable(&mut self, root: &str, value: &Value) -> Result<(), Unsupported> {
        checkable::check(value.bind(self.py), root)
    }

    fn user_state_checkpointable(&mut self, acc: usize) -> Result<(), Unsupported> {
        let a = &self.cx.accs[acc];
        let Some(state) = &a.state else { return Ok(()) };
        let py = self.py;
        let mut path = format!("accumulator '{}' state.value", self.cx.plan.accumulators[acc].name);
        let checked = match state.bind(py).getattr(pyo3::intern!(py, "value")) {
            Ok(value) => convert::try_to_value(&value, &mut path, 0),
            Err(e) => Err(Unsupported { message: format!("{path}: {e}"), path, type_name: "?".into() }),
        };
        let mut good = a.good_state.lock().unwrap_or_else(|p| p.into_inner());
        match checked {
            Ok(v) => {
                *good = Some(v);
                Ok(())
            }
            Err(u) => {
                // Put back the last state that could be checkpointed: the event
                // is refused, so nothing of it may stay in state.
                if let Some(previous) = good.clone() {
                    let restored = convert::to_python(py, previous).and_then(|v| state.bind(py).setattr("value", v));
                    if let Err(e) = restored {
                        e.write_unraisable(py, None);
                    }
                }
                Err(u)
            }
        }
    }

    fn stand_in(&mut self, value: &Value) -> Value {
        let py = self.py;
        let shown = value.bind(py).repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
        let cut: String = shown.chars().take(200).collect();
        let more = if cut.len() < shown.len() { "..." } else { "" };
        pyo3::types::PyString::new(py, &format!("<not checkpointable: {cut}{more}>")).into_any().unbind()
    }

    fn persist(&mut self, mut snapshot: EngineSnapshot) -> Result<(), CheckpointError> {
        let Some(sink) = &self.cx.checkpoint else { return Ok(()) };
        let py = self.py;
        let id = sink.last_id.fetch_add(1, SeqCst) + 1;
        let sealed = (|| -> Result<Vec<(String, Vec<u8>)>, CheckpointError> {
            for (i, (name, acc)) in snapshot.accumulators.iter_mut().enumerate() {
                if let Some(state) = &self.cx.accs[i].state {
                    let value = state.bind(py).getattr("value").map_err(|e| CheckpointError::Persist(e.to_string()))?;
                    let mut path = format!("accumulator '{name}' state.value");
                    let value = convert::try_to_value(&value, &mut path, 0).map_err(CheckpointError::Unsupported)?;
                    acc.user_state = Some(value);
                }
            }
            let codec = sink.codec;
            py.detach(|| encode_components(&snapshot, codec))
                .map_err(|(component, e)| CheckpointError::Persist(format!("component '{component}': {e}")))
        })();
        match sealed {
            Ok(components) => (|| -> PyResult<()> {
                let dict = PyDict::new(py);
                for (name, blob) in components {
                    dict.set_item(name, PyBytes::new(py, &blob))?;
                }
                // The positions this checkpoint covers: once it is durable, the
                // sources may commit them to their brokers.
                let positions: Vec<(&str, &str, i32, i64)> = snapshot
                    .sources
                    .positions
                    .iter()
                    .map(|p| (p.accumulator.as_str(), p.topic.as_str(), p.partition, p.offset))
                    .collect();
                sink.writer.bind(py).call_method1("submit", (id, dict, positions))?;
                Ok(())
            })()
            .map_err(|e| CheckpointError::Persist(e.to_string())),
            Err(e) => Err(e),
        }
    }

    fn chains(&self, acc: usize) -> bool {
        self.cx.runners.get(acc).is_some_and(Option::is_some)
    }

    fn run_chain(&mut self, acc: usize, events: Vec<Value>, cache: &[Option<Value>]) -> ChainOutcome<Value, PyErr> {
        let py = self.py;
        let Some(runner) = self.cx.runners.get(acc).and_then(Option::as_ref) else {
            return ChainOutcome::untaken(events);
        };
        let list = match PyList::new(py, events) {
            Ok(list) => list,
            // Only memory can fail here, and the events are gone with the list.
            Err(e) => {
                errors::log(py, "error", &format!("graph '{}': a run of events was lost: {e}", self.cx.plan.graph));
                return ChainOutcome::untaken(Vec::new());
            }
        };
        let ran = match runner.call(py, list.as_any(), None, cache) {
            Ok(ran) => ran,
            Err(e) => {
                // The runner did not start: the events go the ordinary way.
                errors::log(py, "warning", &format!("graph '{}': chain run not started: {e}", self.cx.plan.graph));
                return ChainOutcome::untaken(list.iter().map(Bound::unbind).collect());
            }
        };
        let taken = (ran.fired + ran.suppressed) as usize;
        let mut rest = list.iter().skip(taken).map(Bound::unbind);
        let stopped = ran.stopped.and_then(|(stage, _, boundary, error)| {
            let event = rest.next()?;
            match crate::chain::failure(py, stage, boundary, error, None, ran.fired) {
                Ok(failure) => Some((event, failure)),
                // A list's iteration does not raise.
                Err(_) => None,
            }
        });
        ChainOutcome {
            fired: ran.fired,
            suppressed: ran.suppressed,
            last: ran.last,
            started: ran.started,
            ended: ran.ended,
            stopped,
            untaken: rest.collect(),
        }
    }

    fn chains_mixed(&self) -> bool {
        self.cx.pairs.is_some()
    }

    fn run_mixed(&mut self, events: Vec<(usize, Value)>, cache: &[Option<Value>]) -> MixedOutcome<Value, PyErr> {
        let py = self.py;
        let names = &self.cx.names.accumulators;
        let order: Vec<usize> = events.iter().map(|(acc, _)| *acc).collect();
        let pairs = events.into_iter().map(|(acc, v)| (names[acc].clone_ref(py), v));
        let unrun = |list: &Bound<'_, PyList>, from: usize| -> Vec<(usize, Value)> {
            let event = |item: Bound<'_, PyAny>| item.get_item(1).map(Bound::unbind).unwrap_or_else(|_| py.None());
            list.iter().enumerate().skip(from).map(|(i, item)| (order[i], event(item))).collect()
        };
        let (Some(runner), Ok(list)) = (self.cx.pairs.as_ref(), PyList::new(py, pairs)) else {
            errors::log(py, "error", &format!("graph '{}': a run of events could not be started", self.cx.plan.graph));
            return MixedOutcome::untaken(cache.len(), Vec::new());
        };
        let (outputs, trig) = (PyList::empty(py), PyList::empty(py));
        let ran = match runner.call(py, list.as_any(), &outputs, &trig, cache, &self.cx.plan.criteria.member) {
            Ok(ran) => ran,
            Err(e) => {
                errors::log(py, "warning", &format!("graph '{}': chain run not started: {e}", self.cx.plan.graph));
                return MixedOutcome::untaken(cache.len(), unrun(&list, 0));
            }
        };
        let taken = ran.accs.iter().map(|a| a.suppressed + a.boundaries).sum::<u64>() as usize;
        // A list of pairs the engine built holds no bad pair or unknown name.
        let stopped = ran.stopped.and_then(|(stage, acc, _, event, boundary, raised)| {
            match crate::chain::failure(py, stage, boundary, raised, None, ran.fired) {
                Ok(failure) => Some((acc, event, failure)),
                Err(_) => None,
            }
        });
        let from = taken + usize::from(stopped.is_some());
        MixedOutcome { accs: ran.accs, fired: ran.fired, started: ran.started, ended: ran.ended, stopped, untaken: unrun(&list, from) }
    }

    fn report(&mut self, report: Report<Value, PyErr>) {
        let py = self.py;
        match report {
            Report::Fired(record) => {
                if let (Some((pos, sink)), None) = (&self.cx.on_output, &record.failure) {
                    self.call_on_output(*pos, sink, &record.outputs);
                }
                let wanted = self.inline.as_ref().is_some_and(|o| o.result.is_none() && o.target == record.seq);
                let failed = record.failure.is_some();
                if !failed && self.cx.on_fire.is_none() {
                    // Build nothing now: the caller may never look at it.
                    if let (true, Some(o)) = (wanted, self.inline.as_mut()) {
                        o.result = Some(Kept::record(record));
                    }
                    return;
                }
                let result = match self.fire_result(record) {
                    Ok(r) => r,
                    Err(e) => return self.keep_or_log(e),
                };
                self.call_on_fire(&result);
                if failed {
                    let error = node_error(py, &self.cx.plan.graph, &result);
                    if self.inline.is_none() && self.cx.on_fire.is_some() {
                        // on_fire has seen it; a log line per failure would only repeat it.
                    } else {
                        self.keep_or_log(error);
                    }
                }
                if wanted {
                    if let Some(o) = self.inline.as_mut() {
                        o.result = Some(Kept::Built(result));
                    }
                }
            }
            Report::AccumulatorFailed { acc, error, .. } => self.accumulator_failure(acc, error, false),
            Report::DecodeFailed { acc, error, data, position, .. } => match position {
                Some(position) => self.undecodable_message(acc, error, data, position),
                None => self.accumulator_failure(acc, error, true),
            },
            Report::Refused { acc, error, batch, .. } => self.refused(acc, error, batch),
            Report::CheckpointFailed(error) => self.checkpoint_failed(error),
        }
    }
}

/// What a node that declares no routes is told when it returns a `Route`
/// (the chain runners raise the same, `chain.rs`).
pub fn route_without_routes(node: &str) -> String {
    format!("node '{node}' returned a Route but declares no routes (use @graph.node(routes=[...]))")
}

/// `NodeError` for a failed fire, with the node's exception as `__cause__`.
pub fn node_error(py: Python<'_>, graph: &str, result: &Py<FireResult>) -> PyErr {
    let r = result.get();
    if let Some(timeout) = r.error.as_ref().and_then(|e| errors::as_fire_timeout(py, e.bind(py), result)) {
        return timeout;
    }
    let node = r.node.as_ref().map(|n| n.bind(py).to_string()).unwrap_or_default();
    let cause = r.error.as_ref().map(|e| PyErr::from_value(e.bind(py).clone()));
    let detail = cause.as_ref().map(|c| c.to_string()).unwrap_or_default();
    let mut message = format!("graph '{graph}': node '{node}' raised {detail} (fire {}", r.id);
    if r.attempt > 1 {
        message.push_str(&format!(", attempt {}", r.attempt));
    }
    message.push_str(if r.dead_lettered { "; inputs dead-lettered)" } else { ")" });
    let fire = result.clone_ref(py).into_any();
    Error::Node(Box::new(NodeRaised { message, graph: graph.to_string(), node, fire, cause })).into()
}
