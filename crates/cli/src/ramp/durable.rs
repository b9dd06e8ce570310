//! The durable drift pause. The data plane's drift pause lives in Envoy's memory
//! (proxy-wasm shared data), so an Envoy that restarts forgets it and sends matching
//! users to the canary again, although the drift that tripped it was never approved.
//! When `status` or `advance` sees the pause, the control plane records it in the
//! state, and the contract it publishes says `paused: true` from then on, until an
//! approval or a `resume` lifts it (or a `revert` ends the ramp).
//!
//! Pure: what to record is decided here from the state and the reading; the commands
//! write it.

use serde_json::{json, Value};

use super::gates::{drift_block, Window};
use crate::state::{State, Status};

/// Whether `state` must make the data plane's drift pause durable now: the reading
/// shows the pause on, the ramp is one an approval or a resume can continue (running,
/// paused or blocked), and its pause is not durable yet.
pub fn needed(state: &State, drift_paused: Option<bool>) -> bool {
    drift_paused == Some(true)
        && !state.durable_pause
        && matches!(
            state.status,
            Status::Running | Status::Paused | Status::Blocked
        )
}

/// `state` with the drift pause made durable, as its next audit record: a running
/// ramp is also blocked for drift (as `advance` blocks it), so no step is published
/// while the pause holds; a paused or blocked ramp keeps its status and its reason.
pub fn made_durable(state: &State, window: &Window) -> State {
    let mut next = state.clone();
    next.durable_pause = true;
    if next.status == Status::Running {
        next.status = Status::Blocked;
        next.blocked = Some(drift_block(state, window.ratio));
    }
    next
}

/// The audit details of making the pause durable: what the drift gate saw.
pub fn details(window: &Window) -> Value {
    let since = window.since;
    json!({
        "gate": "drift", "requests": since.requests, "drift": since.drift,
        "missing": since.missing, "drift_ratio": window.ratio,
        "drift_paused": true, "durable_pause": true,
    })
}

/// Lifts a durable pause from `next` (an approval, a resume or a revert), noting it in
/// the record's `details`.
pub fn lift(next: &mut State, details: &mut Value) {
    if next.durable_pause {
        next.durable_pause = false;
        details["durable_pause"] = json!("lifted");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metrics::Counters;
    use crate::state::{Block, Head, Lock, STATE_VERSION};

    fn state(status: Status) -> State {
        State {
            version: STATE_VERSION,
            contract: "checkout-v2".into(),
            status,
            blocked: None,
            durable_pause: false,
            step: 2,
            steps: 5,
            percent: 5.0,
            lock: Lock {
                digest: "sha256:locked".into(),
                fields: BTreeMap::new(),
            },
            locked_snapshot: Value::Null,
            step_started: String::new(),
            step_started_unix: 0,
            baseline: None,
            published: String::new(),
            audit: Head {
                seq: 7,
                hash: "sha256:head".into(),
            },
            last_record: Value::Null,
            history: Vec::new(),
        }
    }

    fn window() -> Window {
        Window {
            since: Counters {
                requests: 40,
                drift: 30,
                missing: 2,
            },
            ratio: 0.8,
            drift_paused: Some(true),
        }
    }

    #[test]
    fn only_a_pause_seen_on_an_active_ramp_not_yet_durable_is_recorded() {
        for status in [Status::Running, Status::Paused, Status::Blocked] {
            assert!(needed(&state(status), Some(true)), "{status:?}");
            assert!(!needed(&state(status), Some(false)), "{status:?}");
            assert!(!needed(&state(status), None), "{status:?}");
            let mut held = state(status);
            held.durable_pause = true;
            assert!(!needed(&held, Some(true)), "{status:?} already durable");
        }
        for status in [Status::Completed, Status::Reverted] {
            assert!(!needed(&state(status), Some(true)), "{status:?}");
        }
    }

    #[test]
    fn a_running_ramp_is_blocked_for_drift_and_others_keep_their_status() {
        let next = made_durable(&state(Status::Running), &window());
        assert!(next.durable_pause);
        assert_eq!(next.status, Status::Blocked);
        assert_eq!(
            next.blocked,
            Some(Block {
                reason: "drift".into(),
                live_digest: None,
                drift_ratio: Some(0.8),
                seq: 8,
            })
        );
        assert_eq!((next.step, next.percent), (2, 5.0), "the step stays");

        let paused = made_durable(&state(Status::Paused), &window());
        assert_eq!(
            (paused.status, paused.durable_pause),
            (Status::Paused, true)
        );
        assert_eq!(paused.blocked, None);

        let mut config = state(Status::Blocked);
        config.blocked = Some(Block {
            reason: "config".into(),
            live_digest: Some("sha256:live".into()),
            drift_ratio: None,
            seq: 6,
        });
        let next = made_durable(&config, &window());
        assert_eq!(
            next.blocked, config.blocked,
            "a config block keeps its reason"
        );
        assert!(next.durable_pause);
    }

    #[test]
    fn details_say_what_the_gate_saw() {
        assert_eq!(
            details(&window()),
            json!({
                "gate": "drift", "requests": 40, "drift": 30, "missing": 2,
                "drift_ratio": 0.8, "drift_paused": true, "durable_pause": true,
            })
        );
    }

    #[test]
    fn lifting_clears_the_pause_and_says_so_only_when_there_was_one() {
        let mut next = made_durable(&state(Status::Paused), &window());
        let mut record = json!({});
        lift(&mut next, &mut record);
        assert!(!next.durable_pause);
        assert_eq!(record, json!({ "durable_pause": "lifted" }));
        let mut record = json!({});
        lift(&mut next, &mut record);
        assert_eq!(record, json!({}));
    }
}
