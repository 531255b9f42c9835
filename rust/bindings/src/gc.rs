//! What the cyclic GC sees of an `Engine`: the callables (accumulator and
//! node functions, states, hooks, the checkpoint writer) and every value the
//! processor holds (input cache, sequential queue, batch buffers, state
//! windows, polling last values, dead letters). A cycle through any of them
//! (an event holding a reference back to the runtime) is then collected.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

/// Visits every object `each` hands over, stopping at the first refusal.
pub fn traverse(visit: &PyVisit<'_>, each: impl FnOnce(&mut dyn FnMut(&Py<PyAny>))) -> Result<(), PyTraverseError> {
    let mut result = Ok(());
    each(&mut |object| {
        if result.is_ok() {
            result = visit.call(object);
        }
    });
    result
}
