//! The ramp commands: start, status, advance, pause, resume, revert, diff, approve,
//! and the audit commands verify and show.
//!
//! Every change follows one order — state file (atomic, carrying the new audit
//! record), then the audit append, then the publish — so a crash at any point leaves
//! a state that names everything still to do. The next ramp command finishes it
//! (appends the record, republishes) before doing anything else.

use std::path::{Path, PathBuf};

use rampart::contract::LockSpec;
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::lock_from_snapshot;
use serde_json::{json, Value};

use crate::audit;
use crate::delta::Delta;
use crate::ecds;
use crate::metrics::{self, Counters, Reading};
use crate::plan::{AfterApproval, LiveSource, OnMismatch, RampPlan};
use crate::state::{Block, ChangeLock, HistoryEntry, Lock, State, Status, STATE_VERSION};
use crate::time::{now_unix, rfc3339};
use crate::{Failure, Flags, Outcome};

/// What one ramp command works with.
struct Ctx {
    plan: RampPlan,
    state_path: PathBuf,
    audit_path: PathBuf,
    actor: String,
    reason: Option<String>,
    json: bool,
    /// Whether this command printed its JSON object already.
    printed: std::cell::Cell<bool>,
}

impl Ctx {
    fn from_flags(flags: &Flags) -> Result<Ctx, Failure> {
        if let Some(extra) = flags.positional.first() {
            return Err(Failure::Usage(format!("unexpected argument `{extra}`")));
        }
        let plan = RampPlan::load(Path::new(flags.required("plan")?))?;
        let state_path = flags
            .value("state")
            .map_or_else(|| plan.state_path.clone(), PathBuf::from);
        let audit_path = flags
            .value("audit")
            .map_or_else(|| plan.audit_path.clone(), PathBuf::from);
        let actor = flags
            .value("by")
            .map(str::to_owned)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        Ok(Ctx {
            plan,
            state_path,
            audit_path,
            actor,
            reason: flags.value("reason").map(str::to_owned),
            json: flags.switch("json"),
            printed: std::cell::Cell::new(false),
        })
    }

    /// Prints `value` with `--json`, else `text`.
    fn emit(&self, value: &Value, text: &str) {
        self.printed.set(true);
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    fn load_state(&self) -> Result<Option<State>, Failure> {
        State::load(&self.state_path)
    }

    /// The state of a started ramp, after finishing what a crash left undone, with
    /// the lock that keeps other commands from changing it meanwhile.
    fn started_state(&self) -> Result<(State, ChangeLock), Failure> {
        let guard = ChangeLock::acquire(&self.state_path)?;
        let state = self.load_state()?.ok_or_else(|| {
            Failure::NotAllowed(format!(
                "no ramp started ({} does not exist); run `rampart ramp start --plan {}`",
                self.state_path.display(),
                self.plan.path.display()
            ))
        })?;
        self.reconcile(&state)?;
        Ok((state, guard))
    }

    /// Repairs what a crash between the three writes of a change left: a cut-off or
    /// missing last audit record (rewritten from the state), an unpublished contract.
    fn reconcile(&self, state: &State) -> Result<(), Failure> {
        self.remove_leftovers();
        let bytes = read_log(&self.audit_path)?;
        let report = audit::verify(&bytes, Some((&state.audit, &state.last_record)));
        if let Some(finding) = &report.finding {
            if !finding.repairable {
                return Err(Failure::Invalid(format!(
                    "audit log {}: {}; refusing to change the ramp (see `rampart audit verify`)",
                    self.audit_path.display(),
                    finding.message
                )));
            }
            if finding.kind == "torn" {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.audit_path)
                    .and_then(|f| {
                        f.set_len(report.complete_len as u64)?;
                        f.sync_all()
                    });
                file.map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
                eprintln!(
                    "repaired: removed the cut-off last line of {}",
                    self.audit_path.display()
                );
            }
            audit::append(&self.audit_path, &state.last_record)
                .map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
            eprintln!(
                "repaired: appended audit record {} from the state (a crash came before its append)",
                state.audit.seq
            );
        }
        let contract = self
            .plan
            .contract(state.percent, &lock_spec(&state.lock))
            .map_err(Failure::Invalid)?;
        if !self.is_published(&contract) {
            self.publish(&contract)?;
            eprintln!(
                "repaired: published {} at {}% (a crash came before the publish)",
                state.contract, state.percent
            );
        }
        Ok(())
    }

