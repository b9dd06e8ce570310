//! The approval commands. `approve` accepts the live config: re-locks to it and lets
//! the ramp continue. A plan naming `approval.allowed_signers` takes only signed
//! approvals: `statement` prints the approval statement, the approver signs it with
//! `ssh-keygen -Y sign -n rampart-approval`, and `approve --statement --signature`
//! checks it ([`crate::approval::check`]) before anything is written. Without
//! `allowed_signers`, `approve --by NAME` records the name given.

use std::path::Path;

use rampart::jcs::Json;
use serde_json::{json, Value};

use super::durable;
use super::output::{state_json, state_line};
use super::store::{lock_of, new_window, to_json, to_value, Ctx};
use crate::approval::{self, statement, AllowedSigners, SignedApproval, Statement};
use crate::args::{ApproveArgs, StatementArgs};
use crate::audit::Finding;
use crate::delta::Delta;
use crate::plan::{AfterApproval, RampPlan};
use crate::state::{State, Status};
use crate::time::{now_unix, rfc3339};
use crate::{Failure, Outcome};

/// How this plan's approvals are given, for messages.
pub fn how_to_approve(plan: &RampPlan) -> &'static str {
    if plan.allowed_signers.is_some() {
        "`rampart ramp statement --out FILE`, `ssh-keygen -Y sign -n rampart-approval FILE`, then `rampart ramp approve --statement FILE --signature FILE.sig --reason TEXT`"
    } else {
        "`rampart ramp approve --by NAME --reason TEXT`"
    }
}

/// The live config and its delta from the lock that an approval of `state` would
/// accept; refused if the ramp cannot continue or the live config is the locked one.
fn pending(ctx: &Ctx, state: &State) -> Result<(Json, Delta), Failure> {
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
    let delta = Delta::between(&to_json(&state.locked_snapshot), &live);
    if delta.is_empty() {
        return Err(Failure::NotAllowed(format!(
            "the live config has the locked digest {}; there is no change to approve",
            delta.from
        )));
    }
    Ok((live, delta))
}

/// The statement approving `delta` after `state`'s audit head, made at `now`.
fn statement_of(state: &State, delta: &Delta, now: u64) -> Statement {
    Statement::new(
        &state.contract,
        &delta.from,
        &delta.to,
        &delta.digest(),
        &state.audit,
        now,
    )
}

/// `rampart ramp statement`: the approval statement for the live config, on standard
/// output or in `--out FILE`.
pub fn statement(ctx: &Ctx, args: &StatementArgs) -> Outcome {
    let state = ctx.require_state()?;
    let (_, delta) = pending(ctx, &state)?;
    let now = now_unix();
    let bytes = statement_of(&state, &delta, now).to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let expires = rfc3339(now + statement::MAX_AGE_SECONDS);
    let value = json!({
        "ok": true, "command": "statement", "statement": text, "expires": expires,
        "out": args.out.as_ref().map(|p| p.display().to_string()), "delta": delta.to_json(),
    });
    let Some(out) = &args.out else {
        if ctx.json {
            ctx.emit(&value, "");
        } else {
            // Exactly the bytes to sign: `> FILE` makes the file `--out FILE` writes.
            print!("{text}");
            ctx.printed.set(true);
        }
        return Ok(());
    };
    crate::files::write_atomically(out, &bytes)
        .map_err(|e| Failure::Io(format!("{}: {e}", out.display())))?;
    let file = out.display();
    ctx.emit(
        &value,
        &format!(
            "{}\nwrote {file}: approves this delta of {} after audit record {}; usable until {expires}\n\
             sign:    ssh-keygen -Y sign -f KEY -n {} {file}\n\
             approve: rampart ramp approve --plan {} --statement {file} --signature {file}.sig --reason TEXT",
            delta.describe(),
            state.contract,
            state.audit.seq,
            approval::NAMESPACE,
            ctx.plan.path.display(),
        ),
    );
    Ok(())
}

