//! The ramp contract: what the operator writes (the `*Spec` types, plain serde), its
//! validation, and the compiled [`Plan`] the filter keeps for every request.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::jcs::Json;

use crate::bucket::{threshold_for_percent, BucketSalt};
use crate::digest::Digest;
use crate::drift_pause::DriftPausePolicy;

/// Most inputs a contract may declare; decisions track fields in a 32-bit set.
pub const MAX_INPUTS: usize = 32;

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

fn default_reject_status() -> u16 {
    412
}

/// A contract that cannot be used, with the field at fault and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    /// Dotted path of the field at fault (`ramp.percent`, `inputs.flags.header`).
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ContractError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ContractError {
        ContractError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "contract: {}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ContractError {}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "contract",
    "route",
    "ramp",
    "inputs",
    "lock",
    "on_drift",
    "on_missing",
    "reject_status",
    "paused",
    "limits",
    "explain",
    "drift_pause",
];

impl ContractSpec {
    /// Parses contract JSON, naming the field at fault in every error.
    ///
    /// The lock may be absent here (`rampart lock` fills it); [`ContractSpec::compile`]
    /// requires it.
    pub fn parse(bytes: &[u8]) -> Result<ContractSpec, ContractError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ContractError::new(
                "",
                "the configuration is empty; it needs at least `contract`, `ramp`, `inputs` and `lock` (see examples/contract.json)",
            ));
        }
        let json = Json::parse(bytes, 32)
            .map_err(|e| ContractError::new("", format!("not usable JSON: {e}")))?;
        ContractSpec::from_json(&json)
    }

    /// Reads a contract from parsed JSON (see [`ContractSpec::parse`]).
    pub fn from_json(json: &Json) -> Result<ContractSpec, ContractError> {
        let top = Fields::of(json, "")?;
        if top.members.is_empty() {
            return Err(ContractError::new(
                "",
                "the contract is `{}`; it needs at least `contract`, `ramp`, `inputs` and `lock` (see examples/contract.json)",
            ));
        }
        top.only(TOP_LEVEL_FIELDS)?;
        let defaults = RouteSpec::default();
        let route = match top.get("route") {
            None => defaults,
            Some(r) => {
                let r = Fields::of(r, "route")?;
                r.only(&["header", "canary", "stable"])?;
                RouteSpec {
                    header: r.string_or("header", defaults.header)?,
                    canary: r.string_or("canary", defaults.canary)?,
                    stable: r.string_or("stable", defaults.stable)?,
                }
            }
        };
        let ramp = Fields::of(top.required("ramp")?, "ramp")?;
        ramp.only(&["percent", "sticky", "unkeyed"])?;
        let sticky = Fields::of(ramp.required("sticky")?, "ramp.sticky")?;
        sticky.only(&["header", "property"])?;
        let ramp = RampSpec {
            percent: ramp.number("percent")?,
            sticky: SourceSpec {
                header: sticky.opt_string("header")?,
                property: sticky.opt_path("property")?,
            },
            unkeyed: ramp.choice(
                "unkeyed",
                &[("stable", Side::Stable), ("canary", Side::Canary)],
                Side::Stable,
            )?,
        };
        let inputs_at = Fields::of(top.required("inputs")?, "inputs")?;
        let mut inputs = BTreeMap::new();
        for (name, input) in inputs_at.members {
            let at = format!("inputs.{name}");
            let input = Fields::of(input, &at)?;
            input.only(&["header", "property", "format"])?;
            let format = input.choice(
                "format",
                &[
                    ("string", Format::String),
                    ("json", Format::Json),
                    ("int", Format::Int),
                    ("double", Format::Double),
                    ("bool", Format::Bool),
                    ("digest", Format::Digest),
                ],
                Format::String,
            )?;
            inputs.insert(
                name.clone(),
                InputSpec {
                    header: input.opt_string("header")?,
                    property: input.opt_path("property")?,
                    format,
                },
            );
        }
        let lock = match top.get("lock") {
            None => None,
            Some(l) => {
                let l = Fields::of(l, "lock")?;
                l.only(&["digest", "fields"])?;
                let fields = match l.get("fields") {
                    None => None,
                    Some(f) => {
                        let f = Fields::of(f, "lock.fields")?;
                        let mut out = BTreeMap::new();
                        for (name, _) in f.members {
                            out.insert(name.clone(), f.string_or(name, String::new())?);
                        }
                        Some(out)
                    }
                };
                Some(LockSpec {
                    digest: l.opt_string("digest")?,
                    fields,
                })
            }
        };
        let limits = match top.get("limits") {
            None => LimitsSpec::default(),
            Some(l) => {
                let l = Fields::of(l, "limits")?;
                l.only(&["max_input_bytes", "max_json_depth"])?;
                let d = LimitsSpec::default();
                LimitsSpec {
                    max_input_bytes: l.integer_or("max_input_bytes", d.max_input_bytes as u64)?
                        as usize,
                    max_json_depth: l.integer_or("max_json_depth", d.max_json_depth as u64)?
                        as usize,
                }
            }
        };
        let explain = match top.get("explain") {
            None => ExplainSpec::default(),
            Some(e) => {
                let e = Fields::of(e, "explain")?;
                e.only(&["response_header", "log_interval_seconds", "filter_state"])?;
                let seconds = e.integer_or(
                    "log_interval_seconds",
                    u64::from(ExplainSpec::default().log_interval_seconds),
                )?;
                ExplainSpec {
                    response_header: e.opt_string("response_header")?,
                    log_interval_seconds: u32::try_from(seconds).map_err(|_| {
                        ContractError::new("explain.log_interval_seconds", "is too large")
                    })?,
                    filter_state: e.boolean_or("filter_state", false)?,
                }
            }
        };
        let drift_pause = match top.get("drift_pause") {
            None => None,
            Some(d) => {
                let d = Fields::of(d, "drift_pause")?;
                d.only(&["max_ratio", "min_requests", "window_seconds"])?;
                let defaults = DriftPauseSpec::default();
                Some(DriftPauseSpec {
                    max_ratio: d.number_or("max_ratio", defaults.max_ratio)?,
                    min_requests: d.integer_or("min_requests", defaults.min_requests)?,
                    window_seconds: d.integer_or("window_seconds", defaults.window_seconds)?,
                })
            }
        };
        let reject_status = top.integer_or("reject_status", u64::from(default_reject_status()))?;
        Ok(ContractSpec {
            contract: top.string("contract")?,
            route,
            ramp,
            inputs,
            lock,
            on_drift: top.choice(
                "on_drift",
                &[
                    ("stable", OnDrift::Stable),
                    ("reject", OnDrift::Reject),
                    ("observe", OnDrift::Observe),
                ],
                OnDrift::Stable,
            )?,
            on_missing: top.choice(
                "on_missing",
                &[("drift", OnMissing::Drift), ("null", OnMissing::Null)],
                OnMissing::Drift,
            )?,
            reject_status: u16::try_from(reject_status).unwrap_or(0),
            paused: top.boolean_or("paused", false)?,
            limits,
            explain,
            drift_pause,
        })
    }

    /// Validates the contract and compiles it into the form used per request.
    pub fn compile(&self) -> Result<Plan, ContractError> {
        Plan::compile(self)
    }
}

