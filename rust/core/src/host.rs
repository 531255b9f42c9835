//! What the engine needs from its host (the Python bindings, or a test harness).
//!
//! The core never touches an interpreter: it owns the plan, the caches and the
//! queues, and asks the host to call user functions through [`Calls`]. A host
//! implements it for one attached session (one batch, or one inline push).

use std::time::{Duration, Instant, SystemTime};

use smallvec::SmallVec;

use crate::checkpoint::snapshot::EngineSnapshot;
use crate::checkpoint::Value;

/// Terminal results of one fire; most graphs have one or two terminals.
pub type Outputs<V> = SmallVec<[(usize, V); 2]>;

pub use crate::event::Codec;
use crate::event::SourcePosition;

/// What a node returned.
pub enum NodeOutput<V> {
    Value(V),
    /// A routing node's choice: `label` indexes the node's route labels.
    Routed { label: usize, value: V },
}

/// One async node of a run the host is asked to await together.
pub struct AsyncCall<'a, V> {
    /// Plan position of the node.
    pub node: usize,
    pub args: SmallVec<[Option<&'a V>; 8]>,
    /// Cancel it once this has passed (its own `timeout` or what is left of
    /// the fire's); None: no deadline.
    pub budget: Option<Duration>,
}

/// Which deadline a fire overran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineKind {
    /// The graph's `fire_timeout`.
    Fire,
    /// The node's own `timeout`.
    Node,
}

/// A deadline passed while node `node` ran: the fire fails with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun {
    /// Plan position of the node that overran.
    pub node: usize,
    pub kind: DeadlineKind,
    /// The deadline's length.
    pub limit: Duration,
    /// How far past it the node was seen to finish (zero when cancelled).
    pub by: Duration,
    /// An async node cancelled at the deadline (a sync one runs to its end).
    pub cancelled: bool,
}

/// Why a fire happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A boundary of this accumulator (sequential strategy).
    Boundary(usize),
    /// The criteria were met by the dirty accumulators (latest strategy).
    Criteria,
    /// `fire()` was called.
    Manual,
    /// The criteria's schedule (`every`) came due.
    Schedule,
}

pub struct NodeFailure<E> {
    /// Plan position of the node that raised.
    pub node: usize,
    pub error: E,
    /// 1 for the first try of these inputs.
    pub attempt: u32,
    /// The inputs went to the dead-letter list after this failure.
    pub dead_lettered: bool,
}

/// One execution of the graph.
pub struct FireRecord<V, E> {
    pub id: u64,
    pub trigger: Trigger,
    /// Sequence number of the newest event whose boundary this fire reflects.
    pub seq: u64,
    /// `(plan position, value)` of every terminal node that ran, in plan order.
    pub outputs: Outputs<V>,
    pub failure: Option<NodeFailure<E>>,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// What the processor was asked to record (`Config::profile`,
    /// `Config::record_inputs`); None when neither is on, so a plain fire
    /// allocates nothing for it.
    pub detail: Option<Box<FireDetail<V>>>,
}

/// A fire's optional records.
#[derive(Debug, Default)]
pub struct FireDetail<V> {
    /// With `profile`: `(plan position, nanoseconds)` of every node that ran
    /// (the failing one included), in plan order. Inline for small graphs, so
    /// that profiling allocates once per fire (the box).
    pub node_ns: Option<SmallVec<[(usize, u64); 4]>>,
    /// With `record_inputs`: `(accumulator, value)` for every accumulator some
    /// node reads, with the value the fire's nodes received (None: no boundary yet).
    pub inputs: Option<Vec<(usize, Option<V>)>>,
}

/// A value the checkpoint codec cannot hold: where it sits and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// Where the value sits, from the root the engine named: `event['ts']`.
    pub path: String,
    /// The offending value's type name.
    pub type_name: String,
    /// The whole explanation (path, type and what is supported).
    pub message: String,
}

/// Why a checkpoint was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Some value in the state cannot be checkpointed.
    Unsupported(Unsupported),
    /// The snapshot could not be handed over to be written.
    Persist(String),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Unsupported(u) => f.write_str(&u.message),
            CheckpointError::Persist(text) => f.write_str(text),
        }
    }
}

