//! The processor loop of thread mode: wait for items with the interpreter
//! detached, then attach once and run the whole batch.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::channel::{Item, Progress};
use crate::host::Calls;
use crate::processor::{Now, Processor};

/// Lets the driver run code with the host attached (for Python: holding the GIL).
pub trait Attach<V, E> {
    fn attached(&mut self, work: &mut dyn FnMut(&mut dyn Calls<V, E>));
}

/// Most items handled in one attachment, so that other threads get the
/// interpreter between batches.
pub const MAX_BATCH: usize = 1024;

/// Takes a checkpoint if a store is configured; a failure is reported to the
/// host by `persist` (and retried at the next checkpoint).
fn checkpoint<V, E>(processor: &mut Processor<V, E>, calls: &mut dyn Calls<V, E>) {
    if processor.checkpoints_enabled() {
        let _ = processor.checkpoint(calls);
    }
}

/// Polls the channel for up to `spin` before the caller parks on it. Waking a
/// parked thread costs tens of microseconds on a VM; an event that arrives
/// within the spin window skips that.
fn spin_for<V>(rx: &Receiver<Item<V>>, spin: Duration) -> Option<Item<V>> {
    if spin.is_zero() {
        return None;
    }
    let until = Instant::now() + spin;
    loop {
        if let Ok(item) = rx.try_recv() {
            return Some(item);
        }
        if Instant::now() >= until {
            return None;
        }
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
}

/// Runs until a [`Item::Stop`] is handled or every sender is gone. When idle
/// (no timer due) it spins for `idle_spin` before parking.
pub fn run<V, E>(
    rx: &Receiver<Item<V>>,
    processor: &mut Processor<V, E>,
    host: &mut dyn Attach<V, E>,
    progress: &Progress,
    idle_spin: Duration,
) {
    // However the loop ends (even by a panic), waiters must stop waiting.
    struct CloseOnExit<'a>(&'a Progress);
    impl Drop for CloseOnExit<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = CloseOnExit(progress);
    let mut batch: Vec<Item<V>> = Vec::with_capacity(MAX_BATCH);
    let mut running = true;
    while running {
        let first = match processor.next_deadline() {
            Some(deadline) => match rx.recv_deadline(deadline) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match spin_for(rx, idle_spin) {
                Some(item) => Some(item),
                None => match rx.recv() {
                    Ok(item) => Some(item),
                    Err(_) => break,
                },
            },
        };
        if let Some(item) = first {
            batch.push(item);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        let n = batch.len() as u64;
        host.attached(&mut |calls| {
            let now = &Now::at(Instant::now());
            let per_event = processor.settles_per_event();
            let mut unsettled = false;
            for item in batch.drain(..) {
                match item {
                    Item::Event { acc, input } => {
                        processor.ingest(acc, input, calls, now);
                        if per_event {
                            processor.settle(calls, now);
                        } else {
                            unsettled = true;
                        }
                    }
                    Item::SourceEvent { acc, input, position } => {
                        processor.ingest_from_source(acc, input, *position, calls, now);
                        if per_event {
                            processor.settle(calls, now);
                        } else {
                            unsettled = true;
                        }
                    }
                    control => {
                        // Control items act on everything queued before them.
                        if unsettled {
                            processor.settle(calls, now);
                            unsettled = false;
                        }
                        match control {
                            Item::Fire => {
                                processor.fire_manual(calls, now);
                            }
                            Item::Checkpoint => checkpoint(processor, calls),
                            Item::Pause(paused) => processor.set_paused(paused, calls, now),
                            Item::Stop => {
                                processor.shutdown(calls, now);
                                checkpoint(processor, calls);
                                running = false;
                            }
                            Item::Event { .. } | Item::SourceEvent { .. } => unreachable!("handled above"),
                        }
                    }
                }
            }
            if unsettled {
                processor.settle(calls, now);
            }
            if running {
                let later = Now::lazy();
                processor.on_timer(calls, &later);
                if processor.checkpoint_due(&later) {
                    checkpoint(processor, calls);
                }
            }
        });
        progress.complete(n);
    }
}
