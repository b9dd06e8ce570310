//! The contract as written: the `*Spec` types (plain serde, so `rampart lock` can write
//! a contract back), their defaults, and the validated drift pause policy.

use std::collections::BTreeMap;

use serde::Serialize;

/// A contract as written: the plugin configuration of the filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContractSpec {
    /// Contract name: names the ramp in metrics and logs and salts the buckets.
    pub contract: String,
    /// Which request header carries the routing decision, and its two values.
    pub route: RouteSpec,
    /// The canary share and how users are kept on one side.
    pub ramp: RampSpec,
    /// The config the canary was tested with: input name → where a request carries it.
    pub inputs: BTreeMap<String, InputSpec>,
    /// The locked digests; `rampart lock` fills it in from a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockSpec>,
    /// What to do with a request whose config drifted.
    pub on_drift: OnDrift,
    /// How a missing input counts.
    pub on_missing: OnMissing,
    /// Status of the local reply when `on_drift` is `reject`.
    pub reject_status: u16,
    /// Everyone to stable, without reading any input.
    pub paused: bool,
    /// Bounds on what a request may make the filter parse.
    pub limits: LimitsSpec,
    /// How decisions are explained beyond metrics and filter state.
    pub explain: ExplainSpec,
    /// Data-plane drift pause; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_pause: Option<DriftPauseSpec>,
}

/// The data-plane drift pause as written: pause the canary for everyone when the drift
/// ratio over a window exceeds `max_ratio` with at least `min_requests` requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DriftPauseSpec {
    /// Trip when (drifted + missing) / requests exceeds this; 0 <= x < 1.
    pub max_ratio: f64,
    /// Fewest requests in the window before it may trip.
    pub min_requests: u64,
    /// Length of the sliding window in seconds.
    pub window_seconds: u64,
}

impl Default for DriftPauseSpec {
    fn default() -> DriftPauseSpec {
        DriftPauseSpec {
            max_ratio: DriftPausePolicy::DEFAULT_MAX_RATIO,
            min_requests: DriftPausePolicy::DEFAULT_MIN_REQUESTS,
            window_seconds: u64::from(DriftPausePolicy::DEFAULT_WINDOW_SECONDS),
        }
    }
}

/// The contract's `drift_pause`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftPausePolicy {
    /// Trip when (drifted + missing) / requests exceeds this (0 <= x < 1).
    pub max_ratio: f64,
    /// ... and the window holds at least this many requests.
    pub min_requests: u64,
    /// Length of the sliding window.
    pub window_seconds: u32,
}

impl DriftPausePolicy {
    /// Default ratio: more than 5% drifted requests.
    pub const DEFAULT_MAX_RATIO: f64 = 0.05;
    /// Default minimum of requests before the ratio means anything.
    pub const DEFAULT_MIN_REQUESTS: u64 = 100;
    /// Default window.
    pub const DEFAULT_WINDOW_SECONDS: u32 = 30;
    /// Most requests `min_requests` may ask for.
    pub const MAX_MIN_REQUESTS: u64 = 1_000_000_000;
    /// Longest window.
    pub const MAX_WINDOW_SECONDS: u32 = 3600;
}

/// The route header and its values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    /// Request header the filter always overwrites with its decision.
    pub header: String,
    /// Value meaning "canary"; routes match it exactly.
    pub canary: String,
    /// Value meaning "stable"; routes default to stable anyway.
    pub stable: String,
}

impl RouteSpec {
    /// The route header of a contract that names none.
    pub const DEFAULT_HEADER: &'static str = "x-rampart-route";
    /// The canary value of a contract that names none.
    pub const DEFAULT_CANARY: &'static str = "canary";
    /// The stable value of a contract that names none.
    pub const DEFAULT_STABLE: &'static str = "stable";
}

impl Default for RouteSpec {
    fn default() -> RouteSpec {
        RouteSpec {
            header: RouteSpec::DEFAULT_HEADER.into(),
            canary: RouteSpec::DEFAULT_CANARY.into(),
            stable: RouteSpec::DEFAULT_STABLE.into(),
        }
    }
}

