//! Reading the filter's counters for the drift gate: from an Envoy admin endpoint or
//! from a Prometheus server that scrapes Envoy.

use rampart::metrics::{
    contract_prefix, envoy_stats_filter, field_name, prometheus_name, Counter, FieldCounter, Gauge,
    CONTRACT_TAG, ENVOY_PREFIX, INPUT_TAG, INVALID_CONFIG, ROOT, SAFE_MODE,
};
use serde::{Deserialize, Serialize};

use crate::http;

/// Where the drift gate reads the filter's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsSource {
    /// An Envoy admin endpoint, `http://host:port`; reads `/stats`.
    EnvoyAdmin(String),
    /// A Prometheus server, `http://host:port`; reads `/api/v1/query`.
    Prometheus(String),
}

impl MetricsSource {
    /// `envoy_admin URL` or `prometheus URL`, for messages.
    pub fn describe(&self) -> String {
        match self {
            MetricsSource::EnvoyAdmin(url) => format!("envoy_admin {url}"),
            MetricsSource::Prometheus(url) => format!("prometheus {url}"),
        }
    }
}

/// The contract's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests the filter decided.
    pub requests: u64,
    /// Requests whose config differed from the lock.
    pub drift: u64,
    /// Requests that lacked an input.
    pub missing: u64,
}

impl Counters {
    /// The counts since `baseline`. A counter below its baseline means Envoy restarted
    /// (counters start again at zero), so the whole current value is counted.
    pub fn since(self, baseline: Counters) -> Counters {
        if self.requests < baseline.requests
            || self.drift < baseline.drift
            || self.missing < baseline.missing
        {
            return self;
        }
        Counters {
            requests: self.requests - baseline.requests,
            drift: self.drift - baseline.drift,
            missing: self.missing - baseline.missing,
        }
    }

    /// (drift + missing) / requests; 0 without requests.
    pub fn drift_ratio(self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.drift.saturating_add(self.missing)) as f64 / self.requests as f64
    }
}

/// A reading: the counters and, where the filter exports it, the drift-pause gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The counters now.
    pub counters: Counters,
    /// Whether the filter's data-plane drift pause is on; `None` if not exported.
    pub drift_paused: Option<bool>,
}

/// Reads the counters of `contract` from `source`. A counter not exported yet (no
/// request decided since Envoy started) reads as 0.
pub fn read(source: &MetricsSource, contract: &str) -> Result<Reading, String> {
    match source {
        MetricsSource::EnvoyAdmin(url) => {
            let url = format!(
                "{}/stats?filter={}",
                url.trim_end_matches('/'),
                http::encode_query(&envoy_stats_filter())
            );
            let body = http::get(&url)?;
            Ok(parse_admin_stats(&String::from_utf8_lossy(&body), contract))
        }
        MetricsSource::Prometheus(url) => {
            let base = url.trim_end_matches('/');
            let query = |promql: String| -> Result<Option<f64>, String> {
                let url = format!("{base}/api/v1/query?query={}", http::encode_query(&promql));
                parse_prometheus_scalar(&http::get(&url)?).map_err(|e| format!("{url}: {e}"))
            };
            let count = |counter: Counter| -> Result<u64, String> {
                Ok(query(gate_counter_query(counter, contract))?
                    .map_or(0, |v| v.max(0.0).round() as u64))
            };
            Ok(Reading {
                counters: Counters {
                    requests: count(Counter::Requests)?,
                    drift: count(Counter::Drift)?,
                    missing: count(Counter::Missing)?,
                },
                drift_paused: query(gate_drift_paused_query(contract))?.map(|v| v > 0.0),
            })
        }
    }
}

/// `agg(rampart_<metric>{rampart_contract="<contract>"})`: one metric of one contract,
/// summed (or maxed) over every Envoy Prometheus scrapes.
fn promql(agg: &str, metric: &str, contract: &str) -> String {
    promql_of(agg, &selector(metric, contract))
}

fn promql_of(agg: &str, inner: &str) -> String {
    format!("{agg}({inner})")
}

/// `rampart_<metric>{rampart_contract="<contract>"}`.
fn selector(metric: &str, contract: &str) -> String {
    format!(
        "{}{{{CONTRACT_TAG}=\"{}\"}}",
        prometheus_name(metric),
        promql_escape(contract)
    )
}

/// The ramp gate's instant query for `counter` of `contract`: the sum over every Envoy.
/// The gate takes the difference from the step's baseline itself (a value below the
/// baseline is an Envoy restart).
pub fn gate_counter_query(counter: Counter, contract: &str) -> String {
    promql("sum", counter.name(), contract)
}

