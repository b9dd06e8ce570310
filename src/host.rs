//! What the core asks of its host: read access to a request's values ([`Request`]), the
//! host's failure ([`HostError`]), and a request held in memory ([`StaticRequest`]).

use std::collections::HashMap;

use crate::contract::Source;

/// Read access to one request's values; the filter implements it over host calls.
pub trait Request {
    /// Owned bytes, or bytes borrowed from the request until the next read.
    type Bytes<'a>: AsRef<[u8]>
    where
        Self: 'a;
    /// The value at `source`: `Ok(None)` when absent, `Err` when the host failed.
    fn read(&mut self, source: &Source) -> Result<Option<Self::Bytes<'_>>, HostError>;
}

/// The host could not answer a read; treated like an undecodable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

/// A request held in memory: for the CLI, tests and embedders without Envoy.
#[derive(Debug, Clone, Default)]
pub struct StaticRequest {
    /// Header name (lowercase) → value bytes.
    pub headers: HashMap<String, Vec<u8>>,
    /// Property path → value bytes, encoded as Envoy would.
    pub properties: HashMap<Vec<String>, Vec<u8>>,
}

impl StaticRequest {
    /// Adds a header (replacing a previous value: join repeated values with `,` as
    /// Envoy does).
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> StaticRequest {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// Adds a property.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> StaticRequest {
        self.properties
            .insert(path.iter().map(|s| s.to_string()).collect(), value.into());
        self
    }
}

impl Request for StaticRequest {
    type Bytes<'a> = &'a [u8];

    fn read(&mut self, source: &Source) -> Result<Option<&[u8]>, HostError> {
        Ok(match source {
            Source::Header { name, .. } => self.headers.get(name).map(Vec::as_slice),
            Source::Property { path, .. } => self.properties.get(path).map(Vec::as_slice),
        })
    }
}
