//! Compiling a [`GraphSpec`] into an executable [`Plan`].
//!
//! Every problem in the spec is collected (not just the first) so a user fixes a
//! graph in one pass; each [`Problem`] names its culprits.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use crate::spec::{AccKind, AccSpec, CriteriaKind, GraphSpec, InputStrategy};

/// The most labels one routing node may declare (they are kept in a `u64` mask).
pub const MAX_ROUTE_LABELS: usize = 64;

/// Where a node parameter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cached boundary of accumulator `i` (absent before its first boundary).
    Acc(usize),
    /// The result of the node at plan position `i` (always earlier in the plan).
    Node(usize),
}

/// A node consuming a routing node runs only if the router chose one of `allowed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub router: usize,
    pub allowed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub name: String,
    /// Index of this node in the spec's node list (how the host finds its callable).
    pub spec_index: usize,
    pub inputs: Vec<Source>,
    pub gates: Vec<Gate>,
    /// Route labels, for routing nodes; empty otherwise.
    pub labels: Vec<String>,
    /// No node consumes it: its result is part of the fire's output.
    pub terminal: bool,
    /// Awaited by the host, together with the other ready async nodes.
    pub is_async: bool,
    /// Bound on this node's own run.
    pub timeout: Option<Duration>,
    /// Declared with change cutoff: its output is compared with the previous
    /// successful fire's.
    pub cutoff: bool,
    /// A cutoff node or a consumer of a cuttable node: it is skipped (keeping
    /// its previous output) when every input is unchanged, so the executor
    /// remembers its output from fire to fire. False for every node of a graph
    /// without cutoff, which then pays nothing for the feature.
    pub cuttable: bool,
}

impl PlanNode {
    pub fn is_router(&self) -> bool {
        !self.labels.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub kind: CriteriaKind,
    /// `member[i]`: accumulator `i` is watched by the criteria.
    pub member: Vec<bool>,
    /// See [`crate::spec::CriteriaSpec`].
    pub debounce: Option<Duration>,
    pub throttle: Option<Duration>,
    pub every: Option<Duration>,
}

impl Criteria {
    /// Whether a fire may wait for time (debounce, throttle) or come from it (every).
    pub fn timed(&self) -> bool {
        self.debounce.is_some() || self.throttle.is_some() || self.every.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub graph: String,
    pub accumulators: Vec<AccSpec>,
    /// Nodes in execution (topological) order.
    pub nodes: Vec<PlanNode>,
    pub criteria: Criteria,
    /// The graph's default input strategy.
    pub strategy: InputStrategy,
    /// `inputs[i]`: accumulator `i`'s input strategy, its own or the graph's.
    pub inputs: Vec<InputStrategy>,
    /// Some accumulator is sequential: its boundaries must be settled one by
    /// one, not a whole batch of events at once.
    pub any_sequential: bool,
    /// Bound on a whole fire.
    pub fire_timeout: Option<Duration>,
    /// Plan positions of the async nodes, in plan order (empty for most graphs).
    pub async_nodes: Vec<usize>,
    /// Some deadline applies (`fire_timeout` or a node's `timeout`): without
    /// one, a fire reads no clock for it.
    pub has_deadlines: bool,
    /// Plan position of the one terminal node when the graph is a plain
    /// chain of sync nodes: no routes, no cutoff, no deadlines, no burst
    /// input. Such a graph's fires can run back to back in one call of the
    /// host over a run of events (see `processor::chain`).
    pub chain_terminal: Option<usize>,
}

/// One thing wrong with a graph definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NoAccumulators,
    NoNodes,
    DuplicateName { name: String, first: &'static str, second: &'static str },
    UnknownParameter { node: String, parameter: String },
    Cycle { path: Vec<String> },
    RouteTargetNotConsumer { router: String, label: String, target: String },
    DuplicateRouteLabel { router: String, label: String },
    TooManyRouteLabels { router: String, count: usize },
    Unreachable { node: String },
    UnknownCriteriaMember { name: String },
    InvalidSetting { accumulator: String, message: String },
    CutoffRouter { node: String },
    /// A time-based criteria setting that cannot work as given.
    InvalidCriteria { message: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoAccumulators => write!(f, "the graph has no accumulators"),
            Problem::NoNodes => write!(f, "the graph has no nodes"),
            Problem::DuplicateName { name, first, second } => {
                write!(f, "name '{name}' is used by both {first} and {second}")
            }
            Problem::UnknownParameter { node, parameter } => write!(
                f,
                "node '{node}' has parameter '{parameter}', which names no accumulator or node"
            ),
            Problem::Cycle { path } => write!(f, "cycle: {}", path.join(" -> ")),
            Problem::RouteTargetNotConsumer { router, label, target } => write!(
                f,
                "route '{label}' of node '{router}' names '{target}', which does not take '{router}' as a parameter"
            ),
            Problem::DuplicateRouteLabel { router, label } => {
                write!(f, "node '{router}' declares route '{label}' twice")
            }
            Problem::TooManyRouteLabels { router, count } => write!(
                f,
                "node '{router}' declares {count} routes; at most {MAX_ROUTE_LABELS} are supported"
            ),
            Problem::Unreachable { node } => {
                write!(f, "node '{node}' is unreachable from any accumulator")
            }
            Problem::UnknownCriteriaMember { name } => write!(
                f,
                "criteria name '{name}', which is not an accumulator of this graph"
            ),
            Problem::InvalidSetting { accumulator, message } => {
                write!(f, "accumulator '{accumulator}': {message}")
            }
            Problem::InvalidCriteria { message } => write!(f, "criteria: {message}"),
            Problem::CutoffRouter { node } => write!(
                f,
                "node '{node}' declares routes and cutoff; a routing node cannot be cut off (put cutoff on the node it reads)"
            ),
        }
    }
}