/// The ramp gate's instant query for the data-plane drift pause of `contract`: 1 if any
/// Envoy holds it; an empty result means the gauge is not exported.
pub fn gate_drift_paused_query(contract: &str) -> String {
    promql("max", Gauge::DriftPaused.name(), contract)
}

/// The drift ratio of `contract` over `window` (a PromQL duration) for an external
/// analysis (Argo Rollouts, Flagger): (increase of drift + missing) / increase of
/// requests, each summed over every Envoy (`increase` absorbs counter resets).
///
/// Never empty and never NaN: no request in the window (or no series at all) reads 0,
/// so a quiet window passes, as a window without drift; a missing drift or missing
/// counter counts 0.
pub fn drift_ratio_query(contract: &str, window: &str) -> String {
    let increase = |counter: Counter| {
        promql_of(
            "sum",
            &over("increase", &selector(counter.name(), contract), window),
        )
    };
    format!(
        "(({} or vector(0)) + ({} or vector(0))) / ({} > 0) or vector(0)",
        increase(Counter::Drift),
        increase(Counter::Missing),
        increase(Counter::Requests)
    )
}

/// The data-plane drift pause of `contract` for an external analysis: 1 while any
/// Envoy holds it, else 0 (also when the gauge is not exported, as the ramp gate reads
/// it). While the pause holds, requests count as `paused`, not drift: the ratio alone
/// would look healthy.
pub fn drift_pause_query(contract: &str) -> String {
    format!("{} or vector(0)", gate_drift_paused_query(contract))
}

/// The label Prometheus gives each scraped Envoy.
pub const ENVOY_LABEL: &str = "instance";

/// `func(selector[window])`.
fn over(func: &str, selector: &str, window: &str) -> String {
    format!("{func}({selector}[{window}])")
}

/// The per-second rate of `counter` of `contract` over `window`, summed over every
/// Envoy; 0 without a series (a route nobody took yet).
pub fn counter_rate_query(counter: Counter, contract: &str, window: &str) -> String {
    let rate = over("rate", &selector(counter.name(), contract), window);
    format!("{} or vector(0)", promql_of("sum", &rate))
}

/// The per-second rate of the per-input `counter` of `contract` over `window`, one
/// series per input (`rampart_input`), summed over every Envoy; empty while no input
/// counted any.
pub fn field_rate_query(counter: FieldCounter, contract: &str, window: &str) -> String {
    let rate = over("rate", &selector(&field_name(counter), contract), window);
    promql_of(&format!("sum by ({INPUT_TAG}) "), &rate)
}

/// The data-plane drift pause of `contract` per Envoy (the scrape's `instance`): 1
/// while that Envoy holds it.
pub fn drift_pause_by_envoy_query(contract: &str) -> String {
    promql(
        &format!("max by ({ENVOY_LABEL}) "),
        Gauge::DriftPaused.name(),
        contract,
    )
}

/// `rampart_safe_mode` / `rampart_invalid_config`: the counters without a contract.
fn untagged(name: &str) -> String {
    prometheus_name(
        name.strip_prefix(ROOT)
            .unwrap_or(name)
            .trim_start_matches('.'),
    )
}

/// Requests per second routed in safe mode (a configuration the filter rejected) over
/// `window`, summed over every Envoy and contract; 0 without a series.
pub fn safe_mode_rate_query(window: &str) -> String {
    let rate = over("rate", &untagged(SAFE_MODE), window);
    format!("{} or vector(0)", promql_of("sum", &rate))
}

/// Configurations rejected over `window` (once per Envoy VM that loaded one), summed
/// over every Envoy; 0 without a series.
pub fn invalid_config_query(window: &str) -> String {
    let increase = over("increase", &untagged(INVALID_CONFIG), window);
    format!("{} or vector(0)", promql_of("sum", &increase))
}

/// The Grafana variable query listing every contract the Envoys report
/// (`label_values(rampart_requests, rampart_contract)`).
pub fn contract_values_query() -> String {
    format!(
        "label_values({}, {CONTRACT_TAG})",
        prometheus_name(Counter::Requests.name())
    )
}

fn promql_escape(text: &str) -> String {
    text.replace('\\', r"\\").replace('"', "\\\"")
}

