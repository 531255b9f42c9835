//! Counters and health readable from any thread while the processor runs.
//!
//! The processor owns its state exclusively; everything `stats()` reports lives
//! here as relaxed atomics (or a short-held lock for texts), so reading stats
//! never waits for a fire.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// An accumulator's health, as the seed design defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Loading its checkpoint.
    Starting = 0,
    /// Checkpoint loaded, connecting to its source (pushes already accepted).
    Connecting = 1,
    /// Source connected and delivering.
    Live = 2,
    /// Lost its source; retrying. Pushes still accepted.
    Disconnected = 3,
    /// No source to lose: healthy by definition.
    SocketOnly = 4,
}

impl Health {
    pub const ALL: [Health; 5] =
        [Health::Starting, Health::Connecting, Health::Live, Health::Disconnected, Health::SocketOnly];

    pub fn label(self) -> &'static str {
        crate::error::Named::as_str(self)
    }

    pub fn parse(text: &str) -> Option<Health> {
        text.parse().ok()
    }

    fn from_u8(v: u8) -> Health {
        Health::ALL.get(v as usize).copied().unwrap_or(Health::Starting)
    }
}

crate::named!(Health, "health", {
    Health::Starting => "starting",
    Health::Connecting => "connecting",
    Health::Live => "live",
    Health::Disconnected => "disconnected",
    Health::SocketOnly => "socket_only",
});

/// Adds one to a counter that only the processor writes (thread mode: its own
/// thread; inline: the holder of the processor lock). A plain load and store,
/// not a locked read-modify-write: readers still see whole values.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

#[derive(Default)]
pub struct AccMetrics {
    /// Events taken in (pushes, source messages, polls).
    pub events: AtomicU64,
    /// Boundaries emitted to the reactor.
    pub boundaries: AtomicU64,
    /// Events (or flushed batches) that produced no boundary: `None`, or an unchanged poll.
    pub suppressed: AtomicU64,
    /// Accumulator function failures and undecodable payloads.
    pub errors: AtomicU64,
    /// Events waiting in a batch accumulator's buffer.
    pub buffered: AtomicUsize,
    /// Events refused because their state could not be checkpointed
    /// (`check_checkpointable`).
    pub refused: AtomicU64,
    health: AtomicU8,
    last_error: Mutex<Option<String>>,
    /// When the last boundary was emitted, as [`Metrics::stamp`] reads the
    /// clock; [`NEVER`] before the first.
    pub last_boundary: AtomicU64,
    /// Nanoseconds without a boundary after which the accumulator is stale
    /// (0: no `max_age`).
    pub max_age_ns: AtomicU64,
}

/// No boundary yet.
pub const NEVER: u64 = u64::MAX;

/// How recording to the input journal goes (when there is one).
#[derive(Default)]
pub struct JournalHealth {
    /// The last append failed (the reactor is degraded until one succeeds).
    pub failing: AtomicBool,
    /// Events taken but not recorded: their value could not be encoded.
    pub unrecorded: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl JournalHealth {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn unrecorded(&self, text: String) {
        self.unrecorded.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    pub(crate) fn failed(&self, text: String) {
        self.failing.store(true, Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

impl AccMetrics {
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Relaxed))
    }

    pub fn set_health(&self, health: Health) {
        self.health.store(health as u8, Relaxed);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn record_error(&self, text: String) {
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    pub fn record_refused(&self, text: String) {
        self.refused.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

pub struct Metrics {
    pub accumulators: Vec<AccMetrics>,
    /// Successful fires: every node ran without raising.
    pub fires: AtomicU64,
    /// Fires in which a node raised (each failed attempt counts once).
    pub fires_failed: AtomicU64,
    /// Fires that re-ran inputs after a failure.
    pub retries: AtomicU64,
    /// Microseconds since the Unix epoch of the last fire's start; 0 before any.
    pub last_fired_at_us: AtomicU64,
    /// Boundaries accepted but not yet fired (sequential strategy).
    pub pending: AtomicUsize,
    pub paused: AtomicBool,
    /// The last checkpoint could not be taken (the reactor is degraded).
    pub checkpoint_failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Ages are counted on a simulated clock (nanoseconds since the epoch)
    /// instead of the time-stamp counter.
    pub simulated: bool,
    /// The clock when the processor started, as [`Metrics::stamp`] reads it:
    /// an accumulator with no boundary yet is as old as the runtime.
    pub origin: AtomicU64,
    /// Under a simulated clock, the processor's time (nanoseconds since the
    /// epoch): what ages are read against, so that a node sees the time of
    /// the event it runs for, not that of events still queued.
    pub sim_now: std::sync::atomic::AtomicI64,
    pub journal: JournalHealth,
}

impl Metrics {
    pub fn new(accumulators: usize) -> Self {
        Metrics {
            accumulators: (0..accumulators)
                .map(|_| AccMetrics { last_boundary: AtomicU64::new(NEVER), ..AccMetrics::default() })
                .collect(),
            fires: AtomicU64::new(0),
            fires_failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            last_fired_at_us: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            checkpoint_failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            simulated: false,
            origin: AtomicU64::new(0),
            sim_now: std::sync::atomic::AtomicI64::new(0),
            journal: JournalHealth::default(),
        }
    }

    /// A reading of the clock ages count on: the time-stamp counter (one
    /// read, ~12 ns) under the wall clock, `sim` under a simulated one.
    #[inline]
    pub fn stamp(&self, sim: Option<crate::clock::Time>) -> u64 {
        match sim {
            Some(t) => t.as_nanos() as u64,
            None => crate::clock::ticks(),
        }
    }

    /// How long accumulator `acc` has gone without a boundary at clock
    /// reading `now` (since the start if it never had one).
    pub fn age(&self, acc: usize, now: u64) -> Duration {
        let last = match self.accumulators[acc].last_boundary.load(Relaxed) {
            NEVER => self.origin.load(Relaxed),
            last => last,
        };
        match self.simulated {
            true => Duration::from_nanos((now as i64).saturating_sub(last as i64).max(0) as u64),
            false => crate::clock::elapsed(last, now.max(last)),
        }
    }

    /// How long accumulator `acc` has been stale at clock reading `now`
    /// (its age past its `max_age`), or None while it is fresh or has none.
    pub fn stale_for(&self, acc: usize, now: u64) -> Option<Duration> {
        let max_age = self.accumulators[acc].max_age_ns.load(Relaxed);
        if max_age == 0 {
            return None;
        }
        self.age(acc, now).checked_sub(Duration::from_nanos(max_age))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts one fire: successful ones in `fires`, failed ones apart, so that
    /// `fires` never grows by retries of the same inputs.
    /// `started_us`: the fire's start, microseconds since the Unix epoch.
    pub(crate) fn record_fire(&self, started_us: u64, failed: Option<String>) {
        self.last_fired_at_us.store(started_us, Relaxed);
        match failed {
            None => bump(&self.fires),
            Some(text) => {
                bump(&self.fires_failed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
            }
        }
    }
}
