//! The ramp commands: start, status, advance, pause, resume, revert, diff, statement,
//! approve.
//!
//! Each command reads what it needs ([`store`]), decides, then records the change
//! through [`store::Ctx::commit`] and answers ([`output`]). `advance` leaves the
//! decision to [`gates::evaluate`], a pure function tested on its own; [`durable`]
//! decides when the data plane's drift pause is made durable; [`approve`] holds the
//! approval commands.

pub mod approve;
pub mod audit_commands;
pub mod durable;
pub mod gates;
pub mod output;
pub mod store;

use serde_json::{json, Value};

use crate::args::{ChangeArgs, RampCommand};
use crate::audit;
use crate::delta::Delta;
use crate::metrics::Reading;
use crate::state::{Block, ChangeLock, State, Status, STATE_VERSION};
use crate::time::{now_unix, rfc3339};
use crate::{Failure, Outcome};

use gates::{BlockReason, Passed, Verdict, Wait, Window};
use output::{json_failure, state_json, state_line};
use store::{lock_of, new_window, read_log, to_json, to_value, Ctx};

/// Runs `rampart ramp COMMAND`.
pub fn run(command: &RampCommand) -> Outcome {
    let name = command.name();
    let no_change = ChangeArgs::default();
    let (plan, change) = match command {
        RampCommand::Start(args)
        | RampCommand::Advance(args)
        | RampCommand::Pause(args)
        | RampCommand::Resume(args)
        | RampCommand::Revert(args) => (&args.plan, args.change.clone()),
        RampCommand::Status { plan } | RampCommand::Diff { plan } => (plan, no_change),
        RampCommand::Statement(args) => (&args.plan, no_change),
        RampCommand::Approve(args) => (
            &args.plan,
            ChangeArgs {
                by: args.by.clone(),
                reason: Some(args.reason.clone()),
            },
        ),
    };
    let ctx = Ctx::new(plan, &change).map_err(|failure| json_failure(plan.json, name, failure))?;
    let result = match command {
        RampCommand::Start(_) => start(&ctx),
        RampCommand::Status { .. } => status(&ctx),
        RampCommand::Advance(_) => advance(&ctx),
        RampCommand::Pause(_) => pause(&ctx),
        RampCommand::Resume(_) => resume(&ctx),
        RampCommand::Revert(_) => revert(&ctx),
        RampCommand::Diff { .. } => diff(&ctx),
        RampCommand::Statement(args) => approve::statement(&ctx, args),
        RampCommand::Approve(args) => approve::approve(&ctx, args),
    };
    match result {
        Err(failure) if !ctx.printed.get() => Err(json_failure(ctx.json, name, failure)),
        other => other,
    }
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
    let snapshot = ctx.read_snapshot()?;
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
        durable_pause: false,
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
    new_window(&mut next, reading, now);
    let details = json!({
        "plan": plan.path.display().to_string(),
        "steps": plan.steps,
        "snapshot": snapshot_path,
        "fields": next.lock.fields,
    });
    let record = ctx.commit(previous.as_ref(), &mut next, "start", details, now)?;
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

fn status(ctx: &Ctx) -> Outcome {
    let state = ctx.load_state()?.ok_or_else(|| {
        Failure::NotAllowed(format!(
            "no ramp started ({} does not exist)",
            ctx.state_path.display()
        ))
    })?;
    let gates = ctx.plan.gates;
    let metrics = ctx.read_metrics();
    // The one change status makes: a drift pause it sees becomes durable.
    let (state, made_durable) = match &metrics {
        Ok(Some(reading)) => hold_drift_pause(ctx, state, reading)?,
        _ => (state, None),
    };
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
    match metrics {
        Ok(None) => {
            out["metrics"] = Value::Null;
            lines.push("  drift: no metrics source (the drift gate is off)".into());
        }
        Ok(Some(reading)) => {
            let view = Window::of(&state, &reading);
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
                Some(false) => lines.push("  drift pause: off in the data plane".into()),
                None => {}
            }
        }
        Err(Failure::Invalid(e) | Failure::Io(e) | Failure::Usage(e)) => {
            out["metrics"] = json!({ "error": e });
            lines.push(format!("  drift: cannot read metrics: {e}"));
        }
        Err(_) => {}
    }
    out["durable_pause_seq"] = json!(made_durable);
    if let Some(seq) = made_durable {
        lines.push(format!(
            "  drift pause: made durable now (audit seq {seq}): the published contract is paused"
        ));
    }
    if state.durable_pause {
        lines.push(
            "  drift pause: durable: everyone on stable, also after an Envoy restart, until `rampart ramp approve` or `resume`"
                .into(),
        );
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
    let (approvals, approvals_line, signature_finding) = approve::status_of(ctx, &report.records);
    out["approvals"] = approvals;
    lines.push(format!("  approvals: {approvals_line}"));
    let finding = report.finding.or(signature_finding);
    out["audit"] = json!({
        "records": report.records.len(),
        "ok": finding.is_none(),
        "problem": finding.as_ref().map(|f| f.message.clone()),
    });
    if let Some(f) = &finding {
        lines.push(format!("  audit: {}", f.message));
    }
    let published = ctx
        .contract_of(&state)
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

/// Makes the data plane's drift pause durable ([`durable`]) when `reading` shows it
/// and `state` does not hold it yet: under the change lock, on the state as it is then.
/// Returns the state after, and the audit seq when this call recorded the pause.
fn hold_drift_pause(
    ctx: &Ctx,
    state: State,
    reading: &Reading,
) -> Result<(State, Option<u64>), Failure> {
    if !durable::needed(&state, reading.drift_paused) {
        return Ok((state, None));
    }
    let (current, _guard) = ctx.started_state()?;
    if !durable::needed(&current, reading.drift_paused) {
        return Ok((current, None));
    }
    let window = Window::of(&current, reading);
    let mut next = durable::made_durable(&current, &window);
    let record = ctx.commit(
        Some(&current),
        &mut next,
        "drift_pause",
        durable::details(&window),
        now_unix(),
    )?;
    Ok((next, record["seq"].as_u64()))
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
    let live = ctx.read_live()?;
    let delta = Delta::between(&to_json(&state.locked_snapshot), &live);
    // The counters gate only a config that passes; on a changed config they only say
    // whether the drift pause is on, and an unreachable metrics source must not keep
    // the config block from being recorded.
    let reading = if delta.is_empty() {
        ctx.read_metrics()?
    } else {
        ctx.read_metrics().ok().flatten()
    };
    let now = now_unix();
    let plan = &ctx.plan;
    let verdict = gates::evaluate(
        &state,
        &plan.steps,
        &plan.gates,
        &delta,
        reading.as_ref(),
        now,
    );
    match verdict {
        Verdict::Block(BlockReason::Config) | Verdict::Revert => {
            let drift_paused = reading.and_then(|r| r.drift_paused);
            config_mismatch(
                ctx,
                &state,
                &delta,
                verdict == Verdict::Revert,
                drift_paused,
                now,
            )
        }
        Verdict::Block(BlockReason::DriftPaused(window)) => {
            drift_block(ctx, &state, &window, true, now)
        }
        Verdict::Block(BlockReason::DriftRatio(window)) => {
            drift_block(ctx, &state, &window, false, now)
        }
        Verdict::Wait(Wait::MinRequests(window)) => {
            let min_requests = plan.gates.min_requests;
            let value = json!({
                "ok": false, "command": "advance", "gate": "min_requests", "waiting": true,
                "requests": window.since.requests, "min_requests": min_requests, "state": state_json(&state),
            });
            ctx.emit(&value, &state_line(&state));
            Err(Failure::Waiting(format!(
                "gate 2: {} request(s) since the step began, the plan needs {min_requests}",
                window.since.requests
            )))
        }
        Verdict::Wait(Wait::Bake { elapsed }) => {
            let bake_seconds = plan.gates.bake_seconds;
            let value = json!({
                "ok": false, "command": "advance", "gate": "bake", "waiting": true,
                "elapsed_seconds": elapsed, "bake_seconds": bake_seconds, "state": state_json(&state),
            });
            ctx.emit(&value, &state_line(&state));
            Err(Failure::Waiting(format!(
                "gate 3: {elapsed}s since the step began, the plan bakes {bake_seconds}s"
            )))
        }
        Verdict::Advance {
            to_step,
            percent,
            passed,
        } => {
            let mut next = state.clone();
            next.step = to_step;
            next.steps = plan.steps.len();
            next.percent = percent;
            new_window(&mut next, reading, now);
            step_passed(ctx, &state, next, "advance", &delta, &passed, now)
        }
        Verdict::Complete(passed) => {
            let mut next = state.clone();
            next.status = Status::Completed;
            step_passed(ctx, &state, next, "complete", &delta, &passed, now)
        }
    }
}

/// Gate 1 failed: the live config is not the locked one. Blocks (making the data
/// plane's drift pause durable too, if `drift_paused` says it is on), or reverts.
fn config_mismatch(
    ctx: &Ctx,
    state: &State,
    delta: &Delta,
    revert: bool,
    drift_paused: Option<bool>,
    now: u64,
) -> Outcome {
    let mut next = state.clone();
    let mut details = json!({ "gate": "config", "delta": delta.to_json() });
    let action = if revert {
        next.status = Status::Reverted;
        next.percent = 0.0;
        "revert"
    } else {
        next.status = Status::Blocked;
        next.blocked = Some(Block {
            reason: "config".into(),
            live_digest: Some(delta.to.clone()),
            drift_ratio: None,
            seq: state.audit.seq + 1,
        });
        if durable::needed(state, drift_paused) {
            next.durable_pause = true;
            details["drift_paused"] = json!(true);
            details["durable_pause"] = json!(true);
        }
        "block"
    };
    let record = ctx.commit(Some(state), &mut next, action, details, now)?;
    let value = json!({
        "ok": false, "command": "advance", "gate": "config", "action": action,
        "state": state_json(&next), "delta": delta.to_json(), "audit_seq": record["seq"],
    });
    ctx.emit(
        &value,
        &format!("{}\n{}", delta.describe(), state_line(&next)),
    );
    Err(Failure::Invalid(format!(
        "gate 1: the live config {} is not the locked {}; ramp {} at step {}/{} — {} to continue with it",
        delta.to,
        delta.from,
        next.status.as_str(),
        next.step,
        next.steps,
        approve::how_to_approve(&ctx.plan)
    )))
}

/// Gate 2 blocked: the data plane's drift pause is on (`paused`: the pause is made
/// durable), or the drift ratio is over the limit.
fn drift_block(ctx: &Ctx, state: &State, window: &Window, paused: bool, now: u64) -> Outcome {
    let max_drift_ratio = ctx.plan.gates.max_drift_ratio;
    let since = window.since;
    let mut value = json!({
        "ok": false, "command": "advance", "gate": "drift", "action": "block",
        "drift_ratio": window.ratio, "max_drift_ratio": max_drift_ratio,
        "requests": since.requests,
    });
    let (mut next, details) = if paused {
        value["drift_paused"] = json!(true);
        value["durable_pause"] = json!(true);
        (
            durable::made_durable(state, window),
            durable::details(window),
        )
    } else {
        let mut next = state.clone();
        next.status = Status::Blocked;
        next.blocked = Some(gates::drift_block(state, window.ratio));
        let details = json!({
            "gate": "drift", "requests": since.requests, "drift": since.drift,
            "missing": since.missing, "drift_ratio": window.ratio,
            "max_drift_ratio": max_drift_ratio,
        });
        (next, details)
    };
    let record = ctx.commit(Some(state), &mut next, "block", details, now)?;
    value["state"] = state_json(&next);
    value["audit_seq"] = record["seq"].clone();
    ctx.emit(&value, &state_line(&next));
    Err(Failure::Invalid(if paused {
        "gate 2: the data plane paused the canary for drift (drift_pause); the pause is now durable (the published contract is paused) — approve the changed config, resume after review, or revert".into()
    } else {
        format!(
            "gate 2: drift ratio {:.4} over {} request(s) is above the limit {max_drift_ratio}; ramp blocked — `rampart ramp resume` after review starts a new window",
            window.ratio, since.requests
        )
    }))
}

/// Every gate passed: records `next` (the next step, or completed) with what the
/// gates saw.
fn step_passed(
    ctx: &Ctx,
    state: &State,
    mut next: State,
    action: &str,
    delta: &Delta,
    passed: &Passed,
    now: u64,
) -> Outcome {
    let to_step = next.step;
    let mut gate_details = json!({ "live": delta.to, "elapsed_seconds": passed.elapsed });
    if let Some(window) = &passed.window {
        gate_details["requests"] = json!(window.since.requests);
        gate_details["drift"] = json!(window.since.drift);
        gate_details["missing"] = json!(window.since.missing);
        gate_details["drift_ratio"] = json!(window.ratio);
    }
    let details = json!({
        "from": { "step": state.step, "percent": state.percent },
        "to": { "step": to_step, "percent": next.percent },
        "gates": gate_details,
    });
    let record = ctx.commit(Some(state), &mut next, action, details, now)?;
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
    let record = ctx.commit(Some(&state), &mut next, "pause", json!({}), now_unix())?;
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
    let now = now_unix();
    let mut next = state.clone();
    next.status = Status::Running;
    next.blocked = None;
    let mut details = json!({ "from": state.status.as_str() });
    durable::lift(&mut next, &mut details);
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
            new_window(&mut next, ctx.read_metrics()?, now);
            details["window"] = json!("new");
        }
        (Status::Blocked, _) => {
            // A drift block: the operator reviewed it; judge a fresh window.
            new_window(&mut next, ctx.read_metrics()?, now);
            details["window"] = json!("new");
        }
        (other, _) => {
            return Err(Failure::NotAllowed(format!(
                "the ramp is {}; resume continues a paused or blocked ramp",
                other.as_str()
            )))
        }
    }
    let record = ctx.commit(Some(&state), &mut next, "resume", details, now)?;
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
    let mut details = json!({ "from": { "status": state.status.as_str(), "step": state.step, "percent": state.percent } });
    durable::lift(&mut next, &mut details);
    let record = ctx.commit(Some(&state), &mut next, "revert", details, now_unix())?;
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
        None => ctx.read_snapshot()?,
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
