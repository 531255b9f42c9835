//! The merge channel: every input of a graph (pushes, sources, timers, control
//! calls) meets here, in one bounded FIFO, in front of the processor.
//!
//! Bounded so that a slow graph pushes back on its producers instead of growing
//! without limit; nothing is ever dropped on full: the producer either waits or
//! gets its item back with the reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use crate::clock::Time;
use crate::event::{Input, SourcePosition};

/// What travels through the merge channel.
pub enum Item<V> {
    Event { acc: usize, input: Input<V> },
    /// A stream source's message; `position` holds the next offset to read,
    /// boxed so that every item in the channel stays small.
    SourceEvent { acc: usize, input: Input<V>, position: Box<SourcePosition> },
    /// Fire once on the current inputs (`fire()`).
    Fire,
    /// Take a checkpoint now, behind everything already queued.
    Checkpoint,
    Pause(bool),
    /// A simulated clock moves to this time, running the timers due on the
    /// way first (`Processor::advance`); nothing under the wall clock.
    Advance(Time),
    /// A simulated clock reads this time from now on, without running the
    /// timers due by then (they run at the next `Advance`): replaying a
    /// journal, whose events carry the time the processor took them at,
    /// with timers that ran late recorded as their own steps.
    Stamp(Time),
    /// Settle what was taken since the last settle (replaying a journal's
    /// settle record: the live processor settled here).
    Settle,
    /// Flush batches, settle, checkpoint, and end the loop.
    /// (What each item means is [`crate::processor::Processor::apply`].)
    Stop,
}

/// Why an item was not accepted; the item comes back to the caller.
pub enum PushError<T> {
    /// The channel was full (non-blocking push).
    Full(T),
    /// The channel stayed full for the whole timeout.
    Timeout(T),
    /// The processor has stopped.
    Closed(T),
}

/// Counts items in and out, so that `drain()` can wait for everything accepted
/// before it was called.
pub struct Progress {
    submitted: AtomicU64,
    completed: AtomicU64,
    /// The lowest `completed` count a waiter waits for (`u64::MAX`: nobody
    /// waits), so that the processor wakes waiters when one of them is done,
    /// not after every batch (a futex call, and a thread woken for nothing).
    /// Lowered under `waiters`' lock; reset there by the last waiter to leave.
    wake_at: AtomicU64,
    closed: AtomicBool,
    /// How many threads wait.
    waiters: Mutex<usize>,
    changed: Condvar,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            waiters: Mutex::new(0),
            changed: Condvar::new(),
        }
    }
}

impl Progress {
    pub fn submitted(&self) -> u64 {
        self.submitted.load(SeqCst)
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(SeqCst)
    }

    pub fn complete(&self, n: u64) {
        let done = self.completed.fetch_add(n, SeqCst) + n;
        // A waiter stores its target before it reads `completed` (both
        // SeqCst): either it sees this batch, or this load sees its target.
        if done >= self.wake_at.load(SeqCst) {
            self.wake();
        }
    }

    /// The processor has stopped for good; waiters must not wait any longer.
    pub fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    fn wake(&self) {
        // Under the lock: a waiter between its check and its wait holds it.
        let _guard = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    /// Waits until `target` items have completed. Returns false on timeout or if
    /// the processor stopped first.
    pub fn wait_for(&self, target: u64, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        *waiters += 1;
        self.wake_at.fetch_min(target, SeqCst);
        let reached = loop {
            if self.completed.load(SeqCst) >= target {
                break true;
            }
            if self.closed.load(SeqCst) {
                break false;
            }
            waiters = match deadline {
                None => self.changed.wait(waiters).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    self.changed.wait_timeout(waiters, d - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        };
        *waiters -= 1;
        // With others still waiting, a target already reached stays as the
        // mark: it only wakes them more often than needed.
        if *waiters == 0 {
            self.wake_at.store(u64::MAX, SeqCst);
        }
        reached
    }
}

/// The producers' end of the merge channel.
pub struct MergeSender<V> {
    tx: Sender<Item<V>>,
    progress: Arc<Progress>,
    capacity: usize,
}

impl<V> Clone for MergeSender<V> {
    fn clone(&self) -> Self {
        MergeSender { tx: self.tx.clone(), progress: self.progress.clone(), capacity: self.capacity }
    }
}

/// A bounded merge channel of `capacity` items.
pub fn merge_channel<V>(capacity: usize) -> (MergeSender<V>, Receiver<Item<V>>, Arc<Progress>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let progress = Arc::new(Progress::default());
    (MergeSender { tx, progress: progress.clone(), capacity }, rx, progress)
}

impl<V> MergeSender<V> {
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items waiting for the processor.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Accepts `item` now or gives it back.
    pub fn try_push(&self, item: Item<V>) -> Result<(), PushError<Item<V>>> {
        self.progress.submitted.fetch_add(1, SeqCst);
        self.tx.try_send(item).map_err(|e| {
            self.progress.submitted.fetch_sub(1, SeqCst);
            match e {
                TrySendError::Full(item) => PushError::Full(item),
                TrySendError::Disconnected(item) => PushError::Closed(item),
            }
        })
    }

    /// Waits up to `timeout` (forever with `None`) for room.
    pub fn push(&self, item: Item<V>, timeout: Option<Duration>) -> Result<(), PushError<Item<V>>> {
        self.progress.submitted.fetch_add(1, SeqCst);
        let result = match timeout {
            None => self.tx.send(item).map_err(|e| PushError::Closed(e.0)),
            Some(t) => self.tx.send_timeout(item, t).map_err(|e| match e {
                SendTimeoutError::Timeout(item) => PushError::Timeout(item),
                SendTimeoutError::Disconnected(item) => PushError::Closed(item),
            }),
        };
        if result.is_err() {
            self.progress.submitted.fetch_sub(1, SeqCst);
        }
        result
    }
}
