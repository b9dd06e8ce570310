//! `cargo xtask fuzz [--seconds N] [TARGET…]`: libFuzzer on the core, bounded in time.
//!
//! Installs cargo-fuzz from crates.io into `target/tools` (and Debian's `g++` for
//! libFuzzer when no C++ compiler is present) when missing, builds the
//! targets of `fuzz/` once, then runs each for N seconds (default 30) on a working
//! corpus under `target/fuzz/corpus/<target>`, seeded from `fuzz/seeds/<target>` and
//! `fuzz/regressions/<target>`. A crash stops the run and names the input to keep.
//!
//! cargo-fuzz passes nightly-only compiler flags (`-Z…`); `RUSTC_BOOTSTRAP=1` lets the
//! stable toolchain accept them, so no nightly is needed. The core has no `unsafe`
//! code, so the targets run without a sanitizer (`-s none`), several times faster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::install;
use crate::process;
use crate::{Error, Result};

/// The cargo-fuzz release this was verified with; `--locked` keeps its dependencies too.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Build and working directories of the fuzz runs, relative to the repository root.
const WORK_DIR: &str = "target/fuzz";

/// Every target in `fuzz/fuzz_targets`, in the order they run.
const TARGETS: &[&str] = &[
    "jcs", "number", "contract", "decode", "decide", "cached", "cache", "digest",
];

const DEFAULT_SECONDS: u64 = 30;

/// What one target's run reported.
struct Outcome {
    target: String,
    runs: u64,
    seconds: f64,
    corpus: usize,
}

/// Runs the fuzz command with its arguments.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let (seconds, targets) = parse_args(args)?;
    ensure_cxx()?;
    let cargo_fuzz = ensure_cargo_fuzz(root)?;
    println!(
        "fuzz: building {} targets (stable, RUSTC_BOOTSTRAP=1)",
        TARGETS.len()
    );
    process::run(&mut fuzz_command(root, &cargo_fuzz, "build"))?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(root, &cargo_fuzz, target, seconds)?);
    }
    println!("\nfuzz: summary ({seconds} s per target, no crash)");
    println!(
        "  {:<10} {:>12} {:>8} {:>10} {:>8}",
        "target", "executions", "seconds", "exec/s", "corpus"
    );
    for o in &outcomes {
        let rate = if o.seconds > 0.0 {
            o.runs as f64 / o.seconds
        } else {
            0.0
        };
        println!(
            "  {:<10} {:>12} {:>8.0} {:>10.0} {:>8}",
            o.target, o.runs, o.seconds, rate, o.corpus
        );
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(u64, Vec<String>)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = rest
                    .next()
                    .ok_or_else(|| Error::new("--seconds needs a number, e.g. --seconds 60"))?;
                seconds = value.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                    Error::new(format!(
                        "--seconds: {value:?} is not a positive number of seconds"
                    ))
                })?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => {
                return Err(Error::new(format!(
                    "fuzz: unknown argument `{other}`; usage: cargo xtask fuzz [--seconds N] [{}]",
                    TARGETS.join("|")
                )))
            }
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    Ok((seconds, targets))
}

/// libFuzzer is C++, compiled by `libfuzzer-sys`: installs Debian's `g++` when no C++
/// compiler answers (a machine with only the Rust toolchain may lack one).
fn ensure_cxx() -> Result<()> {
    install::debian("C++ compiler for libFuzzer", &["g++"], || {
        ["c++", "g++", "clang++"]
            .iter()
            .any(|p| install::answers(p))
    })
}

fn ensure_cargo_fuzz(root: &Path) -> Result<PathBuf> {
    install::crate_tool(root, "cargo-fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION, &[])
}

/// `cargo fuzz <subcommand>` on `fuzz/`, with the build settings every run shares.
fn fuzz_command(root: &Path, cargo_fuzz: &Path, subcommand: &str) -> Command {
    let mut command = Command::new(cargo_fuzz);
    command
        // Invoked directly, a cargo subcommand gets its own name as the first argument.
        .args([
            "fuzz",
            subcommand,
            "--fuzz-dir",
            "fuzz",
            "--sanitizer",
            "none",
        ])
        .arg("--target-dir")
        .arg(root.join(WORK_DIR).join("build"))
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(root);
    command
}

fn run_target(root: &Path, cargo_fuzz: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let work = root.join(WORK_DIR);
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
    }
    let mut command = fuzz_command(root, cargo_fuzz, "run");
    command.arg(target).arg(&corpus);
    for kind in ["seeds", "regressions"] {
        let dir = root.join("fuzz").join(kind).join(target);
        if dir.is_dir() {
            command.arg(dir);
        }
    }
    command
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // An input that takes a second is a hang for a per-request decision.
        .arg("-timeout=5")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1");
    println!("fuzz: {target}: {seconds} s");
    let started = Instant::now();
    let output = process::capture(&mut command)?;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let log_path = work.join(format!("{target}.log"));
    // The log is for reading after a failure; losing it must not hide the result.
    let _ = std::fs::write(&log_path, &log);
    if !output.status.success() {
        return Err(Error::new(format!(
            "fuzz target `{target}` failed:\n{}\n\nthe crashing input is in {}; add it to fuzz/regressions/{target}/ \
             (replayed by tests/fuzz_replay.rs) once the bug is fixed; full log: {}",
            failure_excerpt(&log),
            artifacts.display(),
            log_path.display()
        )));
    }
    let runs = final_stat(&log, "stat::number_of_executed_units:").unwrap_or(0);
    let seconds = done_seconds(&log).unwrap_or_else(|| started.elapsed().as_secs_f64());
    let corpus_files = std::fs::read_dir(&corpus).map_or(0, |entries| entries.count());
    println!("fuzz: {target}: {runs} executions in {seconds:.0} s, corpus {corpus_files} inputs");
    Ok(Outcome {
        target: target.to_owned(),
        runs,
        seconds,
        corpus: corpus_files,
    })
}

/// The panic or libFuzzer error and where the input was written, without cargo-fuzz's
/// own backtrace; the last lines when neither is found.
fn failure_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.iter().position(|l| {
        l.contains("panicked at") || l.contains("==ERROR") || l.contains("ERROR: libFuzzer")
    });
    let mut excerpt: Vec<&str> = match start {
        Some(i) => lines[i..].iter().take(8).copied().collect(),
        None => lines[lines.len().saturating_sub(20)..].to_vec(),
    };
    excerpt.extend(lines.iter().filter(|l| l.contains("Test unit written to")));
    excerpt.join("\n")
}

/// The number after `label` on the last line that has it.
fn final_stat(log: &str, label: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Seconds from libFuzzer's last line `Done N runs in S second(s)`.
fn done_seconds(log: &str) -> Option<f64> {
    log.lines()
        .rev()
        .find(|line| line.starts_with("Done "))
        .and_then(|line| line.split(" in ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