/// An object being read, with its path for error messages.
struct Fields<'a> {
    at: String,
    members: &'a [(String, Json)],
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    fn of(json: &'a Json, at: &str) -> Result<Fields<'a>, ContractError> {
        match json {
            Json::Object(members) => Ok(Fields {
                at: at.to_owned(),
                members,
            }),
            other => Err(ContractError::new(
                at,
                format!("must be an object, got {}", kind(other)),
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), ContractError> {
        match self
            .members
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ContractError::new(
                self.path(k),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Json> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn required(&self, key: &str) -> Result<&'a Json, ContractError> {
        self.get(key)
            .ok_or_else(|| ContractError::new(self.path(key), "missing; it is required"))
    }

    fn wrong(&self, key: &str, want: &str, got: &Json) -> ContractError {
        ContractError::new(self.path(key), format!("must be {want}, got {}", kind(got)))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, ContractError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    fn string(&self, key: &str) -> Result<String, ContractError> {
        self.opt_string(key)?
            .ok_or_else(|| ContractError::new(self.path(key), "missing; it is required"))
    }

    fn string_or(&self, key: &str, default: String) -> Result<String, ContractError> {
        Ok(self.opt_string(key)?.unwrap_or(default))
    }

    fn opt_path(&self, key: &str) -> Result<Option<Vec<String>>, ContractError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Json::String(s) => Ok(s.clone()),
                    other => Err(self.wrong(key, "a list of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, "a list of strings", other)),
        }
    }

    fn number(&self, key: &str) -> Result<f64, ContractError> {
        match self.required(key)? {
            Json::Number(n) => Ok(*n),
            other => Err(self.wrong(key, "a number", other)),
        }
    }

    fn number_or(&self, key: &str, default: f64) -> Result<f64, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.number(key),
        }
    }

    fn integer_or(&self, key: &str, default: u64) -> Result<u64, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Number(n))
                if n.fract() == 0.0 && *n >= 0.0 && *n <= 9_007_199_254_740_992.0 =>
            {
                Ok(*n as u64)
            }
            Some(other) => Err(self.wrong(key, "a non-negative integer", other)),
        }
    }

    fn boolean_or(&self, key: &str, default: bool) -> Result<bool, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ContractError> {
        let names = || {
            options
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.get(key) {
            None => Ok(default),
            Some(Json::String(s)) => options
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    ContractError::new(
                        self.path(key),
                        format!("{} is not one of: {}", quoted(s), names()),
                    )
                }),
            Some(other) => Err(self.wrong(key, &format!("one of: {}", names()), other)),
        }
    }
}

