//! Per-kind accumulator behaviour: how one event becomes a boundary (or not).

use std::collections::VecDeque;
use std::time::Duration;

use crate::checkpoint::Value;
use crate::host::{Calls, Unsupported};
use crate::clock::{Now, Time};
use crate::spec::{AccKind, AccSpec};

pub(crate) enum AccState<V> {
    /// Passthrough and stream: the user function maps each event.
    Plain,
    /// A passthrough without a function: the event is the boundary, with no
    /// call to the host at all (the cheapest path an event can take).
    Forward,
    /// The last emitted value, for change suppression.
    Polling { last: Option<V> },
    Batch {
        buffer: Vec<V>,
        max: Option<usize>,
        interval: Option<Duration>,
        /// When the oldest buffered event must be flushed by.
        due: Option<Time>,
        /// Latest strategy: the boundary this batch emitted is still in the
        /// input cache and no successful fire has seen it yet. The batch does
        /// not flush meanwhile (a new boundary would overwrite the unfired one
        /// and lose its events): it keeps buffering, past its size limit if
        /// need be, and flushes after the next successful fire.
        held: bool,
    },
    State { window: VecDeque<V>, capacity: usize },
}

/// What taking one event did.
pub(crate) enum Taken<V, E> {
    Emit(V),
    /// No boundary: the function returned `None`, or a poll was unchanged.
    Suppressed,
    /// Buffered in a batch; `full` when the buffer reached its size limit.
    Buffered { full: bool },
    Failed { event: V, error: E },
    /// `check_checkpointable`: what the event would put into state cannot be
    /// checkpointed; nothing of it was kept.
    Refused { event: V, error: Unsupported },
}

/// What flushing a batch did.
pub(crate) enum Flushed<V, E> {
    Empty,
    Emit(V),
    Suppressed,
    /// The batch function raised; `events` is the batch as one list value.
    Failed { events: V, error: E },
    /// `check_checkpointable`: the batch function's result cannot be checkpointed.
    Refused { events: V, error: Unsupported },
}

impl<V> AccState<V> {
    pub(crate) fn new(spec: &AccSpec) -> Self {
        match &spec.kind {
            AccKind::Passthrough if !spec.function => AccState::Forward,
            AccKind::Passthrough | AccKind::Stream => AccState::Plain,
            AccKind::Polling { .. } => AccState::Polling { last: None },
            AccKind::Batch { max_buffer_size, flush_interval } => AccState::Batch {
                buffer: Vec::new(),
                max: *max_buffer_size,
                interval: *flush_interval,
                due: None,
                held: false,
            },
            AccKind::State { capacity } => {
                AccState::State { window: VecDeque::with_capacity(*capacity), capacity: *capacity }
            }
        }
    }

    /// Takes one event. With `check`, every value that would enter state is
    /// first checked for checkpointability, and the event is refused whole if
    /// one is not (so that one bad value cannot stop every later checkpoint).
    pub(crate) fn take<E>(
        &mut self,
        acc: usize,
        event: V,
        check: bool,
        calls: &mut dyn Calls<V, E>,
        now: &Now,
    ) -> Taken<V, E> {
        match self {
            AccState::Forward => {
                // As a function returning its event would: `None` emits nothing.
                if calls.is_none(&event) {
                    return Taken::Suppressed;
                }
                if check {
                    if let Err(error) = calls.checkpointable("boundary", &event) {
                        return Taken::Refused { event, error };
                    }
                }
                Taken::Emit(event)
            }
            AccState::Plain => {
                let result = calls.accumulate(acc, &event);
                if check {
                    // A stream accumulator's State.value changed even if it emitted nothing.
                    let checked = calls.user_state_checkpointable(acc).and_then(|()| match &result {
                        Ok(Some(boundary)) => calls.checkpointable("boundary", boundary),
                        _ => Ok(()),
                    });
                    if let Err(error) = checked {
                        return Taken::Refused { event, error };
                    }
                }
                match result {
                    Ok(Some(boundary)) => Taken::Emit(boundary),
                    Ok(None) => Taken::Suppressed,
                    Err(error) => Taken::Failed { event, error },
                }
            }
            AccState::Polling { last } => {
                if calls.is_none(&event) {
                    return Taken::Suppressed;
                }
                if let Some(previous) = last {
                    match calls.equal(previous, &event) {
                        Ok(true) => return Taken::Suppressed,
                        Ok(false) => {}
                        Err(error) => return Taken::Failed { event, error },
                    }
                }
                if check {
                    if let Err(error) = calls.checkpointable("event", &event) {
                        return Taken::Refused { event, error };
                    }
                }
                *last = Some(calls.share(&event));
                Taken::Emit(event)
            }
            AccState::Batch { buffer, max, interval, due, .. } => {
                if check {
                    if let Err(error) = calls.checkpointable("event", &event) {
                        return Taken::Refused { event, error };
                    }
                }
                if buffer.is_empty() {
                    *due = interval.map(|i| now.get() + i);
                }
                buffer.push(event);
                Taken::Buffered { full: max.is_some_and(|m| buffer.len() >= m) }
            }
            AccState::State { window, capacity } => match calls.accumulate(acc, &event) {
                Ok(Some(value)) => {
                    if check {
                        if let Err(error) = calls.checkpointable("state window entry", &value) {
                            return Taken::Refused { event, error };
                        }
                    }
                    if window.len() == *capacity {
                        window.pop_front();
                    }
                    window.push_back(value);
                    Taken::Emit(calls.list(&mut window.iter()))
                }
                Ok(None) => Taken::Suppressed,
                Err(error) => Taken::Failed { event, error },
            },
        }
    }

