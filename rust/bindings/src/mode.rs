//! Who applies an item: the caller's thread (inline) or the processor thread
//! (thread mode). What an item means is the core's `Processor::apply`; the
//! two modes differ only in who calls it, which this module hides from the
//! pymethods behind one [`Mode::submit`].

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use headrace_core::channel::Item;
use headrace_core::dead_letter::DeadLetters;
use headrace_core::processor::{Input, Now};

use crate::calls::InlineOutcome;
use crate::chain;
use crate::errors::Error;
use crate::fire::Kept;
use crate::graph::Callables;
use crate::inline::{self, Inline, InlineState, Proc};
use crate::options::ModeKind;
use crate::threaded::Threaded;

type Value = Py<PyAny>;

/// How long a submit may wait for room in the queue (thread mode).
#[derive(Clone, Copy)]
pub enum Wait {
    /// Not at all: a full queue raises at once.
    Never,
    /// Up to this long; None: as long as it takes.
    Room(Option<Duration>),
    /// For room as long as it takes, then until the processor has handled the
    /// item (so that its effect is visible when submit returns). Names the
    /// call, which must not come from the processor thread itself.
    Handled(&'static str),
}

/// The fires of an inline `submit_all`, and the callables whose names they use.
pub type Fires = (Vec<Kept>, Arc<Callables>);

// One per runtime, so its size is irrelevant; boxing the inline state would
// only add an indirection to every inline push.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Mode {
    Inline(Inline),
    Thread(Threaded),
}

impl Mode {
    /// `aio`: the loop thread mode runs async callables on (inline mode is
    /// given one per call).
    pub fn start(
        kind: ModeKind,
        graph: &str,
        processor: Proc,
        callables: Arc<Callables>,
        capacity: usize,
        idle_spin: Duration,
        aio: Option<Value>,
    ) -> Result<Mode, Error> {
        Ok(match kind {
            ModeKind::Inline => Mode::Inline(Inline::new(InlineState { processor, callables: Some(callables) })),
            ModeKind::Thread => Mode::Thread(Threaded::spawn(graph, processor, callables, capacity, idle_spin, aio)?),
        })
    }

    pub fn kind(&self) -> ModeKind {
        match self {
            Mode::Inline(_) => ModeKind::Inline,
            Mode::Thread(_) => ModeKind::Thread,
        }
    }

    /// Hands `item` to the processor. Inline: applies it now, on this thread,
    /// and fills `out` with what came of it, raising the first failure.
    /// Thread mode: queues it (see [`Wait`]) and leaves `out` alone. `aio`:
    /// the loop an inline call runs async callables on.
    pub fn submit(
        &self,
        py: Python<'_>,
        graph: &str,
        item: Item<Value>,
        wait: Wait,
        out: &mut InlineOutcome,
        aio: Option<&Value>,
    ) -> Result<(), Error> {
        match self {
            Mode::Inline(inline) => {
                let mut guard = inline.lock(py, graph)?;
                let InlineState { processor, callables } = &mut *guard;
                let Some(cx) = callables.as_deref() else { return Err(Error::Closed { graph: graph.into() }) };
                if let Some(item) = chain::push_one(py, processor, cx, item, aio, out) {
                    out.applied = inline::step(py, processor, cx, out, aio, |p, calls| p.apply(item, calls, &Now::lazy()));
                }
                if out.applied.stopped {
                    *callables = None;
                }
                drop(guard);
                out.error.take().map_or(Ok(()), |e| Err(e.into()))
            }
            Mode::Thread(t) => match wait {
                Wait::Never => t.send(py, graph, item, None, true),
                Wait::Room(timeout) => t.send(py, graph, item, timeout, false),
                Wait::Handled(what) => {
                    if t.on_own_thread() {
                        return Err(Error::OwnThread { what });
                    }
                    t.send(py, graph, item, None, false)?;
                    match t.wait_handled(py, None) {
                        true => Ok(()),
                        false => Err(Error::Closed { graph: graph.into() }),
                    }
                }
            },
        }
    }

