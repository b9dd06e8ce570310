//! The names of the filter's metrics: one definition for the filter that defines them,
//! the CLI whose gates read them and the docs that list them.
//!
//! A contract's metrics are `rampart.<contract>.<name>` and, per input,
//! `rampart.<contract>.field.<input>.<name>`; Envoy shows them with its `wasmcustom.`
//! prefix in `/stats`. A configuration that fails validation counts under
//! [`INVALID_CONFIG`] and [`SAFE_MODE`], which carry no contract name.

/// The first segment of every metric name.
pub const ROOT: &str = "rampart";

/// The prefix Envoy puts before a wasm module's metric names in `/stats`.
pub const ENVOY_PREFIX: &str = "wasmcustom.";

/// Counter: configuration loads that failed validation (safe mode engaged).
pub const INVALID_CONFIG: &str = "rampart.invalid_config";

/// Counter: requests routed in safe mode.
pub const SAFE_MODE: &str = "rampart.safe_mode";

/// A per-contract counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every request the filter decided.
    Requests,
    /// Requests sent to the canary.
    Canary,
    /// Requests sent to stable.
    Stable,
    /// Requests answered with the reject status.
    Rejected,
    /// Requests whose config matched the lock.
    Match,
    /// Requests whose config differed from the lock.
    Drift,
    /// Requests lacking an input (under `on_missing: drift`).
    Missing,
    /// Requests without the sticky key.
    Unkeyed,
    /// Requests while the contract or the drift pause held the canary closed.
    Paused,
    /// Drifted requests routed normally under `on_drift: observe`.
    Observed,
    /// Requests with an input that could not be decoded.
    InvalidInput,
}

impl Counter {
    /// Every counter, in the order the filter defines them.
    pub const ALL: [Counter; 11] = [
        Counter::Requests,
        Counter::Canary,
        Counter::Stable,
        Counter::Rejected,
        Counter::Match,
        Counter::Drift,
        Counter::Missing,
        Counter::Unkeyed,
        Counter::Paused,
        Counter::Observed,
        Counter::InvalidInput,
    ];

    /// The last segment of the counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::Canary => "canary",
            Counter::Stable => "stable",
            Counter::Rejected => "rejected",
            Counter::Match => "match",
            Counter::Drift => "drift",
            Counter::Missing => "missing",
            Counter::Unkeyed => "unkeyed",
            Counter::Paused => "paused",
            Counter::Observed => "observed",
            Counter::InvalidInput => "invalid_input",
        }
    }
}

/// A per-input counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldCounter {
    /// The input's value differed from its locked digest.
    Drift,
    /// The input was absent.
    Missing,
    /// The input's value could not be decoded.
    Invalid,
}

impl FieldCounter {
    /// Every field counter, in the order the filter defines them.
    pub const ALL: [FieldCounter; 3] = [
        FieldCounter::Drift,
        FieldCounter::Missing,
        FieldCounter::Invalid,
    ];

    /// The last segment of the counter's name.
    pub fn name(self) -> &'static str {
        match self {
            FieldCounter::Drift => "drift",
            FieldCounter::Missing => "missing",
            FieldCounter::Invalid => "invalid",
        }
    }
}

/// A per-contract gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// The canary threshold in basis points (percent × 100).
    ThresholdBp,
    /// 1 while the contract says `paused: true`.
    PausedFlag,
    /// 1 while the data-plane drift pause holds.
    DriftPaused,
}

impl Gauge {
    /// The last segment of the gauge's name.
    pub fn name(self) -> &'static str {
        match self {
            Gauge::ThresholdBp => "threshold_bp",
            Gauge::PausedFlag => "paused_flag",
            Gauge::DriftPaused => "drift_paused",
        }
    }
}

/// The stats tag (and Prometheus label) that carries the contract name, so Prometheus
/// sees one metric per counter with the contract as a label, not one per contract.
pub const CONTRACT_TAG: &str = "rampart_contract";

/// The regex of the [`CONTRACT_TAG`] stats tag in an Envoy bootstrap: it captures the
/// contract segment of `wasmcustom.rampart.<contract>.<name>` and removes it from the name.
pub fn contract_tag_regex() -> String {
    format!("^{}(([a-z0-9_-]+)\\.)", envoy_root_pattern())
}

/// A regex matching the start of every Rampart metric in Envoy's `/stats`
/// (`^wasmcustom\.rampart\.`), for its `filter` parameter.
pub fn envoy_stats_filter() -> String {
    format!("^{}", envoy_root_pattern())
}

/// `wasmcustom.rampart.` with its dots escaped for a regex.
fn envoy_root_pattern() -> String {
    let mut out = String::new();
    for c in ENVOY_PREFIX.chars().chain(ROOT.chars()).chain(['.']) {
        if c == '.' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A per-contract metric's name as Prometheus scrapes it from Envoy: `rampart_<name>`.
/// Envoy drops its `wasmcustom.` namespace, the [`CONTRACT_TAG`] tag takes the contract
/// segment out of the name, and the remaining dots become underscores.
pub fn prometheus_name(name: &str) -> String {
    let mut out = String::with_capacity(ROOT.len() + name.len() + 1);
    out.push_str(ROOT);
    out.push('_');
    out.extend(name.chars().map(|c| if c == '.' { '_' } else { c }));
    out
}

/// `rampart.<contract>.`: the start of every name of one contract.
pub fn contract_prefix(contract: &str) -> String {
    let mut out = String::with_capacity(ROOT.len() + contract.len() + 2);
    out.push_str(ROOT);
    out.push('.');
    out.push_str(contract);
    out.push('.');
    out
}

/// `rampart.<contract>.<name>`.
pub fn contract_metric(contract: &str, name: &str) -> String {
    let mut out = contract_prefix(contract);
    out.push_str(name);
    out
}

/// `rampart.<contract>.field.<input>.<name>`.
pub fn field_metric(contract: &str, input: &str, counter: FieldCounter) -> String {
    let mut out = contract_prefix(contract);
    out.push_str("field.");
    out.push_str(input);
    out.push('.');
    out.push_str(counter.name());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_scheme() {
        assert_eq!(
            contract_metric("checkout-v2", Counter::Requests.name()),
            "rampart.checkout-v2.requests"
        );
        assert_eq!(
            contract_metric("c", Gauge::DriftPaused.name()),
            "rampart.c.drift_paused"
        );
        assert_eq!(
            field_metric("c", "flags", FieldCounter::Invalid),
            "rampart.c.field.flags.invalid"
        );
        assert!(INVALID_CONFIG.starts_with(ROOT) && SAFE_MODE.starts_with(ROOT));
    }

    #[test]
    fn envoy_and_prometheus_forms_are_the_documented_ones() {
        assert_eq!(envoy_stats_filter(), r"^wasmcustom\.rampart\.");
        assert_eq!(
            contract_tag_regex(),
            r"^wasmcustom\.rampart\.(([a-z0-9_-]+)\.)"
        );
        assert_eq!(
            prometheus_name(Counter::Requests.name()),
            "rampart_requests"
        );
        assert_eq!(
            prometheus_name(Gauge::DriftPaused.name()),
            "rampart_drift_paused"
        );
        assert_eq!(
            prometheus_name("field.tier.drift"),
            "rampart_field_tier_drift"
        );
    }

    #[test]
    fn counter_names_are_distinct() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
