//! `datetime`, `date`, `time`, `timedelta`, `Decimal` and `UUID` ↔ checkpoint values.
//!
//! `convert` asks here only after its exact built-in checks failed, so the
//! common values (dicts of str, float, int) pay nothing for these types. The
//! type objects are looked up once per interpreter, never per value.
//!
//! Time zones: a `datetime.timezone` is stored as its fixed offset (and its
//! name, when it was given one); a `zoneinfo.ZoneInfo` by its IANA key, so a
//! restored value still follows the zone's DST rules. Any other `tzinfo`
//! (pytz, dateutil, a custom class) is refused by name: storing just its
//! offset would silently change what the value does after a restore.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyDate, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyString, PyTime, PyTimeAccess, PyType, PyTzInfo,
    PyTzInfoAccess,
};

use headrace_core::checkpoint::stdlib::offset_text;
use headrace_core::checkpoint::{Date, Duration, Stdlib, Time, Tz};


const DAY_US: i64 = 86_400_000_000;

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMEZONE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ZONEINFO: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn decimal_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    DECIMAL.import(py, "decimal", "Decimal")
}

fn uuid_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID.import(py, "uuid", "UUID")
}

/// The value for `obj` if it is exactly one of these types, None if it is
/// none of them; an error for one that cannot be stored (e.g. a pytz zone).
pub fn to_value(obj: &Bound<'_, PyAny>) -> Result<Option<Stdlib>, String> {
    let py = obj.py();
    let text = |e: PyErr| e.to_string();
    if let Ok(dt) = obj.cast_exact::<PyDateTime>() {
        let date = Date { year: dt.get_year() as u16, month: dt.get_month(), day: dt.get_day() };
        let tz = dt.get_tzinfo().map(|tz| tz_of(&tz)).transpose()?;
        let time = Time { hour: dt.get_hour(), minute: dt.get_minute(), second: dt.get_second(), microsecond: dt.get_microsecond(), fold: dt.get_fold(), tz };
        return Ok(Some(Stdlib::DateTime(date, time)));
    }
    if let Ok(d) = obj.cast_exact::<PyDate>() {
        return Ok(Some(Stdlib::Date(Date { year: d.get_year() as u16, month: d.get_month(), day: d.get_day() })));
    }
    if let Ok(t) = obj.cast_exact::<PyTime>() {
        let tz = t.get_tzinfo().map(|tz| tz_of(&tz)).transpose()?;
        let time = Time { hour: t.get_hour(), minute: t.get_minute(), second: t.get_second(), microsecond: t.get_microsecond(), fold: t.get_fold(), tz };
        return Ok(Some(Stdlib::Time(time)));
    }
    if let Ok(d) = obj.cast_exact::<PyDelta>() {
        // Python normalises seconds and microseconds to be non-negative.
        let duration = Duration { days: d.get_days(), seconds: d.get_seconds() as u32, microseconds: d.get_microseconds() as u32 };
        return Ok(Some(Stdlib::Timedelta(duration)));
    }
    let ty = obj.get_type();
    if ty.is(decimal_type(py).map_err(text)?) {
        // str() of a Decimal is exact: sign, exponent, NaN payload, -0.
        return Ok(Some(Stdlib::Decimal(obj.str().map_err(text)?.to_string())));
    }
    if ty.is(uuid_type(py).map_err(text)?) {
        let int: u128 = obj.getattr("int").and_then(|i| i.extract()).map_err(text)?;
        return Ok(Some(Stdlib::Uuid(int.to_be_bytes())));
    }
    Ok(None)
}

