//! Inputs the engine gave up on, kept where `stats()` can show them.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Where in the pipeline an input was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The accumulator's function raised on this event (or batch).
    Accumulator,
    /// The graph failed on this boundary more times than the retry limit allows.
    Fire,
    /// What the event would have put into state cannot be checkpointed
    /// (`check_checkpointable`); the entry holds a stand-in, not the value.
    Checkpoint,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Accumulator => "accumulator",
            Stage::Fire => "fire",
            Stage::Checkpoint => "checkpoint",
        }
    }
}

pub struct DeadLetter<V> {
    pub acc: usize,
    pub stage: Stage,
    pub value: V,
    pub error: String,
    pub attempts: u32,
    pub seq: u64,
}

/// A bounded list: past `limit` the oldest entries are dropped and counted, so a
/// failing graph cannot grow memory without bound, and nobody loses track of
/// how much was given up.
pub struct DeadLetters<V> {
    limit: usize,
    inner: Mutex<(VecDeque<DeadLetter<V>>, u64)>,
}

impl<V> DeadLetters<V> {
    pub fn new(limit: usize) -> Self {
        DeadLetters { limit, inner: Mutex::new((VecDeque::new(), 0)) }
    }

    pub(crate) fn push(&self, letter: DeadLetter<V>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.push_back(letter);
        while inner.0.len() > self.limit {
            inner.0.pop_front();
            inner.1 += 1;
        }
    }

    /// Runs `f` over the kept entries and the count of dropped ones.
    pub fn with<R>(&self, f: impl FnOnce(&VecDeque<DeadLetter<V>>, u64) -> R) -> R {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&inner.0, inner.1)
    }

    /// Like [`DeadLetters::with`], but gives up instead of waiting (for GC traversal).
    pub fn try_with<R>(&self, f: impl FnOnce(&VecDeque<DeadLetter<V>>) -> R) -> Option<R> {
        self.inner.try_lock().ok().map(|inner| f(&inner.0))
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1 += n;
    }

    /// Removes and returns every kept entry.
    pub fn take(&self) -> Vec<DeadLetter<V>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.drain(..).collect()
    }
}