    /// Deletes temporary and pid files that killed commands left (the caller holds
    /// the change lock).
    fn remove_leftovers(&self) {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let dir = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let state_name = name(&self.state_path);
        let state_dir = dir(&self.state_path);
        crate::state::remove_leftovers(&state_dir, &format!(".{state_name}.tmp."));
        crate::state::remove_leftovers(&state_dir, &format!("{state_name}.lock."));
        let ecds = &self.plan.publish.ecds_path;
        crate::state::remove_leftovers(&dir(ecds), &format!(".{}.tmp.", name(ecds)));
    }

    fn is_published(&self, contract: &Value) -> bool {
        let p = &self.plan.publish;
        let expected = ecds::discovery_resource(&p.filter_name, &p.wasm, contract);
        std::fs::read(&p.ecds_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|current| current == expected)
    }

    fn publish(&self, contract: &Value) -> Result<(), Failure> {
        let p = &self.plan.publish;
        ecds::publish(&p.ecds_path, &p.filter_name, &p.wasm, contract)
            .map_err(|e| Failure::Io(format!("publishing to {}: {e}", p.ecds_path.display())))
    }

    /// Records a change: the new state (carrying the audit record), then the record,
    /// then the publish. Returns the record.
    fn commit(
        &self,
        head: Option<&State>,
        next: &mut State,
        action: &str,
        mut details: Value,
    ) -> Result<Value, Failure> {
        let now = now_unix();
        let time = rfc3339(now);
        if let Some(reason) = &self.reason {
            details["reason"] = Value::String(reason.clone());
        }
        details["status"] = json!(next.status.as_str());
        details["step"] = json!(next.step);
        details["percent"] = json!(next.percent);
        details["lock"] = json!(next.lock.digest);
        let contract = self
            .plan
            .contract(next.percent, &lock_spec(&next.lock))
            .map_err(Failure::Invalid)?;
        next.published = crate::canonical_digest(&contract);
        let record = audit::new_record(
            head.map(|s| &s.audit),
            &time,
            &self.actor,
            action,
            &next.contract,
            details,
        );
        next.audit = audit::head_of(&record);
        next.last_record = record.clone();
        next.history.push(HistoryEntry {
            seq: next.audit.seq,
            time,
            actor: self.actor.clone(),
            action: action.to_owned(),
            status: next.status,
            step: next.step,
            percent: next.percent,
        });
        next.save(&self.state_path)?;
        audit::append(&self.audit_path, &record)
            .map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
        if !self.is_published(&contract) {
            self.publish(&contract)?;
        }
        Ok(record)
    }

    fn read_live(&self) -> Result<Json, Failure> {
        let (bytes, source) = match &self.plan.live {
            LiveSource::File(path) => (
                std::fs::read(path)
                    .map_err(|e| Failure::Io(format!("live snapshot {}: {e}", path.display())))?,
                path.display().to_string(),
            ),
            LiveSource::Url(url) => (
                crate::http::get(url).map_err(|e| Failure::Io(format!("live snapshot: {e}")))?,
                url.clone(),
            ),
        };
        Json::parse(&bytes, DEFAULT_MAX_DEPTH)
            .map_err(|e| Failure::Invalid(format!("live snapshot {source}: {e}")))
    }

    /// The counters now, or `None` without a metrics source.
    fn read_metrics(&self) -> Result<Option<Reading>, Failure> {
        match &self.plan.metrics {
            None => Ok(None),
            Some(source) => metrics::read(source, &self.plan.name)
                .map(Some)
                .map_err(|e| Failure::Io(format!("metrics ({}): {e}", source.describe()))),
        }
    }
}

fn read_log(path: &Path) -> Result<Vec<u8>, Failure> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

fn lock_spec(lock: &Lock) -> LockSpec {
    LockSpec {
        digest: Some(lock.digest.clone()),
        fields: Some(lock.fields.clone()),
    }
}

fn to_json(value: &Value) -> Json {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Json::parse(&bytes, DEFAULT_MAX_DEPTH).unwrap_or(Json::Null)
}

fn to_value(json: &Json) -> Value {
    serde_json::from_slice(&json.to_canonical()).unwrap_or(Value::Null)
}

/// The lock of `snapshot` under the plan's contract, or the field that does not fit.
fn lock_of(plan: &RampPlan, snapshot: &Json, what: &str) -> Result<Lock, Failure> {
    let spec = plan.spec(plan.steps[0]).map_err(Failure::Invalid)?;
    let lock = lock_from_snapshot(&spec, snapshot)
        .map_err(|e| Failure::Invalid(format!("{what}: {e}")))?;
    Ok(Lock {
        digest: lock.digest.unwrap_or_default(),
        fields: lock.fields.unwrap_or_default(),
    })
}

fn state_json(state: &State) -> Value {
    json!({
        "contract": state.contract,
        "status": state.status.as_str(),
        "step": state.step,
        "steps": state.steps,
        "percent": state.percent,
        "lock": state.lock.digest,
        "blocked": state.blocked,
        "step_started": state.step_started,
        "audit_seq": state.audit.seq,
    })
}

