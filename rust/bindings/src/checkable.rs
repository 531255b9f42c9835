//! Is a value checkpointable? Asked for every event under `check_checkpointable`,
//! so the common answer must not cost a conversion.
//!
//! [`plainly`] walks a value made of the built-in types every codec holds and
//! builds nothing. Anything else (a type `convert` may have learnt since, a
//! non-str dict key, a failure) falls back to `convert` itself, which stays the
//! one authority on what can be checkpointed and names the path and type of
//! what cannot.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use headrace_core::host::Unsupported;

use crate::convert;

/// Whether `obj` can be checkpointed; `root` names it in the error's path.
pub fn check(obj: &Bound<'_, PyAny>, root: &str) -> Result<(), Unsupported> {
    if plainly(obj, 0) {
        return Ok(());
    }
    let mut path = String::from(root);
    convert::try_to_value(obj, &mut path, 0).map(drop)
}

/// True when `obj` holds only exact None, bool, int, float, str, bytes, list,
/// tuple and str-keyed dict, nested within `convert::MAX_DEPTH`: exactly
/// values that `convert` accepts. False means "ask `convert`", not "refused".
fn plainly(obj: &Bound<'_, PyAny>, depth: usize) -> bool {
    if depth > convert::MAX_DEPTH {
        return false;
    }
    if obj.is_none()
        || obj.is_exact_instance_of::<PyFloat>()
        || obj.is_exact_instance_of::<PyInt>()
        || obj.is_exact_instance_of::<PyBool>()
        || obj.is_exact_instance_of::<PyBytes>()
    {
        return true;
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return s.to_str().is_ok();
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return l.iter().all(|item| plainly(&item, depth + 1));
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return t.iter().all(|item| plainly(&item, depth + 1));
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        return d.iter().all(|(k, v)| {
            k.cast_exact::<PyString>().is_ok_and(|k| k.to_str().is_ok()) && plainly(&v, depth + 1)
        });
    }
    false
}