/// What the engine tells its host as it works.
pub enum Report<V, E> {
    Fired(FireRecord<V, E>),
    /// An accumulator function raised; the event is in the dead-letter list.
    AccumulatorFailed { acc: usize, seq: u64, error: E },
    /// Raw bytes could not be decoded; the event was dropped and counted. For
    /// a stream source's message, `position` is the message's own offset.
    DecodeFailed { acc: usize, seq: u64, error: E, data: Vec<u8>, position: Option<SourcePosition> },
    /// With `check_checkpointable`: what this event would have put into state
    /// cannot be checkpointed, so the event was refused (it is in the dead-letter
    /// list as a stand-in) and nothing of it entered any state. `batch`: it was a
    /// batch function's result on events accepted earlier, not a new event.
    Refused { acc: usize, seq: u64, error: Unsupported, batch: bool },
    /// A checkpoint could not be taken; the next one is tried at the policy's pace.
    CheckpointFailed(CheckpointError),
}

/// Where a chain run (`processor::chain`) stopped: what raised on its last event.
pub enum ChainFailure<V, E> {
    /// The accumulator function raised on the event.
    Accumulator { error: E },
    /// Node `node` (plan position) raised on the boundary the event gave;
    /// `detail`: what the fire recorded (as `FireRecord::detail`).
    Node { boundary: V, node: usize, error: E, detail: Option<Box<FireDetail<V>>> },
    /// With `check_checkpointable`: the boundary the event gave cannot be
    /// checkpointed (the event is refused, as `Report::Refused` says).
    Refused { error: Unsupported },
}

/// What a host's chain run did with the events it was given, in order: the
/// first `fired + suppressed` were taken (each fired successfully or gave no
/// boundary), then possibly one stopped the run, and `untaken` were not
/// looked at.
pub struct ChainOutcome<V, E> {
    pub fired: u64,
    pub suppressed: u64,
    /// The last boundary that fired.
    pub last: Option<V>,
    pub started: crate::clock::Ticks,
    pub ended: crate::clock::Ticks,
    /// The event the run stopped at, and what raised.
    pub stopped: Option<(V, ChainFailure<V, E>)>,
    pub untaken: Vec<V>,
}

impl<V, E> ChainOutcome<V, E> {
    /// Every event handed back, none taken (a host that could not run them).
    pub fn untaken(events: Vec<V>) -> Self {
        let now = crate::clock::ticks();
        ChainOutcome { fired: 0, suppressed: 0, last: None, started: now, ended: now, stopped: None, untaken: events }
    }
}

/// One accumulator's part of a run: events that gave no boundary, boundaries
/// taken (each stored; fired unless a `when_all` input was still missing),
/// and the last of them.
pub struct AccRun<V> {
    pub suppressed: u64,
    pub boundaries: u64,
    pub last: Option<V>,
}

impl<V> Default for AccRun<V> {
    fn default() -> Self {
        AccRun { suppressed: 0, boundaries: 0, last: None }
    }
}

/// What a host's run of several accumulators' events did (see
/// [`Calls::run_mixed`]): `accs` by index, `fired` fires, then possibly the
/// `(accumulator, event)` that stopped it, and the events not looked at.
pub struct MixedOutcome<V, E> {
    pub accs: Vec<AccRun<V>>,
    pub fired: u64,
    pub started: crate::clock::Ticks,
    pub ended: crate::clock::Ticks,
    pub stopped: Option<(usize, V, ChainFailure<V, E>)>,
    pub untaken: Vec<(usize, V)>,
}

impl<V, E> MixedOutcome<V, E> {
    /// Every event handed back, none taken, for a graph of `accs` accumulators.
    pub fn untaken(accs: usize, events: Vec<(usize, V)>) -> Self {
        let now = crate::clock::ticks();
        let accs = (0..accs).map(|_| AccRun::default()).collect();
        MixedOutcome { accs, fired: 0, started: now, ended: now, stopped: None, untaken: events }
    }
}