/// Every problem found in a graph spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub graph: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid graph '{}': ", self.graph)?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

impl Plan {
    /// Validates `spec` and orders its nodes for execution.
    pub fn compile(spec: &GraphSpec) -> Result<Plan, DefinitionError> {
        let mut problems = Vec::new();
        if spec.accumulators.is_empty() {
            problems.push(Problem::NoAccumulators);
        }
        if spec.nodes.is_empty() {
            problems.push(Problem::NoNodes);
        }
        check_settings(&spec.accumulators, &mut problems);

        // Names: accumulators and nodes share one namespace (parameters name either).
        let mut kinds: HashMap<&str, &'static str> = HashMap::new();
        let mut acc_index: HashMap<&str, usize> = HashMap::new();
        for (i, acc) in spec.accumulators.iter().enumerate() {
            claim(&mut kinds, &acc.name, "an accumulator", &mut problems);
            acc_index.entry(acc.name.as_str()).or_insert(i);
        }
        let mut node_index: HashMap<&str, usize> = HashMap::new();
        for (i, node) in spec.nodes.iter().enumerate() {
            claim(&mut kinds, &node.name, "a node", &mut problems);
            if !acc_index.contains_key(node.name.as_str()) {
                node_index.entry(node.name.as_str()).or_insert(i);
            }
        }

        // Parameters → sources (spec indices for now).
        let mut inputs: Vec<Vec<Source>> = Vec::with_capacity(spec.nodes.len());
        for node in &spec.nodes {
            let mut srcs = Vec::with_capacity(node.params.len());
            for p in &node.params {
                if let Some(&i) = acc_index.get(p.as_str()) {
                    srcs.push(Source::Acc(i));
                } else if let Some(&i) = node_index.get(p.as_str()) {
                    srcs.push(Source::Node(i));
                } else {
                    problems.push(Problem::UnknownParameter {
                        node: node.name.clone(),
                        parameter: p.clone(),
                    });
                }
            }
            inputs.push(srcs);
        }

        check_routes(spec, &node_index, &inputs, &mut problems);
        for node in spec.nodes.iter().filter(|n| n.cutoff && !n.routes.is_empty()) {
            problems.push(Problem::CutoffRouter { node: node.name.clone() });
        }
        let criteria = criteria(spec, &acc_index, &mut problems);

        let order = match topological_order(spec, &inputs) {
            Ok(order) => order,
            Err(path) => {
                problems.push(Problem::Cycle { path });
                Vec::new()
            }
        };
        if !order.is_empty() {
            check_reachable(spec, &inputs, &order, &mut problems);
        }

        if !problems.is_empty() {
            return Err(DefinitionError { graph: spec.name.clone(), problems });
        }
        Ok(build(spec, &inputs, &order, criteria))
    }

    /// Plan position of the node named `name`.
    pub fn node_position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn accumulator_index(&self, name: &str) -> Option<usize> {
        self.accumulators.iter().position(|a| a.name == name)
    }

    /// Whether any node can be cut off (the executor keeps cutoff state only then).
    pub fn has_cutoff(&self) -> bool {
        self.nodes.iter().any(|n| n.cuttable)
    }
}

fn claim<'a>(
    kinds: &mut HashMap<&'a str, &'static str>,
    name: &'a str,
    what: &'static str,
    problems: &mut Vec<Problem>,
) {
    if let Some(first) = kinds.get(name) {
        problems.push(Problem::DuplicateName { name: name.to_string(), first, second: what });
    } else {
        kinds.insert(name, what);
    }
}

