//! Restoring a runtime from stored checkpoint components, before any event.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use headrace_core::checkpoint::snapshot::decode_components;
use headrace_core::processor::Processor;

use crate::convert;
use crate::errors::{self, Error};
use crate::graph::Callables;

/// What to do with a checkpoint that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Refuse to start, naming the component (the default: nothing is lost silently).
    Refuse,
    /// Log it and start with empty state.
    StartEmpty,
}

headrace_core::named!(OnCorrupt, "on_corrupt", { OnCorrupt::Refuse => "refuse", OnCorrupt::StartEmpty => "start_empty" });

/// Decodes `components` and loads them into `processor` and the stream
/// accumulators' `State` objects.
pub fn restore(
    py: Python<'_>,
    processor: &mut Processor<Py<PyAny>, PyErr>,
    callables: &Callables,
    components: &Bound<'_, PyDict>,
    key: &str,
    on_corrupt: OnCorrupt,
) -> PyResult<()> {
    let mut pairs = Vec::with_capacity(components.len());
    for (k, v) in components.iter() {
        pairs.push((k.extract::<String>()?, v.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let snapshot = match py.detach(|| decode_components(&pairs)) {
        Ok(s) => s,
        Err((component, e)) => {
            let message = format!("checkpoint {key}, component '{component}' is unreadable: {e}");
            return match on_corrupt {
                OnCorrupt::Refuse => Err(Error::CheckpointData(format!(
                    "{message}; to discard it and start empty, pass on_corrupt='start_empty'"
                ))
                .into()),
                OnCorrupt::StartEmpty => {
                    errors::log(py, "error", &format!("{message}; starting with empty state (on_corrupt='start_empty')"));
                    Ok(())
                }
            };
        }
    };
    for (name, acc) in &snapshot.accumulators {
        let Some(i) = callables.plan.accumulator_index(name) else { continue };
        if let (Some(state), Some(value)) = (&callables.accs[i].state, &acc.user_state) {
            state.bind(py).setattr("value", convert::to_python(py, value.clone())?)?;
        }
    }
    let skipped = processor.import(snapshot, &mut |v| convert::to_python(py, v))?;
    if !skipped.names.is_empty() {
        errors::log(
            py,
            "warning",
            &format!("checkpoint {key}: not restored (not in this version of the graph): {}", skipped.names.join(", ")),
        );
    }
    Ok(())
}

/// The initial (or restored) `State.value` of each stream accumulator, as the
/// state a refused event's call is rolled back to.
pub fn remember_good_states(py: Python<'_>, callables: &Callables) {
    for a in &callables.accs {
        let Some(state) = &a.state else { continue };
        let Ok(value) = state.bind(py).getattr("value") else { continue };
        if let Ok(v) = convert::try_to_value(&value, &mut String::new(), 0) {
            *a.good_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        }
    }
}
