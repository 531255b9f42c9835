//! Python's standard-library value types as checkpoint values: `datetime`,
//! `date`, `time`, `timedelta`, `Decimal` and `UUID`.
//!
//! The fields mirror Python's `datetime`, `decimal` and `uuid` types exactly,
//! so a value comes back equal *and* alike: a naive time stays naive, an aware
//! one keeps its offset (or its IANA zone, so DST keeps working after a
//! restore), `fold` is kept, a `Decimal` keeps its sign, exponent and NaN
//! payload. Binary codecs store the fields; JSON stores readable text, parsed
//! back strictly by the functions here. Every decoded value is range-checked:
//! a value that Python would refuse is a decode error, not a late surprise.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// One standard-library value. `Value` holds it boxed (it is larger than the
/// built-in values, which would all grow to its size otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stdlib {
    Date(Date),
    Time(Time),
    DateTime(Date, Time),
    Timedelta(Duration),
    /// As `str(Decimal)` spells it: exact, with sign, exponent and NaN payload.
    Decimal(String),
    /// The 16 bytes, big-endian (`UUID.bytes`).
    Uuid(#[serde(with = "sixteen_bytes")] [u8; 16]),
}

/// Why a standard-library value was refused: text that is not its JSON
/// spelling, or fields Python would not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdlibError {
    /// `text` does not spell a `kind` ("date", "time", "datetime", "decimal", "uuid").
    Unreadable { kind: &'static str, text: String },
    /// A `kind` whose fields (as `fields` shows them) are out of Python's range.
    OutOfRange { kind: &'static str, fields: String },
    /// A fixed UTC offset, in microseconds, not strictly within one day.
    Offset(i64),
    /// An IANA key that is empty or holds a character the JSON text cannot bracket.
    ZoneKey(String),
}

impl fmt::Display for StdlibError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdlibError::Unreadable { kind, text } => write!(f, "bad {kind} {text:?}"),
            StdlibError::OutOfRange { kind, fields } => write!(f, "invalid {kind} {fields}"),
            StdlibError::Offset(offset_us) => write!(f, "UTC offset of {offset_us} us is not within a day"),
            StdlibError::ZoneKey(key) => write!(f, "invalid time zone key {key:?}"),
        }
    }
}

impl std::error::Error for StdlibError {}

fn unreadable(kind: &'static str, text: &str) -> StdlibError {
    StdlibError::Unreadable { kind, text: text.to_string() }
}

impl Stdlib {
    /// Whether Python can build this value: fields in range, a decimal that parses.
    pub fn check(&self) -> Result<(), StdlibError> {
        match self {
            Stdlib::Date(d) => d.check(),
            Stdlib::Time(t) => t.check(),
            Stdlib::DateTime(d, t) => d.check().and_then(|()| t.check()),
            Stdlib::Timedelta(t) => t.check(),
            Stdlib::Decimal(d) if is_decimal(d) => Ok(()),
            Stdlib::Decimal(d) => Err(unreadable("decimal", d)),
            Stdlib::Uuid(_) => Ok(()),
        }
    }
}

/// A UUID as one 16-byte blob rather than 16 integers.
mod sixteen_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::checkpoint::value::BlobBuf;

    pub fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let blob = BlobBuf::deserialize(d)?;
        blob.0.try_into().map_err(|_| serde::de::Error::custom("a uuid is 16 bytes"))
    }
}

/// Python's `datetime.MINYEAR..=MAXYEAR`.
const YEARS: std::ops::RangeInclusive<u16> = 1..=9999;
/// `timedelta` days are bounded by ±999 999 999.
const MAX_DAYS: i32 = 999_999_999;
const DAY_US: i64 = 86_400_000_000;

/// A calendar date (proleptic Gregorian, years 1 to 9999 like Python's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A wall-clock time of day, naive (`tz` None) or aware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub microsecond: u32,
    /// Python's `fold`: which of two equal wall times (the second when 1).
    pub fold: bool,
    pub tz: Option<Tz>,
}

/// The time zone of an aware time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tz {
    /// A fixed offset east of UTC in microseconds (strictly within one day),
    /// with the zone's name only when it is not the default "UTC±HH:MM".
    Fixed { offset_us: i64, name: Option<String> },
    /// An IANA key such as "America/New_York": the offset follows the zone's
    /// rules (DST included) at whatever instant the value is used.
    Zone(String),
}

/// A `timedelta` as Python normalises it: only `days` carries the sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duration {
    pub days: i32,
    pub seconds: u32,
    pub microseconds: u32,
}