/// Where the filter reads a value, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header.
    Header {
        /// Lowercase header name.
        name: String,
        /// The property path `request.headers.<name>` in wire form. Envoy answers it
        /// with every value of a repeated header joined by `,`, whereas a header-map
        /// lookup returns only the first: a client repeating a config header must not
        /// get one copy checked while the upstream reads another.
        wire: Vec<u8>,
    },
    /// An Envoy property: the path, and its wire form (segments joined by NUL), kept
    /// so the filter does not serialize the path per request.
    Property {
        /// Path segments.
        path: Vec<String>,
        /// Segments joined by `\0`, as `proxy_get_property` takes them.
        wire: Vec<u8>,
    },
}

impl Source {
    /// The property path in `proxy_get_property` wire form (segments joined by NUL).
    pub fn wire(&self) -> &[u8] {
        match self {
            Source::Header { wire, .. } | Source::Property { wire, .. } => wire,
        }
    }
}

/// One compiled input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Input name.
    pub name: String,
    /// Where it is read.
    pub source: Source,
    /// How its bytes decode.
    pub format: Format,
    /// Locked field digest, when the lock has fields.
    pub locked: Option<Digest>,
}

/// How observed inputs are compared with the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Field by field: drifted inputs are named.
    Fields,
    /// Whole snapshot against `lock.digest`: a mismatch cannot name the field.
    Snapshot(Digest),
}

/// A validated contract, ready for every request: parsed once, shared read-only.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Contract name.
    pub name: String,
    /// Route header name.
    pub route_header: String,
    /// Route header value for canary.
    pub canary_value: String,
    /// Route header value for stable.
    pub stable_value: String,
    /// Requested percent, kept for display.
    pub percent: f64,
    /// Canary iff bucket < threshold (basis points, 0..=10000).
    pub threshold: u16,
    /// Where the sticky key comes from.
    pub sticky: Source,
    /// Side for requests without a key.
    pub unkeyed: Side,
    /// Inputs in canonical (name) order.
    pub inputs: Vec<Input>,
    /// `lock.digest`, if given.
    pub lock_digest: Option<Digest>,
    /// Field or whole-snapshot comparison.
    pub compare: Compare,
    /// Drift action.
    pub on_drift: OnDrift,
    /// Missing-input rule.
    pub on_missing: OnMissing,
    /// Reject status.
    pub reject_status: u16,
    /// Everyone to stable.
    pub paused: bool,
    /// Parse bounds.
    pub limits: LimitsSpec,
    /// Debug response header, if any (Envoy adds it from filter state).
    pub response_header: Option<String>,
    /// Whether each decision is written to filter state: `explain.filter_state`, or a
    /// debug header that reads it.
    pub record_decision: bool,
    /// Drift log interval in seconds.
    pub log_interval_seconds: u32,
    /// The bucket hash, pre-seeded with the contract name.
    pub salt: BucketSalt,
    /// What identifies the lock: `lock.digest`, or when only `lock.fields` is given, the
    /// digest of the canonical `lock.fields` object. A drift pause holds until it changes.
    pub lock_id: Digest,
    /// The data-plane drift pause, when the contract asks for one.
    pub drift_pause: Option<DriftPausePolicy>,
}

impl Plan {
    fn compile(spec: &ContractSpec) -> Result<Plan, ContractError> {
        check_name("contract", &spec.contract, 63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
        })?;
        let route = &spec.route;
        let route_header = header_name("route.header", &route.header)?;
        check_header_value("route.canary", &route.canary)?;
        check_header_value("route.stable", &route.stable)?;
        if route.canary == route.stable {
            return Err(ContractError::new(
                "route.stable",
                "must differ from route.canary",
            ));
        }

