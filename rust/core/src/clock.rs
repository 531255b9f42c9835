//! The processor's notion of "now", read lazily.

use std::cell::Cell;
use std::time::Instant;

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