fn state_line(state: &State) -> String {
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

/// A fresh window for the gates: now, and the counters now.
fn new_window(state: &mut State, reading: Option<Reading>) {
    let now = now_unix();
    state.step_started = rfc3339(now);
    state.step_started_unix = now;
    state.baseline = reading.map(|r| r.counters);
}

const RAMP_FLAGS: &[&str] = &["plan", "state", "audit", "by", "reason", "expect-delta"];

/// `rampart ramp SUBCOMMAND ...`
pub fn run(args: &[String]) -> Outcome {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Failure::Usage(
            "give a ramp command: start, status, advance, pause, resume, revert, diff, approve"
                .into(),
        ));
    };
    let flags = Flags::parse(rest, RAMP_FLAGS, &["json"])?;
    let ctx = match Ctx::from_flags(&flags) {
        Ok(ctx) => ctx,
        Err(failure) => return Err(json_failure(flags.switch("json"), sub, failure)),
    };
    let result = match sub.as_str() {
        "start" => start(&ctx),
        "status" => status(&ctx),
        "advance" => advance(&ctx),
        "pause" => pause(&ctx),
        "resume" => resume(&ctx),
        "revert" => revert(&ctx),
        "diff" => diff(&ctx),
        "approve" => approve(&ctx, &flags),
        other => Err(Failure::Usage(format!("unknown ramp command `{other}`"))),
    };
    match result {
        Err(failure) if !ctx.printed.get() => Err(json_failure(ctx.json, sub, failure)),
        other => other,
    }
}

/// With `--json`, a failure that printed nothing yet still answers one JSON object.
fn json_failure(json: bool, command: &str, failure: Failure) -> Failure {
    if json {
        let error = match failure {
            Failure::Invalid(_) => "invalid",
            Failure::Usage(_) => "usage",
            Failure::Io(_) => "io",
            Failure::NotAllowed(_) => "not_allowed",
            Failure::Waiting(_) => "waiting",
        };
        let value = json!({
            "ok": false, "command": command, "error": error,
            "exit": failure.exit_code(), "message": failure.message(),
        });
        println!("{value}");
    }
    failure
}

fn start(ctx: &Ctx) -> Outcome {
    for path in [
        &ctx.state_path,
        &ctx.audit_path,
        &ctx.plan.publish.ecds_path,
    ] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Io(format!("{}: {e}", dir.display())))?;
        }
    }
    let _guard = ChangeLock::acquire(&ctx.state_path)?;
    let previous = ctx.load_state()?;
    match &previous {
        Some(s) if !matches!(s.status, Status::Completed | Status::Reverted) => {
            return Err(Failure::NotAllowed(format!(
                "a ramp is {} ({}); finish it or `rampart ramp revert` first",
                s.status.as_str(),
                state_line(s)
            )));
        }
        Some(s) => ctx.reconcile(s)?,
        None => {
            if !read_log(&ctx.audit_path)?.is_empty() {
                return Err(Failure::NotAllowed(format!(
                    "{} has records but there is no state file {}; restore the state, or move the log away to begin a new chain",
                    ctx.audit_path.display(),
                    ctx.state_path.display()
                )));
            }
        }
    }
    let plan = &ctx.plan;
    let snapshot_path = plan.snapshot_path.display().to_string();
    let snapshot_bytes = std::fs::read(&plan.snapshot_path)
        .map_err(|e| Failure::Usage(format!("{snapshot_path}: {e}")))?;
    let snapshot = Json::parse(&snapshot_bytes, DEFAULT_MAX_DEPTH)
        .map_err(|e| Failure::Invalid(format!("{snapshot_path}: {e}")))?;
    let lock = lock_of(plan, &snapshot, &snapshot_path)?;
    // Gate 1 before the first step too: the live config must be the tested one.
    let live = ctx.read_live()?;
    let delta = Delta::between(&snapshot, &live);
    if !delta.is_empty() {
        let value = json!({ "ok": false, "command": "start", "error": "live_differs", "delta": delta.to_json() });
        ctx.emit(&value, &delta.describe());
        return Err(Failure::Invalid(format!(
            "the live config {} is not the tested snapshot {}; not starting",
            delta.to, delta.from
        )));
    }
    let reading = ctx.read_metrics()?;
    let now = now_unix();
    let mut next = State {
        version: STATE_VERSION,
        contract: plan.name.clone(),
        status: Status::Running,
        blocked: None,
        step: 1,
        steps: plan.steps.len(),
        percent: plan.steps[0],
        lock,
        locked_snapshot: to_value(&snapshot),
        step_started: rfc3339(now),
        step_started_unix: now,
        baseline: None,
        published: String::new(),
        audit: crate::state::Head {
            seq: 0,
            hash: String::new(),
        },
        last_record: Value::Null,
        history: Vec::new(),
    };
    new_window(&mut next, reading);
    let details = json!({
        "plan": plan.path.display().to_string(),
        "steps": plan.steps,
        "snapshot": snapshot_path,
        "fields": next.lock.fields,
    });
    let record = ctx.commit(previous.as_ref(), &mut next, "start", details)?;
    let value = json!({ "ok": true, "command": "start", "state": state_json(&next), "audit_seq": record["seq"] });
    ctx.emit(
        &value,
        &format!(
            "started {}: step 1/{} ({}% canary), locked to {}",
            next.contract, next.steps, next.percent, next.lock.digest
        ),
    );
    Ok(())
}