/// The ramp: how many keyed users reach the canary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RampSpec {
    /// Share of keyed users on the canary, 0..=100, resolved to basis points.
    pub percent: f64,
    /// Where the key that keeps a user on one side comes from.
    pub sticky: SourceSpec,
    /// Side for requests without a sticky key.
    pub unkeyed: Side,
}

/// Where a value is read from on a request: a header, or an Envoy property path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SourceSpec {
    /// A request header name (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// An Envoy attribute path such as `["metadata","filter_metadata","tenant","tier"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<Vec<String>>,
}

/// One input: a source and how its bytes become a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputSpec {
    /// A request header name (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// An Envoy attribute path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<Vec<String>>,
    /// How the bytes decode; `string` when absent.
    pub format: Format,
}

/// How an input's bytes become the value that is digested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// UTF-8 text, digested as a JSON string.
    #[default]
    String,
    /// JSON text, parsed strictly and digested canonically.
    Json,
    /// Envoy's 8-byte little-endian signed integer.
    Int,
    /// Envoy's 8-byte little-endian double (node metadata numbers arrive so).
    Double,
    /// Envoy's 1-byte boolean.
    Bool,
    /// A precomputed `sha256:<hex>` field digest, compared as it is.
    Digest,
}

impl Format {
    /// Every format, in the order they are declared.
    pub const ALL: [Format; 6] = [
        Format::String,
        Format::Json,
        Format::Int,
        Format::Double,
        Format::Bool,
        Format::Digest,
    ];

    /// The name used in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::String => "string",
            Format::Json => "json",
            Format::Int => "int",
            Format::Double => "double",
            Format::Bool => "bool",
            Format::Digest => "digest",
        }
    }
}

/// The locked digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LockSpec {
    /// Digest of the whole snapshot `{input: value}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Digest of each input's value; when present it covers every input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

/// A routing side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The new version under test.
    Canary,
    /// The known-good version.
    #[default]
    Stable,
}

impl Side {
    /// `canary` or `stable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Canary => "canary",
            Side::Stable => "stable",
        }
    }
}

/// What happens to a request whose config drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Route it to stable.
    #[default]
    Stable,
    /// Answer it with `reject_status` and a body naming the reason.
    Reject,
    /// Route it as if it matched; only count and log (a dry run).
    Observe,
}

impl OnDrift {
    /// The name used in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Stable => "stable",
            OnDrift::Reject => "reject",
            OnDrift::Observe => "observe",
        }
    }
}

/// How a missing input counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// A missing input is a mismatch.
    #[default]
    Drift,
    /// A missing input is the JSON value `null` (lock it that way).
    Null,
}

/// Parse bounds for request-supplied values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitsSpec {
    /// Longest input value (and sticky key) read, in bytes; longer is drift.
    pub max_input_bytes: usize,
    /// Deepest JSON nesting accepted; deeper is drift.
    pub max_json_depth: usize,
}

impl Default for LimitsSpec {
    fn default() -> LimitsSpec {
        LimitsSpec {
            max_input_bytes: 8192,
            max_json_depth: 16,
        }
    }
}

/// Explanations beyond metrics and filter state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainSpec {
    /// Response header that carries the decision (for debugging); off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header: Option<String>,
    /// At most one drift log line per this many seconds per worker (0 = every drift).
    pub log_interval_seconds: u32,
    /// Record every decision in filter state (`wasm.rampart.decision`) for access logs.
    /// A host call per request, so off unless asked for; a debug header implies it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub filter_state: bool,
}

impl Default for ExplainSpec {
    fn default() -> ExplainSpec {
        ExplainSpec {
            response_header: None,
            log_interval_seconds: 10,
            filter_state: false,
        }
    }
}

pub(super) fn default_reject_status() -> u16 {
    412
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the filter logs and the CLI prints are the contract's own spelling.
    #[test]
    fn names_are_the_contract_spelling() {
        for (side, name) in [(Side::Canary, "canary"), (Side::Stable, "stable")] {
            assert_eq!(side.as_str(), name);
            assert_eq!(serde_json::to_value(side).unwrap(), name);
        }
        for (action, name) in [
            (OnDrift::Stable, "stable"),
            (OnDrift::Reject, "reject"),
            (OnDrift::Observe, "observe"),
        ] {
            assert_eq!(action.as_str(), name);
            assert_eq!(serde_json::to_value(action).unwrap(), name);
        }
    }
}
