//! The segment files a writer owns: the active one it appends to, rotation by
//! size and retention of the oldest. Only the background thread (and `open`,
//! before it starts) touches them.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::{encode_segment_start, SegmentHeader, FRAME_PREFIX};
use super::segment::{segment_file_name, SegmentFile};
use super::writer::{FsyncPolicy, WriterOptions};
use super::JournalError;

pub(crate) struct Files {
    pub dir: PathBuf,
    pub options: WriterOptions,
    graph: String,
    accumulators: Vec<String>,
    /// Every segment, oldest first; the last is the active one.
    segments: VecDeque<SegmentFile>,
    active: File,
    /// Bytes of the active segment's preface and header.
    header_len: u64,
    pub counts: FileCounts,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileCounts {
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub segments_created: u64,
    pub segments_deleted: u64,
    /// Old segments retention could not delete (kept, retried at the next rotation).
    pub retention_failures: u64,
}

impl Files {
    /// Continues `active` (already positioned at its end) or, with `active`
    /// None, starts a segment at `first_seq`.
    pub fn new(
        dir: PathBuf,
        options: WriterOptions,
        graph: String,
        accumulators: Vec<String>,
        mut segments: Vec<SegmentFile>,
        active: Option<(File, u64)>,
        first_seq: u64,
    ) -> Result<Self, JournalError> {
        let (file, header_len) = match active {
            Some(found) => found,
            None => {
                let (file, seg) = create(&dir, &graph, &accumulators, first_seq, options.fsync)?;
                let header_len = seg.len;
                segments.push(seg);
                (file, header_len)
            }
        };
        let mut files = Files {
            dir,
            options,
            graph,
            accumulators,
            segments: segments.into(),
            active: file,
            header_len,
            counts: FileCounts::default(),
        };
        files.retain();
        Ok(files)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active_path(&self) -> &Path {
        &self.segments.back().expect("an active segment").path
    }

    /// Writes a batch of whole frames, whose first record is `first_seq`,
    /// rotating before a frame that would take a non-empty segment past
    /// `segment_bytes`. Returns the last seq written.
    pub fn write_batch(&mut self, batch: &[u8], first_seq: u64) -> Result<u64, JournalError> {
        let mut seq = first_seq;
        let mut run = 0; // start of the frames not yet written
        let mut at = 0;
        let mut len = self.segments.back().expect("an active segment").len;
        while at < batch.len() {
            let frame = FRAME_PREFIX + u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len > self.header_len && len + frame as u64 > self.options.segment_bytes {
                self.write(&batch[run..at])?;
                run = at;
                self.rotate(seq)?;
                len = self.header_len;
            }
            len += frame as u64;
            at += frame;
            seq += 1;
        }
        self.write(&batch[run..])?;
        Ok(seq - 1)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let seg = self.segments.back_mut().expect("an active segment");
        self.active.write_all(bytes).map_err(|e| JournalError::io(&seg.path, "write", e))?;
        seg.len += bytes.len() as u64;
        self.counts.bytes_written += bytes.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.counts.fsyncs += 1;
        self.active.sync_data().map_err(|e| JournalError::io(self.active_path(), "fsync", e))
    }

    /// Ends the active segment and starts one at `first_seq`. The old one is
    /// synced first (unless the policy is `Never`), so that a crash never
    /// keeps a later segment and loses an earlier one's tail.
    pub fn rotate(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if self.options.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        let (file, seg) = create(&self.dir, &self.graph, &self.accumulators, first_seq, self.options.fsync)?;
        self.header_len = seg.len;
        self.active = file;
        self.segments.push_back(seg);
        self.counts.segments_created += 1;
        self.retain();
        Ok(())
    }

    /// Deletes the oldest segments beyond `keep_segments` / `keep_bytes`,
    /// never the active one. The active segment is counted at its full
    /// `segment_bytes`, which it may grow to before the next rotation, so that
    /// the journal stays within `keep_bytes` between rotations too. A segment that cannot be deleted stops it (so
    /// that no gap opens in the middle): it is counted and retried at the
    /// next rotation.
    fn retain(&mut self) {
        let (keep_segments, keep_bytes) = (self.options.keep_segments, self.options.keep_bytes);
        let active = self.segments.back().map_or(0, |s| s.len.max(self.options.segment_bytes));
        let mut total: u64 = self.segments.iter().rev().skip(1).map(|s| s.len).sum::<u64>() + active;
        while self.segments.len() > 1 {
            let over = keep_segments.is_some_and(|k| self.segments.len() > k) || keep_bytes.is_some_and(|k| total > k);
            if !over {
                break;
            }
            let oldest = self.segments.pop_front().expect("len > 1");
            match fs::remove_file(&oldest.path) {
                Ok(()) => {
                    total -= oldest.len;
                    self.counts.segments_deleted += 1;
                }
                Err(_) => {
                    self.counts.retention_failures += 1;
                    self.segments.push_front(oldest);
                    break;
                }
            }
        }
    }
}

/// Creates segment `first_seq` with its header; synced with its directory
/// entry unless the policy is `Never`.
pub(crate) fn create(
    dir: &Path,
    graph: &str,
    accumulators: &[String],
    first_seq: u64,
    fsync: FsyncPolicy,
) -> Result<(File, SegmentFile), JournalError> {
    let path = dir.join(segment_file_name(first_seq));
    let header = SegmentHeader { first_seq, graph: graph.to_string(), accumulators: accumulators.to_vec() };
    let start = encode_segment_start(&header);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "create", e))?;
    file.write_all(&start).map_err(|e| JournalError::io(&path, "write", e))?;
    if fsync != FsyncPolicy::Never {
        file.sync_data().map_err(|e| JournalError::io(&path, "fsync", e))?;
        sync_dir(dir)?;
    }
    let len = start.len() as u64;
    Ok((file, SegmentFile { first_seq, path, len }))
}

/// Opens an existing segment to append at `end`, cutting off what follows
/// (a torn tail).
pub(crate) fn reopen(path: &Path, end: u64, cut: bool) -> Result<File, JournalError> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(|e| JournalError::io(path, "open", e))?;
    if cut {
        file.set_len(end).map_err(|e| JournalError::io(path, "truncate", e))?;
        file.sync_all().map_err(|e| JournalError::io(path, "fsync", e))?;
    }
    file.seek(SeekFrom::Start(end)).map_err(|e| JournalError::io(path, "seek", e))?;
    Ok(file)
}

/// Makes a created or removed file name durable (a no-op where directories
/// cannot be opened).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| JournalError::io(dir, "open directory", e))?;
        d.sync_all().map_err(|e| JournalError::io(dir, "fsync directory", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
