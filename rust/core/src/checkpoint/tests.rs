use super::*;

fn sample() -> Value {
    Value::Dict(vec![
        ("none".into(), Value::None),
        ("flag".into(), Value::Bool(true)),
        ("n".into(), Value::Int(-42)),
        ("big".into(), Value::BigInt("-123456789012345678901234567890".into())),
        ("x".into(), Value::Float(1.5)),
        ("nan".into(), Value::Float(f64::NAN)),
        ("inf".into(), Value::Float(f64::NEG_INFINITY)),
        ("s".into(), Value::Str("héllo".into())),
        ("b".into(), Value::Bytes(vec![0, 1, 255])),
        ("l".into(), Value::List(vec![Value::Int(1), Value::Tuple(vec![Value::Str("t".into())])])),
        ("$odd".into(), Value::Dict(vec![("$int".into(), Value::Str("7".into()))])),
    ])
}

/// NaN != NaN: compare through the debug text, which spells NaN the same way.
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn every_codec_round_trips_every_variant() {
    for codec in [CodecId::Bincode, CodecId::Msgpack, CodecId::Json] {
        let bytes = encode(&sample(), codec).unwrap();
        let back: Value = decode(&bytes).unwrap();
        assert!(same(&back, &sample()), "{codec:?}: {back:?}");
    }
}

#[test]
fn json_is_the_natural_mapping() {
    let v = Value::Dict(vec![("a".into(), Value::List(vec![Value::Int(1), Value::None, Value::Str("x".into())]))]);
    let bytes = encode(&v, CodecId::Json).unwrap();
    assert_eq!(&bytes[envelope::HEADER_LEN..], br#"{"a":[1,null,"x"]}"#);
}

#[test]
fn every_single_bit_flip_is_detected() {
    for codec in [CodecId::Bincode, CodecId::Msgpack, CodecId::Json] {
        let bytes = encode(&sample(), codec).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode::<Value>(&bad).is_err(), "{codec:?}: flip of bit {bit} went unnoticed");
        }
    }
}

#[test]
fn truncation_and_trailing_bytes_are_reported() {
    let bytes = encode(&sample(), CodecId::Bincode).unwrap();
    for cut in 0..bytes.len() {
        assert!(decode::<Value>(&bytes[..cut]).is_err(), "truncated to {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode::<Value>(&longer), Err(CodecError::TrailingBytes { .. })));
    assert_eq!(decode::<Value>(b"nope, not a checkpoint"), Err(CodecError::BadMagic));
}