        let percent = spec.ramp.percent;
        if !(0.0..=100.0).contains(&percent) {
            return Err(ContractError::new(
                "ramp.percent",
                format!("must be between 0 and 100, got {}", number_text(percent)),
            ));
        }
        let sticky = compile_source(
            "ramp.sticky",
            spec.ramp.sticky.header.as_deref(),
            spec.ramp.sticky.property.as_deref(),
        )?;

        if spec.inputs.is_empty() {
            return Err(ContractError::new(
                "inputs",
                "declare at least one input: the config the canary was tested with",
            ));
        }
        if spec.inputs.len() > MAX_INPUTS {
            return Err(ContractError::new(
                "inputs",
                format!("at most {MAX_INPUTS} inputs, got {}", spec.inputs.len()),
            ));
        }

        let lock = spec.lock.as_ref().ok_or_else(|| {
            ContractError::new(
                "lock",
                "missing; run `rampart lock --contract C --snapshot S` to fill it",
            )
        })?;
        let lock_digest = match &lock.digest {
            Some(text) => Some(parse_digest("lock.digest", text)?),
            None => None,
        };
        let locked_fields = match &lock.fields {
            Some(fields) => {
                for name in fields.keys() {
                    if !spec.inputs.contains_key(name) {
                        return Err(ContractError::new(
                            format!("lock.fields.{name}"),
                            "names no input; every lock field must be a key of `inputs`",
                        ));
                    }
                }
                Some(fields)
            }
            None => None,
        };
        let compare = match (locked_fields, lock_digest) {
            (Some(_), _) => Compare::Fields,
            (None, Some(digest)) => Compare::Snapshot(digest),
            (None, None) => return Err(ContractError::new(
                "lock",
                "give `digest` or `fields` (or both); `rampart lock` fills them from a snapshot",
            )),
        };

        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, input) in &spec.inputs {
            let at = format!("inputs.{name}");
            check_name(&at, name, 32, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
            })?;
            let source = compile_source(&at, input.header.as_deref(), input.property.as_deref())?;
            if matches!(source, Source::Header { .. })
                && !matches!(input.format, Format::String | Format::Json | Format::Digest)
            {
                return Err(ContractError::new(
                    format!("{at}.format"),
                    format!(
                        "`{}` is a property encoding; a header is `string`, `json` or `digest`",
                        input.format.as_str()
                    ),
                ));
            }
            if let Source::Header { name: h, .. } = &source {
                if *h == route_header {
                    return Err(ContractError::new(
                        format!("{at}.header"),
                        "is the route header, which the filter overwrites; read config from another header",
                    ));
                }
            }
            let locked = match locked_fields {
                Some(fields) => {
                    let text = fields.get(name).ok_or_else(|| {
                        ContractError::new(
                            format!("lock.fields.{name}"),
                            "missing; `lock.fields` must cover every input (or drop `fields` and lock the whole snapshot with `lock.digest`)",
                        )
                    })?;
                    Some(parse_digest(&format!("lock.fields.{name}"), text)?)
                }
                None => None,
            };
            if input.format == Format::Digest && locked.is_none() {
                return Err(ContractError::new(
                    format!("lock.fields.{name}"),
                    "required: input has format `digest`, which is compared field by field",
                ));
            }
            inputs.push(Input {
                name: name.clone(),
                source,
                format: input.format,
                locked,
            });
        }
        if let Source::Header { name: h, .. } = &sticky {
            if *h == route_header {
                return Err(ContractError::new(
                    "ramp.sticky.header",
                    "is the route header; name the header that identifies a user",
                ));
            }
        }

        if !(400..=599).contains(&spec.reject_status) {
            return Err(ContractError::new(
                "reject_status",
                format!("must be a 4xx or 5xx status, got {}", spec.reject_status),
            ));
        }
        let limits = spec.limits;
        if !(1..=65_536).contains(&limits.max_input_bytes) {
            return Err(ContractError::new(
                "limits.max_input_bytes",
                "must be between 1 and 65536",
            ));
        }
        if !(1..=128).contains(&limits.max_json_depth) {
            return Err(ContractError::new(
                "limits.max_json_depth",
                "must be between 1 and 128",
            ));
        }
        let drift_pause = match &spec.drift_pause {
            None => None,
            Some(d) => Some(compile_drift_pause(d)?),
        };
        let lock_id = match (lock_digest, locked_fields) {
            (Some(digest), _) => digest,
            (None, fields) => Digest::of_canonical(|h| {
                let mut members = Vec::new();
                for (name, text) in fields.into_iter().flatten() {
                    members.push((name.clone(), Json::String(text.clone())));
                }
                Json::Object(members).write_canonical(h);
            }),
        };
        let response_header = match &spec.explain.response_header {
            Some(h) => Some(header_name("explain.response_header", h)?),
            None => None,
        };

        Ok(Plan {
            name: spec.contract.clone(),
            route_header,
            canary_value: route.canary.clone(),
            stable_value: route.stable.clone(),
            percent,
            threshold: threshold_for_percent(percent),
            sticky,
            unkeyed: spec.ramp.unkeyed,
            inputs,
            lock_digest,
            compare,
            on_drift: spec.on_drift,
            on_missing: spec.on_missing,
            reject_status: spec.reject_status,
            paused: spec.paused,
            limits,
            record_decision: spec.explain.filter_state || response_header.is_some(),
            response_header,
            log_interval_seconds: spec.explain.log_interval_seconds,
            salt: BucketSalt::new(&spec.contract),
            lock_id,
            drift_pause,
        })
    }

    /// Parses, validates and compiles contract JSON in one step.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, ContractError> {
        ContractSpec::parse(bytes)?.compile()
    }
}