/// The host's side of one attached session.
pub trait Calls<V, E> {
    /// A passthrough, stream or state accumulator's function on one event.
    fn accumulate(&mut self, acc: usize, event: &V) -> Result<Option<V>, E>;
    /// A batch accumulator's function on its buffered events.
    fn accumulate_batch(&mut self, acc: usize, events: &[V]) -> Result<Option<V>, E>;
    /// The node at plan position `node`; `None` arguments are accumulators without a value.
    fn call_node(&mut self, node: usize, args: &[Option<&V>]) -> Result<NodeOutput<V>, E>;
    /// Async nodes whose inputs are all ready, awaited together (like
    /// `asyncio.gather`); returns once every one has finished, one result per
    /// call in order. `None`: cancelled when its budget ran out.
    fn call_nodes_concurrently(&mut self, batch: &[AsyncCall<'_, V>]) -> Vec<Option<Result<NodeOutput<V>, E>>>;
    /// The error a fire fails with when a deadline passed.
    fn overran(&mut self, overrun: &Overrun) -> E;
    /// A polling accumulator's function, called once: under a simulated
    /// clock the processor polls on its own timers (on the wall clock the
    /// host's poller does, and pushes the results).
    fn poll(&mut self, acc: usize) -> Result<V, E>;
    /// The clock deadlines read; asked only when the plan has a deadline.
    fn now(&mut self) -> Instant {
        Instant::now()
    }
    fn decode(&mut self, acc: usize, bytes: &[u8], codec: Codec) -> Result<V, E>;
    fn is_none(&mut self, value: &V) -> bool;
    /// Equality as the user's values define it (polling change suppression).
    fn equal(&mut self, a: &V, b: &V) -> Result<bool, E>;
    /// Whether cutoff node `node`'s output `current` equals its `previous` one
    /// (the node's own `equal` function if it has one); an error fails the fire
    /// as the node's.
    fn cutoff_equal(&mut self, node: usize, previous: &V, current: &V) -> Result<bool, E> {
        let _ = node;
        self.equal(previous, current)
    }
    /// Another reference to the same value.
    fn share(&mut self, value: &V) -> V;
    /// A list value holding `items` (state windows, dead-lettered batches).
    fn list(&mut self, items: &mut dyn Iterator<Item = &V>) -> V;
    /// Text for logs and stats.
    fn describe(&mut self, error: &E) -> String;
    /// The value as a checkpoint value, or why it cannot be one.
    fn to_value(&mut self, value: &V) -> Result<Value, Unsupported>;
    /// An event's journal payload, written to `out` (empty on entry): a tag
    /// byte ([`crate::processor::PAYLOAD_VALUE`] and the others), then its
    /// bytes. By default the value as a sealed checkpoint value; a host may
    /// write plain values more cheaply (MessagePack) if they read back equal.
    fn journal_payload(&mut self, value: &V, out: &mut Vec<u8>) -> Result<(), Unsupported> {
        let value = self.to_value(value)?;
        crate::processor::seal_payload(&value, out)
    }
    /// Whether `value` could be checkpointed; `root` names it in the path
    /// ("event", "boundary"). Asked only with `check_checkpointable`.
    fn checkpointable(&mut self, root: &str, value: &V) -> Result<(), Unsupported>;
    /// After accumulator `acc`'s function ran: whether the state the host keeps
    /// for it (a stream accumulator's `State.value`) could be checkpointed. If
    /// not, the host puts back the last state that could. Asked only with
    /// `check_checkpointable`.
    fn user_state_checkpointable(&mut self, acc: usize) -> Result<(), Unsupported>;
    /// A checkpointable stand-in (e.g. its repr) for a value that is not, to
    /// keep in the dead-letter list in its place.
    fn stand_in(&mut self, value: &V) -> V;
    /// Hands a snapshot over to be written (the host adds the state it owns).
    fn persist(&mut self, snapshot: EngineSnapshot) -> Result<(), CheckpointError>;
    fn report(&mut self, report: Report<V, E>);
    /// Whether [`Calls::run_mixed`] takes runs of several accumulators' events.
    fn chains_mixed(&self) -> bool {
        false
    }
    /// Fires for each of `events` (`(accumulator, event)`, in order) in one
    /// run of its own, every input starting from `cache`; under `when_all`
    /// an event before every member has a value only fills its input. Asked
    /// only when [`Calls::chains_mixed`] says so.
    fn run_mixed(&mut self, events: Vec<(usize, V)>, cache: &[Option<V>]) -> MixedOutcome<V, E> {
        MixedOutcome::untaken(cache.len(), events)
    }
    /// Whether [`Calls::run_chain`] takes accumulator `acc`'s events.
    fn chains(&self, acc: usize) -> bool {
        let _ = acc;
        false
    }
    /// Fires for each of accumulator `acc`'s `events` in one run of its own
    /// (`processor::chain`), other inputs read from `cache`. Asked only when
    /// [`Calls::chains`] says so; a host that cannot run them after all
    /// returns them all untaken.
    fn run_chain(&mut self, acc: usize, events: Vec<V>, cache: &[Option<V>]) -> ChainOutcome<V, E> {
        let _ = (acc, cache);
        ChainOutcome::untaken(events)
    }
}
