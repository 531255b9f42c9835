//! Times from Python, as the core's `Time`: epoch seconds (a float or an
//! int) or a `datetime` (a naive one is read as UTC). A datetime converts
//! exactly, to the microsecond; a float to the nanosecond its precision
//! allows (about a quarter of a microsecond for dates of this century).

use pyo3::prelude::*;
use pyo3::types::{PyDateTime, PyDateAccess, PyDelta, PyDeltaAccess, PyFloat, PyInt, PyTimeAccess, PyTzInfoAccess};

use headrace_core::clock::Time;

use crate::errors::Error;

const NS_PER_S: i64 = 1_000_000_000;

/// `value` as a time, or a `SettingError` naming `what`.
pub fn to_time(value: &Bound<'_, PyAny>, what: &str) -> Result<Time, Error> {
    let bad = |message: String| Error::Setting { what: what.to_string(), message };
    if let Ok(dt) = value.cast::<PyDateTime>() {
        return datetime_ns(dt).map(Time::from_nanos).map_err(|e| bad(format!("{what}: {e}")));
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<pyo3::types::PyBool>() {
        let secs: i64 = value.extract().map_err(|_| bad(format!("{what} is out of range: {value}")))?;
        return secs.checked_mul(NS_PER_S).map(Time::from_nanos).ok_or_else(|| bad(format!("{what} is out of range: {secs}")));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let secs = f.value();
        if !secs.is_finite() || (secs * 1e9).abs() >= i64::MAX as f64 {
            return Err(bad(format!("{what} must be a finite number of seconds since the epoch, got {secs}")));
        }
        // Whole seconds and the fraction apart: the product of an epoch time
        // with 1e9 would round to 256 ns; the fraction as given is exact.
        let whole = secs.floor();
        let ns = whole as i64 * NS_PER_S + ((secs - whole) * 1e9).round() as i64;
        return Ok(Time::from_nanos(ns));
    }
    let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    Err(bad(format!("{what} must be seconds since the epoch (a float) or a datetime, got {kind}")))
}

/// An optional time (`None` stays None).
pub fn to_optional_time(value: Option<&Bound<'_, PyAny>>, what: &str) -> Result<Option<Time>, Error> {
    value.filter(|v| !v.is_none()).map(|v| to_time(v, what)).transpose()
}

/// A time as epoch seconds.
pub fn to_seconds(t: Time) -> f64 {
    t.as_nanos() as f64 / 1e9
}

fn datetime_ns(dt: &Bound<'_, PyDateTime>) -> PyResult<i64> {
    let days = days_from_civil(dt.get_year() as i64, dt.get_month() as i64, dt.get_day() as i64);
    let secs = days * 86_400 + dt.get_hour() as i64 * 3_600 + dt.get_minute() as i64 * 60 + dt.get_second() as i64;
    let mut ns = secs * NS_PER_S + dt.get_microsecond() as i64 * 1_000;
    if dt.get_tzinfo().is_some() {
        let offset = dt.call_method0("utcoffset")?;
        if let Ok(delta) = offset.cast::<PyDelta>() {
            let off = (delta.get_days() as i64 * 86_400 + delta.get_seconds() as i64) * NS_PER_S
                + delta.get_microseconds() as i64 * 1_000;
            ns -= off;
        }
    }
    Ok(ns)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::days_from_civil;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2026, 12, 3), 20_790);
    }
}

/// The time of a simulated clock, shared by the runtimes that run on it.
/// `headrace.SimClock` subclasses it and moves its runtimes along.
#[pyclass(frozen, subclass, module = "headrace._core")]
pub struct SimTime {
    /// Nanoseconds since the epoch: the newest time set or pushed with an event.
    pub(crate) nanos: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

#[pymethods]
impl SimTime {
    #[new]
    #[pyo3(signature = (start=None))]
    fn new(start: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let start = to_optional_time(start, "start")?.unwrap_or_default();
        Ok(SimTime { nanos: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start.as_nanos())) })
    }

    /// The clock's time, in seconds since the epoch.
    fn now(&self) -> f64 {
        to_seconds(self.time())
    }

    /// The clock's time, in nanoseconds since the epoch.
    #[getter]
    fn nanos(&self) -> i64 {
        self.time().as_nanos()
    }

    /// Moves the clock to `t` (seconds since the epoch or a datetime) and
    /// returns the new time in nanoseconds. Time never goes back: a `t`
    /// before the clock's time raises `SettingError`.
    fn _move_to(&self, t: &Bound<'_, PyAny>) -> PyResult<i64> {
        let t = to_time(t, "t")?;
        let before = self.nanos.fetch_max(t.as_nanos(), std::sync::atomic::Ordering::SeqCst);
        if before > t.as_nanos() {
            let message = format!("time never goes back: the clock reads {:.6} s, asked for {:.6} s", to_seconds(Time::from_nanos(before)), to_seconds(t));
            return Err(Error::Setting { what: "t".into(), message }.into());
        }
        Ok(t.as_nanos())
    }

    /// Moves the clock forward by `step` nanoseconds (not negative) and
    /// returns the new time in nanoseconds.
    fn _advance_ns(&self, step: i64) -> PyResult<i64> {
        if step < 0 {
            return Err(Error::Setting { what: "by".into(), message: format!("time never goes back: cannot advance by {step} ns") }.into());
        }
        Ok(self.nanos.fetch_add(step, std::sync::atomic::Ordering::SeqCst).saturating_add(step))
    }
}

impl SimTime {
    pub fn time(&self) -> Time {
        Time::from_nanos(self.nanos.load(std::sync::atomic::Ordering::SeqCst))
    }
}
