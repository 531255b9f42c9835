//! The checkpoint envelope: every stored blob is
//!
//! ```text
//! offset  size  field
//!      0     4  magic "HRCP"
//!      4     1  format version (1)
//!      5     1  codec id (1 bincode, 2 msgpack, 3 json)
//!      6     2  reserved, zero
//!      8     4  payload length, u32 little-endian
//!     12     4  CRC32C of bytes 0..12 and the payload, u32 little-endian
//!     16     n  payload
//! ```
//!
//! The checksum covers the header too, so any single flipped bit anywhere is
//! reported, never decoded into a wrong state.

use std::fmt;

pub const MAGIC: &[u8; 4] = b"HRCP";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
/// Largest payload one envelope holds.
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Payload encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecId {
    Bincode = 1,
    Msgpack = 2,
    Json = 3,
}

impl CodecId {
    pub fn from_u8(v: u8) -> Option<CodecId> {
        match v {
            1 => Some(CodecId::Bincode),
            2 => Some(CodecId::Msgpack),
            3 => Some(CodecId::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        crate::error::Named::as_str(self)
    }

    pub fn parse(name: &str) -> Option<CodecId> {
        name.parse().ok()
    }
}

crate::named!(CodecId, "checkpoint codec", {
    CodecId::Bincode => "bincode",
    CodecId::Msgpack => "msgpack",
    CodecId::Json => "json",
});

/// Why a checkpoint could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    BadMagic,
    UnsupportedVersion(u8),
    UnknownCodec(u8),
    /// Shorter than its header says.
    Truncated { expected: usize, actual: usize },
    /// Longer than its header says.
    TrailingBytes { expected: usize, actual: usize },
    ChecksumMismatch { stored: u32, computed: u32 },
    TooLarge(usize),
    Encode(String),
    Decode(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::BadMagic => write!(f, "not a headrace checkpoint (bad magic)"),
            CodecError::UnsupportedVersion(v) => {
                write!(f, "checkpoint format version {v} is not supported (this build reads {FORMAT_VERSION})")
            }
            CodecError::UnknownCodec(c) => write!(f, "unknown checkpoint codec id {c}"),
            CodecError::Truncated { expected, actual } => {
                write!(f, "checkpoint truncated: {actual} bytes, header says {expected}")
            }
            CodecError::TrailingBytes { expected, actual } => {
                write!(f, "checkpoint has trailing bytes: {actual} bytes, header says {expected}")
            }
            CodecError::ChecksumMismatch { stored, computed } => {
                write!(f, "checkpoint corrupted: CRC32C {computed:#010x} does not match stored {stored:#010x}")
            }
            CodecError::TooLarge(n) => write!(f, "checkpoint payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit"),
            CodecError::Encode(e) => write!(f, "cannot encode checkpoint: {e}"),
            CodecError::Decode(e) => write!(f, "cannot decode checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CodecError {}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
}

/// Wraps `payload` in an envelope.
pub fn seal(codec: CodecId, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(CodecError::TooLarge(payload.len()));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = checksum(&out[..12], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks an envelope and returns its codec and payload.
pub fn open(bytes: &[u8]) -> Result<(CodecId, &[u8]), CodecError> {
    if bytes.len() < HEADER_LEN {
        if !bytes.is_empty() && !MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            return Err(CodecError::BadMagic);
        }
        return Err(CodecError::Truncated { expected: HEADER_LEN, actual: bytes.len() });
    }
    if &bytes[..4] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let length = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let expected = HEADER_LEN + length;
    if bytes.len() < expected {
        return Err(CodecError::Truncated { expected, actual: bytes.len() });
    }
    if bytes.len() > expected {
        return Err(CodecError::TrailingBytes { expected, actual: bytes.len() });
    }
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    let computed = checksum(&bytes[..12], payload);
    if stored != computed {
        return Err(CodecError::ChecksumMismatch { stored, computed });
    }
    // Version and codec are checked after the checksum: a flipped bit there is
    // corruption, and is reported as such.
    if bytes[4] != FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion(bytes[4]));
    }
    let codec = CodecId::from_u8(bytes[5]).ok_or(CodecError::UnknownCodec(bytes[5]))?;
    Ok((codec, payload))
}
