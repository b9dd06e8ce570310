//! `rampart`: the control plane's command line.
//!
//! Contract tools (`digest`, `check`, `lock`, `bucket`) and the ramp control plane:
//! `ramp start|status|advance|pause|resume|revert|diff|approve` drive a plan of steps
//! through three gates (live config has the locked digest; drift ratio and request
//! count since the step began; bake time), publish each step to Envoy by ECDS, keep
//! an atomically written state file, and record every change in a hash-chained audit
//! log that `audit verify` checks.
//!
//! Exit codes: 0 success; 1 the input was read but does not pass (bad JSON, bad
//! contract or plan, a gate that blocks, a config delta, a failed audit check);
//! 2 usage error, unreadable file or unreachable endpoint; 3 not allowed in the
//! ramp's current status; 4 a gate is still waiting (bake time, request count).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// `rampart render envoy|ecds|istio|envoy-gateway`.
mod render;

use rampart::bucket::{is_canary, BUCKETS};
use rampart::contract::{Compare, ContractSpec};
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::{digest_of, lock_from_snapshot};

const USAGE: &str = "\
rampart — config-locked canary ramps

USAGE:
  rampart digest FILE [--canonical]          sha256 of the RFC 8785 canonical form of FILE's JSON
                                             (FILE may be -; --canonical prints the canonical JSON)
  rampart check CONTRACT [--snapshot FILE]   validate a contract; with --snapshot, also check
                                             that its lock is the lock of that snapshot
  rampart lock --contract C --snapshot S [--output FILE]
                                             the contract with lock.digest and lock.fields
                                             computed from snapshot S ({input: value})
  rampart bucket --contract C [--json] KEY...
                                             each key's sticky bucket (0..10000) and side
  rampart render envoy|ecds|istio|envoy-gateway (--contract C | --plan P) [--out-dir DIR] [OPTIONS]
                                             deployable config with exact-match routing
                                             (`rampart render --help` lists the options)
  rampart version

