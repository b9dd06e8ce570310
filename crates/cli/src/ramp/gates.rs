//! The gates `ramp advance` runs, as a pure function of what was read: the state, the
//! live config's delta from the lock, the counters, and the clock. No files, no
//! network: `advance` reads, asks [`evaluate`], then writes what the verdict says.
//!
//! The gates in order, the first that does not pass deciding:
//! 1. config: the live config has the locked digest; else block or revert (the plan's
//!    `gates.on_mismatch`);
//! 2. drift (only with a metrics source): the data plane's drift pause is off, enough
//!    requests came since the step began, and their drift ratio is within the limit;
//! 3. bake: enough time passed since the step began.

use crate::delta::Delta;
use crate::metrics::{Counters, Reading};
use crate::plan::{Gates, OnMismatch};
use crate::state::{Block, State};

/// The drift gate's view of the current window: the counters since the step began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Counts since the step began (the whole count after an Envoy restart reset them).
    pub since: Counters,
    /// (drift + missing) / requests over the window.
    pub ratio: f64,
    /// Whether the data plane's drift pause is on; `None` if not exported.
    pub drift_paused: Option<bool>,
}

impl Window {
    /// The window of `state`'s step as `reading` shows it.
    pub fn of(state: &State, reading: &Reading) -> Window {
        let since = reading.counters.since(state.baseline.unwrap_or_default());
        Window {
            since,
            ratio: since.drift_ratio(),
            drift_paused: reading.drift_paused,
        }
    }
}

/// Why a gate stops the ramp at its step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockReason {
    /// The live config is not the locked one (`on_mismatch: block`).
    Config,
    /// The data plane already sent everyone to stable for drift; it stays so until a
    /// new lock, so a wider step would only be a number in a file.
    DriftPaused(Window),
    /// The drift ratio over the window is above the plan's limit.
    DriftRatio(Window),
}

/// What a gate waits for; nothing changes meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// Fewer requests than the plan's `min_requests` since the step began.
    MinRequests(Window),
    /// Less time than the plan's `bake_seconds` since the step began.
    Bake {
        /// Seconds since the step began.
        elapsed: u64,
    },
}

/// What every gate saw when all passed, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Passed {
    /// Seconds since the step began.
    pub elapsed: u64,
    /// The drift window; `None` without a metrics source.
    pub window: Option<Window>,
}

/// The outcome of the gates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Every gate passes: publish step `to_step` (1-based) at `percent`.
    Advance {
        /// The next step.
        to_step: usize,
        /// Its canary percent.
        percent: f64,
        /// What the gates saw.
        passed: Passed,
    },
    /// Every gate passes on the last step: the ramp is complete.
    Complete(Passed),
    /// A gate is not met yet; retry later.
    Wait(Wait),
    /// A gate stops the ramp at its step.
    Block(BlockReason),
    /// The live config is not the locked one and the plan says `on_mismatch: revert`.
    Revert,
}

/// Runs the gates for a running ramp at `state`: `delta` from the locked snapshot to
/// the live one, `reading` the counters now (`None` without a metrics source: the drift
/// gate is off), `now` in Unix seconds, `steps` and `gates` from the plan.
pub fn evaluate(
    state: &State,
    steps: &[f64],
    gates: &Gates,
    delta: &Delta,
    reading: Option<&Reading>,
    now: u64,
) -> Verdict {
    if !delta.is_empty() {
        return match gates.on_mismatch {
            OnMismatch::Block => Verdict::Block(BlockReason::Config),
            OnMismatch::Revert => Verdict::Revert,
        };
    }
    let window = reading.map(|r| Window::of(state, r));
    if let Some(window) = window {
        if window.drift_paused == Some(true) {
            return Verdict::Block(BlockReason::DriftPaused(window));
        }
        if window.since.requests < gates.min_requests {
            return Verdict::Wait(Wait::MinRequests(window));
        }
        if window.ratio > gates.max_drift_ratio {
            return Verdict::Block(BlockReason::DriftRatio(window));
        }
    }
    let elapsed = now.saturating_sub(state.step_started_unix);
    if elapsed < gates.bake_seconds {
        return Verdict::Wait(Wait::Bake { elapsed });
    }
    let passed = Passed { elapsed, window };
    match steps.get(state.step) {
        Some(&percent) => Verdict::Advance {
            to_step: state.step + 1,
            percent,
            passed,
        },
        None => Verdict::Complete(passed),
    }
}

