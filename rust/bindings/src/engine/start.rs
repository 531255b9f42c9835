//! Building an `Engine` from a graph spec and its options: compile, wire the
//! checkpoint writer, restore stored state, and start the mode that runs it.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use headrace_core::processor::Processor;

use super::Engine;
use crate::ages::AgeView;
use crate::aio::Aio;
use crate::graph::{self, CheckpointSink};
use crate::mode::Mode;
use crate::options::{EngineOptions, ModeKind};
use crate::restore;

pub fn start(py: Python<'_>, spec: &Bound<'_, PyDict>, options: EngineOptions) -> PyResult<Engine> {
    let settings = options.settings()?;
    let parsed = graph::parse(spec)?;
    let codecs = parsed.accs.iter().map(|a| a.codec).collect();
    let config = &settings.config;
    let records = crate::chain::Records { node_ns: config.profile, inputs: config.record_inputs, check: config.check_checkpointable };
    let mut compiled = graph::compile(py, parsed, options.on_fire, options.chain_runs.then_some(records))?;
    let checkpoint_ids = options.checkpoint_writer.as_ref().map(|_| Arc::new(AtomicU64::new(0)));
    compiled.checkpoint = options
        .checkpoint_writer
        .zip(checkpoint_ids.clone())
        .map(|(writer, last_id)| CheckpointSink { writer, codec: settings.checkpoint_codec, last_id });
    compiled.on_undecodable = options.on_undecodable;
    let plan = compiled.plan.clone();
    let mut processor = Processor::new(plan.clone(), settings.config);
    if let Some(journal) = &options.journal {
        processor.set_journal(journal.get().shared());
    }
    let sim_time = options.clock.map(|c| c.get().nanos.clone());
    compiled.ages = Some(Arc::new(AgeView {
        graph: plan.graph.clone(),
        names: plan.accumulators.iter().map(|a| a.name.clone()).collect(),
        metrics: processor.metrics().clone(),
        sim: sim_time.clone(),
    }));
    let callables = Arc::new(compiled);
    let ages = callables.ages.clone().expect("set above");
    if let Some(components) = &options.restore {
        restore::restore(py, &mut processor, &callables, components.bind(py), &options.checkpoint_key, settings.on_corrupt)?;
    }
    if settings.config.check_checkpointable {
        restore::remember_good_states(py, &callables);
    }
    let has_async = callables.has_async;
    let aio = Aio::new(options.event_loop, &plan.graph);
    let thread_loop = if has_async && settings.mode == ModeKind::Thread { Some(aio.get(py)?) } else { None };
    Ok(Engine {
        restored_positions: processor.positions(),
        metrics: processor.metrics().clone(),
        dead_letters: processor.dead_letters().clone(),
        names: callables.names.clone(),
        mode: Mode::start(settings.mode, &plan.graph, processor, callables, settings.capacity, settings.idle_spin, thread_loop)?,
        graph: plan.graph.clone(),
        acc_names: plan.accumulators.iter().map(|a| a.name.clone()).collect(),
        codecs,
        push_timeout: settings.push_timeout,
        closed: AtomicBool::new(false),
        checkpoint_ids,
        aio,
        has_async,
        ages,
        sim_time,
    })
}
