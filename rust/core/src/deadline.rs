//! Fire deadlines: `fire_timeout` bounds a whole fire, a node's `timeout` its
//! own run.
//!
//! A sync node cannot be interrupted, so deadlines are checked after each node:
//! once one has passed, the fire fails naming the node that overran. An async
//! node is given what is left as its budget, and the host cancels it there.
//! A plan without any deadline never builds a [`Deadlines`]: no clock is read.

use std::time::{Duration, Instant};

use crate::host::{DeadlineKind, Overrun};
use crate::plan::{Plan, PlanNode};

/// The deadlines of one fire.
pub(crate) struct Deadlines {
    /// When the fire must be done, and its `fire_timeout`.
    fire: Option<(Instant, Duration)>,
}

/// How long an async node may run, and which deadline that is.
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    pub left: Duration,
    kind: DeadlineKind,
    limit: Duration,
}

impl Deadlines {
    /// The fire's deadlines, starting `now`; None when the plan has none.
    pub fn start(plan: &Plan, now: impl FnOnce() -> Instant) -> Option<Self> {
        if !plan.has_deadlines {
            return None;
        }
        let fire = plan.fire_timeout.map(|limit| (now() + limit, limit));
        Some(Deadlines { fire })
    }

    /// Whether a node needs its start time read (it has a timeout of its own).
    pub fn times(node: &PlanNode) -> bool {
        node.timeout.is_some()
    }

    /// After node `pos` ran from `started` to `now`: the deadline it overran,
    /// its own first.
    pub fn check(&self, pos: usize, node: &PlanNode, started: Option<Instant>, now: Instant) -> Option<Overrun> {
        if let (Some(limit), Some(started)) = (node.timeout, started) {
            let ran = now.saturating_duration_since(started);
            if ran > limit {
                return Some(Overrun { node: pos, kind: DeadlineKind::Node, limit, by: ran - limit, cancelled: false });
            }
        }
        let (ends, limit) = self.fire?;
        (now > ends).then(|| Overrun { node: pos, kind: DeadlineKind::Fire, limit, by: now - ends, cancelled: false })
    }

    /// What an async node starting `now` may take: the tighter of its own
    /// timeout and what is left of the fire's.
    pub fn budget(&self, node: &PlanNode, now: Instant) -> Option<Budget> {
        let own = node.timeout.map(|limit| Budget { left: limit, kind: DeadlineKind::Node, limit });
        let fire = self.fire.map(|(ends, limit)| Budget {
            left: ends.saturating_duration_since(now),
            kind: DeadlineKind::Fire,
            limit,
        });
        match (own, fire) {
            (Some(a), Some(b)) => Some(if a.left <= b.left { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

impl Budget {
    /// The overrun of an async node the host cancelled at this budget.
    pub fn cancelled(&self, pos: usize) -> Overrun {
        Overrun { node: pos, kind: self.kind, limit: self.limit, by: Duration::ZERO, cancelled: true }
    }
}
