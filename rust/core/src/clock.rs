//! The processor's notion of "now", read lazily.

use std::cell::Cell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The current instant, read from the clock at most once and only when some
/// deadline needs it: on the common path (an event that fires) nothing does,
/// and clock reads were a measurable share of an inline push.
pub struct Now(Cell<Option<Instant>>);

impl Now {
    /// Reads the clock lazily.
    pub fn lazy() -> Self {
        Now(Cell::new(None))
    }

    /// A fixed instant (timers, tests).
    pub fn at(instant: Instant) -> Self {
        Now(Cell::new(Some(instant)))
    }

    pub fn get(&self) -> Instant {
        match self.0.get() {
            Some(i) => i,
            None => {
                let i = Instant::now();
                self.0.set(Some(i));
                i
            }
        }
    }
}

/// The wall clock and the monotonic clock read together once: a fire's
/// wall-clock start is then one monotonic read and one subtraction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    pub wall: SystemTime,
    /// `wall` in microseconds since the Unix epoch.
    pub wall_us: u64,
    pub mono: Instant,
}

impl Anchor {
    pub fn now() -> Self {
        let (wall, mono) = (SystemTime::now(), Instant::now());
        let wall_us = wall.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        Anchor { wall, wall_us, mono }
    }
}