fn check_settings(accs: &[AccSpec], problems: &mut Vec<Problem>) {
    for acc in accs {
        let bad = |message: &str| Problem::InvalidSetting {
            accumulator: acc.name.clone(),
            message: message.to_string(),
        };
        match &acc.kind {
            AccKind::Polling { interval } if interval.is_zero() => {
                problems.push(bad("interval must be greater than zero"))
            }
            AccKind::Batch { max_buffer_size: Some(0), .. } => {
                problems.push(bad("max_buffer_size must be at least 1"))
            }
            AccKind::Batch { flush_interval: Some(d), .. } if d.is_zero() => {
                problems.push(bad("flush_interval must be greater than zero"))
            }
            AccKind::State { capacity: 0 } => problems.push(bad("capacity must be at least 1")),
            _ => {}
        }
        if !acc.function && acc.kind != AccKind::Passthrough {
            problems.push(bad(&format!("a {} accumulator needs a function (only a passthrough may have none)", acc.kind.label())));
        }
    }
}

fn check_routes(
    spec: &GraphSpec,
    node_index: &HashMap<&str, usize>,
    inputs: &[Vec<Source>],
    problems: &mut Vec<Problem>,
) {
    for (r, router) in spec.nodes.iter().enumerate() {
        if router.routes.len() > MAX_ROUTE_LABELS {
            problems.push(Problem::TooManyRouteLabels {
                router: router.name.clone(),
                count: router.routes.len(),
            });
        }
        let mut seen = HashSet::new();
        for route in &router.routes {
            if !seen.insert(route.label.as_str()) {
                problems.push(Problem::DuplicateRouteLabel {
                    router: router.name.clone(),
                    label: route.label.clone(),
                });
            }
            for target in &route.targets {
                let consumes = node_index
                    .get(target.as_str())
                    .is_some_and(|&t| inputs[t].contains(&Source::Node(r)));
                if !consumes {
                    problems.push(Problem::RouteTargetNotConsumer {
                        router: router.name.clone(),
                        label: route.label.clone(),
                        target: target.clone(),
                    });
                }
            }
        }
    }
}

