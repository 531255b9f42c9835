//! Thread mode: the processor loop on its own thread, fed by the merge channel.
//!
//! The processor thread owns the values the processor holds: it drops them
//! (attached) when it stops. Meanwhile the GC may look at them between batches
//! (the driver locks the processor only while a batch runs), so that a cycle
//! through one of them is found.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;

use headrace_core::channel::{merge_channel, Item, MergeSender, Progress, PushError};
use headrace_core::driver::{self, Attach};
use headrace_core::host::Calls;

use crate::calls::PyCalls;
use crate::errors::Error;
use crate::graph::Callables;
use crate::inline::{thread_token, Proc};

type Value = Py<PyAny>;

pub(crate) struct Threaded {
    pub sender: MergeSender<Value>,
    pub progress: Arc<Progress>,
    pub handle: StdMutex<Option<JoinHandle<()>>>,
    /// The processor thread's token: it must never block on its own queue.
    token: Arc<AtomicU64>,
    /// Shared with the processor thread, for the GC (`try_lock` only).
    pub processor: Arc<StdMutex<Proc>>,
    /// The callables the processor thread calls; this handle is for the GC
    /// (and is dropped by `__clear__`); the thread's own reference ends with it.
    pub callables: StdMutex<Option<Arc<Callables>>>,
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

impl Threaded {
    /// Starts the processor thread.
    pub fn spawn(
        graph: &str,
        processor: Proc,
        callables: Arc<Callables>,
        capacity: usize,
        idle_spin: Duration,
        aio: Option<Py<PyAny>>,
    ) -> Result<Threaded, Error> {
        let (sender, rx, progress) = merge_channel::<Value>(capacity);
        let token = Arc::new(AtomicU64::new(0));
        let processor = Arc::new(StdMutex::new(processor));
        let (thread_progress, thread_token_cell, thread_processor) = (progress.clone(), token.clone(), processor.clone());
        let host = ThreadHost { callables: callables.clone(), aio };
        let ages = callables.ages.clone();
        let handle = std::thread::Builder::new()
            .name(format!("headrace-{graph}"))
            .spawn(move || {
                thread_token_cell.store(thread_token(), SeqCst);
                // Node functions on this thread read this runtime's ages.
                let _ages = ages.as_ref().map(crate::ages::enter);
                let mut host = host;
                // Attached once for the thread's whole life, and detached
                // while the loop waits: each batch's attach then only takes
                // the interpreter. Attaching from scratch per batch would
                // create and destroy a Python thread state each time (with
                // its frame stack: an mmap and a munmap), a large share of a
                // single event's hop (W3 thread).
                Python::attach(|py| {
                    py.detach(|| driver::run(&rx, &thread_processor, &mut host, &thread_progress, idle_spin));
                    // The values still held are Python references: release
                    // them attached. (Dead letters stay, for stats.)
                    thread_processor.lock().unwrap_or_else(|p| p.into_inner()).release_values();
                    drop(host);
                    drop(rx);
                });
            })
            .map_err(|e| Error::Thread { graph: graph.to_string(), what: format!("cannot start: {e}") })?;
        Ok(Threaded {
            sender,
            progress,
            handle: StdMutex::new(Some(handle)),
            token,
            processor,
            callables: StdMutex::new(Some(callables)),
        })
    }

    /// True when called on the processor thread (from inside a fire).
    pub fn on_own_thread(&self) -> bool {
        self.token.load(SeqCst) == thread_token()
    }

    /// Queues `item`: at once if there is room, else waiting (detached) up to
    /// `timeout`, unless `never_wait` or called from the processor thread itself.
    pub fn send(&self, py: Python<'_>, graph: &str, item: Item<Value>, timeout: Option<Duration>, never_wait: bool) -> Result<(), Error> {
        let closed = || Error::Closed { graph: graph.to_string() };
        let item = match self.sender.try_push(item) {
            Ok(()) => return Ok(()),
            Err(PushError::Full(item)) => item,
            Err(PushError::Closed(_)) | Err(PushError::Timeout(_)) => return Err(closed()),
        };
        // Full. From inside a fire, waiting would wait on ourselves.
        let never_wait = never_wait || self.on_own_thread();
        let result = if never_wait {
            Err(PushError::Full(item))
        } else {
            let sender = self.sender.clone();
            py.detach(move || sender.push(item, timeout))
        };
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Closed(_)) => Err(closed()),
            Err(PushError::Full(_)) | Err(PushError::Timeout(_)) => Err(Error::Backpressure {
                graph: graph.to_string(),
                capacity: self.sender.capacity(),
                waited: (!never_wait).then(|| timeout.unwrap_or_default()),
            }),
        }
    }

    /// Waits (detached) until every item submitted so far has been handled.
    pub fn wait_handled(&self, py: Python<'_>, timeout: Option<Duration>) -> bool {
        let target = self.progress.submitted();
        let progress = self.progress.clone();
        py.detach(move || progress.wait_for(target, timeout))
    }
}