/// The drift gate over the current window.
struct DriftView {
    since: Counters,
    ratio: f64,
    drift_paused: Option<bool>,
}

fn drift_view(state: &State, reading: &Reading) -> DriftView {
    let since = reading.counters.since(state.baseline.unwrap_or_default());
    DriftView {
        since,
        ratio: since.drift_ratio(),
        drift_paused: reading.drift_paused,
    }
}

fn status(ctx: &Ctx) -> Outcome {
    let state = ctx.load_state()?.ok_or_else(|| {
        Failure::NotAllowed(format!(
            "no ramp started ({} does not exist)",
            ctx.state_path.display()
        ))
    })?;
    let gates = ctx.plan.gates;
    let mut lines = vec![state_line(&state)];
    let mut out = json!({ "ok": true, "command": "status", "state": state_json(&state) });

    match ctx.read_live() {
        Ok(live) => {
            let delta = Delta::between(&to_json(&state.locked_snapshot), &live);
            out["live"] = json!({ "digest": delta.to, "matches_lock": delta.is_empty() });
            lines.push(if delta.is_empty() {
                "  config: live snapshot matches the lock".into()
            } else {
                format!(
                    "  config: live snapshot {} DIFFERS from the lock ({} change(s); see `rampart ramp diff`)",
                    delta.to,
                    delta.changes.len()
                )
            });
        }
        Err(Failure::Invalid(e) | Failure::Io(e) | Failure::Usage(e)) => {
            out["live"] = json!({ "error": e });
            lines.push(format!("  config: cannot read the live snapshot: {e}"));
        }
        Err(_) => {}
    }
    match ctx.read_metrics() {
        Ok(None) => {
            out["metrics"] = Value::Null;
            lines.push("  drift: no metrics source (the drift gate is off)".into());
        }
        Ok(Some(reading)) => {
            let view = drift_view(&state, &reading);
            out["metrics"] = json!({
                "requests": view.since.requests, "drift": view.since.drift, "missing": view.since.missing,
                "drift_ratio": view.ratio, "max_drift_ratio": gates.max_drift_ratio,
                "min_requests": gates.min_requests, "drift_paused": view.drift_paused,
            });
            lines.push(format!(
                "  drift: {} request(s) since the step began, drift ratio {:.4} (limit {}), min requests {}",
                view.since.requests, view.ratio, gates.max_drift_ratio, gates.min_requests
            ));
            match view.drift_paused {
                Some(true) => lines.push(
                    "  drift pause: ON in the data plane (everyone on stable until a new lock)"
                        .into(),
                ),
                Some(false) => lines.push("  drift pause: off".into()),
                None => {}
            }
        }
        Err(Failure::Invalid(e) | Failure::Io(e) | Failure::Usage(e)) => {
            out["metrics"] = json!({ "error": e });
            lines.push(format!("  drift: cannot read metrics: {e}"));
        }
        Err(_) => {}
    }
    let elapsed = now_unix().saturating_sub(state.step_started_unix);
    out["bake"] = json!({ "elapsed_seconds": elapsed, "bake_seconds": gates.bake_seconds });
    lines.push(format!(
        "  bake: {elapsed}s since {} (needs {}s)",
        state.step_started, gates.bake_seconds
    ));
    // Crash leftovers, reported here and repaired by the next changing command.
    let log = read_log(&ctx.audit_path)?;
    let report = audit::verify(&log, Some((&state.audit, &state.last_record)));
    out["audit"] = json!({
        "records": report.records.len(),
        "ok": report.finding.is_none(),
        "problem": report.finding.as_ref().map(|f| f.message.clone()),
    });
    if let Some(f) = &report.finding {
        lines.push(format!("  audit: {}", f.message));
    }
    let published = ctx
        .plan
        .contract(state.percent, &lock_spec(&state.lock))
        .map(|c| ctx.is_published(&c))
        .unwrap_or(false);
    out["published"] = json!(published);
    if !published {
        lines.push(format!(
            "  publish: {} does not hold this state's contract yet (the next ramp command publishes it)",
            ctx.plan.publish.ecds_path.display()
        ));
    }
    ctx.emit(&out, &lines.join("\n"));
    Ok(())
}

