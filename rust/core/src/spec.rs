//! The plain-data description of a graph, as the Python API builds it once.
//!
//! A [`GraphSpec`] names things; [`crate::plan::Plan::compile`] checks it and turns
//! every name into an index so that the hot path never looks a name up.

use std::time::Duration;

/// What kind of accumulator, with the settings that kind needs.
#[derive(Debug, Clone, PartialEq)]
pub enum AccKind {
    /// The user function maps each event to a boundary.
    Passthrough,
    /// Like passthrough, fed by a broker source (and pushes); may carry user state.
    Stream,
    /// A timer calls the user function; unchanged or `None` results emit nothing.
    Polling { interval: Duration },
    /// Events are buffered; the user function sees the buffered list on flush.
    Batch {
        max_buffer_size: Option<usize>,
        flush_interval: Option<Duration>,
    },
    /// Emits the window of the last `capacity` values the user function returned.
    State { capacity: usize },
}

impl AccKind {
    /// Every kind's spelling.
    pub const LABELS: &'static [&'static str] = &["passthrough", "stream", "polling", "batch", "state"];

    pub fn label(&self) -> &'static str {
        self.as_str()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AccKind::Passthrough => "passthrough",
            AccKind::Stream => "stream",
            AccKind::Polling { .. } => "polling",
            AccKind::Batch { .. } => "batch",
            AccKind::State { .. } => "state",
        }
    }
}

/// A kind from its spelling, with default settings (no polling interval, an
/// unbounded batch, an empty state window) for the caller to fill in.
impl std::str::FromStr for AccKind {
    type Err = crate::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "passthrough" => AccKind::Passthrough,
            "stream" => AccKind::Stream,
            "polling" => AccKind::Polling { interval: Duration::ZERO },
            "batch" => AccKind::Batch { max_buffer_size: None, flush_interval: None },
            "state" => AccKind::State { capacity: 0 },
            other => {
                return Err(crate::Error::Setting {
                    what: "accumulator kind",
                    got: other.to_string(),
                    expected: AccKind::LABELS,
                })
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccSpec {
    pub name: String,
    pub kind: AccKind,
    /// How this accumulator's boundaries reach fires; `None`: the graph's strategy.
    pub input: Option<InputStrategy>,
    /// False for a passthrough declared without a function: its boundary is
    /// the (decoded) event itself and the host is never called for it.
    pub function: bool,
    /// Stale after this long without a boundary.
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriteriaKind {
    /// Fire when any member delivers a boundary.
    Any,
    /// Fire when a member delivers a boundary and every member has a value.
    All,
    /// Fire only on the schedule ([`CriteriaSpec::every`]); no accumulator
    /// triggers a fire.
    Every,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CriteriaSpec {
    pub kind: CriteriaKind,
    /// Accumulator names; empty means every accumulator of the graph.
    pub members: Vec<String>,
    /// Fire once the members have been quiet this long, on the newest values.
    pub debounce: Option<Duration>,
    /// At most one fire per this long: the first at once, later updates
    /// collapsed into one trailing fire at the window's end.
    pub throttle: Option<Duration>,
    /// Also fire on this schedule with the current inputs.
    pub every: Option<Duration>,
}

impl CriteriaSpec {
    /// `kind` over `members`, with no time-based part.
    pub fn new(kind: CriteriaKind, members: Vec<String>) -> Self {
        CriteriaSpec { kind, members, debounce: None, throttle: None, every: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputStrategy {
    /// Updates that arrive while a fire runs collapse into one fire on the newest values.
    Latest,
    /// One fire per accepted boundary, in acceptance order. The default:
    /// nothing is conflated unless the graph asks for it.
    #[default]
    Sequential,
    /// Like latest, updates collapse into one fire, but the input is the list
    /// of every boundary accepted since the last successful fire, oldest first.
    Burst,
}

crate::named!(CriteriaKind, "criteria kind", {
    CriteriaKind::Any => "when_any",
    CriteriaKind::All => "when_all",
    CriteriaKind::Every => "every",
});
crate::named!(InputStrategy, "input_strategy", {
    InputStrategy::Latest => "latest",
    InputStrategy::Sequential => "sequential",
    InputStrategy::Burst => "burst",
});

/// A routing node's branch: when the node returns `Route(label, v)`, only `targets` run.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub label: String,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    /// Parameter names, in order: each names an accumulator or another node.
    pub params: Vec<String>,
    /// Empty for an ordinary node.
    pub routes: Vec<RouteSpec>,
    /// An `async def` node: the host awaits it, together with the other async
    /// nodes of the fire whose inputs are ready.
    pub is_async: bool,
    /// Bound on this node's own run (see [`GraphSpec::fire_timeout`]).
    pub timeout: Option<Duration>,
    /// Change cutoff: when the output equals the previous fire's, consumers
    /// whose inputs are all unchanged do not run (see `plan::PlanNode::cuttable`).
    pub cutoff: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GraphSpec {
    pub name: String,
    pub accumulators: Vec<AccSpec>,
    pub nodes: Vec<NodeSpec>,
    pub criteria: CriteriaSpec,
    pub strategy: InputStrategy,
    /// Bound on a whole fire: once it has passed, the remaining nodes are
    /// skipped and the fire fails (an async node past it is cancelled).
    pub fire_timeout: Option<Duration>,
}
