//! The names of the filter's metrics: one definition for the filter that defines them,
//! the CLI whose gates read them and the docs that list them.
//!
//! A contract's metrics carry the contract, and per-input ones the input too, as tags
//! inside the name in Istio's convention (`<tag>=.=<value>;.;`):
//! `rampart_contract=.=<contract>;.;rampart.<name>` and
//! `rampart_contract=.=<contract>;.;rampart_input=.=<input>;.;rampart.field.<name>`.
//! Envoy shows them with its `wasmcustom.` prefix in `/stats`. The `stats_tags` rules of
//! [`stats_tags`] (the rules Istio generates for `extraStatTags`) take the tags out of
//! the name: Prometheus then sees `rampart_requests{rampart_contract="…"}` and
//! `rampart_field_drift{rampart_contract="…",rampart_input="…"}`, whatever the contract.
//! A configuration that fails validation counts under [`INVALID_CONFIG`] and
//! [`SAFE_MODE`], which carry no tag.

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

/// The stats tag (and Prometheus label) that carries the input name of a per-input counter.
pub const INPUT_TAG: &str = "rampart_input";

/// Both tags, in the order they appear in a name.
pub const TAGS: [&str; 2] = [CONTRACT_TAG, INPUT_TAG];

/// `<tag>=.=<value>;.;`: a tag inside a stat name, in Istio's convention, which Envoy's
/// tag extraction ([`tag_regex`]) takes out of the name and turns into a label.
pub fn tag(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 6);
    out.push_str(name);
    out.push_str("=.=");
    out.push_str(value);
    out.push_str(";.;");
    out
}

/// The regex of an Envoy `stats_tags` rule extracting `tag` from a name:
/// `(<tag>=\.=(.*?);\.;)`. Envoy removes the first capture group from the name and
/// takes the second as the tag's value. It is the rule Istio generates for every name
/// in `extraStatTags`, so one form serves Istio, Envoy Gateway and plain Envoy.
pub fn tag_regex(tag: &str) -> String {
    format!(r"({tag}=\.=(.*?);\.;)")
}

/// The `stats_tags` rules (tag name, regex) every bootstrap running the filter needs.
pub fn stats_tags() -> [(&'static str, String); 2] {
    TAGS.map(|t| (t, tag_regex(t)))
}

/// A regex matching every Rampart metric in Envoy's `/stats` (per-contract names start
/// with the contract tag, the others with `rampart.`), for its `filter` parameter.
pub fn envoy_stats_filter() -> String {
    format!(r"^wasmcustom\.(rampart\.|{CONTRACT_TAG}=)")
}

/// A metric's name as Prometheus scrapes it from Envoy: `rampart_<name>`. Envoy drops
/// its `wasmcustom.` namespace, the tag rules take the tags out of the name (they become
/// labels), and the remaining dots become underscores.
pub fn prometheus_name(name: &str) -> String {
    let mut out = String::with_capacity(ROOT.len() + name.len() + 1);
    out.push_str(ROOT);
    out.push('_');
    out.extend(name.chars().map(|c| if c == '.' { '_' } else { c }));
    out
}

/// `rampart_contract=.=<contract>;.;rampart.`: the start of every per-contract name
/// (not of the per-input ones, which carry the input tag before `rampart.`).
pub fn contract_prefix(contract: &str) -> String {
    let mut out = tag(CONTRACT_TAG, contract);
    out.push_str(ROOT);
    out.push('.');
    out
}

/// `rampart_contract=.=<contract>;.;rampart.<name>`; tag-extracted: `rampart.<name>`.
pub fn contract_metric(contract: &str, name: &str) -> String {
    let mut out = contract_prefix(contract);
    out.push_str(name);
    out
}

/// `rampart_contract=.=<contract>;.;rampart_input=.=<input>;.;rampart.field.<name>`;
/// tag-extracted: `rampart.field.<name>`.
pub fn field_metric(contract: &str, input: &str, counter: FieldCounter) -> String {
    let mut out = tag(CONTRACT_TAG, contract);
    out.push_str(&tag(INPUT_TAG, input));
    out.push_str(ROOT);
    out.push_str(".field.");
    out.push_str(counter.name());
    out
}

/// `field.<name>`: a per-input counter's name once the tags are extracted, after `rampart.`.
pub fn field_name(counter: FieldCounter) -> String {
    format!("field.{}", counter.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_scheme() {
        assert_eq!(
            contract_metric("checkout-v2", Counter::Requests.name()),
            "rampart_contract=.=checkout-v2;.;rampart.requests"
        );
        assert_eq!(
            contract_metric("c", Gauge::DriftPaused.name()),
            "rampart_contract=.=c;.;rampart.drift_paused"
        );
        assert_eq!(
            field_metric("c", "flags", FieldCounter::Invalid),
            "rampart_contract=.=c;.;rampart_input=.=flags;.;rampart.field.invalid"
        );
        assert!(INVALID_CONFIG.starts_with(ROOT) && SAFE_MODE.starts_with(ROOT));
    }

    #[test]
    fn envoy_and_prometheus_forms_are_the_documented_ones() {
        assert_eq!(
            envoy_stats_filter(),
            r"^wasmcustom\.(rampart\.|rampart_contract=)"
        );
        assert_eq!(tag_regex(CONTRACT_TAG), r"(rampart_contract=\.=(.*?);\.;)");
        assert_eq!(tag_regex(INPUT_TAG), r"(rampart_input=\.=(.*?);\.;)");
        assert_eq!(stats_tags()[1], (INPUT_TAG, tag_regex(INPUT_TAG)));
        assert_eq!(
            prometheus_name(Counter::Requests.name()),
            "rampart_requests"
        );
        assert_eq!(
            prometheus_name(Gauge::DriftPaused.name()),
            "rampart_drift_paused"
        );
        assert_eq!(
            prometheus_name(&field_name(FieldCounter::Drift)),
            "rampart_field_drift"
        );
    }

    #[test]
    fn removing_the_tags_leaves_one_name_per_metric() {
        let strip = |name: String| {
            name.replace(&tag(CONTRACT_TAG, "checkout-v2"), "")
                .replace(&tag(INPUT_TAG, "flags"), "")
        };
        assert_eq!(
            strip(contract_metric("checkout-v2", Counter::Requests.name())),
            "rampart.requests"
        );
        assert_eq!(
            strip(field_metric("checkout-v2", "flags", FieldCounter::Drift)),
            "rampart.field.drift"
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
