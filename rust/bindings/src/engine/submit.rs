//! Handing items to the mode: the open check, the loop async callables run
//! on, how long to wait for room, and the fires that come back as objects.

use std::sync::atomic::Ordering::SeqCst;

use pyo3::prelude::*;

use headrace_core::channel::Item;

use super::{Engine, Value};
use crate::aio;
use crate::calls::InlineOutcome;
use crate::errors::{self, Error};
use crate::fire::{FireList, FireResult};
use crate::mode::{Fires, Wait};
use crate::options::{optional_seconds, ModeKind};

impl Engine {
    /// Submits one item; inline, returns the fire that reflects it.
    pub(super) fn submit_fire(&self, py: Python<'_>, item: Item<Value>, wait: Wait) -> PyResult<Option<Py<FireResult>>> {
        let mut out = InlineOutcome::new();
        self.submit(py, item, wait, &mut out)?;
        match out.result {
            Some(kept) => Ok(Some(kept.into_object(py, &self.names)?)),
            None => Ok(None),
        }
    }

    pub(super) fn submit(&self, py: Python<'_>, item: Item<Value>, wait: Wait, out: &mut InlineOutcome) -> Result<(), Error> {
        self.check_open()?;
        // Pushes and fires come from the caller, who must use apush/afire on
        // a graph with async callables; the rest may use the runtime's loop.
        let own_loop = !matches!(item, Item::Event { .. } | Item::Fire);
        let lp = self.inline_loop(py, own_loop)?;
        self.mode.submit(py, &self.graph, item, wait, out, lp.as_ref())
    }

    pub(super) fn check_open(&self) -> Result<(), Error> {
        match self.closed.load(SeqCst) {
            true => Err(Error::Closed { graph: self.graph.clone() }),
            false => Ok(()),
        }
    }

    pub(super) fn fire_list(&self, py: Python<'_>, fires: Option<Fires>) -> PyResult<Option<Py<FireList>>> {
        match fires {
            Some((fires, cx)) => Ok(Some(Py::new(py, FireList::new(py, fires, cx.names.clone()))?)),
            None => Ok(None),
        }
    }

    /// How long a push may wait for room: `timeout` seconds, else the runtime's.
    pub(super) fn room(&self, timeout: Option<f64>) -> Result<Wait, Error> {
        Ok(Wait::Room(optional_seconds(timeout, "timeout")?.or(self.push_timeout)))
    }

    /// The loop an inline call runs async callables on: none needed without
    /// them (or in thread mode, whose loop the thread holds); the one `apush`
    /// lent; else the runtime's own (`own_loop`), or a `HeadraceError` naming
    /// `apush`: a sync call must not wait on a loop.
    pub(super) fn inline_loop(&self, py: Python<'_>, own_loop: bool) -> PyResult<Option<Value>> {
        if !self.has_async || self.mode.kind() == ModeKind::Thread {
            return Ok(None);
        }
        match aio::lent(py)? {
            Some(lp) => Ok(Some(lp)),
            None if own_loop => self.aio.get(py).map(Some),
            None => Err(errors::needs_apush(py, &self.graph)),
        }
    }

    pub(super) fn last_checkpoint_id(&self) -> Option<u64> {
        self.checkpoint_ids.as_ref().map(|id| id.load(SeqCst))
    }
}