    /// Submits every item in order, in one crossing. Inline: each is applied
    /// as `submit` would, under one lock, and the fires are returned; the first
    /// failure is raised once all are applied. Thread mode queues them all.
    pub fn submit_all(
        &self,
        py: Python<'_>,
        graph: &str,
        items: impl Iterator<Item = PyResult<Item<Value>>>,
        size_hint: usize,
        wait: Wait,
        aio: Option<&Value>,
    ) -> Result<Option<Fires>, Error> {
        match self {
            Mode::Inline(inline) => {
                let mut guard = inline.lock(py, graph)?;
                let state = &mut *guard;
                let cx = state.callables.clone().ok_or_else(|| Error::Closed { graph: graph.into() })?;
                let mut fires = Vec::with_capacity(size_hint);
                let mut first_error = None;
                for item in items {
                    let item = item?;
                    let mut out = InlineOutcome::new();
                    if let Some(item) = chain::push_one(py, &mut state.processor, &cx, item, aio, &mut out) {
                        inline::step(py, &mut state.processor, &cx, &mut out, aio, |p, calls| p.apply(item, calls, &Now::lazy()));
                    }
                    fires.extend(out.result);
                    if first_error.is_none() {
                        first_error = out.error;
                    }
                }
                match first_error {
                    Some(e) => Err(e.into()),
                    None => Ok(Some((fires, cx))),
                }
            }
            Mode::Thread(_) => {
                for item in items {
                    self.submit(py, graph, item?, wait, &mut InlineOutcome::new(), None)?;
                }
                Ok(None)
            }
        }
    }

