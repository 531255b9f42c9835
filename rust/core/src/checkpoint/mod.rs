//! Checkpoints: the value model, the envelope and the payload codecs.

pub mod codec;
pub mod envelope;
pub mod snapshot;
pub mod stdlib;
pub mod value;

pub use codec::{decode, encode};
pub use envelope::{CodecError, CodecId};
pub use stdlib::{Date, Duration, Stdlib, StdlibError, Time, Tz};
pub use value::Value;

#[cfg(test)]
mod tests;
