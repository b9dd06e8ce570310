//! `rampart audit verify|show`: check and list a ramp's hash-chained audit log, and
//! check every signed approval in it against the plan's `allowed_signers`.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::approval::{self, AllowedSigners, LogCheck};
use crate::args::{AuditCommand, AuditSource};
use crate::audit;
use crate::plan::RampPlan;
use crate::state::State;
use crate::{Failure, Outcome};

/// Where `audit` reads: the log, the state file whose head it must end at, and the
/// `allowed_signers` file approvals are checked against, if any.
struct Paths {
    audit: PathBuf,
    state: Option<PathBuf>,
    signers: Option<PathBuf>,
}

/// The files `source` (and `--state`) name.
fn paths(source: &AuditSource, state: Option<&PathBuf>) -> Result<Paths, Failure> {
    let plan = match &source.plan {
        Some(p) => Some(RampPlan::load(p)?),
        None => None,
    };
    let audit_path = match (&source.audit, &plan) {
        (Some(a), _) => a.clone(),
        (None, Some(p)) => p.audit_path.clone(),
        // clap's argument group requires one of the two.
        (None, None) => return Err(Failure::Usage("give --plan PLAN or --audit FILE".into())),
    };
    Ok(Paths {
        audit: audit_path,
        state: state
            .cloned()
            .or_else(|| plan.as_ref().map(|p| p.state_path.clone())),
        signers: plan.and_then(|p| p.allowed_signers),
    })
}

/// The log's bytes. With a state to compare against, a missing log is a log with
/// every record deleted.
fn read(audit_path: &PathBuf, state_path: Option<&PathBuf>) -> Result<Vec<u8>, Failure> {
    match std::fs::read(audit_path) {
        Ok(bytes) => Ok(bytes),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && state_path.is_some_and(|p| p.exists()) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(Failure::Usage(format!("{}: {e}", audit_path.display()))),
    }
}

/// Runs `rampart audit verify|show`.
pub fn run(command: &AuditCommand) -> Outcome {
    match command {
        AuditCommand::Verify {
            source,
            state,
            json,
        } => verify(source, state.as_ref(), *json),
        AuditCommand::Show { source, json } => show(source, *json),
    }
}

fn verify(source: &AuditSource, state: Option<&PathBuf>, json_out: bool) -> Outcome {
    let paths = paths(source, state)?;
    let audit_path = &paths.audit;
    let bytes = read(audit_path, paths.state.as_ref())?;
    let state = match &paths.state {
        Some(p) => State::load(p)?,
        None => None,
    };
    let report = audit::verify(&bytes, state.as_ref().map(|s| (&s.audit, &s.last_record)));
    let signers = match &paths.signers {
        Some(p) => Some(AllowedSigners::load(p)?),
        None => None,
    };
    let approvals = signers
        .as_ref()
        .map(|s| approval::check_log(&report.records, s));
    // The earliest bad line: a refused approval lies inside the verified chain.
    let finding = match (
        report.finding.clone(),
        approvals.as_ref().and_then(|a| a.finding.clone()),
    ) {
        (Some(chain), Some(signature)) if signature.line < chain.line => Some(signature),
        (chain, signature) => chain.or(signature),
    };
    if json_out {
        let value = json!({
            "ok": finding.is_none(),
            "command": "audit verify",
            "records": report.records.len(),
            "head": report.head(),
            "state_checked": state.is_some(),
            "signatures_checked": approvals.is_some(),
            "signed_approvals": approvals.as_ref().map(|a| a.verified.iter().map(|(seq, signer)| json!({
                "seq": seq, "principal": signer.principal, "key": signer.key,
            })).collect::<Vec<_>>()),
            "first_bad": finding.as_ref().map(|f| json!({
                "line": f.line, "seq": f.seq, "kind": f.kind, "message": f.message, "repairable": f.repairable,
            })),
        });
        println!("{value}");
    }
    match finding {
        None => {
            if !json_out {
                println!(
                    "ok: {} record(s), chain intact{}{}",
                    report.records.len(),
                    if state.is_some() {
                        ", ends at the state's head"
                    } else {
                        " (no state file given: a deleted last record cannot be detected)"
                    },
                    approvals_summary(approvals.as_ref(), &report.records)
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

/// What `audit verify` says about approvals after an intact chain.
fn approvals_summary(approvals: Option<&LogCheck>, records: &[Value]) -> String {
    match approvals {
        Some(check) => format!(
            "; {} signed approval(s) verified against allowed_signers",
            check.verified.len()
        ),
        None => match approval::signed_count(records) {
            0 => String::new(),
            n => format!(
                "; {n} signed approval(s) not checked (no plan naming approval.allowed_signers)"
            ),
        },
    }
}

fn show(source: &AuditSource, json_out: bool) -> Outcome {
    let paths = paths(source, None)?;
    let audit_path = &paths.audit;
    let bytes = read(audit_path, paths.state.as_ref())?;
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
    if let Some(key) = details["signature"]["key"].as_str() {
        parts.push(format!("signed with {key}"));
    }
    if let Some(reason) = details["reason"].as_str() {
        parts.push(format!("reason: {reason}"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_step_gate_digests_and_reason() {
        let details = json!({
            "status": "blocked", "step": 2, "percent": 5.0, "gate": "config",
            "old": "sha256:a", "new": "sha256:b", "reason": "r",
            "signature": { "key": "SHA256:k" },
        });
        assert_eq!(
            summary(&details),
            "blocked step 2 at 5%; gate config; sha256:a -> sha256:b; signed with SHA256:k; reason: r"
        );
        assert_eq!(summary(&json!({})), "");
    }

    #[test]
    fn the_verify_line_counts_checked_and_unchecked_signed_approvals() {
        let signed = json!({ "action": "approve", "details": { "signature": {} } });
        let unsigned = json!({ "action": "approve", "details": {} });
        let records = [signed.clone(), unsigned, signed];
        let checked = LogCheck {
            verified: vec![(
                1,
                approval::Verified {
                    principal: "alice".into(),
                    key: "SHA256:k".into(),
                },
            )],
            finding: None,
        };
        assert_eq!(
            approvals_summary(Some(&checked), &records),
            "; 1 signed approval(s) verified against allowed_signers"
        );
        assert_eq!(
            approvals_summary(None, &records),
            "; 2 signed approval(s) not checked (no plan naming approval.allowed_signers)"
        );
        assert_eq!(approvals_summary(None, &records[1..2]), "");
    }
}
