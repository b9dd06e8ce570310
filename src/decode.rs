//! Decoding an input: the bytes a request carries, turned by the input's format into a
//! [`Value`] that is written canonically and digested.

use crate::contract::Format;
use crate::digest::Digest;
use crate::jcs::{self, Json, JsonError, Sink};

/// Why an input's bytes could not be turned into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than `limits.max_input_bytes`.
    TooLarge,
    /// JSON nested deeper than `limits.max_json_depth`.
    TooDeep,
    /// Not valid JSON (or duplicate keys, or a number beyond a double).
    InvalidJson,
    /// Not UTF-8 text.
    InvalidUtf8,
    /// Wrong byte length for `int` / `double` / `bool`, or a non-finite double.
    BadEncoding,
    /// Not a `sha256:<hex>` digest.
    BadDigest,
    /// The host failed to return the value.
    HostError,
}

impl DecodeError {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::TooLarge => "too_large",
            DecodeError::TooDeep => "too_deep",
            DecodeError::InvalidJson => "invalid_json",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::BadEncoding => "bad_encoding",
            DecodeError::BadDigest => "bad_digest",
            DecodeError::HostError => "host_error",
        }
    }
}

/// An input's value after decoding, ready to be written canonically.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A JSON string (header or property text).
    Str(&'a str),
    /// Parsed JSON.
    Json(Json),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// `null` (a missing input under `on_missing: null`).
    Null,
    /// A precomputed field digest.
    Digest(Digest),
}

impl Value<'_> {
    /// Writes the canonical JSON form. A precomputed digest has none; it is compared
    /// directly and validation keeps it out of whole-snapshot comparisons.
    pub fn write_canonical<S: Sink>(&self, sink: &mut S) {
        match self {
            Value::Str(s) => jcs::write_string(s, sink),
            Value::Json(json) => json.write_canonical(sink),
            Value::Number(n) => jcs::write_number(*n, sink),
            Value::Bool(true) => sink.put(b"true"),
            Value::Bool(false) => sink.put(b"false"),
            Value::Null | Value::Digest(_) => sink.put(b"null"),
        }
    }

    /// The field digest: SHA-256 of the canonical form, or the precomputed digest.
    pub fn digest(&self) -> Digest {
        match self {
            Value::Digest(d) => *d,
            value => Digest::of_canonical(|h| value.write_canonical(h)),
        }
    }
}

/// Decodes an input's bytes per its format, within the limits.
pub fn decode<'a>(
    format: Format,
    bytes: &'a [u8],
    max_bytes: usize,
    max_depth: usize,
) -> Result<Value<'a>, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge);
    }
    match format {
        Format::String => std::str::from_utf8(bytes)
            .map(Value::Str)
            .map_err(|_| DecodeError::InvalidUtf8),
        Format::Json => Json::parse(bytes, max_depth)
            .map(Value::Json)
            .map_err(|e| match e {
                JsonError::TooDeep { .. } => DecodeError::TooDeep,
                JsonError::Invalid(_) => DecodeError::InvalidJson,
            }),
        Format::Int => <[u8; 8]>::try_from(bytes)
            .map(|b| Value::Number(i64::from_le_bytes(b) as f64))
            .map_err(|_| DecodeError::BadEncoding),
        Format::Double => match <[u8; 8]>::try_from(bytes).map(f64::from_le_bytes) {
            Ok(v) if v.is_finite() => Ok(Value::Number(v)),
            _ => Err(DecodeError::BadEncoding),
        },
        Format::Bool => match bytes {
            [0] => Ok(Value::Bool(false)),
            [1] => Ok(Value::Bool(true)),
            _ => Err(DecodeError::BadEncoding),
        },
        Format::Digest => Digest::parse_bytes(bytes)
            .map(Value::Digest)
            .map_err(|_| DecodeError::BadDigest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_encodings_decode_as_envoy_sends_them() {
        assert_eq!(
            decode(Format::Int, &42i64.to_le_bytes(), 64, 4),
            Ok(Value::Number(42.0))
        );
        assert_eq!(
            decode(Format::Double, &2.5f64.to_le_bytes(), 64, 4),
            Ok(Value::Number(2.5))
        );
        assert_eq!(
            decode(Format::Double, &f64::NAN.to_le_bytes(), 64, 4),
            Err(DecodeError::BadEncoding)
        );
        assert_eq!(decode(Format::Bool, &[1], 64, 4), Ok(Value::Bool(true)));
        assert_eq!(
            decode(Format::Bool, &[2], 64, 4),
            Err(DecodeError::BadEncoding)
        );
        assert_eq!(
            decode(Format::Int, &[1, 2, 3], 64, 4),
            Err(DecodeError::BadEncoding)
        );
        assert_eq!(Value::Number(42.0).digest(), Digest::of_bytes(b"42"));
        assert_eq!(Value::Str("gold").digest(), Digest::of_bytes(b"\"gold\""));
    }
}
