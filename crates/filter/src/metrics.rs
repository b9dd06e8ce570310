//! Counters and gauges, defined once per configuration; counts kept in VM memory and
//! added to Envoy's counters once per tick.
//!
//! Every host call is a crossing between Envoy and the VM, and a request counts three
//! to five counters: adding each in Envoy at once would cost more than the decision
//! itself. So a request only adds to this VM's pending counts ([`Counter`] cells), and
//! [`flush`](Metrics::flush) hands them to Envoy — one call per counter that moved —
//! on the configuration's tick ([`FLUSH_MS`]) and when the configuration is deleted
//! (replaced by a new one, or its listener removed), so no count is lost while Envoy
//! runs. `/stats` lags by at most one tick; readers (the CLI's gates, the tests) wait
//! for the counts rather than expecting them at once.
//!
//! The names come from [`rampart::metrics`], which the CLI's gates read too: the
//! contract and the input are tags inside the name (Istio's `<tag>=.=<value>;.;`), which
//! the bootstrap's `stats_tags` rules turn into labels. Envoy shows the full names under
//! its `wasmcustom.` prefix in `/stats`.

use std::cell::Cell;

use rampart::decide::{Decision, Issue, Reason, Route, Subject};
use rampart::metrics::{
    contract_metric, field_metric, Counter, FieldCounter, Gauge, INVALID_CONFIG, SAFE_MODE,
};
use rampart::Plan;
use rampart_abi::MetricType;

use crate::host::Host;

/// How often pending counts reach Envoy: often enough for any scrape or gate, rarely
/// enough to cost nothing per request.
pub const FLUSH_MS: u32 = 1000;

/// One counter: Envoy's id (none if the host refused to define it) and the count not
/// yet added there.
struct Slot {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Slot {
    fn define<H: Host>(host: &mut H, name: &str) -> Slot {
        Slot {
            id: host.define_metric(MetricType::Counter, name),
            pending: Cell::new(0),
        }
    }

    fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush<H: Host>(&self, host: &mut H) {
        let pending = self.pending.replace(0);
        if let (Some(id), true) = (self.id, pending > 0) {
            host.increment(id, pending);
        }
    }
}

/// Every metric of one contract.
pub struct Metrics {
    /// In [`Counter::ALL`] order.
    counters: Vec<Slot>,
    /// Per input, in [`FieldCounter::ALL`] order.
    fields: Vec<[Slot; 3]>,
    drift_paused: Option<u32>,
}

impl Metrics {
    /// Defines the contract's metrics and sets its gauges.
    pub fn define<H: Host>(host: &mut H, plan: &Plan) -> Metrics {
        let counters = Counter::ALL
            .iter()
            .map(|c| Slot::define(host, &contract_metric(&plan.name, c.name())))
            .collect();
        let fields = plan
            .inputs
            .iter()
            .map(|input| {
                FieldCounter::ALL
                    .map(|c| Slot::define(host, &field_metric(&plan.name, &input.name, c)))
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

    fn bump(&self, counter: Counter) {
        if let Some(at) = Counter::ALL.iter().position(|&c| c == counter) {
            if let Some(slot) = self.counters.get(at) {
                slot.bump();
            }
        }
    }

    /// Counts one decision in VM memory: `requests`, its side and its reason, and on
    /// drift the fields concerned. No host call.
    pub fn count(&self, decision: &Decision) {
        self.bump(Counter::Requests);
        self.bump(match decision.route {
            Route::Canary => Counter::Canary,
            Route::Stable => Counter::Stable,
            Route::Reject => Counter::Rejected,
        });
        match decision.reason {
            Reason::Match => self.bump(Counter::Match),
            Reason::Drift => self.bump(Counter::Drift),
            Reason::Missing => self.bump(Counter::Missing),
            Reason::Unkeyed => self.bump(Counter::Unkeyed),
            Reason::Paused | Reason::DriftPaused => self.bump(Counter::Paused),
            Reason::InvalidContract => {}
        }
        if decision.observed {
            self.bump(Counter::Observed);
        }
        let mut any_invalid = false;
        for issue in &decision.issues {
            let kind = match issue.issue {
                Issue::Drift { .. } => FieldCounter::Drift,
                Issue::Missing => FieldCounter::Missing,
                Issue::Invalid(_) => {
                    any_invalid = true;
                    FieldCounter::Invalid
                }
            };
            // The snapshot and the sticky key have no per-field counters.
            let input = match issue.subject {
                Subject::Input(ix) => Some(ix),
                Subject::Snapshot | Subject::StickyKey => None,
            };
            let slot = input
                .and_then(|ix| self.fields.get(ix))
                .and_then(|slots| {
                    slots
                        .iter()
                        .zip(FieldCounter::ALL)
                        .find(|(_, c)| *c == kind)
                })
                .map(|(slot, _)| slot);
            if let Some(slot) = slot {
                slot.bump();
            }
        }
        if any_invalid {
            self.bump(Counter::InvalidInput);
        }
    }

    /// Adds the pending counts to Envoy's counters: one call per counter that moved.
    pub fn flush<H: Host>(&self, host: &mut H) {
        for slot in self.counters.iter().chain(self.fields.iter().flatten()) {
            slot.flush(host);
        }
    }
}

fn record<H: Host>(host: &mut H, metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        host.record(id, value);
    }
}

/// Metrics of safe mode, which has no trustworthy contract name.
pub struct SafeModeMetrics {
    requests: Option<Slot>,
}

impl SafeModeMetrics {
    /// Defines them and counts the failed configuration load (at once: it is rare and
    /// an operator looks for it).
    pub fn define<H: Host>(host: &mut H) -> SafeModeMetrics {
        if let Some(id) = host.define_metric(MetricType::Counter, INVALID_CONFIG) {
            host.increment(id, 1);
        }
        SafeModeMetrics {
            requests: Some(Slot::define(host, SAFE_MODE)),
        }
    }

    /// No metrics, for the moment before any configuration arrived.
    pub fn none() -> SafeModeMetrics {
        SafeModeMetrics { requests: None }
    }

    /// Counts one request routed in safe mode, in VM memory.
    pub fn count(&self) {
        if let Some(slot) = &self.requests {
            slot.bump();
        }
    }

    /// Adds the pending count to Envoy's counter.
    pub fn flush<H: Host>(&self, host: &mut H) {
        if let Some(slot) = &self.requests {
            slot.flush(host);
        }
    }
}
