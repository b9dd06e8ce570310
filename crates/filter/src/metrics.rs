//! Counters and gauges, defined once per configuration and then only incremented.
//!
//! Names (Envoy shows them under the `wasmcustom.` prefix in `/stats`):
//! `rampart.<contract>.{requests,canary,stable,rejected,match,drift,missing,unkeyed,paused,observed,invalid_input}`,
//! `rampart.<contract>.field.<input>.{drift,missing,invalid}`, gauges
//! `rampart.<contract>.{threshold_bp,paused_flag,drift_paused}`, and for configurations that fail
//! validation `rampart.invalid_config` (per load) and `rampart.safe_mode` (per request).

use rampart::decide::{Decision, Issue, Reason, Route};
use rampart::Plan;

use crate::host;

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

const COUNTER: u32 = 0;
const GAUGE: u32 = 1;

/// Defines a metric; `None` if the host refuses (the filter then just skips it).
fn define(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointers to a live string and a live local.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == 0).then_some(id)
}

fn bump(metric: Option<u32>) {
    if let Some(id) = metric {
        host::increment(id);
    }
}

fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        // SAFETY: plain values.
        let _ = unsafe { proxy_record_metric(id, value) };
    }
}

/// Per-input counters.
struct FieldMetrics {
    drift: Option<u32>,
    missing: Option<u32>,
    invalid: Option<u32>,
}

/// Every metric of one contract.
pub struct Metrics {
    requests: Option<u32>,
    canary: Option<u32>,
    stable: Option<u32>,
    rejected: Option<u32>,
    matched: Option<u32>,
    drift: Option<u32>,
    missing: Option<u32>,
    unkeyed: Option<u32>,
    paused: Option<u32>,
    observed: Option<u32>,
    invalid_input: Option<u32>,
    fields: Vec<FieldMetrics>,
    /// Gauge: 1 while the data-plane drift pause holds.
    drift_paused: Option<u32>,
}

impl Metrics {
    /// Defines the contract's metrics and sets its gauges.
    pub fn define(plan: &Plan) -> Metrics {
        let c = |name: &str| define(COUNTER, &format!("rampart.{}.{name}", plan.name));
        let metrics = Metrics {
            drift_paused: define(GAUGE, &format!("rampart.{}.drift_paused", plan.name)),
            requests: c("requests"),
            canary: c("canary"),
            stable: c("stable"),
            rejected: c("rejected"),
            matched: c("match"),
            drift: c("drift"),
            missing: c("missing"),
            unkeyed: c("unkeyed"),
            paused: c("paused"),
            observed: c("observed"),
            invalid_input: c("invalid_input"),
            fields: plan
                .inputs
                .iter()
                .map(|i| FieldMetrics {
                    drift: c(&format!("field.{}.drift", i.name)),
                    missing: c(&format!("field.{}.missing", i.name)),
                    invalid: c(&format!("field.{}.invalid", i.name)),
                })
                .collect(),
        };
        record(
            define(GAUGE, &format!("rampart.{}.threshold_bp", plan.name)),
            u64::from(plan.threshold),
        );
        record(
            define(GAUGE, &format!("rampart.{}.paused_flag", plan.name)),
            u64::from(plan.paused),
        );
        metrics
    }

    /// Sets the `drift_paused` gauge.
    pub fn set_drift_paused(&self, paused: bool) {
        record(self.drift_paused, u64::from(paused));
    }

    /// Counts one decision.
    pub fn count(&self, decision: &Decision) {
        bump(self.requests);
        bump(match decision.route {
            Route::Canary => self.canary,
            Route::Stable => self.stable,
            Route::Reject => self.rejected,
        });
        bump(match decision.reason {
            Reason::Match => self.matched,
            Reason::Drift => self.drift,
            Reason::Missing => self.missing,
            Reason::Unkeyed => self.unkeyed,
            Reason::Paused | Reason::DriftPaused => self.paused,
            Reason::InvalidContract => None,
        });
        if decision.observed {
            bump(self.observed);
        }
        let mut any_invalid = false;
        for fi in &decision.issues {
            let field = fi.input.and_then(|ix| self.fields.get(ix));
            match fi.issue {
                Issue::Drift { .. } => bump(field.and_then(|f| f.drift)),
                Issue::Missing => bump(field.and_then(|f| f.missing)),
                Issue::Invalid(_) => {
                    any_invalid = true;
                    bump(field.and_then(|f| f.invalid));
                }
            }
        }
        if any_invalid {
            bump(self.invalid_input);
        }
    }
}

/// Metrics of safe mode, which has no trustworthy contract name.
pub struct SafeModeMetrics {
    requests: Option<u32>,
}

impl SafeModeMetrics {
    /// Defines them and counts the failed configuration load.
    pub fn define() -> SafeModeMetrics {
        bump(define(COUNTER, "rampart.invalid_config"));
        SafeModeMetrics {
            requests: define(COUNTER, "rampart.safe_mode"),
        }
    }

    /// No metrics, for the moment before any configuration arrived.
    pub fn none() -> SafeModeMetrics {
        SafeModeMetrics { requests: None }
    }

    /// Counts one request routed in safe mode.
    pub fn count(&self) {
        bump(self.requests);
    }
}