fn advance(ctx: &Ctx) -> Outcome {
    let (state, _guard) = ctx.started_state()?;
    match state.status {
        Status::Running => {}
        Status::Blocked => {
            return Err(Failure::NotAllowed(format!(
                "the ramp is blocked ({}); `rampart ramp approve` a config change, or `rampart ramp resume` once resolved",
                state.blocked.as_ref().map_or("", |b| b.reason.as_str())
            )))
        }
        other => {
            return Err(Failure::NotAllowed(format!(
                "the ramp is {}; advance needs a running ramp",
                other.as_str()
            )))
        }
    }
    let plan = &ctx.plan;
    let gates = plan.gates;

    // Gate 1: the live config has the locked digest.
    let live = ctx.read_live()?;
    let delta = Delta::between(&to_json(&state.locked_snapshot), &live);
    if !delta.is_empty() {
        let mut next = state.clone();
        let action = match gates.on_mismatch {
            OnMismatch::Block => {
                next.status = Status::Blocked;
                next.blocked = Some(Block {
                    reason: "config".into(),
                    live_digest: Some(delta.to.clone()),
                    drift_ratio: None,
                    seq: state.audit.seq + 1,
                });
                "block"
            }
            OnMismatch::Revert => {
                next.status = Status::Reverted;
                next.percent = 0.0;
                "revert"
            }
        };
        let details = json!({ "gate": "config", "delta": delta.to_json() });
        let record = ctx.commit(Some(&state), &mut next, action, details)?;
        let value = json!({
            "ok": false, "command": "advance", "gate": "config", "action": action,
            "state": state_json(&next), "delta": delta.to_json(), "audit_seq": record["seq"],
        });
        ctx.emit(
            &value,
            &format!("{}\n{}", delta.describe(), state_line(&next)),
        );
        return Err(Failure::Invalid(format!(
            "gate 1: the live config {} is not the locked {}; ramp {} at step {}/{} — `rampart ramp approve --by NAME --reason TEXT` to continue with it",
            delta.to, delta.from, next.status.as_str(), next.step, next.steps
        )));
    }

    // Gate 2: enough requests and a low drift ratio since the step began.
    let reading = ctx.read_metrics()?;
    let view = reading.as_ref().map(|r| drift_view(&state, r));
    if let Some(view) = &view {
        if view.drift_paused == Some(true) {
            // The filter already sent everyone to stable for drift; it stays so until
            // a new lock, so a wider step would only be a number in a file.
            let mut next = state.clone();
            next.status = Status::Blocked;
            next.blocked = Some(Block {
                reason: "drift".into(),
                live_digest: None,
                drift_ratio: Some(view.ratio),
                seq: state.audit.seq + 1,
            });
            let details = json!({
                "gate": "drift", "drift_paused": true, "requests": view.since.requests,
                "drift": view.since.drift, "missing": view.since.missing, "drift_ratio": view.ratio,
            });
            let record = ctx.commit(Some(&state), &mut next, "block", details)?;
            let value = json!({
                "ok": false, "command": "advance", "gate": "drift", "action": "block", "drift_paused": true,
                "drift_ratio": view.ratio, "max_drift_ratio": gates.max_drift_ratio,
                "requests": view.since.requests, "state": state_json(&next), "audit_seq": record["seq"],
            });
            ctx.emit(&value, &state_line(&next));
            return Err(Failure::Invalid(
                "gate 2: the data plane paused the canary for drift (drift_pause); it holds until a new lock — approve the changed config, or revert".into(),
            ));
        }
        if view.since.requests < gates.min_requests {
            let value = json!({
                "ok": false, "command": "advance", "gate": "min_requests", "waiting": true,
                "requests": view.since.requests, "min_requests": gates.min_requests, "state": state_json(&state),
            });
            ctx.emit(&value, &state_line(&state));
            return Err(Failure::Waiting(format!(
                "gate 2: {} request(s) since the step began, the plan needs {}",
                view.since.requests, gates.min_requests
            )));
        }
        if view.ratio > gates.max_drift_ratio {
            let mut next = state.clone();
            next.status = Status::Blocked;
            next.blocked = Some(Block {
                reason: "drift".into(),
                live_digest: None,
                drift_ratio: Some(view.ratio),
                seq: state.audit.seq + 1,
            });
            let details = json!({
                "gate": "drift", "requests": view.since.requests, "drift": view.since.drift,
                "missing": view.since.missing, "drift_ratio": view.ratio, "max_drift_ratio": gates.max_drift_ratio,
            });
            let record = ctx.commit(Some(&state), &mut next, "block", details)?;
            let value = json!({
                "ok": false, "command": "advance", "gate": "drift", "action": "block",
                "drift_ratio": view.ratio, "max_drift_ratio": gates.max_drift_ratio,
                "requests": view.since.requests, "state": state_json(&next), "audit_seq": record["seq"],
            });
            ctx.emit(&value, &state_line(&next));
            return Err(Failure::Invalid(format!(
                "gate 2: drift ratio {:.4} over {} request(s) is above the limit {}; ramp blocked — `rampart ramp resume` after review starts a new window",
                view.ratio, view.since.requests, gates.max_drift_ratio
            )));
        }
    }

    // Gate 3: bake time.
    let elapsed = now_unix().saturating_sub(state.step_started_unix);
    if elapsed < gates.bake_seconds {
        let value = json!({
            "ok": false, "command": "advance", "gate": "bake", "waiting": true,
            "elapsed_seconds": elapsed, "bake_seconds": gates.bake_seconds, "state": state_json(&state),
        });
        ctx.emit(&value, &state_line(&state));
        return Err(Failure::Waiting(format!(
            "gate 3: {elapsed}s since the step began, the plan bakes {}s",
            gates.bake_seconds
        )));
    }

    let mut next = state.clone();
    let (action, to_step) = if state.step >= plan.steps.len() {
        next.status = Status::Completed;
        ("complete", state.step)
    } else {
        next.step = state.step + 1;
        next.steps = plan.steps.len();
        next.percent = plan.steps[state.step];
        new_window(&mut next, reading);
        ("advance", state.step + 1)
    };
    let mut gate_details = json!({ "live": delta.to, "elapsed_seconds": elapsed });
    if let Some(view) = &view {
        gate_details["requests"] = json!(view.since.requests);
        gate_details["drift"] = json!(view.since.drift);
        gate_details["missing"] = json!(view.since.missing);
        gate_details["drift_ratio"] = json!(view.ratio);
    }
    let details = json!({
        "from": { "step": state.step, "percent": state.percent },
        "to": { "step": to_step, "percent": next.percent },
        "gates": gate_details,
    });
    let record = ctx.commit(Some(&state), &mut next, action, details)?;
    let value = json!({
        "ok": true, "command": "advance", "action": action, "state": state_json(&next),
        "gates": record["details"]["gates"], "audit_seq": record["seq"],
    });
    let text = if action == "complete" {
        format!(
            "completed {}: the last step ({}%) passed its gates",
            next.contract, next.percent
        )
    } else {
        format!(
            "advanced {} to step {}/{}: {}% canary",
            next.contract, next.step, next.steps, next.percent
        )
    };
    ctx.emit(&value, &text);
    Ok(())
}

