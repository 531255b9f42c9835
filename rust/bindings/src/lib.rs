//! `headrace._core`: the only crate that touches Python. It converts, calls
//! and maps errors; the engine itself is `headrace-core`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod ages;
mod aio;
mod calls;
mod chain;
mod checkable;
mod convert;
mod engine;
mod errors;
mod fire;
mod gc;
mod graph;
mod inline;
mod journal;
mod mode;
mod options;
mod recorded;
mod restore;
mod stats;
mod stdlib;
mod threaded;
mod time;

/// Checks a graph description and returns the node names in execution order.
/// Raises `GraphDefinitionError` naming every problem found.
#[pyfunction]
fn compile_graph(py: Python<'_>, spec: &Bound<'_, PyDict>) -> PyResult<Vec<String>> {
    let parsed = graph::parse(spec)?;
    let callables = graph::compile(py, parsed, None, None)?;
    Ok(callables.plan.nodes.iter().map(|n| n.name.clone()).collect())
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_class::<fire::FireResult>()?;
    m.add_class::<fire::FireList>()?;
    m.add_class::<fire::OnOutput>()?;
    m.add_class::<fire::Route>()?;
    m.add_class::<stats::Counters>()?;
    m.add_class::<time::SimTime>()?;
    m.add_class::<journal::JournalWriter>()?;
    m.add_class::<journal::JournalReader>()?;
    m.add_function(wrap_pyfunction!(journal::read_journal, m)?)?;
    m.add_function(wrap_pyfunction!(compile_graph, m)?)?;
    m.add_function(wrap_pyfunction!(ages::input_age, m)?)?;
    m.add_function(wrap_pyfunction!(convert::encode_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(convert::decode_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(convert::read_component, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_BATCH", headrace_core::driver::MAX_BATCH)?;
    m.add("MAX_RECORD_BYTES", headrace_core::journal::MAX_RECORD_BYTES)?;
    Ok(())
}
