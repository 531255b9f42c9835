//! The processor's notion of "now", read lazily, and the clock fires are
//! timed with.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A read of the time-stamp counter (`ticks`).
pub type Ticks = u64;

/// The time-stamp counter, calibrated once against the OS clock: a read costs
/// ~12 ns where a vDSO `clock_gettime` costs ~35, and every fire reads it
/// twice (start and duration). Where the counter is not usable (no invariant
/// TSC), quanta reads the OS clock instead.
fn tsc() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Reads the clock fires are timed with.
#[inline]
pub fn ticks() -> Ticks {
    tsc().raw()
}

/// The time from `start` to `end`.
#[inline]
pub fn elapsed(start: Ticks, end: Ticks) -> Duration {
    tsc().delta(start, end)
}

/// Nanoseconds from `start` to `end`.
#[inline]
pub fn elapsed_ns(start: Ticks, end: Ticks) -> u64 {
    tsc().delta_as_nanos(start, end)
}

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

/// The wall clock, the monotonic clock and the counter read together: a
/// fire's wall-clock start is then one counter read and one subtraction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    pub wall: SystemTime,
    /// `wall` in microseconds since the Unix epoch.
    pub wall_us: u64,
    pub mono: Instant,
    pub ticks: Ticks,
}

/// How long an anchor serves: the counter's calibrated rate is off by parts
/// per million at most, so times derived from an anchor this young stay
/// within microseconds of the OS clocks.
const ANCHOR_LIFE: Duration = Duration::from_secs(1);

impl Anchor {
    pub fn now() -> Self {
        let (wall, mono, ticks) = (SystemTime::now(), Instant::now(), ticks());
        let wall_us = wall.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        Anchor { wall, wall_us, mono, ticks }
    }

    /// The time from the anchor to `t`, re-anchoring first when the anchor
    /// has served its time.
    pub fn since(&mut self, t: Ticks) -> Duration {
        let since = elapsed(self.ticks, t);
        if since < ANCHOR_LIFE {
            return since;
        }
        *self = Anchor::now();
        elapsed(self.ticks, t.max(self.ticks))
    }
}