/// Parses Envoy's text `/stats` (`name: value` lines).
fn parse_admin_stats(text: &str, contract: &str) -> Reading {
    let prefix = format!("{ENVOY_PREFIX}{}", contract_prefix(contract));
    let mut reading = Reading {
        counters: Counters::default(),
        drift_paused: None,
    };
    for line in text.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let Some(metric) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let counters = &mut reading.counters;
        if metric == Counter::Requests.name() {
            counters.requests = value;
        } else if metric == Counter::Drift.name() {
            counters.drift = value;
        } else if metric == Counter::Missing.name() {
            counters.missing = value;
        } else if metric == Gauge::DriftPaused.name() {
            reading.drift_paused = Some(value > 0);
        }
    }
    reading
}

/// The value of an instant-query answer: `None` for an empty result (no series yet).
fn parse_prometheus_scalar(body: &[u8]) -> Result<Option<f64>, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            answer["error"].as_str().unwrap_or("no error text")
        ));
    }
    let Some(first) = answer["data"]["result"].as_array().and_then(|r| r.first()) else {
        return Ok(None);
    };
    let text = first["value"][1]
        .as_str()
        .ok_or("a result without a value")?;
    text.parse::<f64>()
        .map(Some)
        .map_err(|_| format!("value `{text}` is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_stats_pick_the_contracts_counters() {
        let text = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart.requests: 120\n\
                    wasmcustom.rampart_contract=.=checkout-v2;.;rampart.drift: 3\n\
                    wasmcustom.rampart_contract=.=checkout-v2;.;rampart.missing: 2\n\
                    wasmcustom.rampart_contract=.=checkout-v2;.;rampart.drift_paused: 1\n\
                    wasmcustom.rampart_contract=.=checkout-v2;.;rampart_input=.=flags;.;rampart.field.drift: 3\n\
                    wasmcustom.rampart_contract=.=checkout_v2;.;rampart.requests: 999\n\
                    wasmcustom.rampart_contract=.=checkout-v2-b;.;rampart.requests: 999\n\
                    wasmcustom.rampart.safe_mode: 7\n";
        let r = parse_admin_stats(text, "checkout-v2");
        assert_eq!(
            r.counters,
            Counters {
                requests: 120,
                drift: 3,
                missing: 2
            }
        );
        assert_eq!(r.drift_paused, Some(true));
        assert_eq!(parse_admin_stats("", "x").drift_paused, None);
    }

    #[test]
    fn deltas_survive_a_counter_reset() {
        let base = Counters {
            requests: 100,
            drift: 5,
            missing: 0,
        };
        let now = Counters {
            requests: 150,
            drift: 6,
            missing: 1,
        };
        assert_eq!(
            now.since(base),
            Counters {
                requests: 50,
                drift: 1,
                missing: 1
            }
        );
        let restarted = Counters {
            requests: 10,
            drift: 1,
            missing: 0,
        };
        assert_eq!(restarted.since(base), restarted);
        assert!((now.since(base).drift_ratio() - 0.04).abs() < 1e-12);
        assert_eq!(Counters::default().drift_ratio(), 0.0);
    }

    #[test]
    fn prometheus_queries_name_the_contract_by_label() {
        assert_eq!(
            promql("sum", Counter::Requests.name(), "checkout-v2"),
            r#"sum(rampart_requests{rampart_contract="checkout-v2"})"#
        );
        assert_eq!(
            promql("max", Gauge::DriftPaused.name(), r#"a"b"#),
            r#"max(rampart_drift_paused{rampart_contract="a\"b"})"#
        );
    }

    #[test]
    fn dashboard_queries_name_the_labels() {
        assert_eq!(
            field_rate_query(FieldCounter::Drift, "c", "1m"),
            r#"sum by (rampart_input) (rate(rampart_field_drift{rampart_contract="c"}[1m]))"#
        );
        assert_eq!(
            drift_pause_by_envoy_query("c"),
            r#"max by (instance) (rampart_drift_paused{rampart_contract="c"})"#
        );
        assert_eq!(
            safe_mode_rate_query("1m"),
            "sum(rate(rampart_safe_mode[1m])) or vector(0)"
        );
        assert_eq!(
            invalid_config_query("1m"),
            "sum(increase(rampart_invalid_config[1m])) or vector(0)"
        );
    }

    #[test]
    fn prometheus_answers() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"42"]}]}}"#;
        assert_eq!(parse_prometheus_scalar(ok).unwrap(), Some(42.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_prometheus_scalar(empty).unwrap(), None);
        let bad = br#"{"status":"error","error":"parse error"}"#;
        assert!(parse_prometheus_scalar(bad)
            .unwrap_err()
            .contains("parse error"));
    }
}
