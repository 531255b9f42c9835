//! The values a checkpoint can hold: what Python values map to, explicitly.
//!
//! Every supported Python value has a variant; there is no "anything else" and
//! no pickling. Binary codecs (bincode, msgpack) see a tagged enum, so even the
//! non-self-describing bincode round-trips the tree exactly. Human-readable
//! codecs (JSON) see the natural mapping, with a `{"$tag": ...}` object only
//! where JSON has no equivalent: bytes, tuples, integers beyond i64,
//! non-finite floats, dates and times, timedeltas, decimals, UUIDs, and dicts
//! with a key starting with `$` (so a user's dict never reads as a tag).

use std::fmt;

use base64::Engine as _;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::stdlib::{self, Duration, Stdlib};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside i64, as its decimal digits (with a leading '-'), or
    /// as hex ("0x..."/"-0x...") when too long for decimal text.
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Insertion order is kept (Python dicts are ordered).
    Dict(Vec<(String, Value)>),
    // Appended after the original variants: their binary tags stay as they
    // were, so checkpoints written before these existed still decode.
    /// A `datetime`, `date`, `time`, `timedelta`, `Decimal` or `UUID`.
    /// Boxed: unboxed, every `Value` would grow to its size.
    Stdlib(Box<Stdlib>),
}

impl From<Stdlib> for Value {
    fn from(v: Stdlib) -> Self {
        Value::Stdlib(Box::new(v))
    }
}

/// Bytes serialized as one blob rather than a sequence of integers.
struct Blob<'a>(&'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

pub(super) struct BlobBuf(pub(super) Vec<u8>);

