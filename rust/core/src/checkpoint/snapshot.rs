//! What a checkpoint holds, component by component.
//!
//! A checkpoint is a set of components, each sealed in its own envelope and
//! written together in one store transaction:
//! - `accumulator:<name>`: that accumulator's state (user state, batch buffer,
//!   state window, polling last value). Per accumulator, so that a new version
//!   of a graph restores the accumulators that still exist.
//! - `reactor`: input cache, dirty flags, sequential queue, dead letters, counters.
//! - `sources`: stream positions, saved with the state that reflects them.
//! - `control`: whether the graph is paused.
//! - `inputs`: each accumulator's input strategy and, for a burst input, the
//!   boundaries no successful fire has delivered yet. A component of its own
//!   so that checkpoints written before it (which lack it) still restore:
//!   readers ignore component names they do not know, and a missing `inputs`
//!   means no burst list was pending.

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::envelope::{CodecError, CodecId};
use super::value::Value;

pub const REACTOR: &str = "reactor";
pub const SOURCES: &str = "sources";
pub const CONTROL: &str = "control";
pub const INPUTS: &str = "inputs";
pub const ACCUMULATOR_PREFIX: &str = "accumulator:";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccumulatorSnapshot {
    /// The accumulator kind when it was saved; a different kind is not restored.
    pub kind: String,
    /// A stream accumulator's `State.value`.
    pub user_state: Option<Value>,
    /// A polling accumulator's last emitted value (change suppression).
    pub last: Option<Value>,
    /// A batch accumulator's buffered events.
    pub buffer: Vec<Value>,
    /// A state accumulator's window, oldest first.
    pub window: Vec<Value>,
    pub events: u64,
    pub boundaries: u64,
    pub suppressed: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSnapshot {
    pub accumulator: String,
    pub value: Value,
    pub seq: u64,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSnapshot {
    pub accumulator: String,
    pub stage: String,
    pub value: Value,
    pub error: String,
    pub attempts: u32,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReactorSnapshot {
    pub cache: Vec<(String, Value)>,
    /// Latest strategy: criteria members updated since the last successful
    /// fire, and batch accumulators whose cached boundary no successful fire
    /// has seen yet (they hold further flushes until one does).
    pub dirty: Vec<String>,
    pub queue: Vec<PendingSnapshot>,
    pub dead_letters: Vec<DeadLetterSnapshot>,
    pub dead_letters_dropped: u64,
    /// Failed tries of the current dirty inputs (latest strategy).
    pub attempts: u32,
    pub next_fire_id: u64,
    pub next_seq: u64,
    /// Successful fires (checkpoints written before this version counted
    /// failed ones here too).
    pub fires: u64,
    pub fires_failed: u64,
    pub retries: u64,
    pub last_fired_at_us: u64,
}

/// How far a stream source has been applied: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub accumulator: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourcesSnapshot {
    pub positions: Vec<Position>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControlSnapshot {
    pub paused: bool,
}

/// One accumulator's input, as the reactor saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSnapshot {
    pub accumulator: String,
    /// "latest", "sequential" or "burst" when saved.
    pub strategy: String,
    /// Burst input: boundaries accepted since the last successful fire, oldest first.
    pub burst: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InputsSnapshot {
    pub inputs: Vec<InputSnapshot>,
}

/// Everything the processor saves (the host adds user state it owns).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineSnapshot {
    pub accumulators: Vec<(String, AccumulatorSnapshot)>,
    pub reactor: ReactorSnapshot,
    pub sources: SourcesSnapshot,
    pub control: ControlSnapshot,
    pub inputs: InputsSnapshot,
}

/// Sealed components as stored: `(component name, blob)`.
pub type Components = Vec<(String, Vec<u8>)>;

/// A component that could not be sealed or opened, and why.
pub type ComponentError = (String, CodecError);

/// Seals every component of `snap` with `codec`.
pub fn encode_components(snap: &EngineSnapshot, codec: CodecId) -> Result<Components, ComponentError> {
    let seal = |name: String, r: Result<Vec<u8>, CodecError>| r.map(|b| (name.clone(), b)).map_err(|e| (name, e));
    let mut out = Vec::with_capacity(snap.accumulators.len() + 4);
    for (name, a) in &snap.accumulators {
        out.push(seal(format!("{ACCUMULATOR_PREFIX}{name}"), encode(a, codec))?);
    }
    out.push(seal(REACTOR.into(), encode(&snap.reactor, codec))?);
    out.push(seal(SOURCES.into(), encode(&snap.sources, codec))?);
    out.push(seal(CONTROL.into(), encode(&snap.control, codec))?);
    out.push(seal(INPUTS.into(), encode(&snap.inputs, codec))?);
    Ok(out)
}

/// Opens stored components (any codec each). A component that cannot be read
/// is reported by name; unknown component names are ignored (newer writers).
pub fn decode_components(components: &[(String, Vec<u8>)]) -> Result<EngineSnapshot, ComponentError> {
    let mut snap = EngineSnapshot::default();
    for (name, blob) in components {
        let named = |e: CodecError| (name.clone(), e);
        if let Some(acc) = name.strip_prefix(ACCUMULATOR_PREFIX) {
            snap.accumulators.push((acc.to_string(), decode(blob).map_err(named)?));
        } else if name == REACTOR {
            snap.reactor = decode(blob).map_err(named)?;
        } else if name == SOURCES {
            snap.sources = decode(blob).map_err(named)?;
        } else if name == CONTROL {
            snap.control = decode(blob).map_err(named)?;
        } else if name == INPUTS {
            snap.inputs = decode(blob).map_err(named)?;
        }
    }
    Ok(snap)
}
