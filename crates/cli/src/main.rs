//! `rampart`: the control plane's command line.
//!
//! Exit codes: 0 success; 1 the input was read but is not valid (bad JSON, bad
//! contract, snapshot that does not fit); 2 usage error or unreadable file.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// ECDS publishing: used by the ramp commands and `render`.
#[allow(dead_code)]
mod ecds;
// `rampart render envoy|istio|envoy-gateway`.
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

Exit codes: 0 ok, 1 invalid input (the message names the field), 2 usage or I/O error.";

/// A failure and the exit code it maps to.
enum Failure {
    /// Bad command line or unreadable/unwritable file.
    Usage(String),
    /// Input read but invalid.
    Invalid(String),
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            eprintln!("run `rampart help` for usage");
            ExitCode::from(2)
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
struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<Flags, Failure> {
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

    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, Failure> {
        self.value(name)
            .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    fn one_positional(&self, what: &str) -> Result<&str, Failure> {
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
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
