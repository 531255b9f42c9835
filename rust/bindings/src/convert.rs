//! Python values ↔ checkpoint values.
//!
//! Only exact built-in types are accepted: a subclass (defaultdict, IntEnum,
//! a str subclass) would come back as its base type, so it is refused with the
//! path and type named instead of being silently changed (or pickled).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use headrace_core::checkpoint::{self, CodecError, CodecId, Value};
use headrace_core::host::Unsupported;

use crate::errors::Error;
use crate::stdlib;

const SUPPORTED: &str = "None, bool, int, float, str, bytes, list, tuple, dict with str keys, \
    datetime, date, time, timedelta, Decimal and UUID";
/// Nesting deeper than this is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 256;

/// Converts `obj`; on failure, `path` (where `obj` sits, e.g. "state") is
/// extended to the offending value ("state['book'][3]") for the message.
pub fn to_value(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize) -> Result<Value, String> {
    try_to_value(obj, path, depth).map_err(|u| u.message)
}

/// Like [`to_value`], naming the offending value's path and type apart.
pub fn try_to_value(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize) -> Result<Value, Unsupported> {
    convert(obj, depth).map_err(|failure| {
        for segment in failure.path.iter().rev() {
            path.push_str(segment);
        }
        let type_name = failure.type_name.unwrap_or_else(|| "?".into());
        Unsupported { path: path.clone(), type_name, message: format!("{path}: {}", failure.message) }
    })
}

/// Why a value could not be converted, and the path to it (innermost last,
/// built only on the way out of a failure: the success path allocates no text).
struct Failure {
    path: Vec<String>,
    message: String,
    type_name: Option<String>,
}

impl Failure {
    fn new(message: String) -> Self {
        Failure { path: Vec::new(), message, type_name: None }
    }

    fn of_type(mut self, type_name: String) -> Self {
        self.type_name = Some(type_name);
        self
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }
}

fn convert(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::new(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        return Ok(match i.extract::<i64>() {
            Ok(v) => Value::Int(v),
            Err(_) => Value::BigInt(big_int_text(i).map_err(|e| Failure::new(e.to_string()))?),
        });
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::Str(s.to_str().map_err(|e| Failure::new(e.to_string()))?.to_string()));
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return items(l.len(), l.iter(), depth).map(Value::List);
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return items(t.len(), t.iter(), depth).map(Value::Tuple);
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let Ok(key) = k.cast_exact::<PyString>() else {
                let ty = k.get_type().name().map(|n| n.to_string()).unwrap_or_default();
                return Err(Failure::new(format!("dict key {} has type {ty}; checkpointed dicts need str keys", repr(&k)))
                    .of_type(ty));
            };
            let key = key.to_str().map_err(|e| Failure::new(e.to_string()))?;
            let value = convert(&v, depth + 1)
                .map_err(|f| f.at(format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'"))))?;
            out.push((key.to_string(), value));
        }
        return Ok(Value::Dict(out));
    }
    // Only after every built-in check failed: the common values pay nothing.
    let type_name = || obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    if let Some(v) = stdlib::to_value(obj).map_err(|message| Failure::new(message).of_type(type_name()))? {
        return Ok(v.into());
    }
    let ty = type_name();
    Err(Failure::new(format!("type {ty} cannot be checkpointed (supported: {SUPPORTED})")).of_type(ty))
}

fn items<'py>(len: usize, iter: impl Iterator<Item = Bound<'py, PyAny>>, depth: usize) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::with_capacity(len);
    for (i, item) in iter.enumerate() {
        out.push(convert(&item, depth + 1).map_err(|f| f.at(format!("[{i}]")))?);
    }
    Ok(out)
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
}

pub fn to_python(py: Python<'_>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::None => py.None(),
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::BigInt(digits) => {
            // Hex ("0x..."/"-0x...") for ints too long for decimal text.
            let base = if digits.contains('x') { 16 } else { 10 };
            py.get_type::<PyInt>().call1((digits, base))?.unbind()
        }
        Value::Float(f) => PyFloat::new(py, f).into_any().unbind(),
        Value::Str(s) => PyString::new(py, &s).into_any().unbind(),
        Value::Bytes(b) => PyBytes::new(py, &b).into_any().unbind(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for v in items {
                list.append(to_python(py, v)?)?;
            }
            list.into_any().unbind()
        }
        Value::Tuple(items) => {
            let objs = items.into_iter().map(|v| to_python(py, v)).collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, objs)?.into_any().unbind()
        }
        Value::Dict(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(k, to_python(py, v)?)?;
            }
            dict.into_any().unbind()
        }
        Value::Stdlib(v) => stdlib::to_python(py, *v)?,
    })
}

fn checkpoint_error(message: String) -> PyErr {
    Error::CheckpointData(message).into()
}

fn codec_error(what: &str, e: CodecError) -> PyErr {
    checkpoint_error(format!("{what}: {e}"))
}

/// Encodes one Python value as a sealed checkpoint blob.
#[pyfunction]
#[pyo3(signature = (value, codec = "bincode", *, component = "value"))]
pub fn encode_checkpoint<'py>(py: Python<'py>, value: &Bound<'py, PyAny>, codec: &str, component: &str) -> PyResult<Bound<'py, PyBytes>> {
    let id: CodecId = codec.parse().map_err(Error::from)?;
    let mut path = component.to_string();
    let v = to_value(value, &mut path, 0).map_err(|e| checkpoint_error(format!("component '{component}': {e}")))?;
    let bytes = py.detach(|| checkpoint::encode(&v, id)).map_err(|e| codec_error(component, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Decodes a checkpoint blob made by `encode_checkpoint` (any codec).
#[pyfunction]
#[pyo3(signature = (data, *, component = "value"))]
pub fn decode_checkpoint(py: Python<'_>, data: &[u8], component: &str) -> PyResult<Py<PyAny>> {
    let v: Value = py.detach(|| checkpoint::decode(data)).map_err(|e| codec_error(&format!("component '{component}'"), e))?;
    to_python(py, v)
}

/// Decodes one stored checkpoint component and returns it as JSON text (the
/// readable mapping), for inspection and debugging.
#[pyfunction]
pub fn read_component(py: Python<'_>, name: &str, data: Vec<u8>) -> PyResult<String> {
    use headrace_core::checkpoint::snapshot::decode_components;
    let snap = py
        .detach(|| decode_components(&[(name.to_string(), data)]))
        .map_err(|(component, e)| codec_error(&format!("component '{component}'"), e))?;
    let text = if let Some((_, acc)) = snap.accumulators.first() {
        serde_json::to_string(acc)
    } else if name == headrace_core::checkpoint::snapshot::REACTOR {
        serde_json::to_string(&snap.reactor)
    } else if name == headrace_core::checkpoint::snapshot::SOURCES {
        serde_json::to_string(&snap.sources)
    } else if name == headrace_core::checkpoint::snapshot::CONTROL {
        serde_json::to_string(&snap.control)
    } else if name == headrace_core::checkpoint::snapshot::INPUTS {
        serde_json::to_string(&snap.inputs)
    } else {
        return Err(checkpoint_error(format!("unknown checkpoint component '{name}'")));
    };
    text.map_err(|e| checkpoint_error(format!("component '{name}': {e}")))
}

/// Decimal text, or hex ("0x...") for an int longer than Python's limit on
/// decimal conversion (4300 digits by default; hex is exempt, and linear).
fn big_int_text(i: &Bound<'_, PyInt>) -> PyResult<String> {
    match i.str() {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Ok(i.call_method1("__format__", ("#x",))?.extract::<String>()?),
    }
}
