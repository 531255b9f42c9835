//! Inline mode: the processor behind a lock, driven by whichever thread pushes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use pyo3::prelude::*;

use headrace_core::processor::{Now, Processor};

use crate::calls::{InlineOutcome, PyCalls};
use crate::errors::Error;
use crate::graph::Callables;

pub(crate) type Proc = Processor<Py<PyAny>, PyErr>;

/// A small per-thread number, to recognise calls made from inside a fire.
pub(crate) fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, SeqCst));
        }
        t.get()
    })
}

pub(crate) struct InlineState {
    pub processor: Proc,
    /// The one owner of the callables in inline mode. None once closed (or
    /// cleared by the GC).
    pub callables: Option<Arc<Callables>>,
}

/// The inline lock, remembering its holder so that a re-entrant call from
/// inside a fire raises instead of deadlocking.
pub(crate) struct InlineGuard<'a> {
    guard: MutexGuard<'a, InlineState>,
    owner: &'a AtomicU64,
    /// `input_age` on this thread reads this runtime while it holds the processor.
    _ages: Option<crate::ages::Entered>,
}

impl std::ops::Deref for InlineGuard<'_> {
    type Target = InlineState;
    fn deref(&self) -> &InlineState {
        &self.guard
    }
}

impl std::ops::DerefMut for InlineGuard<'_> {
    fn deref_mut(&mut self) -> &mut InlineState {
        &mut self.guard
    }
}

impl Drop for InlineGuard<'_> {
    fn drop(&mut self) {
        self.owner.store(0, SeqCst);
    }
}

/// The inline processor and the token of the thread holding it.
pub(crate) struct Inline {
    pub state: Mutex<InlineState>,
    owner: AtomicU64,
}

impl Inline {
    pub fn new(state: InlineState) -> Self {
        Inline { state: Mutex::new(state), owner: AtomicU64::new(0) }
    }

    /// Locks the processor, detaching while another thread holds it. A call
    /// from inside one of this runtime's own fires raises instead of deadlocking.
    pub fn lock<'a>(&'a self, py: Python<'_>, graph: &str) -> Result<InlineGuard<'a>, Error> {
        let owner = &self.owner;
        let guard = match self.state.try_lock() {
            Some(guard) => guard,
            None if owner.load(SeqCst) == thread_token() => return Err(Error::Reentrant { graph: graph.to_string() }),
            None => py.detach(|| self.state.lock()),
        };
        owner.store(thread_token(), SeqCst);
        let ages = guard.callables.as_ref().and_then(|cx| cx.ages.as_ref()).map(crate::ages::enter);
        Ok(InlineGuard { guard, owner, _ages: ages })
    }
}

/// Runs `f` on the inline processor, collecting into `out` what the caller
/// gets back: the fire for the first sequence number `f` uses, and the first
/// failure; async callables run on `aio`. Then checkpoints if the policy says so (as the driver does after a
/// batch).
pub(crate) fn step<R>(
    py: Python<'_>,
    processor: &mut Proc,
    cx: &Callables,
    out: &mut InlineOutcome,
    aio: Option<&Py<PyAny>>,
    f: impl FnOnce(&mut Proc, &mut PyCalls<'_, '_>) -> R,
) -> R {
    out.target = processor.next_seq();
    let mut calls = PyCalls { py, cx, inline: Some(out), aio };
    let r = f(processor, &mut calls);
    processor.checkpoint_if_due(&mut calls, &Now::lazy());
    r
}
