//! How a pushed event is recorded in the input journal: plain values (dicts
//! with string keys, lists, strings, integers, floats, booleans, None) as
//! MessagePack, written straight from the Python objects (a replay decodes
//! them back to equal objects, as `push_bytes` would); anything else as a
//! sealed checkpoint value, which keeps tuples, datetimes and the rest.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};

use headrace_core::host::Unsupported;
use headrace_core::processor::{seal_payload, PAYLOAD_MSGPACK};

use crate::convert;

/// Nesting deeper than this goes the checkpoint-value way (which bounds it too).
const MAX_DEPTH: usize = 32;

/// Writes `value`'s journal payload to `out` (empty on entry).
pub fn payload(value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    out.push(PAYLOAD_MSGPACK);
    if write_plain(value, out, 0) {
        return Ok(());
    }
    out.clear();
    let mut path = String::from("event");
    let value = convert::try_to_value(value, &mut path, 0)?;
    seal_payload(&value, out)
}

/// MessagePack for a value made only of types that read back as they were
/// (exact types: a subclass, an int beyond 64 bits or a non-string key is
/// not); false otherwise, with `out` partly written.
fn write_plain(v: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> bool {
    use rmp::encode;
    if depth > MAX_DEPTH {
        return false;
    }
    if v.is_none() {
        return encode::write_nil(out).is_ok();
    }
    if v.is_exact_instance_of::<PyFloat>() {
        let f: f64 = v.extract().unwrap_or(f64::NAN);
        return encode::write_f64(out, f).is_ok();
    }
    if v.is_exact_instance_of::<PyString>() {
        return match v.cast::<PyString>().map(|s| s.to_str()) {
            Ok(Ok(s)) => encode::write_str(out, s).is_ok(),
            _ => false,
        };
    }
    if v.is_exact_instance_of::<PyBool>() {
        return encode::write_bool(out, v.is_truthy().unwrap_or(false)).is_ok();
    }
    if v.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return encode::write_sint(out, i).is_ok();
        }
        return match v.extract::<u64>() {
            Ok(u) => encode::write_uint(out, u).is_ok(),
            Err(_) => false,
        };
    }
    if let Ok(list) = v.cast_exact::<PyList>() {
        if encode::write_array_len(out, list.len() as u32).is_err() {
            return false;
        }
        return list.iter().all(|item| write_plain(&item, out, depth + 1));
    }
    if let Ok(dict) = v.cast_exact::<PyDict>() {
        if encode::write_map_len(out, dict.len() as u32).is_err() {
            return false;
        }
        return dict.iter().all(|(k, item)| {
            k.is_exact_instance_of::<PyString>() && write_plain(&k, out, depth + 1) && write_plain(&item, out, depth + 1)
        });
    }
    false
}
