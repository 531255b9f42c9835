//! What can go wrong with a journal, each kind carrying what its message needs.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum JournalError {
    /// A file operation failed; `op` says which ("open", "write", "fsync").
    Io { path: PathBuf, op: &'static str, error: Arc<io::Error> },
    /// The journal path exists and is not a directory.
    NotADirectory { path: PathBuf },
    /// A segment's bytes are damaged where a torn write cannot explain it.
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    /// A segment written by a newer (or unknown) format version.
    UnsupportedVersion { segment: PathBuf, version: u32 },
    /// The directory holds another graph's journal.
    GraphMismatch { path: PathBuf, found: String, expected: String },
    /// A payload (or topic) that would make a record over `MAX_RECORD_BYTES`.
    RecordTooLarge { size: usize, max: usize },
    /// A header over `MAX_HEADER_BYTES` (too many or too long names).
    HeaderTooLarge { size: usize, max: usize },
    /// An event for an accumulator index the header does not have.
    UnknownAccumulator { index: u32, count: usize },
    /// The append buffer stayed full for `waited`; the record was not taken.
    Backpressure { capacity: usize, waited: Duration },
    /// `flush` ran out of time before `pending` records were written.
    FlushTimeout { waited: Duration, pending: u64 },
    /// The writer was closed.
    Closed,
    /// The background writer stopped on an error; records appended after
    /// `written` (the last seq it wrote) were not written.
    WriterFailed { written: u64, error: Box<JournalError> },
    /// An option outside its range.
    Setting { what: &'static str, message: String },
}

impl JournalError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, error: io::Error) -> Self {
        JournalError::Io { path: path.into(), op, error: Arc::new(error) }
    }

    /// The file or directory the error is about, if one.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            JournalError::Io { path, .. } | JournalError::NotADirectory { path } | JournalError::GraphMismatch { path, .. } => Some(path),
            JournalError::Corrupt { segment, .. } | JournalError::UnsupportedVersion { segment, .. } => Some(segment),
            JournalError::WriterFailed { error, .. } => error.path(),
            _ => None,
        }
    }

    /// The byte offset of damage in [`JournalError::path`].
    pub fn offset(&self) -> Option<u64> {
        match self {
            JournalError::Corrupt { offset, .. } => Some(*offset),
            JournalError::WriterFailed { error, .. } => error.offset(),
            _ => None,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, op, error } => write!(f, "journal: cannot {op} '{}': {error}", path.display()),
            JournalError::NotADirectory { path } => {
                write!(f, "journal path '{}' exists and is not a directory", path.display())
            }
            JournalError::Corrupt { segment, offset, reason } => {
                write!(f, "journal segment '{}' is corrupt at byte offset {offset}: {reason}", segment.display())
            }
            JournalError::UnsupportedVersion { segment, version } => write!(
                f,
                "journal segment '{}' has format version {version}; this headrace reads version {}",
                segment.display(),
                super::FORMAT_VERSION
            ),
            JournalError::GraphMismatch { path, found, expected } => write!(
                f,
                "journal '{}' belongs to graph '{found}', not '{expected}' (one journal directory per graph)",
                path.display()
            ),
            JournalError::RecordTooLarge { size, max } => {
                write!(f, "journal record of {size} bytes is over the limit of {max} bytes (MAX_RECORD_BYTES)")
            }
            JournalError::HeaderTooLarge { size, max } => {
                write!(f, "journal header of {size} bytes (graph and accumulator names) is over the limit of {max} bytes")
            }
            JournalError::UnknownAccumulator { index, count } => {
                write!(f, "journal: accumulator index {index} out of range (the journal has {count} accumulators)")
            }
            JournalError::Backpressure { capacity, waited } => write!(
                f,
                "journal append buffer full ({capacity} bytes) for {waited:?}: the disk is not keeping up; record not appended"
            ),
            JournalError::FlushTimeout { waited, pending } => {
                write!(f, "journal flush timed out after {waited:?} with {pending} record(s) not yet written")
            }
            JournalError::Closed => write!(f, "journal writer is closed"),
            JournalError::WriterFailed { written, error } => {
                write!(f, "journal writer stopped (records after seq {written} were not written): {error}")
            }
            JournalError::Setting { what, message } => write!(f, "journal option {what}: {message}"),
        }
    }
}

impl std::error::Error for JournalError {}
