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

/// A point on the runtime's clock: nanoseconds since the Unix epoch.
///
/// The wall clock ([`wall_now`]) is the OS monotonic clock shifted once to
/// the epoch, so its times never step back when the system clock is set; a
/// simulated clock is whatever time its events and `advance` calls say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(i64);

impl Time {
    pub const fn from_nanos(ns: i64) -> Time {
        Time(ns)
    }

    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Microseconds since the epoch (0 before it), as metrics keep times.
    pub fn as_micros(self) -> u64 {
        u64::try_from(self.0 / 1_000).unwrap_or(0)
    }

    /// The same point as a `SystemTime`.
    pub fn as_system(self) -> SystemTime {
        match u64::try_from(self.0) {
            Ok(ns) => UNIX_EPOCH + Duration::from_nanos(ns),
            Err(_) => UNIX_EPOCH - Duration::from_nanos(self.0.unsigned_abs()),
        }
    }

    /// The time from `earlier` to this one (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_nanos(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;

    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
    }
}

/// The epoch time of the monotonic clock's `Instant`, fixed at first use.
fn wall_base() -> &'static (Instant, i64) {
    static BASE: OnceLock<(Instant, i64)> = OnceLock::new();
    BASE.get_or_init(|| {
        let (mono, wall) = (Instant::now(), SystemTime::now());
        let ns = wall.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        (mono, ns)
    })
}

/// The wall clock's time now.
pub fn wall_now() -> Time {
    wall_of(Instant::now())
}

/// The wall clock's time at `instant`.
pub fn wall_of(instant: Instant) -> Time {
    let (mono, ns) = *wall_base();
    match instant.checked_duration_since(mono) {
        Some(d) => Time(ns) + d,
        None => Time(ns.saturating_sub(mono.duration_since(instant).as_nanos() as i64)),
    }
}

/// The `Instant` at which the wall clock reads `t` (to wait for a deadline).
pub fn instant_of(t: Time) -> Instant {
    let (mono, ns) = *wall_base();
    match u64::try_from(t.0.saturating_sub(ns)) {
        Ok(ahead) => mono + Duration::from_nanos(ahead),
        Err(_) => mono,
    }
}

/// The current time, read from the clock at most once and only when some
/// deadline needs it: on the common path (an event that fires) nothing does,
/// and clock reads were a measurable share of an inline push. Under a
/// simulated clock it is fixed at the simulated time.
pub struct Now(Cell<Option<Time>>);

impl Now {
    /// Reads the wall clock lazily.
    pub fn lazy() -> Self {
        Now(Cell::new(None))
    }

    /// A fixed time (timers, simulated time, tests).
    pub fn at(time: Time) -> Self {
        Now(Cell::new(Some(time)))
    }

    pub fn get(&self) -> Time {
        match self.0.get() {
            Some(t) => t,
            None => {
                let t = wall_now();
                self.0.set(Some(t));
                t
            }
        }
    }
}

/// The wall clock, the monotonic clock and the counter read together: a
/// fire's wall-clock start is then one counter read and one subtraction.
/// Under a simulated clock, fires start at the simulated time instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    wall: SystemTime,
    /// `wall` in microseconds since the Unix epoch.
    wall_us: u64,
    mono: Instant,
    ticks: Ticks,
    /// The simulated clock's time; None: the wall clock.
    sim: Option<Time>,
}

/// When a fire started, by the anchor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    /// From the anchor (zero under a simulated clock, where no time passes
    /// while nodes run).
    pub since: Duration,
    pub wall: SystemTime,
    pub wall_us: u64,
}

/// How long an anchor serves: the counter's calibrated rate is off by parts
/// per million at most, so times derived from an anchor this young stay
/// within microseconds of the OS clocks.
const ANCHOR_LIFE: Duration = Duration::from_secs(1);

impl Anchor {
    /// `sim`: start a simulated clock at this time instead of following the wall clock.
    pub fn new(sim: Option<Time>) -> Self {
        let (wall, mono, ticks) = (SystemTime::now(), Instant::now(), ticks());
        let wall_us = wall.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        Anchor { wall, wall_us, mono, ticks, sim }
    }

    /// The simulated time, or None under the wall clock.
    pub fn simulated(&self) -> Option<Time> {
        self.sim
    }

    /// Moves a simulated clock to `t` (never back).
    pub fn set_simulated(&mut self, t: Time) {
        if let Some(sim) = &mut self.sim {
            *sim = (*sim).max(t);
        }
    }

    /// When something timed from counter reading `t` started.
    pub fn stamp(&mut self, t: Ticks) -> Stamp {
        if let Some(sim) = self.sim {
            return Stamp { since: Duration::ZERO, wall: sim.as_system(), wall_us: sim.as_micros() };
        }
        let since = self.since(t);
        Stamp { since, wall: self.wall + since, wall_us: self.wall_us + since.as_micros() as u64 }
    }

    /// The runtime clock's time at `since` after the anchor.
    pub fn clock_at(&self, since: Duration) -> Time {
        self.sim.unwrap_or_else(|| wall_of(self.mono + since))
    }

    /// The time from the anchor to `t`, re-anchoring first when the anchor
    /// has served its time.
    fn since(&mut self, t: Ticks) -> Duration {
        let since = elapsed(self.ticks, t);
        if since < ANCHOR_LIFE {
            return since;
        }
        *self = Anchor::new(self.sim);
        elapsed(self.ticks, t.max(self.ticks))
    }
}