fn pause(ctx: &Ctx) -> Outcome {
    let (state, _guard) = ctx.started_state()?;
    if state.status != Status::Running {
        return Err(Failure::NotAllowed(format!(
            "the ramp is {}; only a running ramp can be paused",
            state.status.as_str()
        )));
    }
    let mut next = state.clone();
    next.status = Status::Paused;
    let record = ctx.commit(Some(&state), &mut next, "pause", json!({}))?;
    let value = json!({ "ok": true, "command": "pause", "state": state_json(&next), "audit_seq": record["seq"] });
    ctx.emit(
        &value,
        &format!(
            "paused {} at step {}/{} ({}% canary stays)",
            next.contract, next.step, next.steps, next.percent
        ),
    );
    Ok(())
}

fn resume(ctx: &Ctx) -> Outcome {
    let (state, _guard) = ctx.started_state()?;
    let mut next = state.clone();
    next.status = Status::Running;
    next.blocked = None;
    let mut details = json!({ "from": state.status.as_str() });
    match (
        state.status,
        state.blocked.as_ref().map(|b| b.reason.as_str()),
    ) {
        (Status::Paused, _) => {}
        (Status::Blocked, Some("config")) => {
            // Only the locked config itself lets a config block go without an approval.
            let live = ctx.read_live()?;
            let delta = Delta::between(&to_json(&state.locked_snapshot), &live);
            if !delta.is_empty() {
                let value = json!({ "ok": false, "command": "resume", "delta": delta.to_json(), "state": state_json(&state) });
                ctx.emit(&value, &delta.describe());
                return Err(Failure::Invalid(format!(
                    "the live config {} still differs from the lock {}; approve it (`rampart ramp approve`) or restore the config",
                    delta.to, delta.from
                )));
            }
            new_window(&mut next, ctx.read_metrics()?);
            details["window"] = json!("new");
        }
        (Status::Blocked, _) => {
            // A drift block: the operator reviewed it; judge a fresh window.
            new_window(&mut next, ctx.read_metrics()?);
            details["window"] = json!("new");
        }
        (other, _) => {
            return Err(Failure::NotAllowed(format!(
                "the ramp is {}; resume continues a paused or blocked ramp",
                other.as_str()
            )))
        }
    }
    let record = ctx.commit(Some(&state), &mut next, "resume", details)?;
    let value = json!({ "ok": true, "command": "resume", "state": state_json(&next), "audit_seq": record["seq"] });
    ctx.emit(&value, &format!("resumed: {}", state_line(&next)));
    Ok(())
}

