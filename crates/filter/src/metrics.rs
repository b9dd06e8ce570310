//! Counters and gauges, defined once per configuration and then only incremented.
//!
//! The names come from [`rampart::metrics`], which the CLI's gates read too; Envoy
//! shows them under its `wasmcustom.` prefix in `/stats`.

use rampart::decide::{Decision, Issue, Reason, Route};
use rampart::metrics::{
    contract_metric, field_metric, Counter, FieldCounter, Gauge, INVALID_CONFIG, SAFE_MODE,
};
use rampart::Plan;
use rampart_abi::MetricType;

use crate::host::Host;

/// Per-input counter ids, in [`FieldCounter::ALL`] order.
type FieldIds = [Option<u32>; 3];

/// Every metric of one contract.
pub struct Metrics {
    /// Counter ids, in [`Counter::ALL`] order.
    counters: [Option<u32>; 11],
    fields: Vec<FieldIds>,
    drift_paused: Option<u32>,
}

impl Metrics {
    /// Defines the contract's metrics and sets its gauges.
    pub fn define<H: Host>(host: &mut H, plan: &Plan) -> Metrics {
        let mut counters = [None; 11];
        for (slot, counter) in counters.iter_mut().zip(Counter::ALL) {
            *slot = host.define_metric(
                MetricType::Counter,
                &contract_metric(&plan.name, counter.name()),
            );
        }
        let fields = plan
            .inputs
            .iter()
            .map(|input| {
                let mut ids = [None; 3];
                for (slot, counter) in ids.iter_mut().zip(FieldCounter::ALL) {
                    *slot = host.define_metric(
                        MetricType::Counter,
                        &field_metric(&plan.name, &input.name, counter),
                    );
                }
                ids
            })
            .collect();
        let gauge = |host: &mut H, gauge: Gauge| {
            host.define_metric(
                MetricType::Gauge,
                &contract_metric(&plan.name, gauge.name()),
            )
        };
        let threshold = gauge(host, Gauge::ThresholdBp);
        let paused = gauge(host, Gauge::PausedFlag);
        let drift_paused = gauge(host, Gauge::DriftPaused);
        record(host, threshold, u64::from(plan.threshold));
        record(host, paused, u64::from(plan.paused));
        Metrics {
            counters,
            fields,
            drift_paused,
        }
    }

    /// Sets the `drift_paused` gauge.
    pub fn set_drift_paused<H: Host>(&self, host: &mut H, paused: bool) {
        record(host, self.drift_paused, u64::from(paused));
    }

    fn counter(&self, counter: Counter) -> Option<u32> {
        let at = Counter::ALL.iter().position(|&c| c == counter)?;
        self.counters.get(at).copied().flatten()
    }

    /// Counts one decision: `requests`, its side and its reason, and on drift the
    /// fields concerned.
    pub fn count<H: Host>(&self, host: &mut H, decision: &Decision) {
        bump(host, self.counter(Counter::Requests));
        bump(
            host,
            self.counter(match decision.route {
                Route::Canary => Counter::Canary,
                Route::Stable => Counter::Stable,
                Route::Reject => Counter::Rejected,
            }),
        );
        let reason = match decision.reason {
            Reason::Match => Some(Counter::Match),
            Reason::Drift => Some(Counter::Drift),
            Reason::Missing => Some(Counter::Missing),
            Reason::Unkeyed => Some(Counter::Unkeyed),
            Reason::Paused | Reason::DriftPaused => Some(Counter::Paused),
            Reason::InvalidContract => None,
        };
        if let Some(reason) = reason {
            bump(host, self.counter(reason));
        }
        if decision.observed {
            bump(host, self.counter(Counter::Observed));
        }
        let mut any_invalid = false;
        for issue in &decision.issues {
            let field = issue.input.and_then(|ix| self.fields.get(ix));
            let kind = match issue.issue {
                Issue::Drift { .. } => 0,
                Issue::Missing => 1,
                Issue::Invalid(_) => {
                    any_invalid = true;
                    2
                }
            };
            bump(host, field.and_then(|ids| ids.get(kind).copied().flatten()));
        }
        if any_invalid {
            bump(host, self.counter(Counter::InvalidInput));
        }
    }
}

fn bump<H: Host>(host: &mut H, metric: Option<u32>) {
    if let Some(id) = metric {
        host.increment(id, 1);
    }
}

fn record<H: Host>(host: &mut H, metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        host.record(id, value);
    }
}

/// Metrics of safe mode, which has no trustworthy contract name.
pub struct SafeModeMetrics {
    requests: Option<u32>,
}

impl SafeModeMetrics {
    /// Defines them and counts the failed configuration load.
    pub fn define<H: Host>(host: &mut H) -> SafeModeMetrics {
        let invalid = host.define_metric(MetricType::Counter, INVALID_CONFIG);
        bump(host, invalid);
        SafeModeMetrics {
            requests: host.define_metric(MetricType::Counter, SAFE_MODE),
        }
    }

    /// No metrics, for the moment before any configuration arrived.
    pub fn none() -> SafeModeMetrics {
        SafeModeMetrics { requests: None }
    }

    /// Counts one request routed in safe mode.
    pub fn count<H: Host>(&self, host: &mut H) {
        bump(host, self.requests);
    }
}
