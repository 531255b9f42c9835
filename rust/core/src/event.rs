//! What enters the engine: an event for an accumulator, and where a stream
//! source's message came from. Below the processor and the channel, so that
//! both can speak of events without depending on each other.

/// How raw payload bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Msgpack,
}

crate::named!(Codec, "codec", { Codec::Json => "json", Codec::Msgpack => "msgpack" });

/// An event as it enters an accumulator.
pub enum Input<V> {
    /// Already a value (an in-process push).
    Value(V),
    /// Raw payload bytes, decoded by the host on the processor's thread.
    Bytes { data: Vec<u8>, codec: Codec },
}

/// Where a stream source's message sits in its broker. Whether `offset` is the
/// message's own offset or the next one to read is said where it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl SourcePosition {
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        SourcePosition { topic: topic.into(), partition, offset }
    }
}
