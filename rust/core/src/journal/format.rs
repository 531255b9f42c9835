//! Records, headers and frames: the byte layout described in the module doc.

use crate::event::SourcePosition;

/// The first 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"HRJOURNL";
/// The format version written after the magic.
pub const FORMAT_VERSION: u32 = 1;
/// The largest record body a reader allocates or a writer accepts (16 MiB).
/// A frame claiming more is damaged, never a reason to allocate.
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// The largest header body (graph and accumulator names): 1 MiB.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// The smallest record body: every fixed field, no payload, no position.
pub const MIN_RECORD_BYTES: usize = 8 + 8 + 1 + 4 + 4 + 1;
/// `acc` of the records that are not events.
pub const NO_ACCUMULATOR: u32 = u32::MAX;
/// `len` and `crc` before each body.
pub(crate) const FRAME_PREFIX: usize = 8;
/// Magic and version before the header frame.
pub(crate) const PREFACE: usize = MAGIC.len() + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// An accepted input; the payload is the event as received.
    Event = 1,
    /// A step of the clock (a timer's time) with no input; no payload.
    Advance = 2,
    /// The processor settled here (every input before it was processed).
    Settle = 3,
    /// A manual fire (`fire()`); no payload.
    Fire = 4,
    /// Pausing (payload `[1]`) or resuming (`[0]`).
    Pause = 5,
}

crate::named!(RecordKind, "journal record kind", {
    RecordKind::Event => "event",
    RecordKind::Advance => "advance",
    RecordKind::Settle => "settle",
    RecordKind::Fire => "fire",
    RecordKind::Pause => "pause",
});

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Event),
            2 => Some(RecordKind::Advance),
            3 => Some(RecordKind::Settle),
            4 => Some(RecordKind::Fire),
            5 => Some(RecordKind::Pause),
            _ => None,
        }
    }
}

/// One journal record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub seq: u64,
    /// Event (or clock) time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    pub kind: RecordKind,
    /// Index into the segment header's accumulators; [`NO_ACCUMULATOR`] unless an event.
    pub acc: u32,
    pub payload: Vec<u8>,
    pub position: Option<SourcePosition>,
}

/// What a segment says about itself, so that a reader can name accumulators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_seq: u64,
    pub graph: String,
    pub accumulators: Vec<String>,
}

/// The body length of a record, before encoding it.
pub(crate) fn record_len(payload: usize, position: Option<&SourcePosition>) -> usize {
    MIN_RECORD_BYTES + payload + position.map_or(0, |p| 4 + 8 + 4 + p.topic.len())
}

/// Appends one framed record to `buf`; the caller has checked its length.
pub(crate) fn encode_record(
    buf: &mut Vec<u8>,
    seq: u64,
    time_ns: i64,
    kind: RecordKind,
    acc: u32,
    payload: &[u8],
    position: Option<&SourcePosition>,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_PREFIX]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&time_ns.to_le_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(&acc.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(payload);
    match position {
        None => buf.push(0),
        Some(p) => {
            buf.push(1);
            buf.extend_from_slice(&p.partition.to_le_bytes());
            buf.extend_from_slice(&p.offset.to_le_bytes());
            put_str(buf, &p.topic);
        }
    }
    seal(buf, start);
}

/// Fills in the frame prefix at `start` for the body after it.
fn seal(buf: &mut [u8], start: usize) {
    let body = &buf[start + FRAME_PREFIX..];
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(body).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + 8].copy_from_slice(&crc);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The preface and framed header a segment starts with.
pub(crate) fn encode_segment_start(header: &SegmentHeader) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_PREFIX]);
    buf.extend_from_slice(&header.first_seq.to_le_bytes());
    put_str(&mut buf, &header.graph);
    buf.extend_from_slice(&(header.accumulators.len() as u32).to_le_bytes());
    for name in &header.accumulators {
        put_str(&mut buf, name);
    }
    seal(&mut buf, start);
    buf
}

/// The encoded header body length, to refuse an oversized one up front.
pub(crate) fn header_len(graph: &str, accumulators: &[String]) -> usize {
    8 + 4 + graph.len() + 4 + accumulators.iter().map(|a| 4 + a.len()).sum::<usize>()
}

/// Reads fields off a body; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("field of {n} bytes runs past the end of the body at {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.array().map(i32::from_le_bytes)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.array().map(i64::from_le_bytes)
    }
    fn str(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a name that is not UTF-8".to_string())
    }
    fn finish(self) -> Result<(), String> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} unexplained byte(s) after the last field")),
        }
    }
}

/// Decodes a record body whose CRC held; `Err` says what is wrong with it.
pub(crate) fn decode_record(body: &[u8]) -> Result<JournalRecord, String> {
    let mut c = Cursor { bytes: body, at: 0 };
    let seq = c.u64()?;
    let time_ns = c.i64()?;
    let kind_byte = c.u8()?;
    let kind = RecordKind::from_byte(kind_byte).ok_or_else(|| format!("unknown record kind {kind_byte}"))?;
    let acc = c.u32()?;
    let payload_len = c.u32()? as usize;
    let payload = c.take(payload_len)?.to_vec();
    let position = match c.u8()? {
        0 => None,
        1 => {
            let partition = c.i32()?;
            let offset = c.i64()?;
            let topic = c.str()?;
            Some(SourcePosition { topic, partition, offset })
        }
        b => return Err(format!("position flag {b} is neither 0 nor 1")),
    };
    c.finish()?;
    Ok(JournalRecord { seq, time_ns, kind, acc, payload, position })
}

pub(crate) fn decode_header(body: &[u8]) -> Result<SegmentHeader, String> {
    let mut c = Cursor { bytes: body, at: 0 };
    let first_seq = c.u64()?;
    let graph = c.str()?;
    let n = c.u32()? as usize;
    // Each name takes at least its 4-byte length: a count beyond that is a lie,
    // and must not size an allocation.
    if n > body.len() / 4 {
        return Err(format!("{n} accumulator names cannot fit in a header of {} bytes", body.len()));
    }
    let accumulators = (0..n).map(|_| c.str()).collect::<Result<Vec<_>, _>>()?;
    c.finish()?;
    Ok(SegmentHeader { first_seq, graph, accumulators })
}
