use super::*;

/// Every variant the codecs knew before dates, times, decimals and UUIDs.
fn original_sample() -> Value {
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

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn time(hour: u8, minute: u8, second: u8, microsecond: u32, tz: Option<Tz>) -> Time {
    Time { hour, minute, second, microsecond, fold: false, tz }
}

fn clock(t: Time) -> Value {
    Stdlib::Time(t).into()
}

fn stamp(d: Date, t: Time) -> Value {
    Stdlib::DateTime(d, t).into()
}

fn fixed(offset_us: i64) -> Option<Tz> {
    Some(Tz::Fixed { offset_us, name: None })
}

/// One of each date, time, decimal and UUID shape, with the edges.
fn stdlib_values() -> Vec<Value> {
    let zone = Some(Tz::Zone("America/New_York".into()));
    vec![
        Value::from(Stdlib::Date(date(1, 1, 1))),
        Value::from(Stdlib::Date(date(9999, 12, 31))),
        clock(time(0, 0, 0, 0, None)),
        clock(time(23, 59, 59, 999_999, fixed(-(12 * 3600) * 1_000_000))),
        clock(Time { fold: true, ..time(1, 30, 0, 0, zone.clone()) }),
        stamp(date(2024, 2, 29), time(13, 45, 0, 500, None)),
        stamp(date(1, 1, 1), time(0, 0, 0, 0, fixed(14 * 3600 * 1_000_000))),
        stamp(date(9999, 12, 31), time(23, 59, 59, 999_999, fixed(-86_399_999_999))),
        stamp(date(2024, 11, 3), Time { fold: true, ..time(1, 30, 0, 0, zone) }),
        stamp(date(2024, 3, 8), time(9, 30, 0, 0, fixed(5 * 3600 * 1_000_000 + 30 * 60 * 1_000_000 + 15_000_001))),
        stamp(
            date(2024, 3, 8),
            Time { fold: true, ..time(9, 30, 0, 0, Some(Tz::Fixed { offset_us: -18_000_000_000, name: Some("E[S]T=]".into()) })) },
        ),
        Value::from(Stdlib::Timedelta(Duration { days: -1, seconds: 86_399, microseconds: 999_999 })),
        Value::from(Stdlib::Timedelta(Duration { days: 999_999_999, seconds: 0, microseconds: 0 })),
        Value::from(Stdlib::Timedelta(Duration { days: -999_999_999, seconds: 0, microseconds: 0 })),
        Value::from(Stdlib::Decimal("-0".into())),
        Value::from(Stdlib::Decimal("1.2300".into())),
        Value::from(Stdlib::Decimal("-1E+999999999999999999".into())),
        Value::from(Stdlib::Decimal("0E-1000000000000000000".into())),
        Value::from(Stdlib::Decimal("-sNaN123".into())),
        Value::from(Stdlib::Decimal("NaN".into())),
        Value::from(Stdlib::Decimal("-Infinity".into())),
        Value::from(Stdlib::Uuid([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 0xff])),
    ]
}

fn sample() -> Value {
    let Value::Dict(mut entries) = original_sample() else { unreachable!() };
    entries.push(("temporal".into(), Value::List(stdlib_values())));
    entries.push(("nested".into(), Value::Tuple(vec![Value::Dict(vec![("at".into(), stdlib_values().remove(6))])])));
    entries.push(("$datetime".into(), Value::Str("2024-01-01T00:00:00".into())));
    Value::Dict(entries)
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

#[test]
fn checkpoints_written_before_stdlib_values_still_decode() {
    let fixtures = [
        include_str!("fixtures/before-datetimes.bincode.hex"),
        include_str!("fixtures/before-datetimes.msgpack.hex"),
        include_str!("fixtures/before-datetimes.json.hex"),
    ];
    for hex in fixtures {
        let hex = hex.trim();
        let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let back: Value = decode(&bytes).unwrap();
        assert!(same(&back, &original_sample()), "{back:?}");
    }
}

#[test]
fn every_codec_round_trips_each_stdlib_value_alone() {
    for codec in [CodecId::Bincode, CodecId::Msgpack, CodecId::Json] {
        for v in stdlib_values() {
            let back: Value = decode(&encode(&v, codec).unwrap()).unwrap();
            assert_eq!(back, v, "{codec:?}");
        }
    }
}

fn json_of(v: &Value) -> String {
    String::from_utf8(encode(v, CodecId::Json).unwrap()[envelope::HEADER_LEN..].to_vec()).unwrap()
}

#[test]
fn json_spells_stdlib_values_readably() {
    let v = stdlib_values();
    let expected = [
        (0, r#"{"$date":"0001-01-01"}"#),
        (3, r#"{"$time":"23:59:59.999999-12:00"}"#),
        (4, r#"{"$time":"01:30:00[America/New_York][fold=1]"}"#),
        (5, r#"{"$datetime":"2024-02-29T13:45:00.000500"}"#),
        (6, r#"{"$datetime":"0001-01-01T00:00:00+14:00"}"#),
        (7, r#"{"$datetime":"9999-12-31T23:59:59.999999-23:59:59.999999"}"#),
        (9, r#"{"$datetime":"2024-03-08T09:30:00+05:30:15.000001"}"#),
        (10, r#"{"$datetime":"2024-03-08T09:30:00-05:00[fold=1][name=E[S]T=]]"}"#),
        (11, r#"{"$timedelta":[-1,86399,999999]}"#),
        (16, r#"{"$decimal":"-1E+999999999999999999"}"#),
        (21, r#"{"$uuid":"12345678-9abc-def0-0001-0203040506ff"}"#),
    ];
    for (i, text) in expected {
        assert_eq!(json_of(&v[i]), text);
    }
}

#[test]
fn a_dict_that_looks_like_a_stdlib_tag_stays_a_dict() {
    let v = Value::Dict(vec![("$date".into(), Value::Str("2024-01-02".into()))]);
    let back: Value = decode(&encode(&v, CodecId::Json).unwrap()).unwrap();
    assert_eq!(back, v);
}

#[test]
fn malformed_stdlib_json_is_refused() {
    for bad in [
        r#"{"$date":"2023-02-29"}"#,
        r#"{"$date":"0000-01-01"}"#,
        r#"{"$date":"2024-1-01"}"#,
        r#"{"$time":"24:00:00"}"#,
        r#"{"$time":"12:00:00.5"}"#,
        r#"{"$time":"12:00:00+24:00"}"#,
        r#"{"$time":"12:00:00+05:60"}"#,
        r#"{"$time":"12:00:00[]"}"#,
        r#"{"$time":"12:00:00[name=UTC]"}"#,
        r#"{"$time":"12:00:00[Europe/London][name=x]"}"#,
        r#"{"$time":"12:00:00[fold=2]"}"#,
        r#"{"$datetime":"2024-01-01 12:00:00"}"#,
        r#"{"$datetime":"2024-01-01T12:00:00Z"}"#,
        r#"{"$timedelta":[0,86400,0]}"#,
        r#"{"$timedelta":[1000000000,0,0]}"#,
        r#"{"$timedelta":[0,-1,0]}"#,
        r#"{"$timedelta":[0,0]}"#,
        r#"{"$decimal":"1.2.3"}"#,
        r#"{"$decimal":"1E"}"#,
        r#"{"$decimal":"inf"}"#,
        r#"{"$decimal":1}"#,
        r#"{"$uuid":"12345678123456781234567812345678"}"#,
        r#"{"$uuid":"1234567g-1234-5678-1234-567812345678"}"#,
    ] {
        let bytes = envelope::seal(CodecId::Json, bad.as_bytes()).unwrap();
        assert!(decode::<Value>(&bytes).is_err(), "{bad} was accepted");
    }
}

#[test]
fn stdlib_refusals_say_what_was_wrong() {
    use super::stdlib::{parse_date, parse_datetime, parse_uuid};
    assert_eq!(parse_date("2024-1-01"), Err(StdlibError::Unreadable { kind: "date", text: "2024-1-01".into() }));
    let leap = parse_date("2023-02-29").unwrap_err();
    assert_eq!(leap.to_string(), "invalid date Date { year: 2023, month: 2, day: 29 }");
    assert_eq!(parse_datetime("2024-01-01 12:00").unwrap_err().to_string(), r#"bad datetime "2024-01-01 12:00""#);
    assert_eq!(parse_uuid("x").unwrap_err().to_string(), r#"bad uuid "x""#);
    assert_eq!(Duration::from_parts(0, -1, 0).unwrap_err().to_string(), "invalid timedelta [0, -1, 0]");
    let day = Duration::from_parts(0, 86_400, 0).unwrap_err();
    assert_eq!(day, StdlibError::OutOfRange { kind: "timedelta", fields: format!("{:?}", Duration { days: 0, seconds: 86_400, microseconds: 0 }) });
    assert_eq!(fixed(86_400_000_000).unwrap().check(), Err(StdlibError::Offset(86_400_000_000)));
    assert_eq!(Tz::Zone("a]".into()).check().unwrap_err().to_string(), r#"invalid time zone key "a]""#);
}

#[test]
fn out_of_range_binary_fields_are_refused() {
    let bad = [
        Value::from(Stdlib::Date(date(2023, 2, 29))),
        clock(time(0, 60, 0, 0, None)),
        clock(time(0, 0, 0, 0, fixed(86_400_000_000))),
        stamp(date(2024, 1, 1), time(0, 0, 0, 1_000_000, None)),
        Value::from(Stdlib::Timedelta(Duration { days: 0, seconds: 0, microseconds: 1_000_000 })),
        Value::from(Stdlib::Decimal("one".into())),
        clock(time(0, 0, 0, 0, Some(Tz::Zone("".into())))),
    ];
    for codec in [CodecId::Bincode, CodecId::Msgpack] {
        for v in &bad {
            assert!(decode::<Value>(&encode(v, codec).unwrap()).is_err(), "{codec:?}: {v:?} was accepted");
        }
    }
}

#[test]
fn a_value_stays_as_small_as_before_stdlib_values() {
    // Every list and dict of values pays for the largest variant.
    assert_eq!(std::mem::size_of::<Value>(), 32);
}