fn revert(ctx: &Ctx) -> Outcome {
    let (state, _guard) = ctx.started_state()?;
    if state.status == Status::Reverted {
        return Err(Failure::NotAllowed("the ramp is already reverted".into()));
    }
    let mut next = state.clone();
    next.status = Status::Reverted;
    next.percent = 0.0;
    let details = json!({ "from": { "status": state.status.as_str(), "step": state.step, "percent": state.percent } });
    let record = ctx.commit(Some(&state), &mut next, "revert", details)?;
    let value = json!({ "ok": true, "command": "revert", "state": state_json(&next), "audit_seq": record["seq"] });
    ctx.emit(
        &value,
        &format!(
            "reverted {}: everyone on stable (published 0%)",
            next.contract
        ),
    );
    Ok(())
}

fn diff(ctx: &Ctx) -> Outcome {
    // The lock in force: the state's after a start, else the plan's snapshot.
    let locked = match ctx.load_state()? {
        Some(state) => to_json(&state.locked_snapshot),
        None => {
            let path = &ctx.plan.snapshot_path;
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            Json::parse(&bytes, DEFAULT_MAX_DEPTH)
                .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?
        }
    };
    let live = ctx.read_live()?;
    let delta = Delta::between(&locked, &live);
    let value = json!({ "ok": delta.is_empty(), "command": "diff", "delta": delta.to_json() });
    if delta.is_empty() {
        ctx.emit(
            &value,
            &format!(
                "no delta: the live config has the locked digest {}",
                delta.from
            ),
        );
        return Ok(());
    }
    ctx.emit(&value, &delta.describe());
    Err(Failure::Invalid(format!(
        "the live config differs from the lock in {} place(s)",
        delta.changes.len()
    )))
}

fn approve(ctx: &Ctx, flags: &Flags) -> Outcome {
    let by = flags.required("by")?;
    let reason = flags.required("reason")?;
    if reason.trim().is_empty() {
        return Err(Failure::Usage("--reason must say why".into()));
    }
    let (state, _guard) = ctx.started_state()?;
    if !matches!(
        state.status,
        Status::Running | Status::Paused | Status::Blocked
    ) {
        return Err(Failure::NotAllowed(format!(
            "the ramp is {}; there is nothing to continue",
            state.status.as_str()
        )));
    }
    let live = ctx.read_live()?;
    let old = to_json(&state.locked_snapshot);
    let delta = Delta::between(&old, &live);
    if delta.is_empty() {
        return Err(Failure::NotAllowed(format!(
            "the live config has the locked digest {}; there is no change to approve",
            delta.from
        )));
    }
    if let Some(expected) = flags.value("expect-delta") {
        if expected != delta.digest() {
            let value = json!({ "ok": false, "command": "approve", "error": "delta_changed", "delta": delta.to_json() });
            ctx.emit(&value, &delta.describe());
            return Err(Failure::Invalid(format!(
                "the live delta is {}, not the reviewed {expected}: the config changed again; review this delta",
                delta.digest()
            )));
        }
    }
    let lock = lock_of(&ctx.plan, &live, "live snapshot")?;
    let mut next = state.clone();
    next.lock = lock;
    next.locked_snapshot = to_value(&live);
    next.status = Status::Running;
    next.blocked = None;
    let after = ctx.plan.after_approval;
    if after == AfterApproval::Restart {
        next.step = 1;
        next.steps = ctx.plan.steps.len();
        next.percent = ctx.plan.steps[0];
    }
    new_window(&mut next, ctx.read_metrics()?);
    let details = json!({
        "approved_by": by,
        "old": delta.from,
        "new": delta.to,
        "delta_digest": delta.digest(),
        "delta": delta.to_json(),
        "fields": next.lock.fields,
        "after_approval": after.as_str(),
        "from": { "status": state.status.as_str(), "step": state.step, "percent": state.percent },
    });
    let record = ctx.commit(Some(&state), &mut next, "approve", details)?;
    let value = json!({
        "ok": true, "command": "approve", "old": delta.from, "new": delta.to,
        "delta_digest": delta.digest(), "after_approval": after.as_str(),
        "state": state_json(&next), "audit_seq": record["seq"],
    });
    ctx.emit(
        &value,
        &format!(
            "approved by {by}: {} -> {} (delta {})\n{}",
            delta.from,
            delta.to,
            delta.digest(),
            state_line(&next)
        ),
    );
    Ok(())
}