fn criteria(
    spec: &GraphSpec,
    acc_index: &HashMap<&str, usize>,
    problems: &mut Vec<Problem>,
) -> Criteria {
    let c = &spec.criteria;
    let n = spec.accumulators.len();
    let every_only = c.kind == CriteriaKind::Every;
    let mut member = vec![c.members.is_empty() && !every_only; n];
    for name in &c.members {
        match acc_index.get(name.as_str()) {
            Some(&i) => member[i] = true,
            None => problems.push(Problem::UnknownCriteriaMember { name: name.clone() }),
        }
    }
    let mut bad = |message: String| problems.push(Problem::InvalidCriteria { message });
    for (what, d) in [("debounce", c.debounce), ("throttle", c.throttle), ("every", c.every)] {
        if d.is_some_and(|d| d.is_zero()) {
            bad(format!("{what} must be longer than zero"));
        }
    }
    if every_only && c.every.is_none() {
        bad("every() needs a period".into());
    }
    if every_only && !c.members.is_empty() {
        bad("every() fires on its schedule alone; to fire on accumulators too, give when_any/when_all an every=".into());
    }
    if c.debounce.is_some() && c.throttle.is_some() {
        bad("debounce and throttle cannot be combined (debounce waits for quiet, throttle fires at once)".into());
    }
    if c.debounce.is_some() || c.throttle.is_some() {
        let what = if c.debounce.is_some() { "debounce" } else { "throttle" };
        let sequential: Vec<&str> = (0..n)
            .filter(|&i| member[i] && spec.accumulators[i].input.unwrap_or(spec.strategy) == InputStrategy::Sequential)
            .map(|i| spec.accumulators[i].name.as_str())
            .collect();
        if !sequential.is_empty() {
            bad(format!(
                "{what} collapses updates into one fire on the newest values, so its members need input_strategy 'latest' or 'burst'; sequential: {}",
                sequential.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Criteria { kind: c.kind, member, debounce: c.debounce, throttle: c.throttle, every: c.every }
}

/// Kahn's algorithm, keeping the spec's order among ready nodes (stable, predictable);
/// on a cycle, returns one cycle's path by name.
fn topological_order(spec: &GraphSpec, inputs: &[Vec<Source>]) -> Result<Vec<usize>, Vec<String>> {
    let n = spec.nodes.len();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    for (i, srcs) in inputs.iter().enumerate() {
        let mut ups: Vec<usize> = srcs
            .iter()
            .filter_map(|s| if let Source::Node(j) = s { Some(*j) } else { None })
            .collect();
        ups.sort_unstable();
        ups.dedup();
        pending[i] = ups.len();
        for j in ups {
            consumers[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(find_cycle(spec, inputs, &pending))
}

fn find_cycle(spec: &GraphSpec, inputs: &[Vec<Source>], pending: &[usize]) -> Vec<String> {
    // Every node left with pending inputs has an unfinished upstream node; walking
    // upstream from one must revisit a node, and the walk between visits is a cycle.
    let start = pending.iter().position(|&p| p > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut at = start;
    loop {
        let next = inputs[at]
            .iter()
            .find_map(|s| match s {
                Source::Node(j) if pending[*j] > 0 => Some(*j),
                _ => None,
            })
            .unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            // `path` runs consumer → upstream; report it in data-flow order.
            let mut cycle: Vec<String> =
                path[pos..].iter().rev().map(|&i| spec.nodes[i].name.clone()).collect();
            cycle.push(spec.nodes[path[path.len() - 1]].name.clone());
            return cycle;
        }
        path.push(next);
        at = next;
    }
}

fn check_reachable(
    spec: &GraphSpec,
    inputs: &[Vec<Source>],
    order: &[usize],
    problems: &mut Vec<Problem>,
) {
    let mut reachable = vec![false; spec.nodes.len()];
    for &i in order {
        reachable[i] = inputs[i].iter().any(|s| match s {
            Source::Acc(_) => true,
            Source::Node(j) => reachable[*j],
        });
    }
    for (i, node) in spec.nodes.iter().enumerate() {
        if !reachable[i] {
            problems.push(Problem::Unreachable { node: node.name.clone() });
        }
    }
}

fn build(spec: &GraphSpec, inputs: &[Vec<Source>], order: &[usize], criteria: Criteria) -> Plan {
    let mut position = vec![0usize; spec.nodes.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut consumed = vec![false; spec.nodes.len()];
    for srcs in inputs {
        for s in srcs {
            if let Source::Node(j) = s {
                consumed[*j] = true;
            }
        }
    }
    let mut nodes: Vec<PlanNode> = order
        .iter()
        .map(|&i| {
            let node = &spec.nodes[i];
            let node_inputs: Vec<Source> = inputs[i]
                .iter()
                .map(|s| match *s {
                    Source::Node(j) => Source::Node(position[j]),
                    acc => acc,
                })
                .collect();
            // A consumer listed in any of a router's routes runs only on those labels;
            // a consumer listed in none runs whatever the router chose.
            let mut gates = Vec::new();
            for s in &inputs[i] {
                let Source::Node(r) = *s else { continue };
                let mut allowed = 0u64;
                for (k, route) in spec.nodes[r].routes.iter().enumerate() {
                    if route.targets.contains(&node.name) {
                        allowed |= 1 << k;
                    }
                }
                let gate = Gate { router: position[r], allowed };
                if allowed != 0 && !gates.contains(&gate) {
                    gates.push(gate);
                }
            }
            PlanNode {
                name: node.name.clone(),
                spec_index: i,
                inputs: node_inputs,
                gates,
                labels: node.routes.iter().map(|r| r.label.clone()).collect(),
                terminal: !consumed[i],
                is_async: node.is_async,
                timeout: node.timeout,
                cutoff: node.cutoff,
                cuttable: false,
            }
        })
        .collect::<Vec<PlanNode>>();
    // In plan order, so every upstream node is settled first.
    for pos in 0..nodes.len() {
        let below_cuttable = nodes[pos].inputs.iter().any(|s| matches!(*s, Source::Node(j) if nodes[j].cuttable));
        nodes[pos].cuttable = nodes[pos].cutoff || below_cuttable;
    }
    let async_nodes = nodes.iter().enumerate().filter(|(_, n)| n.is_async).map(|(pos, _)| pos).collect();
    let has_deadlines = spec.fire_timeout.is_some() || nodes.iter().any(|n| n.timeout.is_some());
    let inputs: Vec<InputStrategy> = spec.accumulators.iter().map(|a| a.input.unwrap_or(spec.strategy)).collect();
    let chain_terminal = chain_terminal(&nodes, &inputs, has_deadlines || criteria.timed());
    Plan {
        graph: spec.name.clone(),
        accumulators: spec.accumulators.clone(),
        nodes,
        criteria,
        strategy: spec.strategy,
        any_sequential: inputs.contains(&InputStrategy::Sequential),
        inputs,
        fire_timeout: spec.fire_timeout,
        async_nodes,
        has_deadlines,
        chain_terminal,
    }
}

/// The terminal node of a graph whose every fire is the same straight-line
/// run of sync calls, or None.
fn chain_terminal(nodes: &[PlanNode], inputs: &[InputStrategy], has_deadlines: bool) -> Option<usize> {
    let plain = |n: &PlanNode| !n.is_async && !n.cuttable && n.gates.is_empty() && n.labels.is_empty();
    if has_deadlines || inputs.contains(&InputStrategy::Burst) || !nodes.iter().all(plain) {
        return None;
    }
    let mut terminals = nodes.iter().enumerate().filter(|(_, n)| n.terminal).map(|(pos, _)| pos);
    match (terminals.next(), terminals.next()) {
        (Some(pos), None) => Some(pos),
        _ => None,
    }
}
