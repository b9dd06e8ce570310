//! The contract tools: `digest`, `check`, `lock`, `bucket`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

use rampart::bucket::{is_canary, BUCKETS};
use rampart::contract::{Compare, ContractSpec};
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::{digest_of, lock_from_snapshot};

use crate::args::{BucketArgs, CheckArgs, DigestArgs, LockArgs};
use crate::files::write_atomically;
use crate::{Failure, Outcome};

/// The bytes of `path`, or of standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::Usage(format!("reading standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

fn read_json(path: &Path) -> Result<Json, Failure> {
    let bytes = read_input(path)?;
    Json::parse(&bytes, DEFAULT_MAX_DEPTH)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))
}

fn read_contract(path: &Path) -> Result<ContractSpec, Failure> {
    let bytes = read_input(path)?;
    ContractSpec::parse(&bytes).map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))
}

/// `rampart digest FILE [--canonical]`.
pub fn digest(args: &DigestArgs) -> Outcome {
    let json = read_json(&args.file)?;
    if args.canonical {
        let mut out = std::io::stdout().lock();
        out.write_all(&json.to_canonical())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    } else {
        println!("{}", digest_of(&json));
    }
    Ok(())
}

/// `rampart check CONTRACT [--snapshot FILE]`.
pub fn check(args: &CheckArgs) -> Outcome {
    let path = args.contract.display();
    let spec = read_contract(&args.contract)?;
    let plan = spec
        .compile()
        .map_err(|e| Failure::Invalid(format!("{path}: {e}")))?;
    if let Some(snapshot_path) = &args.snapshot {
        let snapshot = read_json(snapshot_path)?;
        let snapshot_path = snapshot_path.display();
        let expected = lock_from_snapshot(&spec, &snapshot)
            .map_err(|e| Failure::Invalid(format!("{snapshot_path}: {e}")))?;
        let actual = spec.lock.clone().unwrap_or_default();
        let mut delta = String::new();
        if actual.digest.is_some() && actual.digest != expected.digest {
            let _ = write!(delta, " lock.digest");
        }
        if let (Some(have), Some(want)) = (&actual.fields, &expected.fields) {
            for (name, digest) in want {
                if have.get(name) != Some(digest) {
                    let _ = write!(delta, " lock.fields.{name}");
                }
            }
        }
        if !delta.is_empty() {
            return Err(Failure::Invalid(format!(
                "{path}: the lock is not the lock of {snapshot_path}; differs at:{delta}"
            )));
        }
    }
    let mode = match plan.compare {
        Compare::Fields => "field digests",
        Compare::Snapshot(_) => "whole-snapshot digest",
    };
    println!(
        "ok: contract {} — {} input(s), canary {}% ({} of {BUCKETS} buckets), locked by {mode}, on_drift {}",
        plan.name,
        plan.inputs.len(),
        plan.percent,
        plan.threshold,
        plan.on_drift.as_str()
    );
    Ok(())
}

/// `rampart lock --contract C --snapshot S [--output FILE]`.
pub fn lock(args: &LockArgs) -> Outcome {
    let mut spec = read_contract(&args.contract)?;
    let snapshot = read_json(&args.snapshot)?;
    let lock = lock_from_snapshot(&spec, &snapshot)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", args.snapshot.display())))?;
    spec.lock = Some(lock);
    spec.compile()
        .map_err(|e| Failure::Invalid(format!("{}: {e}", args.contract.display())))?;
    let mut text =
        serde_json::to_string_pretty(&spec).map_err(|e| Failure::Invalid(e.to_string()))?;
    text.push('\n');
    match &args.output {
        Some(out) => write_atomically(out, text.as_bytes())
            .map_err(|e| Failure::Usage(format!("{}: {e}", out.display())))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// `rampart bucket --contract C [--json] KEY...`.
pub fn bucket(args: &BucketArgs) -> Outcome {
    let spec = read_contract(&args.contract)?;
    let plan = spec
        .compile()
        .map_err(|e| Failure::Invalid(format!("{}: {e}", args.contract.display())))?;
    for key in &args.keys {
        let b = plan.salt.bucket(key.as_bytes());
        let side = if is_canary(b, plan.threshold) {
            "canary"
        } else {
            "stable"
        };
        if args.json {
            let line = serde_json::json!({
                "contract": plan.name, "key": key, "bucket": b, "threshold": plan.threshold, "side": side,
            });
            println!("{line}");
        } else {
            println!("{key}\tbucket {b}\tthreshold {}\t{side}", plan.threshold);
        }
    }
    Ok(())
}
