//! `JournalWriter` and `read_journal`: the core's journal, translated.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyString};

use headrace_core::error::Named;
use headrace_core::event::SourcePosition;
use headrace_core::journal::{self as core, FsyncPolicy, JournalRecord, ReadStatus, SegmentHeader, WriterOptions, NO_ACCUMULATOR};

use crate::errors::Error;

/// `(topic, partition, offset)` from Python.
type Position = (String, i32, i64);

fn fsync_policy(value: Option<&Bound<'_, PyAny>>) -> Result<FsyncPolicy, Error> {
    let bad = || Error::Setting {
        what: "fsync".into(),
        message: "journal fsync must be \"batch\", \"never\" or a positive number of seconds".into(),
    };
    let Some(value) = value.filter(|v| !v.is_none()) else { return Ok(FsyncPolicy::EveryBatch) };
    if let Ok(s) = value.cast::<PyString>() {
        return match s.to_str()? {
            "batch" => Ok(FsyncPolicy::EveryBatch),
            "never" => Ok(FsyncPolicy::Never),
            _ => Err(bad()),
        };
    }
    if value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>() && !value.is_instance_of::<pyo3::types::PyBool>() {
        let secs: f64 = value.extract()?;
        return Duration::try_from_secs_f64(secs).ok().filter(|d| !d.is_zero()).map(FsyncPolicy::Interval).ok_or_else(bad);
    }
    Err(bad())
}

fn seconds(value: f64, what: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| Error::Setting { what: what.into(), message: format!("{what} must be a non-negative number of seconds, got {value}") })
}

/// Appends records to a journal directory from a background thread.
#[pyclass(frozen, module = "headrace._core")]
pub struct JournalWriter {
    inner: Arc<core::JournalWriter>,
}

impl JournalWriter {
    /// The writer itself, for an engine to record into.
    pub fn shared(&self) -> Arc<core::JournalWriter> {
        Arc::clone(&self.inner)
    }
}

#[pymethods]
impl JournalWriter {
    #[new]
    #[pyo3(signature = (path, graph, accumulators, *, segment_bytes = 67_108_864, keep_segments = None, keep_bytes = None, fsync = None, buffer_bytes = 8_388_608, append_timeout = 5.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        graph: String,
        accumulators: Vec<String>,
        segment_bytes: u64,
        keep_segments: Option<usize>,
        keep_bytes: Option<u64>,
        fsync: Option<&Bound<'_, PyAny>>,
        buffer_bytes: usize,
        append_timeout: f64,
    ) -> Result<Self, Error> {
        let options = WriterOptions {
            segment_bytes,
            keep_segments,
            keep_bytes,
            fsync: fsync_policy(fsync)?,
            buffer_bytes,
            append_timeout: seconds(append_timeout, "append_timeout")?,
        };
        let inner = py.detach(|| core::JournalWriter::open(&path, &graph, accumulators, options))?;
        Ok(JournalWriter { inner: Arc::new(inner) })
    }

    /// Appends an event for accumulator index `acc`; returns its seq. Waits
    /// (without the GIL) while the buffer is full, up to `append_timeout`,
    /// then raises `JournalError`.
    #[pyo3(signature = (acc, payload, time_ns, position = None))]
    fn append_event(&self, py: Python<'_>, acc: u32, payload: &[u8], time_ns: i64, position: Option<Position>) -> Result<u64, Error> {
        let position = position.map(|(topic, partition, offset)| SourcePosition { topic, partition, offset });
        if let Some(seq) = self.inner.try_append_event(acc, time_ns, payload, position.as_ref())? {
            return Ok(seq);
        }
        Ok(py.detach(|| self.inner.append_event(acc, time_ns, payload, position.as_ref()))?)
    }

    /// Appends a clock step to `time_ns` (no input); returns its seq.
    fn append_advance(&self, py: Python<'_>, time_ns: i64) -> Result<u64, Error> {
        match self.inner.try_append_advance(time_ns)? {
            Some(seq) => Ok(seq),
            None => Ok(py.detach(|| self.inner.append_advance(time_ns))?),
        }
    }

    /// Appends a marker that the processor settled at `time_ns`; returns its seq.
    fn append_settle(&self, py: Python<'_>, time_ns: i64) -> Result<u64, Error> {
        match self.inner.try_append_settle(time_ns)? {
            Some(seq) => Ok(seq),
            None => Ok(py.detach(|| self.inner.append_settle(time_ns))?),
        }
    }

    /// Waits until every earlier append is written (and fsynced unless
    /// `fsync="never"`), up to `timeout` seconds (None: no limit).
    #[pyo3(signature = (timeout = None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> Result<(), Error> {
        let timeout = timeout.map(|t| seconds(t, "timeout")).transpose()?;
        Ok(py.detach(|| self.inner.flush(timeout))?)
    }

    /// Writes everything appended and stops the writer; closing again does nothing.
    fn close(&self, py: Python<'_>) -> Result<(), Error> {
        Ok(py.detach(|| self.inner.close())?)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> Result<(), Error> {
        self.close(py)
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.dir().display().to_string()
    }

    /// What opening cut off: `(segment, offset, bytes dropped)` of a torn tail, or None.
    #[getter]
    fn truncated(&self) -> Option<(String, u64, u64)> {
        self.inner.report().truncated.as_ref().map(|(path, offset, dropped)| (path.display().to_string(), *offset, *dropped))
    }

    /// Counters of the writer: seqs appended, written and synced, bytes, segments.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        let counters = [
            ("next_seq", s.next_seq),
            ("written_seq", s.written_seq),
            ("synced_seq", s.synced_seq),
            ("buffered_bytes", s.buffered_bytes as u64),
            ("bytes_written", s.bytes_written),
            ("batches", s.batches),
            ("fsyncs", s.fsyncs),
            ("segments", s.segments as u64),
            ("segments_created", s.segments_created),
            ("segments_deleted", s.segments_deleted),
            ("retention_failures", s.retention_failures),
            ("backpressure_waits", s.backpressure_waits),
            ("backpressure_refusals", s.backpressure_refusals),
        ];
        for (name, value) in counters {
            d.set_item(name, value)?;
        }
        Ok(d)
    }
}

