//! The input journal: every accepted input, appended to segment files off the
//! hot path, read back in order for replay.
//!
//! # On-disk format (version 1)
//!
//! A journal is a directory of segment files named by the sequence number of
//! their first record, zero-padded to 20 digits so that names sort like seqs:
//! `00000000000000000001.hrj`. Other files in the directory are ignored.
//! Every integer is little-endian.
//!
//! ```text
//! segment  := MAGIC (8 bytes, "HRJOURNL") | version: u32 | frame(header) | frame(record)*
//! frame    := len: u32 | crc32c(body): u32 | body (len bytes)
//! header   := first_seq: u64 | graph: str | n: u32 | accumulator name: str * n
//! record   := seq: u64 | time_ns: i64 | kind: u8 | acc: u32 | payload_len: u32 | payload
//!             | has_position: u8 (0 or 1) | [partition: i32 | offset: i64 | topic: str]
//! str      := len: u32 | UTF-8 bytes
//! kind     := 1 event | 2 advance | 3 settle
//! ```
//!
//! `acc` indexes the header's accumulator names; it is [`NO_ACCUMULATOR`] for
//! records that are not events. A record body is at least [`MIN_RECORD_BYTES`]
//! and at most [`MAX_RECORD_BYTES`] long: a length outside that range is never
//! allocated, it is a damaged frame. Seqs start at 1 and grow by one, across
//! segments.
//!
//! # Damage
//!
//! A damaged frame (short length, short body, a length out of range, a CRC
//! mismatch) at the end of the *last* segment, with no valid frame after it,
//! is a torn write from a crash: readers stop there and report
//! [`ReadStatus::Torn`]; the writer truncates it away when it opens. Anywhere
//! else (a non-last segment, or valid frames after the damage) it is
//! [`JournalError::Corrupt`], naming the file and byte offset. A frame whose
//! CRC holds but whose content is wrong (a seq out of order, an unknown kind) is
//! always corrupt: it was written that way.

mod error;
mod files;
mod format;
mod reader;
mod segment;
mod writer;

pub use error::JournalError;
pub use format::{
    JournalRecord, RecordKind, SegmentHeader, FORMAT_VERSION, MAGIC, MAX_HEADER_BYTES, MAX_RECORD_BYTES,
    MIN_RECORD_BYTES, NO_ACCUMULATOR,
};
pub use reader::{JournalReader, ReadStatus};
pub use segment::segment_file_name;
pub use writer::{FsyncPolicy, JournalStats, JournalWriter, OpenReport, WriterOptions};
