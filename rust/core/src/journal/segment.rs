//! Segment files: their names, listing them, and scanning one frame by frame,
//! telling a torn tail from corruption.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{
    decode_header, decode_record, JournalRecord, SegmentHeader, FORMAT_VERSION, FRAME_PREFIX, MAGIC, MAX_HEADER_BYTES,
    MAX_RECORD_BYTES, MIN_RECORD_BYTES, PREFACE,
};
use super::JournalError;

const EXTENSION: &str = ".hrj";
const DIGITS: usize = 20;

/// The file name of the segment whose first record is `first_seq`: built from
/// the number alone, never from user input.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:0DIGITS$}{EXTENSION}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(EXTENSION)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// The segments of `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|e| JournalError::io(dir, "list", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, "list", e))?;
        let Some(first_seq) = entry.file_name().to_str().and_then(parse_name) else { continue };
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| JournalError::io(&path, "stat", e))?;
        if meta.is_file() {
            out.push(SegmentFile { first_seq, path, len: meta.len() });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// Checks that `path` is a directory (or absent, when `create`), with the
/// errors a user can act on.
pub(crate) fn check_dir(path: &Path, create: bool) -> Result<(), JournalError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(JournalError::NotADirectory { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            fs::create_dir_all(path).map_err(|e| JournalError::io(path, "create directory", e))
        }
        Err(e) => Err(JournalError::io(path, "open directory", e)),
    }
}

/// What the next frame of a segment turned out to be.
#[derive(Debug)]
pub(crate) enum Next {
    Record(JournalRecord),
    /// The segment ended cleanly.
    End,
    /// A torn write starting at `offset` (only at the end of the last segment).
    Torn { offset: u64 },
}

/// Reads one segment front to back.
pub(crate) struct Scanner {
    path: PathBuf,
    file: BufReader<File>,
    len: u64,
    pos: u64,
    is_last: bool,
    /// The seq the next record must have.
    expected: u64,
    pub header: SegmentHeader,
    /// The offset just after the header frame.
    header_end: u64,
    body: Vec<u8>,
}

pub(crate) enum Opened {
    Ready(Box<Scanner>),
    /// The preface or header itself is torn (the last segment only).
    Torn { offset: u64 },
}

enum Frame {
    /// The body is in `Scanner::body`.
    Body,
    Eof,
    Damaged(String),
}

impl Scanner {
    pub fn open(segment: &SegmentFile, is_last: bool) -> Result<Opened, JournalError> {
        let path = segment.path.clone();
        let file = File::open(&path).map_err(|e| JournalError::io(&path, "open", e))?;
        let len = file.metadata().map_err(|e| JournalError::io(&path, "stat", e))?.len();
        let mut s = Scanner {
            path,
            file: BufReader::with_capacity(64 << 10, file),
            len,
            pos: 0,
            is_last,
            expected: segment.first_seq,
            header: SegmentHeader { first_seq: segment.first_seq, graph: String::new(), accumulators: Vec::new() },
            header_end: 0,
            body: Vec::new(),
        };
        let mut preface = [0u8; PREFACE];
        let have = s.read_up_to(&mut preface)?;
        let magic_seen = have.min(MAGIC.len());
        if preface[..magic_seen] != MAGIC[..magic_seen] {
            return Err(s.corrupt(0, "not a headrace journal segment (bad magic)".into()));
        }
        if have < PREFACE {
            return match is_last {
                true => Ok(Opened::Torn { offset: 0 }),
                false => Err(s.corrupt(0, format!("file of {len} bytes ends inside the preface"))),
            };
        }
        let version = u32::from_le_bytes(preface[MAGIC.len()..].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(JournalError::UnsupportedVersion { segment: s.path, version });
        }
        s.pos = PREFACE as u64;
        let damage = match s.read_frame(8 + 4 + 4, MAX_HEADER_BYTES)? {
            Frame::Body => match decode_header(&s.body) {
                Ok(h) if h.first_seq == segment.first_seq => {
                    s.header = h;
                    s.header_end = s.pos;
                    None
                }
                Ok(h) => {
                    let reason = format!("header says first seq {} but the file is named for {}", h.first_seq, segment.first_seq);
                    return Err(s.corrupt(PREFACE as u64, reason));
                }
                Err(reason) => return Err(s.corrupt(PREFACE as u64, format!("header: {reason}"))),
            },
            Frame::Eof => Some("the file ends before its header".to_string()),
            Frame::Damaged(reason) => Some(format!("header: {reason}")),
        };
        match damage {
            None => Ok(Opened::Ready(Box::new(s))),
            Some(reason) => match s.damaged(PREFACE as u64, reason)? {
                Next::Torn { offset } => Ok(Opened::Torn { offset }),
                _ => unreachable!("damage is torn or an error"),
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seq the next record will have: one past the last one read.
    pub fn expected_seq(&self) -> u64 {
        self.expected
    }

    pub fn header_end(&self) -> u64 {
        self.header_end
    }

    /// The offset just after the last frame read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn next_record(&mut self) -> Result<Next, JournalError> {
        let at = self.pos;
        match self.read_frame(MIN_RECORD_BYTES, MAX_RECORD_BYTES)? {
            Frame::Eof => Ok(Next::End),
            Frame::Damaged(reason) => self.damaged(at, reason),
            Frame::Body => {
                let record = decode_record(&self.body).map_err(|reason| self.corrupt(at, reason))?;
                if record.seq != self.expected {
                    let reason = format!("record has seq {} where seq {} was due", record.seq, self.expected);
                    return Err(self.corrupt(at, reason));
                }
                self.expected += 1;
                Ok(Next::Record(record))
            }
        }
    }

    fn corrupt(&self, offset: u64, reason: String) -> JournalError {
        JournalError::Corrupt { segment: self.path.clone(), offset, reason }
    }

    /// Damage at `offset`: a torn tail if this is the last segment and no
    /// valid frame follows, corruption otherwise.
    fn damaged(&mut self, offset: u64, reason: String) -> Result<Next, JournalError> {
        if !self.is_last {
            return Err(self.corrupt(offset, reason));
        }
        if self.valid_frame_after(offset + 1)? {
            return Err(self.corrupt(offset, format!("{reason}, and valid records follow")));
        }
        self.pos = self.len;
        Ok(Next::Torn { offset })
    }

    /// Reads a frame at `self.pos` into `self.body`, allocating only after the
    /// length has been checked against `max` and the file's size.
    fn read_frame(&mut self, min: usize, max: usize) -> Result<Frame, JournalError> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(Frame::Eof);
        }
        if left < FRAME_PREFIX as u64 {
            return Ok(Frame::Damaged(format!("{left} byte(s) where a frame's 8-byte prefix was due")));
        }
        let mut prefix = [0u8; FRAME_PREFIX];
        self.read_exact(&mut prefix)?;
        let len = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(prefix[4..].try_into().expect("4 bytes"));
        if len < min || len > max {
            return Ok(Frame::Damaged(format!("frame length {len} outside {min}..={max}")));
        }
        if len as u64 > left - FRAME_PREFIX as u64 {
            let have = left - FRAME_PREFIX as u64;
            return Ok(Frame::Damaged(format!("frame of {len} bytes but only {have} left in the file")));
        }
        self.body.resize(len, 0);
        let mut body = std::mem::take(&mut self.body);
        let read = self.read_exact(&mut body);
        self.body = body;
        read?;
        if crc32c::crc32c(&self.body) != crc {
            return Ok(Frame::Damaged("CRC mismatch".to_string()));
        }
        self.pos += (FRAME_PREFIX + len) as u64;
        Ok(Frame::Body)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), JournalError> {
        self.file.read_exact(buf).map_err(|e| JournalError::io(&self.path, "read", e))
    }