impl<'de> Deserialize<'de> for BlobBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlobBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<BlobBuf, E> {
                Ok(BlobBuf(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BlobBuf, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(BlobBuf(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

// The binary form: these two enums must keep the same variants in the same order.
#[derive(Serialize)]
#[serde(rename = "Value")]
enum TaggedRef<'a> {
    None,
    Bool(bool),
    Int(i64),
    BigInt(&'a str),
    Float(f64),
    Str(&'a str),
    Bytes(Blob<'a>),
    List(&'a [Value]),
    Tuple(&'a [Value]),
    Dict(&'a [(String, Value)]),
    Stdlib(&'a Stdlib),
}

/// A boxed `Stdlib`, read by a function of its own: inlined into `Tagged`'s
/// reader, its code pushed the common variants' element reads out of line
/// (1.2% more instructions to decode a book of floats and ints, measured).
struct OutOfLine(Box<Stdlib>);

impl<'de> Deserialize<'de> for OutOfLine {
    #[inline(never)]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<Stdlib>::deserialize(d).map(OutOfLine)
    }
}

#[derive(Deserialize)]
#[serde(rename = "Value")]
enum Tagged {
    None,
    Bool(bool),
    Int(i64),
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(BlobBuf),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(String, Value)>),
    Stdlib(OutOfLine),
}

/// A one-entry `{"$tag": inner}` object.
struct TagMap<'a, T: Serialize>(&'a str, T);

impl<T: Serialize> Serialize for TagMap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            let tagged = match self {
                Value::None => TaggedRef::None,
                Value::Bool(b) => TaggedRef::Bool(*b),
                Value::Int(i) => TaggedRef::Int(*i),
                Value::BigInt(d) => TaggedRef::BigInt(d),
                Value::Float(f) => TaggedRef::Float(*f),
                Value::Str(t) => TaggedRef::Str(t),
                Value::Bytes(b) => TaggedRef::Bytes(Blob(b)),
                Value::List(l) => TaggedRef::List(l),
                Value::Tuple(t) => TaggedRef::Tuple(t),
                Value::Dict(d) => TaggedRef::Dict(d),
                Value::Stdlib(v) => TaggedRef::Stdlib(v),
            };
            return tagged.serialize(s);
        }
        match self {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(d) => TagMap("$int", d).serialize(s),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(f) => {
                let text = if f.is_nan() { "nan" } else if *f > 0.0 { "inf" } else { "-inf" };
                TagMap("$float", text).serialize(s)
            }
            Value::Str(t) => s.serialize_str(t),
            Value::Bytes(b) => TagMap("$bytes", base64::engine::general_purpose::STANDARD.encode(b)).serialize(s),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Tuple(t) => TagMap("$tuple", t).serialize(s),
            Value::Dict(d) if d.iter().any(|(k, _)| k.starts_with('$')) => TagMap("$dict", d).serialize(s),
            Value::Dict(d) => {
                let mut m = s.serialize_map(Some(d.len()))?;
                for (k, v) in d {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Value::Stdlib(v) => match &**v {
                Stdlib::Date(d) => TagMap("$date", d.to_string()).serialize(s),
                Stdlib::Time(t) => TagMap("$time", t.to_string()).serialize(s),
                Stdlib::DateTime(d, t) => TagMap("$datetime", format!("{d}T{t}")).serialize(s),
                Stdlib::Timedelta(t) => TagMap("$timedelta", (t.days, t.seconds, t.microseconds)).serialize(s),
                Stdlib::Decimal(d) => TagMap("$decimal", d).serialize(s),
                Stdlib::Uuid(u) => TagMap("$uuid", stdlib::uuid_text(u)).serialize(s),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return Ok(match Tagged::deserialize(d)? {
                Tagged::None => Value::None,
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::BigInt(t) => Value::BigInt(t),
                Tagged::Float(f) => Value::Float(f),
                Tagged::Str(t) => Value::Str(t),
                Tagged::Bytes(b) => Value::Bytes(b.0),
                Tagged::List(l) => Value::List(l),
                Tagged::Tuple(t) => Value::Tuple(t),
                Tagged::Dict(d) => Value::Dict(d),
                Tagged::Stdlib(OutOfLine(v)) => {
                    v.check().map_err(de::Error::custom)?;
                    Value::Stdlib(v)
                }
            });
        }
        d.deserialize_any(Readable)
    }
}

/// Reads the human-readable (JSON) form.
struct Readable;

impl<'de> Visitor<'de> for Readable {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a checkpoint value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map(Value::Int).unwrap_or_else(|_| Value::BigInt(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<Value>()?));
        }
        if entries.len() == 1 && entries[0].0.starts_with('$') {
            let (tag, inner) = entries.pop().expect("one entry");
            return untag(&tag, inner).map_err(de::Error::custom);
        }
        Ok(Value::Dict(entries))
    }
}

fn untag(tag: &str, inner: Value) -> Result<Value, String> {
    match (tag, inner) {
        ("$int", Value::Str(d)) if is_integer(&d) => Ok(Value::BigInt(d)),
        ("$float", Value::Str(t)) => match t.as_str() {
            "nan" => Ok(Value::Float(f64::NAN)),
            "inf" => Ok(Value::Float(f64::INFINITY)),
            "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
            other => Err(format!("unknown $float value {other:?}")),
        },
        ("$bytes", Value::Str(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(Value::Bytes)
            .map_err(|e| format!("bad $bytes: {e}")),
        ("$tuple", Value::List(items)) => Ok(Value::Tuple(items)),
        ("$dict", Value::List(pairs)) => pairs
            .into_iter()
            .map(|p| match p {
                Value::List(mut kv) if kv.len() == 2 => match (kv.remove(0), kv.remove(0)) {
                    (Value::Str(k), v) => Ok((k, v)),
                    _ => Err("bad $dict entry: key must be a string".to_string()),
                },
                _ => Err("bad $dict entry: expected [key, value]".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Dict),
        ("$date", Value::Str(t)) => read(stdlib::parse_date(&t).map(Stdlib::Date)),
        ("$time", Value::Str(t)) => read(stdlib::parse_time(&t).map(Stdlib::Time)),
        ("$datetime", Value::Str(t)) => read(stdlib::parse_datetime(&t).map(|(d, t)| Stdlib::DateTime(d, t))),
        ("$timedelta", Value::List(parts)) => match parts.as_slice() {
            [Value::Int(days), Value::Int(seconds), Value::Int(micros)] => {
                read(Duration::from_parts(*days, *seconds, *micros).map(Stdlib::Timedelta))
            }
            _ => Err("bad $timedelta: expected [days, seconds, microseconds]".to_string()),
        },
        ("$decimal", Value::Str(d)) if stdlib::is_decimal(&d) => Ok(Stdlib::Decimal(d).into()),
        ("$uuid", Value::Str(u)) => read(stdlib::parse_uuid(&u).map(Stdlib::Uuid)),
        (tag, _) => Err(format!("unknown or malformed tag {tag:?}")),
    }
}

/// A parsed standard-library value, its refusal as the deserializer's message.
fn read(parsed: Result<Stdlib, stdlib::StdlibError>) -> Result<Value, String> {
    parsed.map(Value::from).map_err(|e| e.to_string())
}

fn is_integer(digits: &str) -> bool {
    let body = digits.strip_prefix('-').unwrap_or(digits);
    match body.strip_prefix("0x") {
        Some(hex) => !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()),
    }
}
