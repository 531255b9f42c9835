//! Accumulator names as the caller passes them → accumulator indices.

use pyo3::prelude::*;
use pyo3::types::PyString;

use headrace_core::channel::Item;
use headrace_core::event::Input;

use super::{Engine, Value};
use crate::errors::Error;

impl Engine {
    /// Resolves an accumulator name. Names in user code are usually interned
    /// string literals, the very objects the engine interned: try identity first.
    pub(super) fn acc_index_of(&self, name: &Bound<'_, PyString>) -> Result<usize, Error> {
        if let Some(i) = self.names.accumulators.iter().position(|n| n.is(name)) {
            return Ok(i);
        }
        let text = name.to_str()?;
        self.acc_names.iter().position(|n| n == text).ok_or_else(|| Error::UnknownAccumulator {
            graph: self.graph.clone(),
            name: text.to_string(),
            known: self.acc_names.clone(),
        })
    }

    /// Turns one `(accumulator name, event)` pair into an event item, or
    /// raises naming what is wrong with it.
    pub(super) fn pair_reader(&self) -> impl FnMut(Bound<'_, PyAny>) -> PyResult<Item<Value>> + '_ {
        let mut last: Option<(Py<PyString>, usize)> = None;
        move |pair| {
            let (name, event): (Bound<'_, PyString>, Bound<'_, PyAny>) = pair.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "push_pairs takes (accumulator name, event) pairs, got {}",
                    pair.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
            // Pairs tend to repeat a name: remember the last one.
            let acc = match &last {
                Some((cached, i)) if cached.is(&name) => *i,
                _ => {
                    let i = self.acc_index_of(&name)?;
                    last = Some((name.unbind(), i));
                    i
                }
            };
            Ok(Item::Event { acc, input: Input::Value(event.unbind()) })
        }
    }
}
