//! The decision: which side a request goes to, and why.
//!
//! Order (first that applies wins): paused → stable; any input drifted, undecodable or
//! missing → the drift action; no sticky key → the `unkeyed` side; else the bucket.
//! An invalid contract never reaches this code: the filter's safe mode routes stable.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use crate::contract::{Compare, Format, Input, OnDrift, OnMissing, Plan, Side, Source};
use crate::digest::{Digest, Hasher};
use crate::jcs::{self, Json, JsonError, Sink};

/// Read access to one request's values; the filter implements it over host calls.
pub trait Request {
    /// Owned or borrowed bytes.
    type Bytes: AsRef<[u8]>;
    /// The value at `source`: `Ok(None)` when absent, `Err` when the host failed.
    fn read(&mut self, source: &Source) -> Result<Option<Self::Bytes>, HostError>;
}

/// The host could not answer a read; treated like an undecodable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError;

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
        if let Value::Digest(d) = self {
            return *d;
        }
        let mut h = Hasher::new();
        self.write_canonical(&mut h);
        h.finish()
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

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Route header = canary value.
    Canary,
    /// Route header = stable value.
    Stable,
    /// Local reply with the contract's reject status.
    Reject,
}

impl Route {
    /// `canary`, `stable` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Canary => "canary",
            Route::Stable => "stable",
            Route::Reject => "reject",
        }
    }
}

impl From<Side> for Route {
    fn from(side: Side) -> Route {
        match side {
            Side::Canary => Route::Canary,
            Side::Stable => Route::Stable,
        }
    }
}

/// Why a request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Config matched the lock; the bucket decided.
    Match,
    /// Some input differed from the lock or could not be decoded.
    Drift,
    /// No input differed, but some were missing (`on_missing: drift`).
    Missing,
    /// The contract is paused.
    Paused,
    /// Config matched, but the request had no sticky key.
    Unkeyed,
    /// The contract was invalid: safe mode (set by the filter, never by [`decide`]).
    InvalidContract,
}

impl Reason {
    /// Label used in metrics, logs, filter state and the debug header.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Match => "match",
            Reason::Drift => "drift",
            Reason::Missing => "missing",
            Reason::Paused => "paused",
            Reason::Unkeyed => "unkeyed",
            Reason::InvalidContract => "invalid_contract",
        }
    }
}

/// What was wrong with one input (or with the whole snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// The value decoded, but its digest is not the locked one.
    Drift {
        /// Digest of what the request carried (a digest, never the raw value).
        observed: Digest,
    },
    /// Absent from the request.
    Missing,
    /// Present but undecodable.
    Invalid(DecodeError),
}

/// An issue and the input it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldIssue {
    /// Index into [`Plan::inputs`]; `None` for a whole-snapshot mismatch.
    pub input: Option<usize>,
    /// What was wrong.
    pub issue: Issue,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Where it goes.
    pub route: Route,
    /// Why.
    pub reason: Reason,
    /// The sticky bucket, when a key was present and the bucket was consulted.
    pub bucket: Option<u16>,
    /// Drift routed normally because `on_drift` is `observe`.
    pub observed: bool,
    /// Inputs that did not match; empty (and unallocated) on the matching path.
    pub issues: Vec<FieldIssue>,
}

impl Decision {
    /// The decision of safe mode: everything to stable.
    pub fn safe_mode() -> Decision {
        Decision {
            route: Route::Stable,
            reason: Reason::InvalidContract,
            bucket: None,
            observed: false,
            issues: Vec::new(),
        }
    }

    /// Names of inputs with an issue, in canonical order (`*` for the whole snapshot).
    pub fn field_names<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = &'a str> + 'a {
        self.issues
            .iter()
            .map(move |i| match i.input.and_then(|ix| plan.inputs.get(ix)) {
                Some(input) => input.name.as_str(),
                None => "*",
            })
    }