fn compile_drift_pause(spec: &DriftPauseSpec) -> Result<DriftPausePolicy, ContractError> {
    if !(0.0..1.0).contains(&spec.max_ratio) {
        return Err(ContractError::new(
            "drift_pause.max_ratio",
            format!(
                "must be at least 0 and below 1 (0.05 = 5% of requests), got {}",
                number_text(spec.max_ratio)
            ),
        ));
    }
    if !(1..=DriftPausePolicy::MAX_MIN_REQUESTS).contains(&spec.min_requests) {
        return Err(ContractError::new(
            "drift_pause.min_requests",
            format!(
                "must be between 1 and {}",
                DriftPausePolicy::MAX_MIN_REQUESTS
            ),
        ));
    }
    let max_window = DriftPausePolicy::MAX_WINDOW_SECONDS;
    let window_seconds = u32::try_from(spec.window_seconds)
        .ok()
        .filter(|w| (1..=max_window).contains(w))
        .ok_or_else(|| {
            ContractError::new(
                "drift_pause.window_seconds",
                format!("must be between 1 and {max_window}"),
            )
        })?;
    Ok(DriftPausePolicy {
        max_ratio: spec.max_ratio,
        min_requests: spec.min_requests,
        window_seconds,
    })
}

/// A number as JSON writes it (ES6 form), for messages: no float formatter needed.
pub fn number_text(value: f64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::jcs::write_number(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `text` as a JSON string, for error messages (the JSON escaping is in the module
/// anyway; `{:?}` would pull in Rust's Debug escaping and its Unicode tables).
fn quoted(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    crate::jcs::write_string(text, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn parse_digest(field: &str, text: &str) -> Result<Digest, ContractError> {
    text.parse::<Digest>()
        .map_err(|e| ContractError::new(field, format!("{e}, got {}", quoted(text))))
}

fn compile_source(
    at: &str,
    header: Option<&str>,
    property: Option<&[String]>,
) -> Result<Source, ContractError> {
    match (header, property) {
        (Some(h), None) => {
            let name = header_name(&format!("{at}.header"), h)?;
            let wire = ["request", "headers", &name].join("\0").into_bytes();
            Ok(Source::Header { name, wire })
        }
        (None, Some(path)) => {
            if path.is_empty() || path.iter().any(|s| s.is_empty() || s.contains('\0')) {
                return Err(ContractError::new(
                    format!("{at}.property"),
                    "must be a non-empty list of non-empty segments, e.g. [\"xds\",\"node\",\"metadata\",\"CONFIG_REV\"]",
                ));
            }
            let wire = path.join("\0").into_bytes();
            Ok(Source::Property {
                path: path.to_vec(),
                wire,
            })
        }
        (None, None) => Err(ContractError::new(
            at,
            "has no source: give `header` or `property`",
        )),
        (Some(_), Some(_)) => Err(ContractError::new(
            at,
            "give `header` or `property`, not both",
        )),
    }
}

fn check_name(
    field: &str,
    name: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ContractError> {
    if name.is_empty() || name.len() > max || !name.chars().all(allowed) {
        return Err(ContractError::new(
            field,
            format!(
                "{} is not a valid name: 1..={max} of a-z, 0-9, '_'{}",
                quoted(name),
                if field == "contract" { ", '-'" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// A header name in the lowercase form Envoy stores (HTTP names are case-insensitive).
fn header_name(field: &str, name: &str) -> Result<String, ContractError> {
    let token = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '.'
                    | '^'
                    | '_'
                    | '`'
                    | '|'
                    | '~'
            )
    };
    if name.is_empty() || !name.chars().all(token) {
        return Err(ContractError::new(
            field,
            format!(
                "{} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
                quoted(name)
            ),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn check_header_name(field: &str, name: &str) -> Result<(), ContractError> {
    header_name(field, name).map(drop)
}

fn check_header_value(field: &str, value: &str) -> Result<(), ContractError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ContractError::new(
            field,
            format!("{} must be non-empty visible ASCII", quoted(value)),
        ));
    }
    Ok(())
}

/// Route header and stable value for safe mode, taken from a contract that failed
/// validation when those two fields are themselves usable, else the defaults.
pub fn safe_mode_route(bytes: &[u8]) -> (String, String) {
    let defaults = RouteSpec::default();
    let json = Json::parse(bytes, 32).ok();
    let route = match &json {
        Some(Json::Object(top)) => top.iter().find(|(k, _)| k == "route").map(|(_, v)| v),
        _ => None,
    };
    let pick = |key: &str,
                ok: &dyn Fn(&str, &str) -> Result<(), ContractError>,
                fallback: String| match route {
        Some(Json::Object(r)) => match r.iter().find(|(k, _)| k == key) {
            Some((_, Json::String(s))) if ok(key, s).is_ok() => s.clone(),
            _ => fallback,
        },
        _ => fallback,
    };
    (
        pick("header", &check_header_name, defaults.header),
        pick("stable", &check_header_value, defaults.stable),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value as J};

    fn example() -> J {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/contract.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Applies `edit` to the example contract and returns the error, which must name `field`.
    fn rejects(edit: impl FnOnce(&mut J), field: &str, needle: &str) {
        let mut c = example();
        edit(&mut c);
        let err = Plan::from_json(c.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }

    #[test]
    fn example_contract_is_valid() {
        let plan = Plan::from_json(example().to_string().as_bytes()).unwrap();
        assert_eq!(plan.name, "checkout-v2");
        assert_eq!(plan.threshold, 3000);
        assert_eq!(
            plan.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["flags", "rev", "tier"]
        );
        assert_eq!(plan.compare, Compare::Fields);
        assert_eq!(
            plan.inputs[1].source,
            Source::Property {
                path: vec![
                    "xds".into(),
                    "node".into(),
                    "metadata".into(),
                    "CONFIG_REV".into()
                ],
                wire: b"xds\0node\0metadata\0CONFIG_REV".to_vec()
            }
        );
    }

    #[test]
    fn empty_configurations_are_rejected_clearly() {
        for text in ["", "  \n", "{}"] {
            let err = Plan::from_json(text.as_bytes()).unwrap_err();
            assert!(
                err.message.contains("needs at least `contract`"),
                "{text:?}: {err}"
            );
        }
        assert!(Plan::from_json(b"[]")
            .unwrap_err()
            .message
            .contains("must be an object"));
        assert!(Plan::from_json(b"{")
            .unwrap_err()
            .message
            .contains("not usable JSON"));
    }

    #[test]
    fn unknown_fields_are_named_at_every_level() {
        rejects(|c| c["colour"] = json!(1), "colour", "unknown field");
        rejects(
            |c| c["ramp"]["procent"] = json!(5),
            "ramp.procent",
            "expected one of: percent",
        );
        rejects(
            |c| c["inputs"]["flags"]["heder"] = json!("x"),
            "inputs.flags.heder",
            "unknown field",
        );
        rejects(
            |c| c["lock"]["field"] = json!({}),
            "lock.field",
            "unknown field",
        );
    }

    #[test]
    fn required_fields_and_types_are_named() {
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("ramp")),
            "ramp",
            "required",
        );
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("inputs")),
            "inputs",
            "required",
        );
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("lock")),
            "lock",
            "rampart lock",
        );
        rejects(
            |c| drop(c["ramp"].as_object_mut().unwrap().remove("sticky")),
            "ramp.sticky",
            "required",
        );
        rejects(
            |c| c["ramp"]["percent"] = json!("5"),
            "ramp.percent",
            "must be a number",
        );
        rejects(|c| c["paused"] = json!("yes"), "paused", "true or false");
        rejects(
            |c| c["explain"]["filter_state"] = json!(1),
            "explain.filter_state",
            "true or false",
        );
        rejects(
            |c| c["on_drift"] = json!("drop"),
            "on_drift",
            "stable, reject, observe",
        );
        rejects(
            |c| c["inputs"]["flags"]["format"] = json!("yaml"),
            "inputs.flags.format",
            "\"yaml\" is not one of",
        );
    }

    #[test]
    fn percent_must_be_within_0_and_100() {
        rejects(
            |c| c["ramp"]["percent"] = json!(100.5),
            "ramp.percent",
            "between 0 and 100",
        );
        rejects(
            |c| c["ramp"]["percent"] = json!(-1),
            "ramp.percent",
            "between 0 and 100",
        );
        for ok in [0.0, 0.01, 100.0] {
            let mut c = example();
            c["ramp"]["percent"] = json!(ok);
            assert!(Plan::from_json(c.to_string().as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn digests_must_be_well_formed() {
        rejects(
            |c| c["lock"]["digest"] = json!("sha256:abc"),
            "lock.digest",
            "64 lowercase hex",
        );
        rejects(
            |c| c["lock"]["fields"]["tier"] = json!("md5:00"),
            "lock.fields.tier",
            "64 lowercase hex",
        );
    }

    #[test]
    fn inputs_need_exactly_one_source() {
        rejects(
            |c| c["inputs"]["tier"] = json!({"format": "string"}),
            "inputs.tier",
            "has no source",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x-tier", "property": ["a"]}),
            "inputs.tier",
            "not both",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"property": []}),
            "inputs.tier.property",
            "non-empty",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x tier"}),
            "inputs.tier.header",
            "not an HTTP header name",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x-tier", "format": "int"}),
            "inputs.tier.format",
            "property encoding",
        );
        rejects(
            |c| c["inputs"]["flags"]["header"] = json!("x-rampart-route"),
            "inputs.flags.header",
            "route header",
        );
        rejects(|c| c["inputs"] = json!({}), "inputs", "at least one input");
        rejects(
            |c| c["ramp"]["sticky"] = json!({"header": "x-rampart-route"}),
            "ramp.sticky.header",
            "is the route header",
        );
    }

    #[test]
    fn lock_fields_must_match_the_inputs() {
        rejects(
            |c| c["lock"]["fields"]["region"] = c["lock"]["fields"]["tier"].clone(),
            "lock.fields.region",
            "names no input",
        );
        rejects(
            |c| drop(c["lock"]["fields"].as_object_mut().unwrap().remove("rev")),
            "lock.fields.rev",
            "cover every input",
        );
        rejects(
            |c| c["lock"] = json!({}),
            "lock",
            "give `digest` or `fields`",
        );
    }

    #[test]
    fn route_and_limits_are_checked() {
        rejects(
            |c| c["route"]["stable"] = json!("canary"),
            "route.stable",
            "must differ",
        );
        rejects(
            |c| c["route"]["canary"] = json!("can ary"),
            "route.canary",
            "visible ASCII",
        );
        rejects(
            |c| c["contract"] = json!("Checkout.V2"),
            "contract",
            "not a valid name",
        );
        rejects(
            |c| c["reject_status"] = json!(200),
            "reject_status",
            "4xx or 5xx",
        );
        rejects(
            |c| c["limits"] = json!({"max_json_depth": 0}),
            "limits.max_json_depth",
            "between 1 and 128",
        );
        rejects(
            |c| c["explain"] = json!({"response_header": "X Bad"}),
            "explain.response_header",
            "not an HTTP header name",
        );
    }

    #[test]
    fn drift_pause_is_off_by_default_and_validated() {
        let plan = Plan::from_json(example().to_string().as_bytes()).unwrap();
        assert_eq!(plan.drift_pause, None);
        assert_eq!(plan.lock_id, plan.lock_digest.unwrap());

        let mut c = example();
        c["drift_pause"] = json!({});
        let plan = Plan::from_json(c.to_string().as_bytes()).unwrap();
        assert_eq!(
            plan.drift_pause,
            Some(DriftPausePolicy {
                max_ratio: 0.05,
                min_requests: 100,
                window_seconds: 30
            })
        );
        c["drift_pause"] = json!({"max_ratio": 0.2, "min_requests": 5, "window_seconds": 1});
        let spec = ContractSpec::parse(c.to_string().as_bytes()).unwrap();
        // `rampart lock` writes the contract back: the field survives.
        let written = serde_json::to_value(&spec).unwrap();
        assert_eq!(written["drift_pause"]["max_ratio"], json!(0.2));
        assert_eq!(written["drift_pause"]["window_seconds"], json!(1));

        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": 1}),
            "drift_pause.max_ratio",
            "below 1",
        );
        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": -0.1}),
            "drift_pause.max_ratio",
            "at least 0",
        );
        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": "5%"}),
            "drift_pause.max_ratio",
            "must be a number",
        );
        rejects(
            |c| c["drift_pause"] = json!({"min_requests": 0}),
            "drift_pause.min_requests",
            "between 1 and",
        );
        rejects(
            |c| c["drift_pause"] = json!({"window_seconds": 3601}),
            "drift_pause.window_seconds",
            "between 1 and 3600",
        );
        rejects(
            |c| c["drift_pause"] = json!({"window": 30}),
            "drift_pause.window",
            "expected one of: max_ratio, min_requests, window_seconds",
        );
        rejects(
            |c| c["drift_pause"] = json!(true),
            "drift_pause",
            "must be an object",
        );
    }

    #[test]
    fn lock_identity_without_a_whole_digest_follows_the_fields() {
        let fields_only = |tier: &str| {
            let mut c = example();
            c["lock"].as_object_mut().unwrap().remove("digest");
            c["lock"]["fields"]["tier"] = json!(tier);
            Plan::from_json(c.to_string().as_bytes()).unwrap().lock_id
        };
        let a = fields_only(&crate::digest::Digest::of_bytes(b"\"gold\"").to_string());
        let b = fields_only(&crate::digest::Digest::of_bytes(b"\"silver\"").to_string());
        assert_ne!(a, b);
        assert_eq!(
            a,
            fields_only(&crate::digest::Digest::of_bytes(b"\"gold\"").to_string())
        );
    }

    #[test]
    fn decisions_are_recorded_for_a_debug_header_or_when_asked() {
        let plan = |edit: &dyn Fn(&mut J)| {
            let mut c = example();
            edit(&mut c);
            Plan::from_json(c.to_string().as_bytes()).unwrap()
        };
        assert!(
            plan(&|_| {}).record_decision,
            "the example names a debug header"
        );
        let quiet = |c: &mut J| {
            drop(
                c["explain"]
                    .as_object_mut()
                    .unwrap()
                    .remove("response_header"),
            )
        };
        assert!(
            !plan(&quiet).record_decision,
            "off by default: a host call per request"
        );
        let asked = |c: &mut J| {
            quiet(c);
            c["explain"]["filter_state"] = json!(true);
        };
        assert!(plan(&asked).record_decision);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut c = example();
        c["inputs"]["flags"]["header"] = json!("X-User-Config");
        c["ramp"]["sticky"]["header"] = json!("X-User-Id");
        c["route"]["header"] = json!("X-Rampart-Route");
        let plan = Plan::from_json(c.to_string().as_bytes()).unwrap();
        assert_eq!(plan.route_header, "x-rampart-route");
        assert!(matches!(&plan.sticky, Source::Header { name, .. } if name == "x-user-id"));
        assert_eq!(
            plan.inputs[0].source.wire(),
            b"request\0headers\0x-user-config"
        );
        c["inputs"]["flags"]["header"] = json!("X-RAMPART-ROUTE");
        let err = Plan::from_json(c.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "inputs.flags.header");
    }

    #[test]
    fn duplicate_keys_in_a_contract_are_rejected() {
        let text =
            example()
                .to_string()
                .replacen("\"contract\":", "\"contract\":\"x\",\"contract\":", 1);
        let err = Plan::from_json(text.as_bytes()).unwrap_err();
        assert!(err.message.contains("duplicate object key"), "{err}");
    }

    #[test]
    fn safe_mode_route_uses_usable_route_fields_only() {
        assert_eq!(
            safe_mode_route(b"garbage"),
            ("x-rampart-route".into(), "stable".into())
        );
        assert_eq!(
            safe_mode_route(br#"{"route":{"header":"x-lane","stable":"blue"},"ramp":7}"#),
            ("x-lane".into(), "blue".into())
        );
        assert_eq!(
            safe_mode_route(br#"{"route":{"header":"Bad Header","stable":""}}"#),
            ("x-rampart-route".into(), "stable".into())
        );
    }
}
