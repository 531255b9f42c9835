//! Encoding checkpoint components with a chosen payload codec, inside the envelope.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::envelope::{self, CodecError, CodecId};

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` with `codec` and seals it in an envelope.
pub fn encode<T: Serialize>(value: &T, codec: CodecId) -> Result<Vec<u8>, CodecError> {
    let payload = match codec {
        CodecId::Bincode => bincode::serde::encode_to_vec(value, bincode_config())
            .map_err(|e| CodecError::Encode(e.to_string()))?,
        CodecId::Msgpack => rmp_serde::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))?,
        CodecId::Json => serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))?,
    };
    envelope::seal(codec, &payload)
}

/// Opens an envelope and decodes its payload with the codec it names.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (codec, payload) = envelope::open(bytes)?;
    match codec {
        CodecId::Bincode => {
            let (value, used) = bincode::serde::decode_from_slice(payload, bincode_config())
                .map_err(|e| CodecError::Decode(e.to_string()))?;
            if used != payload.len() {
                return Err(CodecError::Decode(format!("{} unread payload byte(s)", payload.len() - used)));
            }
            Ok(value)
        }
        CodecId::Msgpack => rmp_serde::from_slice(payload).map_err(|e| CodecError::Decode(e.to_string())),
        CodecId::Json => serde_json::from_slice(payload).map_err(|e| CodecError::Decode(e.to_string())),
    }
}