impl Date {
    pub fn check(&self) -> Result<(), StdlibError> {
        let ok = YEARS.contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month);
        if ok {
            Ok(())
        } else {
            Err(StdlibError::OutOfRange { kind: "date", fields: format!("{self:?}") })
        }
    }
}

impl Time {
    pub fn check(&self) -> Result<(), StdlibError> {
        if self.hour >= 24 || self.minute >= 60 || self.second >= 60 || self.microsecond >= 1_000_000 {
            return Err(StdlibError::OutOfRange { kind: "time", fields: format!("{self:?}") });
        }
        self.tz.as_ref().map_or(Ok(()), Tz::check)
    }
}

impl Tz {
    pub fn check(&self) -> Result<(), StdlibError> {
        match self {
            Tz::Fixed { offset_us, .. } if offset_us.abs() < DAY_US => Ok(()),
            Tz::Fixed { offset_us, .. } => Err(StdlibError::Offset(*offset_us)),
            // The JSON text brackets the key: keep it free of brackets and '='
            // (IANA keys are letters, digits and "/_-+").
            Tz::Zone(key) if !key.is_empty() && !key.contains(['[', ']', '=']) => Ok(()),
            Tz::Zone(key) => Err(StdlibError::ZoneKey(key.clone())),
        }
    }
}

impl Duration {
    /// From JSON's `[days, seconds, microseconds]`, range-checked.
    pub fn from_parts(days: i64, seconds: i64, microseconds: i64) -> Result<Duration, StdlibError> {
        let bad = || StdlibError::OutOfRange { kind: "timedelta", fields: format!("[{days}, {seconds}, {microseconds}]") };
        let duration = Duration {
            days: i32::try_from(days).map_err(|_| bad())?,
            seconds: u32::try_from(seconds).map_err(|_| bad())?,
            microseconds: u32::try_from(microseconds).map_err(|_| bad())?,
        };
        duration.check().map(|()| duration)
    }

    pub fn check(&self) -> Result<(), StdlibError> {
        if self.days.abs() > MAX_DAYS || self.seconds >= 86_400 || self.microseconds >= 1_000_000 {
            return Err(StdlibError::OutOfRange { kind: "timedelta", fields: format!("{self:?}") });
        }
        Ok(())
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ---- JSON text ------------------------------------------------------------
//
// date      2024-03-08
// time      13:45:00[.ffffff][offset | [Zone/Key]][[fold=1]][[name=...]]
// offset    +05:30, -12:00, +05:30:15, +05:30:15.000001 (Python's own spelling)
// datetime  date "T" time
// timedelta [days, seconds, microseconds] (a JSON array, Python's argument order)
//
// Microseconds are written only when not zero; `[name=...]` comes last and
// runs to the closing bracket at the end, so a name may hold any character.

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)?;
        if self.microsecond != 0 {
            write!(f, ".{:06}", self.microsecond)?;
        }
        let name = match &self.tz {
            None => None,
            Some(Tz::Zone(key)) => {
                write!(f, "[{key}]")?;
                None
            }
            Some(Tz::Fixed { offset_us, name }) => {
                write_offset(f, *offset_us)?;
                name.as_deref()
            }
        };
        if self.fold {
            f.write_str("[fold=1]")?;
        }
        if let Some(name) = name {
            write!(f, "[name={name}]")?;
        }
        Ok(())
    }
}

fn write_offset(f: &mut impl fmt::Write, offset_us: i64) -> fmt::Result {
    let sign = if offset_us < 0 { '-' } else { '+' };
    let abs = offset_us.unsigned_abs();
    let (secs, micros) = (abs / 1_000_000, abs % 1_000_000);
    write!(f, "{sign}{:02}:{:02}", secs / 3600, secs / 60 % 60)?;
    if secs % 60 != 0 || micros != 0 {
        write!(f, ":{:02}", secs % 60)?;
    }
    if micros != 0 {
        write!(f, ".{micros:06}")?;
    }
    Ok(())
}

/// A strict reader over ASCII text: each step consumes exactly what it expects.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, prefix: &str) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let head = self.rest.get(..n)?;
        if !head.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.rest = &self.rest[n..];
        head.parse().ok()
    }

    /// ".ffffff" if present (exactly six digits), else 0.
    fn micros(&mut self) -> Option<u32> {
        if self.eat(".") {
            self.digits(6)
        } else {
            Some(0)
        }
    }
}

