//! How the ramp commands answer: a human line (or lines), or with `--json` exactly one
//! JSON object on stdout, failures included.

use serde_json::{json, Value};

use super::store::Ctx;
use crate::state::State;
use crate::Failure;

impl Ctx {
    /// Prints `value` with `--json`, else `text`.
    pub fn emit(&self, value: &Value, text: &str) {
        self.printed.set(true);
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

/// The state as the JSON answers show it.
pub fn state_json(state: &State) -> Value {
    json!({
        "contract": state.contract,
        "status": state.status.as_str(),
        "step": state.step,
        "steps": state.steps,
        "percent": state.percent,
        "lock": state.lock.digest,
        "blocked": state.blocked,
        "durable_pause": state.durable_pause,
        "step_started": state.step_started,
        "audit_seq": state.audit.seq,
    })
}

/// The state in one human line.
pub fn state_line(state: &State) -> String {
    format!(
        "{}: {} at step {}/{} ({}% canary), lock {}",
        state.contract,
        state.status.as_str(),
        state.step,
        state.steps,
        state.percent,
        state.lock.digest
    )
}

/// The JSON answer of `command` failing with `failure` before it printed anything.
pub fn failure_json(command: &str, failure: &Failure) -> Value {
    json!({
        "ok": false, "command": command, "error": failure.kind(),
        "exit": failure.exit_code(), "message": failure.message(),
    })
}

/// With `--json`, a failure that printed nothing yet still answers one JSON object.
pub fn json_failure(json: bool, command: &str, failure: Failure) -> Failure {
    if json {
        println!("{}", failure_json(command, &failure));
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_answers_its_kind_and_exit_code() {
        let value = failure_json("advance", &Failure::Waiting("gate 3".into()));
        assert_eq!(
            value,
            json!({ "ok": false, "command": "advance", "error": "waiting", "exit": 4, "message": "gate 3" })
        );
    }
}
