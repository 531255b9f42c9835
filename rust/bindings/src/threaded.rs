//! Thread mode: the processor loop on its own thread, fed by the merge channel.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;

use headrace_core::channel::{merge_channel, Item, MergeSender, Progress, PushError};
use headrace_core::driver::{self, Attach};
use headrace_core::host::Calls;
use headrace_core::processor::Processor;

use crate::calls::PyCalls;
use crate::errors;
use crate::graph::Callables;
use crate::inline::thread_token;

type Value = Py<PyAny>;
type Proc = Processor<Value, PyErr>;

pub(crate) struct ThreadState {
    pub sender: MergeSender<Value>,
    pub progress: Arc<Progress>,
    pub handle: StdMutex<Option<JoinHandle<()>>>,
    /// The processor thread's token: it must never block on its own queue.
    pub token: Arc<AtomicU64>,
}

struct ThreadHost {
    callables: Arc<Callables>,
    /// The loop async nodes run on, if the graph has any.
    aio: Option<Py<PyAny>>,
}

impl Attach<Value, PyErr> for ThreadHost {
    fn attached(&mut self, work: &mut dyn FnMut(&mut dyn Calls<Value, PyErr>)) {
        Python::attach(|py| {
            let mut calls = PyCalls { py, cx: &self.callables, inline: None, aio: self.aio.as_ref() };
            work(&mut calls);
        })
    }
}

impl ThreadState {
    /// Starts the processor thread.
    pub fn spawn(graph: String, mut processor: Proc, callables: Arc<Callables>, capacity: usize, idle_spin: Duration, aio: Option<Py<PyAny>>) -> PyResult<ThreadState> {
        let (sender, rx, progress) = merge_channel::<Value>(capacity);
        let token = Arc::new(AtomicU64::new(0));
        let thread_progress = progress.clone();
        let thread_token_cell = token.clone();
        let handle = std::thread::Builder::new()
            .name(format!("headrace-{graph}"))
            .spawn(move || {
                thread_token_cell.store(thread_token(), SeqCst);
                let mut host = ThreadHost { callables, aio };
                driver::run(&rx, &mut processor, &mut host, &thread_progress, idle_spin);
                // Values still cached hold Python references: release them attached.
                Python::attach(|_| {
                    drop(processor);
                    drop(host);
                    drop(rx);
                });
            })
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start processor thread: {e}")))?;
        Ok(ThreadState { sender, progress, handle: StdMutex::new(Some(handle)), token })
    }

    /// True when called on the processor thread (from inside a fire).
    pub fn on_own_thread(&self) -> bool {
        self.token.load(SeqCst) == thread_token()
    }

    /// Queues `item`: at once if there is room, else waiting (detached) up to
    /// `timeout`, unless `never_wait` or called from the processor thread itself.
    pub fn send(&self, py: Python<'_>, graph: &str, item: Item<Value>, timeout: Option<Duration>, never_wait: bool) -> PyResult<()> {
        let t = self;
        let item = match t.sender.try_push(item) {
            Ok(()) => return Ok(()),
            Err(PushError::Full(item)) => item,
            Err(PushError::Closed(_)) | Err(PushError::Timeout(_)) => return Err(errors::closed(py, graph)),
        };
        // Full. From inside a fire, waiting would wait on ourselves.
        let own_thread = t.on_own_thread();
        let result = if never_wait || own_thread {
            Err(PushError::Full(item))
        } else {
            let sender = t.sender.clone();
            py.detach(move || sender.push(item, timeout))
        };
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Closed(_)) => Err(errors::closed(py, graph)),
            Err(PushError::Full(_)) | Err(PushError::Timeout(_)) => {
                let waited = if never_wait || own_thread {
                    "without waiting".to_string()
                } else {
                    format!("after waiting {:?}", timeout.unwrap_or_default())
                };
                Err(errors::raise(
                    errors::backpressure_error(py)?,
                    format!(
                        "graph '{}': queue full ({} items), event not accepted {waited}; push it again later",
                        graph,
                        t.sender.capacity()
                    ),
                    &[("capacity", t.sender.capacity().into_pyobject(py)?.into_any())],
                ))
            }
        }
    }
}