    /// Hands a batch's buffered events to its function, exactly once: the buffer
    /// is emptied whatever the function does. A held batch does not flush.
    pub(crate) fn flush<E>(&mut self, acc: usize, check: bool, calls: &mut dyn Calls<V, E>) -> Flushed<V, E> {
        let AccState::Batch { buffer, due, held, .. } = self else { return Flushed::Empty };
        if buffer.is_empty() || *held {
            return Flushed::Empty;
        }
        *due = None;
        let result = calls.accumulate_batch(acc, buffer);
        let flushed = match result {
            Ok(Some(boundary)) => match check.then(|| calls.checkpointable("batch boundary", &boundary)) {
                Some(Err(error)) => Flushed::Refused { events: calls.list(&mut buffer.iter()), error },
                _ => Flushed::Emit(boundary),
            },
            Ok(None) => Flushed::Suppressed,
            Err(error) => Flushed::Failed { events: calls.list(&mut buffer.iter()), error },
        };
        buffer.clear();
        flushed
    }

    /// Latest strategy: holds a batch whose boundary was just accepted, until
    /// a successful fire has seen it ([`AccState::release`]).
    pub(crate) fn hold(&mut self) {
        if let AccState::Batch { held, .. } = self {
            *held = true;
        }
    }

    /// A successful fire saw the held boundary: the batch may flush again.
    /// Returns whether it was held.
    pub(crate) fn release(&mut self) -> bool {
        match self {
            AccState::Batch { held, .. } => std::mem::replace(held, false),
            _ => false,
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        matches!(self, AccState::Batch { held: true, .. })
    }

    /// (polling last value, batch buffer, state window) for a checkpoint.
    #[allow(clippy::type_complexity)]
    pub(crate) fn export<X>(
        &self,
        conv: &mut dyn FnMut(&V) -> Result<Value, X>,
    ) -> Result<(Option<Value>, Vec<Value>, Vec<Value>), X> {
        Ok(match self {
            AccState::Plain | AccState::Forward => (None, Vec::new(), Vec::new()),
            AccState::Polling { last } => (last.as_ref().map(&mut *conv).transpose()?, Vec::new(), Vec::new()),
            AccState::Batch { buffer, .. } => (None, buffer.iter().map(&mut *conv).collect::<Result<_, X>>()?, Vec::new()),
            AccState::State { window, .. } => (None, Vec::new(), window.iter().map(&mut *conv).collect::<Result<_, X>>()?),
        })
    }

    /// Restores what [`AccState::export`] saved. A restored batch buffer gets a
    /// fresh flush deadline.
    pub(crate) fn import(&mut self, saved_last: Option<V>, saved_buffer: Vec<V>, saved_window: Vec<V>, now: Time) {
        match self {
            AccState::Plain | AccState::Forward => {}
            AccState::Polling { last } => *last = saved_last,
            AccState::Batch { buffer, interval, due, .. } => {
                *buffer = saved_buffer;
                *due = if buffer.is_empty() { None } else { interval.map(|i| now + i) };
            }
            AccState::State { window, capacity } => {
                let skip = saved_window.len().saturating_sub(*capacity);
                *window = saved_window.into_iter().skip(skip).collect();
            }
        }
    }

    /// When the batch must flush by; never while it is held (its flush waits
    /// for a fire, not for the clock).
    pub(crate) fn flush_due(&self) -> Option<Time> {
        match self {
            AccState::Batch { due, held: false, .. } => *due,
            _ => None,
        }
    }

    pub(crate) fn is_batch(&self) -> bool {
        matches!(self, AccState::Batch { .. })
    }

    pub(crate) fn buffered(&self) -> usize {
        match self {
            AccState::Batch { buffer, .. } => buffer.len(),
            _ => 0,
        }
    }
}