pub fn parse_date(text: &str) -> Result<Date, StdlibError> {
    let mut c = Cursor { rest: text };
    let date = date_at(&mut c).ok_or_else(|| unreadable("date", text))?;
    if !c.rest.is_empty() {
        return Err(unreadable("date", text));
    }
    date.check().map(|()| date)
}

pub fn parse_time(text: &str) -> Result<Time, StdlibError> {
    let mut c = Cursor { rest: text };
    let time = time_at(&mut c).ok_or_else(|| unreadable("time", text))?;
    time.check().map(|()| time)
}

pub fn parse_datetime(text: &str) -> Result<(Date, Time), StdlibError> {
    let bad = || unreadable("datetime", text);
    let mut c = Cursor { rest: text };
    let date = date_at(&mut c).ok_or_else(bad)?;
    if !c.eat("T") {
        return Err(bad());
    }
    let time = time_at(&mut c).ok_or_else(bad)?;
    date.check()?;
    time.check().map(|()| (date, time))
}

fn date_at(c: &mut Cursor<'_>) -> Option<Date> {
    let year = c.digits(4)? as u16;
    c.eat("-").then_some(())?;
    let month = c.digits(2)? as u8;
    c.eat("-").then_some(())?;
    let day = c.digits(2)? as u8;
    Some(Date { year, month, day })
}

/// A time and everything after it: consumes the whole rest of the text.
fn time_at(c: &mut Cursor<'_>) -> Option<Time> {
    let hour = c.digits(2)? as u8;
    c.eat(":").then_some(())?;
    let minute = c.digits(2)? as u8;
    c.eat(":").then_some(())?;
    let second = c.digits(2)? as u8;
    let microsecond = c.micros()?;
    let mut tz = if c.rest.starts_with(['+', '-']) {
        Some(Tz::Fixed { offset_us: offset_at(c)?, name: None })
    } else if c.rest.starts_with('[') && !c.rest.starts_with("[fold=") && !c.rest.starts_with("[name=") {
        let end = c.rest.find(']')?;
        let key = c.rest[1..end].to_string();
        c.rest = &c.rest[end + 1..];
        Some(Tz::Zone(key))
    } else {
        None
    };
    let fold = c.eat("[fold=1]");
    if let Some(Tz::Fixed { name, .. }) = &mut tz {
        if c.eat("[name=") {
            *name = Some(c.rest.strip_suffix(']')?.to_string());
            c.rest = "";
        }
    }
    c.rest.is_empty().then_some(Time { hour, minute, second, microsecond, fold, tz })
}

fn offset_at(c: &mut Cursor<'_>) -> Option<i64> {
    let negative = c.rest.starts_with('-');
    c.rest = &c.rest[1..];
    let hours = i64::from(c.digits(2)?);
    c.eat(":").then_some(())?;
    let minutes = i64::from(c.digits(2)?);
    let (seconds, micros) = if c.eat(":") { (i64::from(c.digits(2)?), i64::from(c.micros()?)) } else { (0, 0) };
    if minutes >= 60 || seconds >= 60 {
        return None;
    }
    let us = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros;
    Some(if negative { -us } else { us })
}

// ---- Decimal and UUID text -----------------------------------------------

/// Whether `text` is a decimal as Python's `str(Decimal)` spells it: an
/// optional '-', then digits with at most one '.', an optional exponent, or
/// "Infinity", or "NaN"/"sNaN" with an optional payload.
pub fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    if body == "Infinity" {
        return true;
    }
    if let Some(payload) = body.strip_prefix("NaN").or_else(|| body.strip_prefix("sNaN")) {
        return payload.bytes().all(|b| b.is_ascii_digit());
    }
    let (mantissa, exponent) = match body.split_once('E') {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !whole.is_empty() && all_digits(whole) && all_digits(fraction);
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && all_digits(digits)
    });
    mantissa_ok && exponent_ok
}

/// The hyphenated lower-case hex form, as `str(uuid.UUID)` writes it.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn parse_uuid(text: &str) -> Result<[u8; 16], StdlibError> {
    let bad = || unreadable("uuid", text);
    let hex: String = text.split('-').collect();
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// An offset as Python spells it ("+05:30", "-00:00:01", "+05:30:15.000001"):
/// `datetime.timezone` names itself "UTC" followed by this by default.
pub fn offset_text(offset_us: i64) -> String {
    let mut out = String::new();
    let _ = write_offset(&mut out, offset_us);
    out
}
