//! Reading a journal back: records in seq order across segments, from a seq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{JournalRecord, SegmentHeader};
use super::segment::{self, Next, Opened, Scanner, SegmentFile};
use super::JournalError;

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStatus {
    /// Every segment ended on a whole record.
    Clean,
    /// The last segment ends in a torn write at `offset` (dropped, never misread).
    Torn { segment: PathBuf, offset: u64 },
}

/// An iterator of the records of a journal directory with `seq >= from_seq`.
///
/// It yields `Err` once, for corruption or an I/O error, and then ends;
/// [`JournalReader::status`] is set once it has ended without error. The
/// segments are listed when it opens: a segment written later is not read.
pub struct JournalReader {
    dir: PathBuf,
    segments: std::vec::IntoIter<SegmentFile>,
    remaining: usize,
    current: Option<Box<Scanner>>,
    header: Option<Arc<SegmentHeader>>,
    from_seq: u64,
    /// The seq the next segment must start at (None before the first).
    next_seq: Option<u64>,
    status: Option<ReadStatus>,
    failed: bool,
}

impl JournalReader {
    pub fn open(dir: impl AsRef<Path>, from_seq: u64) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        segment::check_dir(&dir, false)?;
        let mut all = segment::list(&dir)?;
        // Skip the segments wholly before `from_seq`: those whose successor
        // starts at or before it.
        let skip = all.windows(2).take_while(|w| w[1].first_seq <= from_seq).count();
        all.drain(..skip);
        let remaining = all.len();
        Ok(JournalReader {
            dir,
            segments: all.into_iter(),
            remaining,
            current: None,
            header: None,
            from_seq,
            next_seq: None,
            status: None,
            failed: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The header of the segment the last record came from (or is being read).
    pub fn header(&self) -> Option<&Arc<SegmentHeader>> {
        self.header.as_ref()
    }

    /// `Some` once the iterator has ended without an error.
    pub fn status(&self) -> Option<&ReadStatus> {
        self.status.as_ref()
    }

    fn step(&mut self) -> Result<Option<JournalRecord>, JournalError> {
        loop {
            if self.current.is_none() {
                let Some(seg) = self.segments.next() else {
                    self.status.get_or_insert(ReadStatus::Clean);
                    return Ok(None);
                };
                self.remaining -= 1;
                if let Some(due) = self.next_seq.filter(|&due| due != seg.first_seq) {
                    let reason = format!("segment starts at seq {} where seq {due} was due (a segment is missing)", seg.first_seq);
                    return Err(JournalError::Corrupt { segment: seg.path, offset: 0, reason });
                }
                match Scanner::open(&seg, self.remaining == 0)? {
                    Opened::Ready(scanner) => {
                        self.header = Some(Arc::new(scanner.header.clone()));
                        self.current = Some(scanner);
                    }
                    Opened::Torn { offset } => {
                        self.status = Some(ReadStatus::Torn { segment: seg.path, offset });
                        return Ok(None);
                    }
                }
            }
            let scanner = self.current.as_mut().expect("set above");
            match scanner.next_record()? {
                Next::Record(record) if record.seq < self.from_seq => {}
                Next::Record(record) => return Ok(Some(record)),
                Next::End => {
                    self.next_seq = Some(scanner.expected_seq());
                    self.current = None;
                }
                Next::Torn { offset } => {
                    self.status = Some(ReadStatus::Torn { segment: scanner.path().to_path_buf(), offset });
                    self.current = None;
                    return Ok(None);
                }
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Result<JournalRecord, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.status.is_some() {
            return None;
        }
        match self.step() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