    /// `push_many`: accumulator `acc`'s events, in order, in one crossing.
    /// Inline, runs of them go through the graph's chain runner while the
    /// processor allows it (`chain.rs`), the rest as `submit_all` takes them;
    /// thread mode queues them all.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_events(
        &self,
        py: Python<'_>,
        graph: &str,
        acc: usize,
        events: &Bound<'_, PyAny>,
        size_hint: usize,
        wait: Wait,
        aio: Option<&Value>,
    ) -> Result<Option<Fires>, Error> {
        let Mode::Inline(inline) = self else {
            let items = events.try_iter()?.map(|e| Ok(Item::Event { acc, input: Input::Value(e?.unbind()) }));
            return self.submit_all(py, graph, items, size_hint, wait, aio);
        };
        let mut events = events.try_iter()?;
        let chained = |cx: &Callables| cx.runners.get(acc).is_some_and(Option::is_some);
        inline_run(py, inline, graph, size_hint, chained, |processor, cx, into| {
            chain::push_events(py, processor, cx, acc, &mut events, aio, into)
        })
    }

    /// `push_pairs`: `(name, event)` pairs in order, in one crossing (`to_item`
    /// reads one, or raises). Inline, runs of them go through the graph's
    /// pairs runner while nothing waits (`chain.rs`); thread mode queues them.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_pairs(
        &self,
        py: Python<'_>,
        graph: &str,
        pairs: &Bound<'_, PyAny>,
        to_item: &mut dyn FnMut(Bound<'_, PyAny>) -> PyResult<Item<Value>>,
        size_hint: usize,
        wait: Wait,
        aio: Option<&Value>,
    ) -> Result<Option<Fires>, Error> {
        let Mode::Inline(inline) = self else {
            let items = pairs.try_iter()?.map(|pair| to_item(pair?));
            return self.submit_all(py, graph, items, size_hint, wait, aio);
        };
        let mut pairs = pairs.try_iter()?;
        inline_run(py, inline, graph, size_hint, |cx| cx.pairs.is_some(), |processor, cx, into| {
            chain::push_pairs(py, processor, cx, &mut pairs, to_item, aio, into)
        })
    }

    /// Applies `items` as one batch on the inline processor (replaying a
    /// journal: events settle where its settle records say). A failed fire is
    /// reported like any other, not raised: it is the recorded run's.
    pub fn apply_recorded(&self, py: Python<'_>, graph: &str, items: Vec<Item<Value>>, aio: Option<&Value>) -> Result<(), Error> {
        let Mode::Inline(inline) = self else {
            return Err(Error::Setting { what: "mode".into(), message: "a journal replays inline".into() });
        };
        let mut guard = inline.lock(py, graph)?;
        let InlineState { processor, callables } = &mut *guard;
        let Some(cx) = callables.as_deref() else { return Err(Error::Closed { graph: graph.into() }) };
        let mut out = InlineOutcome::new();
        inline::step(py, processor, cx, &mut out, aio, |p, calls| {
            let now = p.now();
            p.apply_batch(items, calls, &now)
        });
        match out.error {
            Some(e) if !crate::errors::is_fire_failure(py, &e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Thread mode: waits until everything submitted before has been handled.
    /// Inline (nothing is queued): retries failed inputs and flushes batches
    /// whose time has come.
    pub fn drain(&self, py: Python<'_>, graph: &str, timeout: Option<Duration>, aio: Option<&Value>) -> Result<(), Error> {
        match self {
            Mode::Inline(inline) => {
                let mut guard = inline.lock(py, graph)?;
                let InlineState { processor, callables } = &mut *guard;
                let Some(cx) = callables.as_deref() else { return Err(Error::Closed { graph: graph.into() }) };
                let mut out = InlineOutcome::new();
                inline::step(py, processor, cx, &mut out, aio, |p, calls| p.on_timer(calls, &Now::lazy()));
                drop(guard);
                out.error.map_or(Ok(()), |e| Err(e.into()))
            }
            Mode::Thread(t) => {
                if t.on_own_thread() {
                    return Err(Error::OwnThread { what: "drain()" });
                }
                let target = t.progress.submitted();
                let progress = t.progress.clone();
                if py.detach(move || progress.wait_for(target, timeout)) {
                    return Ok(());
                }
                let completed = t.progress.completed();
                if t.progress.is_closed() && completed < target {
                    return Err(Error::Closed { graph: graph.into() });
                }
                Err(Error::DrainTimeout { graph: graph.into(), unprocessed: target.saturating_sub(completed) })
            }
        }
    }

    /// Stops the processor: [`Item::Stop`] (shutdown and final checkpoint),
    /// then, in thread mode, waits for its thread to end.
    pub fn stop(&self, py: Python<'_>, graph: &str, aio: Option<&Value>) -> Result<(), Error> {
        match self {
            Mode::Inline(_) => self.submit(py, graph, Item::Stop, Wait::Handled("close()"), &mut InlineOutcome::new(), aio),
            Mode::Thread(t) => {
                let sender = t.sender.clone();
                // Blocking until the processor has room: Stop must not be lost.
                let _ = py.detach(move || sender.push(Item::Stop, None).map_err(drop));
                let handle = t.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(h) = handle {
                    if py.detach(move || h.join()).is_err() {
                        return Err(Error::Thread { graph: graph.into(), what: "panicked".into() });
                    }
                }
                Ok(())
            }
        }
    }

    /// A runtime dropped without close(): its processor thread is told to
    /// stop rather than leaked. (Inline mode has nothing running.)
    pub fn abandon(&self) {
        if let Mode::Thread(t) = self {
            let _ = t.sender.try_push(Item::Stop);
        }
    }

    /// (items queued, capacity); inline mode has no queue.
    pub fn queue(&self) -> (usize, usize) {
        match self {
            Mode::Inline(_) => (0, 0),
            Mode::Thread(t) => (t.sender.depth(), t.sender.capacity()),
        }
    }

    /// Lets the GC see the callables and every value the processor holds,
    /// without waiting: whatever is locked right now (a fire in progress) is
    /// skipped this time.
    pub fn for_each_object(&self, f: &mut dyn FnMut(&Value)) {
        match self {
            Mode::Inline(inline) => {
                if let Some(state) = inline.state.try_lock() {
                    if let Some(c) = &state.callables {
                        c.for_each_object(f);
                    }
                    state.processor.for_each_value(f);
                }
            }
            Mode::Thread(t) => {
                if let Ok(guard) = t.callables.try_lock() {
                    if let Some(c) = guard.as_ref() {
                        c.for_each_object(f);
                    }
                }
                if let Ok(processor) = t.processor.try_lock() {
                    processor.for_each_value(f);
                }
            }
        }
    }

    /// The GC breaking a cycle: drops the callables and the values this side
    /// holds. In thread mode the processor thread owns its values: it is told
    /// to stop, and releases them when it does.
    pub fn clear(&self, dead_letters: &DeadLetters<Value>) {
        match self {
            Mode::Inline(inline) => {
                if let Some(mut s) = inline.state.try_lock() {
                    s.callables = None;
                    s.processor.release_values();
                }
            }
            Mode::Thread(t) => {
                if let Ok(mut guard) = t.callables.try_lock() {
                    guard.take();
                }
                let _ = t.sender.try_push(Item::Stop);
            }
        }
        drop(dead_letters.take());
    }
}

/// An inline call that takes many events under one lock (`push_many`,
/// `push_pairs`): `take` applies them, collecting fires and the first failure,
/// which is raised once all are taken. `chained`: whether the graph's runners
/// take these events, keeping a run's fires in one entry (so no room is made
/// for one per event).
fn inline_run(
    py: Python<'_>,
    inline: &Inline,
    graph: &str,
    size_hint: usize,
    chained: impl FnOnce(&Callables) -> bool,
    take: impl FnOnce(&mut Proc, &Callables, &mut chain::Collected) -> PyResult<()>,
) -> Result<Option<Fires>, Error> {
    let mut guard = inline.lock(py, graph)?;
    let state = &mut *guard;
    let cx = state.callables.clone().ok_or_else(|| Error::Closed { graph: graph.into() })?;
    let capacity = if chained(&cx) { 16 } else { size_hint };
    let mut into = chain::Collected { fires: Vec::with_capacity(capacity), first_error: None };
    take(&mut state.processor, &cx, &mut into)?;
    match into.first_error {
        Some(e) => Err(e.into()),
        None => Ok(Some((into.fires, cx))),
    }
}
