//! The event loop that async nodes and accumulators run on, and the wait for
//! them: the engine hands a run of coroutines to `headrace._aio.run`. On the
//! processor thread (thread mode) that schedules them on the loop's own thread
//! and waits (the wait releases the interpreter), so neither that loop nor the
//! engine's thread spins. Inside an inline `apush` it suspends the call, whose
//! caller awaits them on its own loop (see `_aio.py`).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<&'py Bound<'py, PyAny>> {
    static RUN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static LENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static LOOP_THREAD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let cell = match name {
        "run" => &RUN,
        "lent" => &LENT,
        _ => &LOOP_THREAD,
    };
    cell.import(py, "headrace._aio", name)
}

/// Whether this inline call may await coroutines: the handle of the `apush`
/// (or `afire`) it runs in, passed on to `run`; None for a sync call.
pub fn lent(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    let lp = helper(py, "lent")?.call0()?;
    Ok(if lp.is_none() { None } else { Some(lp.unbind()) })
}

/// A runtime's own loop: the one passed in (`Runtime(loop=...)`), or a
/// `LoopThread` started the first time one is needed and stopped at close.
pub struct Aio {
    given: Option<Py<PyAny>>,
    owned: Mutex<Option<Py<PyAny>>>,
    thread_name: String,
}

impl Aio {
    pub fn new(given: Option<Py<PyAny>>, graph: &str) -> Self {
        Aio { given, owned: Mutex::new(None), thread_name: format!("headrace-aio-{graph}") }
    }

    /// The loop, starting the runtime's own if none was passed in.
    pub fn get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(given) = &self.given {
            return Ok(given.clone_ref(py));
        }
        let mut owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        let thread = match owned.as_ref() {
            Some(t) => t.bind(py).clone(),
            None => {
                let t = helper(py, "LoopThread")?.call1((self.thread_name.as_str(),))?;
                *owned = Some(t.clone().unbind());
                t
            }
        };
        Ok(thread.getattr(pyo3::intern!(py, "loop"))?.unbind())
    }

    /// Stops the runtime's own loop, if it started one.
    pub fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).take();
        match owned {
            Some(t) => t.bind(py).call_method0("stop").map(drop),
            None => Ok(()),
        }
    }

    pub fn traverse(&self, visit: &pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.given)?;
        if let Ok(owned) = self.owned.try_lock() {
            visit.call(&*owned)?;
        }
        Ok(())
    }
}

/// How one awaited coroutine ended.
pub enum Done {
    Returned(Py<PyAny>),
    Raised(PyErr),
    /// Cancelled when its budget ran out.
    TimedOut,
}

/// Awaits `coros` together on `lp`, each cancelled after its budget (seconds),
/// and waits until all have ended.
pub fn run(py: Python<'_>, lp: &Py<PyAny>, coros: Vec<Bound<'_, PyAny>>, budgets: Vec<Option<f64>>) -> PyResult<Vec<Done>> {
    let ended = helper(py, "run")?.call1((lp.bind(py), coros, budgets))?;
    let mut out = Vec::new();
    for item in ended.try_iter()? {
        let (kind, value): (u8, Bound<'_, PyAny>) = item?.extract()?;
        out.push(match kind {
            0 => Done::Returned(value.unbind()),
            1 => Done::Raised(PyErr::from_value(value)),
            _ => Done::TimedOut,
        });
    }
    Ok(out)
}