/// The block the drift gate puts on `state` at drift ratio `ratio`, recorded as its
/// next audit record.
pub fn drift_block(state: &State, ratio: f64) -> Block {
    Block {
        reason: "drift".into(),
        live_digest: None,
        drift_ratio: Some(ratio),
        seq: state.audit.seq + 1,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::state::{Head, Lock, Status, STATE_VERSION};

    const STEPS: [f64; 3] = [1.0, 10.0, 100.0];
    const STARTED: u64 = 1_700_000_000;

    fn gates() -> Gates {
        Gates {
            max_drift_ratio: 0.05,
            min_requests: 100,
            bake_seconds: 600,
            on_mismatch: OnMismatch::Block,
        }
    }

    fn counters(requests: u64, drift: u64, missing: u64) -> Counters {
        Counters {
            requests,
            drift,
            missing,
        }
    }

    /// A running ramp at `step` whose window began at [`STARTED`] with 1000 requests.
    fn state(step: usize) -> State {
        State {
            version: STATE_VERSION,
            contract: "checkout-v2".into(),
            status: Status::Running,
            blocked: None,
            durable_pause: false,
            step,
            steps: STEPS.len(),
            percent: STEPS[step - 1],
            lock: Lock {
                digest: "sha256:locked".into(),
                fields: BTreeMap::new(),
            },
            locked_snapshot: Value::Null,
            step_started: String::new(),
            step_started_unix: STARTED,
            baseline: Some(counters(1000, 10, 0)),
            published: String::new(),
            audit: Head {
                seq: 1,
                hash: String::new(),
            },
            last_record: Value::Null,
            history: Vec::new(),
        }
    }

    fn delta(live: &str) -> Delta {
        Delta {
            from: "sha256:locked".into(),
            to: live.into(),
            fields: Vec::new(),
            changes: Vec::new(),
        }
    }

    fn reading(requests: u64, drift: u64, missing: u64, paused: Option<bool>) -> Reading {
        Reading {
            counters: counters(requests, drift, missing),
            drift_paused: paused,
        }
    }

    const BAKED: u64 = STARTED + 600;

    /// The verdict at `step` with the default gates and the live config still the locked one.
    fn judge(step: usize, reading: Option<&Reading>, now: u64) -> Verdict {
        evaluate(
            &state(step),
            &STEPS,
            &gates(),
            &delta("sha256:locked"),
            reading,
            now,
        )
    }

    #[test]
    fn all_gates_pass_and_the_ramp_advances_to_the_next_step() {
        let r = reading(1200, 12, 1, Some(false));
        let verdict = judge(1, Some(&r), BAKED);
        let Verdict::Advance {
            to_step,
            percent,
            passed,
        } = verdict
        else {
            panic!("{verdict:?}");
        };
        assert_eq!((to_step, percent, passed.elapsed), (2, 10.0, 600));
        let window = passed.window.unwrap();
        assert_eq!(window.since, counters(200, 2, 1));
        assert!((window.ratio - 0.015).abs() < 1e-12);
    }

    #[test]
    fn the_last_step_completes() {
        let r = reading(1200, 10, 0, None);
        let verdict = judge(3, Some(&r), BAKED);
        assert!(
            matches!(verdict, Verdict::Complete(p) if p.elapsed == 600),
            "{verdict:?}"
        );
    }

    #[test]
    fn config_drift_blocks_before_any_other_gate() {
        // Even with the drift pause on and no time baked: the config decides first.
        let r = reading(1000, 10, 0, Some(true));
        let verdict = evaluate(
            &state(2),
            &STEPS,
            &gates(),
            &delta("sha256:live"),
            Some(&r),
            STARTED,
        );
        assert_eq!(verdict, Verdict::Block(BlockReason::Config));
    }

    #[test]
    fn config_drift_reverts_when_the_plan_says_so() {
        let gates = Gates {
            on_mismatch: OnMismatch::Revert,
            ..gates()
        };
        let verdict = evaluate(
            &state(2),
            &STEPS,
            &gates,
            &delta("sha256:live"),
            None,
            BAKED,
        );
        assert_eq!(verdict, Verdict::Revert);
    }

    #[test]
    fn the_data_planes_drift_pause_blocks_even_with_few_requests_and_a_low_ratio() {
        let r = reading(1005, 10, 0, Some(true));
        let verdict = judge(2, Some(&r), BAKED);
        let Verdict::Block(BlockReason::DriftPaused(window)) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(window.since.requests, 5);
        assert_eq!(window.drift_paused, Some(true));
    }

    #[test]
    fn too_few_requests_wait() {
        let r = reading(1099, 10, 0, Some(false));
        let verdict = judge(1, Some(&r), BAKED);
        assert!(
            matches!(verdict, Verdict::Wait(Wait::MinRequests(w)) if w.since.requests == 99),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_drift_ratio_over_the_limit_blocks() {
        // 200 requests, 8 drifted + 3 missing: 0.055 > 0.05.
        let r = reading(1200, 18, 3, None);
        let verdict = judge(1, Some(&r), BAKED);
        let Verdict::Block(BlockReason::DriftRatio(window)) = verdict else {
            panic!("{verdict:?}");
        };
        assert!((window.ratio - 0.055).abs() < 1e-12);
        // Exactly at the limit passes.
        let r = reading(1200, 20, 0, None);
        let verdict = judge(1, Some(&r), BAKED);
        assert!(matches!(verdict, Verdict::Advance { .. }), "{verdict:?}");
    }

    #[test]
    fn bake_time_waits_after_the_drift_gate() {
        let r = reading(1200, 10, 0, None);
        let verdict = judge(1, Some(&r), BAKED - 1);
        assert_eq!(verdict, Verdict::Wait(Wait::Bake { elapsed: 599 }));
        // A clock behind the step's start (a clock step back) waits rather than wraps.
        let verdict = judge(1, Some(&r), STARTED - 5);
        assert_eq!(verdict, Verdict::Wait(Wait::Bake { elapsed: 0 }));
    }

    #[test]
    fn counters_reset_by_an_envoy_restart_count_whole() {
        // Baseline 1000 requests; Envoy restarted and has counted 150 since: the window is
        // those 150, not an underflow and not zero.
        let r = reading(150, 3, 0, Some(false));
        let verdict = judge(1, Some(&r), BAKED);
        let Verdict::Advance { passed, .. } = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(passed.window.unwrap().since, counters(150, 3, 0));
        // The same after a restart with too few requests yet: wait, judged on the new count.
        let r = reading(40, 0, 0, None);
        let verdict = judge(1, Some(&r), BAKED);
        assert!(
            matches!(verdict, Verdict::Wait(Wait::MinRequests(w)) if w.since.requests == 40),
            "{verdict:?}"
        );
    }

    #[test]
    fn the_drift_block_names_the_ratio_and_the_next_record() {
        let block = drift_block(&state(2), 0.25);
        assert_eq!(
            block,
            Block {
                reason: "drift".into(),
                live_digest: None,
                drift_ratio: Some(0.25),
                seq: 2,
            }
        );
    }

    #[test]
    fn without_a_metrics_source_the_drift_gate_is_off() {
        let verdict = judge(2, None, BAKED);
        assert!(
            matches!(verdict, Verdict::Advance { to_step: 3, passed, .. } if passed.window.is_none()),
            "{verdict:?}"
        );
    }
}