    /// Reads as much of `buf` as the file has.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, JournalError> {
        let mut have = 0;
        while have < buf.len() {
            match self.file.read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(JournalError::io(&self.path, "read", e)),
            }
        }
        Ok(have)
    }

    /// Whether a whole, CRC-valid record frame with a later seq starts
    /// anywhere from `from` on. Reads in windows; a candidate must have a
    /// length in range that fits the file and a seq after the last good one
    /// before its CRC is computed, so garbage costs little.
    fn valid_frame_after(&self, from: u64) -> Result<bool, JournalError> {
        const WINDOW: usize = 64 << 10;
        const PEEK: usize = FRAME_PREFIX + 8; // len, crc, seq
        let io_err = |e| JournalError::io(&self.path, "read", e);
        let mut file = File::open(&self.path).map_err(|e| JournalError::io(&self.path, "open", e))?;
        let last_good = self.expected.saturating_sub(1);
        let max_records = (self.len / (FRAME_PREFIX + MIN_RECORD_BYTES) as u64) + 1;
        let mut window = vec![0u8; WINDOW + PEEK];
        let mut body = Vec::new();
        let mut start = from;
        while start + PEEK as u64 <= self.len {
            let n = (self.len - start).min(window.len() as u64) as usize;
            file.seek(SeekFrom::Start(start)).map_err(io_err)?;
            file.read_exact(&mut window[..n]).map_err(io_err)?;
            for i in 0..=(n - PEEK).min(WINDOW - 1) {
                let w = &window[i..i + PEEK];
                let len = u32::from_le_bytes(w[..4].try_into().expect("4 bytes")) as usize;
                let at = start + i as u64;
                if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len) || at + (FRAME_PREFIX + len) as u64 > self.len {
                    continue;
                }
                let seq = u64::from_le_bytes(w[FRAME_PREFIX..].try_into().expect("8 bytes"));
                if seq <= last_good || seq - last_good > max_records {
                    continue;
                }
                body.resize(len, 0);
                file.seek(SeekFrom::Start(at + FRAME_PREFIX as u64)).map_err(io_err)?;
                file.read_exact(&mut body).map_err(io_err)?;
                if crc32c::crc32c(&body) == u32::from_le_bytes(w[4..8].try_into().expect("4 bytes")) {
                    return Ok(true);
                }
            }
            start += WINDOW as u64;
        }
        Ok(false)
    }
}