struct Reading {
    reader: core::JournalReader,
    /// The current header's names as Python strings, made once per segment.
    names: Option<(Arc<SegmentHeader>, Vec<Py<PyString>>)>,
}

/// The records of a journal, as `(seq, time_ns, kind, accumulator, payload,
/// position)` tuples; `status` says how the read ended.
#[pyclass(frozen, module = "headrace._core")]
pub struct JournalReader {
    reading: Mutex<Reading>,
}

type Row = (u64, i64, &'static str, Option<Py<PyString>>, Py<PyBytes>, Option<Position>);

impl JournalReader {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn row(py: Python<'_>, reading: &mut Reading, record: JournalRecord) -> Row {
    let name = match (record.acc, reading.reader.header()) {
        (NO_ACCUMULATOR, _) | (_, None) => None,
        (acc, Some(header)) => {
            let fresh = !matches!(&reading.names, Some((h, _)) if Arc::ptr_eq(h, header));
            if fresh {
                let names = header.accumulators.iter().map(|n| PyString::new(py, n).unbind()).collect();
                reading.names = Some((Arc::clone(header), names));
            }
            let names = &reading.names.as_ref().expect("set above").1;
            names.get(acc as usize).map(|n| n.clone_ref(py))
        }
    };
    let position = record.position.map(|p| (p.topic, p.partition, p.offset));
    (record.seq, record.time_ns, record.kind.as_str(), name, PyBytes::new(py, &record.payload).unbind(), position)
}

#[pymethods]
impl JournalReader {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> Result<Option<Row>, Error> {
        let mut guard = self.lock();
        let reading = &mut *guard;
        let next = py.detach(|| reading.reader.next());
        match next {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(record)) => Ok(Some(row(py, reading, record))),
        }
    }

    /// None while reading (or after an error), then "clean" or "torn".
    #[getter]
    fn status(&self) -> Option<&'static str> {
        self.lock().reader.status().map(|s| match s {
            ReadStatus::Clean => "clean",
            ReadStatus::Torn { .. } => "torn",
        })
    }

    /// `(segment, offset)` of the torn last write that was dropped, or None.
    #[getter]
    fn torn(&self) -> Option<(String, u64)> {
        match self.lock().reader.status() {
            Some(ReadStatus::Torn { segment, offset }) => Some((segment.display().to_string(), *offset)),
            _ => None,
        }
    }

    /// The graph named by the segment being read (None before the first).
    #[getter]
    fn graph(&self) -> Option<String> {
        self.lock().reader.header().map(|h| h.graph.clone())
    }

    /// The accumulator names of the segment being read.
    #[getter]
    fn accumulators(&self) -> Option<Vec<String>> {
        self.lock().reader.header().map(|h| h.accumulators.clone())
    }
}

/// Opens the journal directory `path` for reading from `from_seq`.
#[pyfunction]
#[pyo3(signature = (path, from_seq = 0))]
pub fn read_journal(py: Python<'_>, path: PathBuf, from_seq: u64) -> Result<JournalReader, Error> {
    let reader = py.detach(|| core::JournalReader::open(&path, from_seq))?;
    Ok(JournalReader { reading: Mutex::new(Reading { reader, names: None }) })
}