/// `rampart audit verify|show ...`
pub fn audit_command(args: &[String]) -> Outcome {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Failure::Usage("give an audit command: verify, show".into()));
    };
    let flags = Flags::parse(rest, &["plan", "state", "audit"], &["json"])?;
    if let Some(extra) = flags.positional.first() {
        return Err(Failure::Usage(format!("unexpected argument `{extra}`")));
    }
    let plan = match flags.value("plan") {
        Some(p) => Some(RampPlan::load(Path::new(p))?),
        None => None,
    };
    let audit_path = match (flags.value("audit"), &plan) {
        (Some(a), _) => PathBuf::from(a),
        (None, Some(p)) => p.audit_path.clone(),
        (None, None) => return Err(Failure::Usage("give --plan PLAN or --audit FILE".into())),
    };
    let state_path = match (flags.value("state"), &plan) {
        (Some(s), _) => Some(PathBuf::from(s)),
        (None, Some(p)) => Some(p.state_path.clone()),
        (None, None) => None,
    };
    let json_out = flags.switch("json");
    let bytes = match std::fs::read(&audit_path) {
        Ok(bytes) => bytes,
        // With a state to compare against, a missing log is a log with every record deleted.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && state_path.as_ref().is_some_and(|p| p.exists()) =>
        {
            Vec::new()
        }
        Err(e) => return Err(Failure::Usage(format!("{}: {e}", audit_path.display()))),
    };
    match sub.as_str() {
        "verify" => {
            let state = match &state_path {
                Some(p) => State::load(p)?,
                None => None,
            };
            let report = audit::verify(&bytes, state.as_ref().map(|s| (&s.audit, &s.last_record)));
            let head = report.head();
            let value = json!({
                "ok": report.finding.is_none(),
                "command": "audit verify",
                "records": report.records.len(),
                "head": head,
                "state_checked": state.is_some(),
                "first_bad": report.finding.as_ref().map(|f| json!({
                    "line": f.line, "seq": f.seq, "kind": f.kind, "message": f.message, "repairable": f.repairable,
                })),
            });
            if json_out {
                println!("{value}");
            }
            match report.finding {
                None => {
                    if !json_out {
                        println!(
                            "ok: {} record(s), chain intact{}",
                            report.records.len(),
                            if state.is_some() {
                                ", ends at the state's head"
                            } else {
                                " (no state file given: a deleted last record cannot be detected)"
                            }
                        );
                    }
                    Ok(())
                }
                Some(f) => Err(Failure::Invalid(format!(
                    "{}: first bad record at line {}: {}",
                    audit_path.display(),
                    f.line,
                    f.message
                ))),
            }
        }
        "show" => {
            let report = audit::verify(&bytes, None);
            for record in &report.records {
                if json_out {
                    println!("{record}");
                } else {
                    println!(
                        "{:>4}  {}  {:<10} {:<9} {}",
                        record["seq"],
                        record["time"].as_str().unwrap_or_default(),
                        record["actor"].as_str().unwrap_or_default(),
                        record["action"].as_str().unwrap_or_default(),
                        summary(&record["details"])
                    );
                }
            }
            match report.finding {
                None => Ok(()),
                Some(f) => Err(Failure::Invalid(format!(
                    "{}: stopped at line {}: {}",
                    audit_path.display(),
                    f.line,
                    f.message
                ))),
            }
        }
        other => Err(Failure::Usage(format!("unknown audit command `{other}`"))),
    }
}

/// A one-line summary of a record's details for `audit show`.
fn summary(details: &Value) -> String {
    let mut parts = Vec::new();
    if let (Some(status), Some(step), Some(percent)) = (
        details["status"].as_str(),
        details["step"].as_u64(),
        details["percent"].as_f64(),
    ) {
        parts.push(format!("{status} step {step} at {percent}%"));
    }
    if let Some(gate) = details["gate"].as_str() {
        parts.push(format!("gate {gate}"));
    }
    if let (Some(old), Some(new)) = (details["old"].as_str(), details["new"].as_str()) {
        parts.push(format!("{old} -> {new}"));
    }
    if let Some(reason) = details["reason"].as_str() {
        parts.push(format!("reason: {reason}"));
    }
    parts.join("; ")
}