    /// One-line summary, for filter state and the debug header:
    /// `route=stable reason=drift fields=flags,tier bucket=421`.
    pub fn summary(&self, plan: &Plan) -> String {
        let mut out = String::with_capacity(64);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "route={} reason={}",
            self.route.as_str(),
            self.reason.as_str()
        );
        if !self.issues.is_empty() {
            out.push_str(" fields=");
            for (i, name) in self.field_names(plan).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
            }
        }
        if let Some(b) = self.bucket {
            let _ = write!(out, " bucket={b}");
        }
        if self.observed {
            out.push_str(" observed=true");
        }
        out
    }

    /// The fields that did not match, with digests and never raw values:
    /// `flags=drift(observed sha256:…, locked sha256:…) tier=missing`.
    pub fn drift_report(&self, plan: &Plan) -> String {
        let mut out = String::new();
        for (n, fi) in self.issues.iter().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            let input = fi.input.and_then(|ix| plan.inputs.get(ix));
            let name = input.map_or("snapshot", |i| i.name.as_str());
            let locked = match (input, plan.compare) {
                (Some(i), _) => i.locked,
                (None, Compare::Snapshot(d)) => Some(d),
                (None, Compare::Fields) => None,
            };
            let _ = match fi.issue {
                Issue::Drift { observed } => match locked {
                    Some(l) => write!(out, "{name}=drift(observed {observed}, locked {l})"),
                    None => write!(out, "{name}=drift(observed {observed})"),
                },
                Issue::Missing => write!(out, "{name}=missing"),
                Issue::Invalid(e) => write!(out, "{name}=invalid({})", e.as_str()),
            };
        }
        out
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides for one request.
pub fn decide<R: Request>(plan: &Plan, request: &mut R) -> Decision {
    if plan.paused {
        return Decision {
            route: Route::Stable,
            reason: Reason::Paused,
            bucket: None,
            observed: false,
            issues: Vec::new(),
        };
    }
    let issues = match plan.compare {
        Compare::Fields => compare_fields(plan, request),
        Compare::Snapshot(locked) => compare_snapshot(plan, locked, request),
    };
    let reason = if issues.iter().any(|i| !matches!(i.issue, Issue::Missing)) {
        Reason::Drift
    } else if !issues.is_empty() {
        Reason::Missing
    } else {
        Reason::Match
    };
    if reason != Reason::Match && plan.on_drift != OnDrift::Observe {
        let route = match plan.on_drift {
            OnDrift::Reject => Route::Reject,
            OnDrift::Stable | OnDrift::Observe => Route::Stable,
        };
        return Decision {
            route,
            reason,
            bucket: None,
            observed: false,
            issues,
        };
    }
    let observed = reason != Reason::Match;
    match sticky_bucket(plan, request) {
        Some(bucket) => {
            let side = if crate::bucket::is_canary(bucket, plan.threshold) {
                Route::Canary
            } else {
                Route::Stable
            };
            Decision {
                route: side,
                reason,
                bucket: Some(bucket),
                observed,
                issues,
            }
        }
        None => Decision {
            route: plan.unkeyed.into(),
            reason: if observed { reason } else { Reason::Unkeyed },
            bucket: None,
            observed,
            issues,
        },
    }
}

/// The request's sticky bucket, or `None` when it has no usable key.
fn sticky_bucket<R: Request>(plan: &Plan, request: &mut R) -> Option<u16> {
    let key = request.read(&plan.sticky).ok().flatten()?;
    let key = key.as_ref();
    if key.is_empty() || key.len() > plan.limits.max_input_bytes {
        return None;
    }
    Some(plan.salt.bucket(key))
}

/// Reads and decodes one input; `Ok(None)` means missing.
fn observe<'b>(
    plan: &Plan,
    input: &Input,
    bytes: &'b Result<Option<impl AsRef<[u8]>>, HostError>,
) -> Result<Option<Value<'b>>, DecodeError> {
    match bytes {
        Err(HostError) => Err(DecodeError::HostError),
        Ok(None) => match plan.on_missing {
            OnMissing::Drift => Ok(None),
            OnMissing::Null => Ok(Some(Value::Null)),
        },
        Ok(Some(b)) => decode(
            input.format,
            b.as_ref(),
            plan.limits.max_input_bytes,
            plan.limits.max_json_depth,
        )
        .map(Some),
    }
}

fn compare_fields<R: Request>(plan: &Plan, request: &mut R) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    for (ix, input) in plan.inputs.iter().enumerate() {
        let bytes = request.read(&input.source);
        let issue = match observe(plan, input, &bytes) {
            Ok(Some(value)) => {
                let observed = value.digest();
                if Some(observed) == input.locked {
                    continue;
                }
                Issue::Drift { observed }
            }
            Ok(None) => Issue::Missing,
            Err(e) => Issue::Invalid(e),
        };
        issues.push(FieldIssue {
            input: Some(ix),
            issue,
        });
    }
    issues
}

fn compare_snapshot<R: Request>(plan: &Plan, locked: Digest, request: &mut R) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    let mut h = Hasher::new();
    h.put(b"{");
    for (ix, input) in plan.inputs.iter().enumerate() {
        let bytes = request.read(&input.source);
        match observe(plan, input, &bytes) {
            Ok(Some(value)) => {
                if ix > 0 {
                    h.put(b",");
                }
                jcs::write_string(&input.name, &mut h);
                h.put(b":");
                value.write_canonical(&mut h);
            }
            Ok(None) => issues.push(FieldIssue {
                input: Some(ix),
                issue: Issue::Missing,
            }),
            Err(e) => issues.push(FieldIssue {
                input: Some(ix),
                issue: Issue::Invalid(e),
            }),
        }
    }
    h.put(b"}");
    if issues.is_empty() {
        let observed = h.finish();
        if observed != locked {
            issues.push(FieldIssue {
                input: None,
                issue: Issue::Drift { observed },
            });
        }
    }
    issues
}

/// A request held in memory: for the CLI, tests and embedders without Envoy.
#[derive(Debug, Clone, Default)]
pub struct StaticRequest {
    /// Header name (lowercase) → value bytes.
    pub headers: HashMap<String, Vec<u8>>,
    /// Property path → value bytes, encoded as Envoy would.
    pub properties: HashMap<Vec<String>, Vec<u8>>,
}

impl StaticRequest {
    /// Adds a header.
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
    type Bytes = Vec<u8>;

    fn read(&mut self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        Ok(match source {
            Source::Header(name) => self.headers.get(name).cloned(),
            Source::Property { path, .. } => self.properties.get(path).cloned(),
        })
    }
}