RAMP (a plan of steps; every command takes --plan P, and --json for one JSON object on stdout):
  rampart ramp start   --plan P               lock the plan's snapshot, publish the first step
  rampart ramp status  --plan P               state, live config vs lock, drift since the step
                                             began, drift pause, bake time (writes nothing)
  rampart ramp advance --plan P               gate 1 live config has the locked digest (else
                                             block and print the delta), gate 2 drift ratio and
                                             min requests, gate 3 bake time; then the next step
  rampart ramp pause   --plan P [--reason T]  hold at the current step
  rampart ramp resume  --plan P [--reason T]  continue a paused ramp, or a blocked one (config
                                             block: only once the live config is the locked one)
  rampart ramp revert  --plan P [--reason T]  everyone to stable at once (publishes 0%)
  rampart ramp diff    --plan P               locked snapshot vs live: JSON pointers, old/new digests
  rampart ramp approve --plan P --by NAME --reason TEXT [--expect-delta DIGEST]
                                             accept the live config: binds old -> new digest and
                                             the delta digest, re-locks, restarts or resumes (plan);
                                             --expect-delta refuses if the delta is not the reviewed one
  Options: --state FILE, --audit FILE (override the plan's), --by NAME (actor; default $USER)
  rampart audit verify (--plan P | --audit FILE [--state FILE]) [--json]
                                             check the hash chain; names the first bad record
  rampart audit show   (--plan P | --audit FILE) [--json]

Exit codes: 0 ok; 1 invalid input, gate blocked, config delta, audit check failed (the
message names the field or record); 2 usage, I/O or network error; 3 not allowed in the
ramp's current status; 4 a gate is waiting (bake time, min requests) — retry later.";

mod audit;
mod delta;
// Publishing by ECDS; `http_filter_entry` serves the rendered bootstraps.
#[allow(dead_code)]
mod ecds;
mod http;
mod metrics;
mod plan;
mod ramp;
mod state;
mod time;

/// A failure and the exit code it maps to.
pub(crate) enum Failure {
    /// Bad command line or unreadable/unwritable file (exit 2).
    Usage(String),
    /// Input read but invalid, a gate that blocks, a failed verification (exit 1).
    Invalid(String),
    /// An I/O or network failure while the command line was fine (exit 2).
    Io(String),
    /// Not allowed in the ramp's current status (exit 3).
    NotAllowed(String),
    /// A gate is still waiting (bake time, request count); retry later (exit 4).
    Waiting(String),
}

impl Failure {
    /// The process exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 1,
            Failure::Usage(_) | Failure::Io(_) => 2,
            Failure::NotAllowed(_) => 3,
            Failure::Waiting(_) => 4,
        }
    }

    /// The message.
    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Usage(m)
            | Failure::Invalid(m)
            | Failure::Io(m)
            | Failure::NotAllowed(m)
            | Failure::Waiting(m) => m,
        }
    }
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let prefix = match failure {
                Failure::NotAllowed(_) => "not allowed",
                Failure::Waiting(_) => "waiting",
                _ => "error",
            };
            eprintln!("{prefix}: {}", failure.message());
            if let Failure::Usage(_) = failure {
                eprintln!("run `rampart help` for usage");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(args: &[String]) -> Outcome {
    let Some((command, rest)) = args.split_first() else {
        println!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "digest" => digest(rest),
        "check" => check(rest),
        "lock" => lock(rest),
        "bucket" => bucket(rest),
        "ramp" => ramp::run(rest),
        "audit" => ramp::audit_command(rest),
        "render" => render::render(rest),
        "version" | "--version" | "-V" => {
            println!("rampart {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}

/// Parsed flags: `--name value` pairs, boolean switches, and positional arguments.
pub(crate) struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Flags {
    pub(crate) fn parse(
        args: &[String],
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Flags, Failure> {
        let mut flags = Flags {
            values: Vec::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if with_value.contains(&name) {
                    let value = it
                        .next()
                        .ok_or_else(|| Failure::Usage(format!("--{name} needs a value")))?;
                    flags.values.push((name.to_owned(), value.clone()));
                } else if switches.contains(&name) {
                    flags.switches.push(name.to_owned());
                } else {
                    return Err(Failure::Usage(format!("unknown option `{arg}`")));
                }
            } else {
                flags.positional.push(arg.clone());
            }
        }
        Ok(flags)
    }

    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, Failure> {
        self.value(name)
            .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
    }

    pub(crate) fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    pub(crate) fn one_positional(&self, what: &str) -> Result<&str, Failure> {
        match self.positional.as_slice() {
            [one] => Ok(one),
            [] => Err(Failure::Usage(format!("{what} is required"))),
            _ => Err(Failure::Usage(format!(
                "expected one {what}, got {}",
                self.positional.len()
            ))),
        }
    }
}

fn read_input(path: &str) -> Result<Vec<u8>, Failure> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::Usage(format!("reading standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{path}: {e}")))
}

fn read_json(path: &str) -> Result<Json, Failure> {
    let bytes = read_input(path)?;
    Json::parse(&bytes, DEFAULT_MAX_DEPTH).map_err(|e| Failure::Invalid(format!("{path}: {e}")))
}

fn read_contract(path: &str) -> Result<ContractSpec, Failure> {
    let bytes = read_input(path)?;
    ContractSpec::parse(&bytes).map_err(|e| Failure::Invalid(format!("{path}: {e}")))
}

fn digest(args: &[String]) -> Outcome {
    let flags = Flags::parse(args, &[], &["canonical"])?;
    let json = read_json(flags.one_positional("FILE")?)?;
    if flags.switch("canonical") {
        let mut out = std::io::stdout().lock();
        out.write_all(&json.to_canonical())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| Failure::Usage(format!("writing output: {e}")))?;
    } else {
        println!("{}", digest_of(&json));
    }
    Ok(())
}

fn check(args: &[String]) -> Outcome {
    let flags = Flags::parse(args, &["snapshot"], &[])?;
    let path = flags.one_positional("CONTRACT")?;
    let spec = read_contract(path)?;
    let plan = spec
        .compile()
        .map_err(|e| Failure::Invalid(format!("{path}: {e}")))?;
    if let Some(snapshot_path) = flags.value("snapshot") {
        let snapshot = read_json(snapshot_path)?;
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

fn lock(args: &[String]) -> Outcome {
    let flags = Flags::parse(args, &["contract", "snapshot", "output"], &[])?;
    if !flags.positional.is_empty() {
        return Err(Failure::Usage(format!(
            "unexpected argument `{}`",
            flags.positional[0]
        )));
    }
    let contract_path = flags.required("contract")?;
    let snapshot_path = flags.required("snapshot")?;
    let mut spec = read_contract(contract_path)?;
    let snapshot = read_json(snapshot_path)?;
    let lock = lock_from_snapshot(&spec, &snapshot)
        .map_err(|e| Failure::Invalid(format!("{snapshot_path}: {e}")))?;
    spec.lock = Some(lock);
    spec.compile()
        .map_err(|e| Failure::Invalid(format!("{contract_path}: {e}")))?;
    let mut text =
        serde_json::to_string_pretty(&spec).map_err(|e| Failure::Invalid(e.to_string()))?;
    text.push('\n');
    match flags.value("output") {
        Some(out) => write_atomically(Path::new(out), text.as_bytes())
            .map_err(|e| Failure::Usage(format!("{out}: {e}")))?,
        None => print!("{text}"),
    }
    Ok(())
}

fn bucket(args: &[String]) -> Outcome {
    let flags = Flags::parse(args, &["contract"], &["json"])?;
    let path = flags.required("contract")?;
    let spec = read_contract(path)?;
    let plan = spec
        .compile()
        .map_err(|e| Failure::Invalid(format!("{path}: {e}")))?;
    if flags.positional.is_empty() {
        return Err(Failure::Usage("give at least one KEY".into()));
    }
    for key in &flags.positional {
        let b = plan.salt.bucket(key.as_bytes());
        let side = if is_canary(b, plan.threshold) {
            "canary"
        } else {
            "stable"
        };
        if flags.switch("json") {
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

/// Writes a file so that readers see the old or the new content, never a torn one:
/// a temporary file in the same directory, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Digest of the RFC 8785 canonical form of `value` (records, deltas, contracts).
pub(crate) fn canonical_digest(value: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    match Json::parse(&bytes, DEFAULT_MAX_DEPTH) {
        Ok(json) => digest_of(&json).to_string(),
        // Deeper than any record or contract rampart writes; still a stable digest.
        Err(_) => rampart::Digest::of_bytes(&bytes).to_string(),
    }
}