/// `rampart ramp approve`.
pub fn approve(ctx: &Ctx, args: &ApproveArgs) -> Outcome {
    if args.reason.trim().is_empty() {
        return Err(Failure::Usage("--reason must say why".into()));
    }
    let who = approver_of(&ctx.plan, args)?;
    let (state, _guard) = ctx.started_state()?;
    let (live, delta) = pending(ctx, &state)?;
    if let Some(expected) = &args.expect_delta {
        if *expected != delta.digest() {
            let value = json!({ "ok": false, "command": "approve", "error": "delta_changed", "delta": delta.to_json() });
            ctx.emit(&value, &delta.describe());
            return Err(Failure::Invalid(format!(
                "the live delta is {}, not the reviewed {expected}: the config changed again; review this delta",
                delta.digest()
            )));
        }
    }
    let now = now_unix();
    let (actor, signed) = approver(&who, &state, &delta, now)?;
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
    new_window(&mut next, ctx.read_metrics()?, now);
    let mut details = json!({
        "approved_by": actor,
        "old": delta.from,
        "new": delta.to,
        "delta_digest": delta.digest(),
        "delta": delta.to_json(),
        "fields": next.lock.fields,
        "after_approval": after.as_str(),
        "from": { "status": state.status.as_str(), "step": state.step, "percent": state.percent },
    });
    if let Some(signed) = &signed {
        details["signature"] = signed.to_json();
    }
    durable::lift(&mut next, &mut details);
    let record = ctx.commit_as(&actor, Some(&state), &mut next, "approve", details, now)?;
    let key = signed.as_ref().map(|s| s.signer.key.clone());
    let value = json!({
        "ok": true, "command": "approve", "old": delta.from, "new": delta.to,
        "delta_digest": delta.digest(), "after_approval": after.as_str(),
        "approved_by": actor, "signed": signed.is_some(), "key": key,
        "state": state_json(&next), "audit_seq": record["seq"],
    });
    let by = match &key {
        Some(key) => format!("{actor} (signed, key {key})"),
        None => actor.clone(),
    };
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

/// How an approval names its approver.
enum Approver<'a> {
    /// A signature to check against the plan's `allowed_signers`.
    Signed {
        signers: &'a Path,
        statement: &'a Path,
        signature: &'a Path,
    },
    /// `--by NAME` (plans without `allowed_signers`).
    Named(&'a str),
}

/// The approver `args` give for `plan`: refuses a signature on a plan that cannot
/// check one, a signed plan's approval without one, and an unsigned approval without a
/// name — before anything is read.
fn approver_of<'a>(plan: &'a RampPlan, args: &'a ApproveArgs) -> Result<Approver<'a>, Failure> {
    match (&plan.allowed_signers, &args.statement, &args.signature, &args.by) {
        (Some(signers), Some(statement), Some(signature), _) => Ok(Approver::Signed {
            signers,
            statement,
            signature,
        }),
        (Some(path), ..) => Err(Failure::Usage(format!(
            "this plan requires signed approvals (approval.allowed_signers {}): {}",
            path.display(),
            how_to_approve(plan)
        ))),
        (None, _, Some(_), _) => Err(Failure::Usage(
            "this plan names no approval.allowed_signers, so a signature cannot be checked: approve with --by NAME"
                .into(),
        )),
        (None, _, None, Some(by)) => Ok(Approver::Named(by)),
        (None, _, None, None) => Err(Failure::Usage(
            "--by NAME is required: who approves (this plan's approvals are unsigned)".into(),
        )),
    }
}

/// Who approves: the principal of a verified signature, or the name given.
fn approver(
    approver: &Approver,
    state: &State,
    delta: &Delta,
    now: u64,
) -> Result<(String, Option<SignedApproval>), Failure> {
    let (signers, statement, signature) = match approver {
        Approver::Named(name) => return Ok(((*name).to_owned(), None)),
        Approver::Signed {
            signers,
            statement,
            signature,
        } => (signers, statement, signature),
    };
    let signers = AllowedSigners::load(signers)?;
    let statement = read(statement, "statement")?;
    let armored = String::from_utf8(read(signature, "signature")?).map_err(|_| {
        Failure::Invalid(format!(
            "signature {}: not text (an ASCII-armored SSH signature)",
            signature.display()
        ))
    })?;
    let expected = statement_of(state, delta, now);
    let signed = approval::check(&signers, &statement, &armored, &expected, now)
        .map_err(|e| Failure::Invalid(format!("signed approval refused: {e}")))?;
    Ok((signed.signer.principal.clone(), Some(signed)))
}

/// A file given on the command line; `what` names it in the error.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{what} {}: {e}", path.display())))
}

/// What `status` says about approvals, for `records` (the log's verified chain): the
/// JSON, one line, and the first signed approval that fails its check.
pub fn status_of(ctx: &Ctx, records: &[Value]) -> (Value, String, Option<Finding>) {
    let Some(path) = &ctx.plan.allowed_signers else {
        return (
            json!({ "signed": false }),
            "UNSIGNED: `approve --by NAME` records the name given (the plan names no approval.allowed_signers)".into(),
            None,
        );
    };
    let file = path.display().to_string();
    match AllowedSigners::load(path) {
        Err(failure) => (
            json!({ "signed": true, "allowed_signers": file, "error": failure.message() }),
            format!("signed, but {}", failure.message()),
            None,
        ),
        Ok(signers) => {
            let check = approval::check_log(records, &signers);
            (
                json!({
                    "signed": true, "allowed_signers": file, "signers": signers.len(),
                    "verified": check.verified.len(),
                }),
                format!(
                    "signed by a key in {file} ({} signer line(s)); {} signed approval(s) verified",
                    signers.len(),
                    check.verified.len()
                ),
                check.finding,
            )
        }
    }
}