fn tz_of(tzinfo: &Bound<'_, PyTzInfo>) -> Result<Tz, String> {
    let py = tzinfo.py();
    let text = |e: PyErr| e.to_string();
    let ty = tzinfo.get_type();
    if ty.is(TIMEZONE.import(py, "datetime", "timezone").map_err(text)?) {
        let delta = tzinfo.call_method1("utcoffset", (py.None(),)).map_err(text)?;
        let delta = delta.cast::<PyDelta>().map_err(|e| e.to_string())?;
        let offset_us = i64::from(delta.get_days()) * DAY_US
            + i64::from(delta.get_seconds()) * 1_000_000
            + i64::from(delta.get_microseconds());
        let name: String = tzinfo.call_method1("tzname", (py.None(),)).and_then(|n| n.extract()).map_err(text)?;
        let default = if offset_us == 0 { "UTC".to_string() } else { format!("UTC{}", offset_text(offset_us)) };
        return Ok(Tz::Fixed { offset_us, name: (name != default).then_some(name) });
    }
    if ty.is(ZONEINFO.import(py, "zoneinfo", "ZoneInfo").map_err(text)?) {
        let key: Option<String> = tzinfo.getattr("key").and_then(|k| k.extract()).map_err(text)?;
        let key = key.ok_or("a ZoneInfo made without a key (ZoneInfo.from_file) cannot be checkpointed")?;
        let tz = Tz::Zone(key);
        return tz.check().map(|()| tz).map_err(|e| e.to_string());
    }
    let name = ty.name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    Err(format!("tzinfo type {name} cannot be checkpointed (supported: datetime.timezone and zoneinfo.ZoneInfo)"))
}

pub fn to_python(py: Python<'_>, value: Stdlib) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Stdlib::Date(d) => PyDate::new(py, i32::from(d.year), d.month, d.day)?.into_any().unbind(),
        Stdlib::Time(t) => {
            let tz = t.tz.map(|tz| tz_to_python(py, tz)).transpose()?;
            PyTime::new_with_fold(py, t.hour, t.minute, t.second, t.microsecond, tz.as_ref(), t.fold)?.into_any().unbind()
        }
        Stdlib::DateTime(d, t) => {
            let tz = t.tz.map(|tz| tz_to_python(py, tz)).transpose()?;
            let (year, month, day) = (i32::from(d.year), d.month, d.day);
            PyDateTime::new_with_fold(py, year, month, day, t.hour, t.minute, t.second, t.microsecond, tz.as_ref(), t.fold)?
                .into_any()
                .unbind()
        }
        Stdlib::Timedelta(d) => PyDelta::new(py, d.days, d.seconds as i32, d.microseconds as i32, false)?.into_any().unbind(),
        Stdlib::Decimal(text) => match decimal_type(py)?.call1((PyString::new(py, &text),)) {
            Ok(d) => d.unbind(),
            // Text past this machine's decimal limits (an exponent beyond them).
            Err(e) => return Err(crate::errors::Error::CheckpointData(format!("decimal '{text}' cannot be restored here: {e}")).into()),
        },
        Stdlib::Uuid(bytes) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("int", u128::from_be_bytes(bytes))?;
            uuid_type(py)?.call((), Some(&kwargs))?.unbind()
        }
    })
}

fn tz_to_python(py: Python<'_>, tz: Tz) -> PyResult<Bound<'_, PyTzInfo>> {
    match tz {
        Tz::Zone(key) => PyTzInfo::timezone(py, &key).map_err(|e| {
            let hint = "is it in this machine's tz database? `pip install tzdata` provides one";
            PyErr::from(crate::errors::Error::CheckpointData(format!("time zone '{key}' cannot be loaded ({e}); {hint}")))
        }),
        Tz::Fixed { offset_us, name } => {
            let days = offset_us.div_euclid(DAY_US) as i32;
            let rest = offset_us.rem_euclid(DAY_US);
            let delta = PyDelta::new(py, days, (rest / 1_000_000) as i32, (rest % 1_000_000) as i32, false)?;
            match name {
                None => PyTzInfo::fixed_offset(py, delta),
                Some(name) => Ok(TIMEZONE.import(py, "datetime", "timezone")?.call1((delta, name))?.cast_into()?),
            }
        }
    }
}
