//! The processor loop of thread mode: wait for items with the interpreter
//! detached, then attach once and run the whole batch.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::channel::{Item, Progress};
use crate::host::Calls;
use crate::processor::Processor;

/// Lets the driver run code with the host attached (for Python: holding the GIL).
pub trait Attach<V, E> {
    fn attached(&mut self, work: &mut dyn FnMut(&mut dyn Calls<V, E>));
}

/// Most items handled in one attachment, so that other threads get the
/// interpreter between batches.
pub const MAX_BATCH: usize = 1024;

/// Polls the channel for up to `spin` before the caller parks on it. Waking a
/// parked thread costs tens of microseconds on a VM; an event that arrives
/// within the spin window skips that.
///
/// A fixed window, measured against alternatives with the W3-gap bench (one
/// event in flight, 50 µs idle before each, push -> on_fire; 2-core VM, two
/// runs each, p50 vs a bare `queue.SimpleQueue` hop measured the same way):
/// 50 µs spin then park: 23.1 / 18.7 µs (hop 22.0 / 27.5); no spin: 26.3 /
/// 25.9 µs (hop 17.8 / 18.9); 200 µs spin (never parks at this gap): 19.9 /
/// 22.6 µs (hop 21.1 / 24.9); an adaptive window (twice the recent gaps, up to
/// 1 ms): 20.2 / 17.4 µs (hop 27.3 / 16.9); the same with `yield_now` instead
/// of spin hints: 15.7 / 18.3 µs (hop 17.7 / 17.1). Never parking gains a few
/// µs at most: what remains is taking the GIL from the pushing thread, a
/// futex hand-off that every Python thread hop pays (the SimpleQueue hop
/// too), so a cheaper wake (eventfd, a raw futex instead of crossbeam's park,
/// which is one already) cannot beat the never-parking bound. An adaptive
/// window burns up to 1 ms of CPU per idle period for no measurable gain, so
/// the simple fixed window stays. The spin runs detached (GIL released).
/// (All of these predate the processor thread keeping its Python thread
/// state across batches, which cut the same p50 to about 5.5 µs, a third of
/// the hop's, with or without the spin.)
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

/// The spin window, stretched to cover the recent idle gaps: at least the
/// configured spin, up to [`Spin::STRETCH`] times it while the gaps between
/// going idle and the next item (a moving average) fit in that; when they are
/// longer no spin would catch them, and the configured one stays.
///
/// Measured with the W3-gap bench (50 µs idle before each event, p50 vs a
/// bare `SimpleQueue` hop in the same run; 2-core VM): a fixed 50 µs window
/// always just misses the next event (it comes 50 µs plus the pusher's own
/// wake-up after the window opens), so the processor parks and is woken each
/// time. On a quiet machine that wake is cheap and either way gives about
/// 5.5 µs (hop 17 µs); when the cores are contended it costs what the hop
/// costs: fixed 38.8 / 38.4 / 38.4 / 38.2 / 37.8 / 37.3 µs (hop 36-37 µs),
/// stretched 26.9 / 38.7 / 30.5 / 31.1 / 36.2 / 31.1 µs (hop 36-38 µs),
/// alternating runs. The price: up to `STRETCH` times the configured spin of
/// CPU per idle period, and only while events keep coming that often.
pub struct Spin {
    base: Duration,
    /// Moving average of the recent idle gaps, in nanoseconds.
    gap_ns: u64,
}

impl Spin {
    pub const STRETCH: u32 = 4;

    pub fn new(base: Duration) -> Spin {
        Spin { base, gap_ns: 0 }
    }

    /// How long to poll before parking.
    pub fn window(&self) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let wanted = Duration::from_nanos(self.gap_ns.saturating_mul(2));
        if wanted <= self.base * Self::STRETCH {
            wanted.max(self.base)
        } else {
            self.base
        }
    }

    /// An idle period ended after `gap` with an item.
    pub fn observe(&mut self, gap: Duration) {
        let gap = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX);
        self.gap_ns = self.gap_ns - self.gap_ns / 8 + gap / 8;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until a [`Item::Stop`] is handled or every sender is gone. When idle
/// (no timer due) it spins for `idle_spin` (or longer, see [`Spin`]) before
/// parking. What each item
/// means is [`Processor::apply_batch`]'s; this loop only decides when to call it.
///
/// The processor is locked only while a batch runs (and to read its next
/// deadline), so that a host's garbage collector can look at the values it
/// holds between batches (`try_lock`, never waiting).
pub fn run<V, E>(
    rx: &Receiver<Item<V>>,
    processor: &Mutex<Processor<V, E>>,
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
    let mut spin = Spin::new(idle_spin);
    let mut running = true;
    while running {
        let deadline = lock(processor).wall_deadline();
        let first = match deadline {
            Some(deadline) => match rx.recv_deadline(deadline) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => {
                let idle_from = Instant::now();
                let item = match spin_for(rx, spin.window()) {
                    Some(item) => item,
                    None => match rx.recv() {
                        Ok(item) => item,
                        Err(_) => break,
                    },
                };
                spin.observe(idle_from.elapsed());
                Some(item)
            }
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
            let mut processor = lock(processor);
            let now = processor.now();
            let applied = processor.apply_batch(batch.drain(..), calls, &now);
            running = !applied.stopped;
            if running {
                processor.on_idle(calls);
            }
        });
        progress.complete(n);
    }
}
