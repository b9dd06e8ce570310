//! `cargo xtask mutants [--jobs N] [--shard K/N] [--retest] [core|cli]…`: are the tests
//! able to fail?
//!
//! cargo-mutants (built from crates.io into `target/tools` once) rewrites one function or
//! operator at a time — a comparison flipped, a return value replaced, an arm deleted —
//! and runs the scope's tests against each change. A mutant the tests do not notice is
//! *missed*: either the tests have a hole, or the change is equivalent (it cannot change
//! behaviour) or harmless. Each missed mutant is either killed by a test or listed, with
//! the reason, in `SURVIVORS_FILE`; this command fails on a missed mutant that is not
//! listed, or when a scope catches less than `TARGET_SCORE` of its viable mutants.
//!
//! Scopes, each with the tests that run natively in seconds (the Envoy suites cannot
//! run once per mutant):
//! * `core`: every file in `src/`, against the core's unit tests, the property tests,
//!   the fuzz corpus replay and the number differential;
//! * `cli`: the ramp's gates, the durable drift pause, the audit log and the signed
//!   approvals (`crates/cli`), against the CLI's unit and integration tests.
//!
//! Settings shared by every run (the Debug-only exclusions, the build profile) are in
//! `.cargo/mutants.toml`, where cargo-mutants reads them. Results go to
//! `target/mutants/<scope>/all/mutants.out`; `--shard K/N` runs the K-th of N slices
//! (into `shard-K-of-N/`), and once all N have run, the scope's figures add them up.
//! `--retest` tests again only what that run missed (into its `retest/`), each mutant
//! named by file, line and column: after tests are written for the survivors it shows
//! them killed without redoing the run; its outcomes replace the run's missed list. If
//! the code moved since the run, a missed mutant is no longer found and the command says
//! to redo the run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;
use crate::{Error, Result};

/// The cargo-mutants release this was verified with.
const CARGO_MUTANTS_VERSION: &str = "27.1.0";

/// Missed mutants accepted as equivalent or harmless, one per line with the reason.
const SURVIVORS_FILE: &str = ".cargo/mutants-survivors.txt";

/// Share of viable mutants (caught + timed out) a scope must catch.
const TARGET_SCORE: f64 = 0.90;

/// Where each scope's results go, relative to the repository root.
const WORK_DIR: &str = "target/mutants";

/// One set of mutated files and the tests run against them.
struct Scope {
    name: &'static str,
    package: &'static str,
    /// Files to mutate; empty: every file of the package.
    files: &'static [&'static str],
    /// Test targets to build and run (given to both `cargo test --no-run` and `cargo
    /// test`: only these are relinked for each mutant).
    test_args: &'static [&'static str],
}

const SCOPES: &[Scope] = &[
    Scope {
        name: "core",
        package: "rampart",
        files: &[],
        test_args: &[
            "--lib",
            "--test=properties",
            "--test=fuzz_replay",
            "--test=numbers_differential",
        ],
    },
    Scope {
        name: "cli",
        package: "rampart-cli",
        files: &[
            "crates/cli/src/ramp/gates.rs",
            "crates/cli/src/ramp/durable.rs",
            "crates/cli/src/audit.rs",
            "crates/cli/src/approval/mod.rs",
            "crates/cli/src/approval/signers.rs",
            "crates/cli/src/approval/statement.rs",
        ],
        test_args: &["--lib", "--test=ramp", "--test=cli"],
    },
];

/// The command line of `cargo xtask mutants`.
#[derive(Debug, PartialEq)]
struct Options {
    jobs: u32,
    shard: Option<(u32, u32)>,
    retest: bool,
    scopes: Vec<&'static str>,
}

const USAGE: &str = "usage: cargo xtask mutants [--jobs N] [--shard K/N] [--retest] [core|cli]...";

/// Where `--retest` puts its run, under the run it retests.
const RETEST_DIR: &str = "retest";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut options = Options {
        jobs: 1,
        shard: None,
        retest: false,
        scopes: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--jobs" => {
                let value = rest.next().map(String::as_str).unwrap_or_default();
                options.jobs = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::new(format!(
                        "--jobs: {value:?} is not a positive number; {USAGE}"
                    ))
                })?;
            }
            "--shard" => {
                let value = rest.next().map(String::as_str).unwrap_or_default();
                options.shard = Some(parse_shard(value).ok_or_else(|| {
                    Error::new(format!(
                        "--shard: {value:?} is not K/N with 0 ≤ K < N; {USAGE}"
                    ))
                })?);
            }
            "--retest" => options.retest = true,
            name => match SCOPES.iter().find(|scope| scope.name == name) {
                Some(scope) => options.scopes.push(scope.name),
                None => {
                    return Err(Error::new(format!(
                        "mutants: unknown argument `{name}`; {USAGE}"
                    )))
                }
            },
        }
    }
    if options.scopes.is_empty() {
        options.scopes = SCOPES.iter().map(|scope| scope.name).collect();
    }
    Ok(options)
}

fn parse_shard(value: &str) -> Option<(u32, u32)> {
    let (k, n) = value.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (k < n).then_some((k, n))
}

/// What one scope's run found, from cargo-mutants' outcome lists.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    caught: usize,
    missed: Vec<String>,
    timeout: usize,
    unviable: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.caught += other.caught;
        self.missed.extend(other.missed);
        self.timeout += other.timeout;
        self.unviable += other.unviable;
    }

    /// Caught (including timeouts: the change hung a test) over viable mutants.
    fn score(&self) -> Option<f64> {
        let viable = self.caught + self.timeout + self.missed.len();
        (viable > 0).then(|| (self.caught + self.timeout) as f64 / viable as f64)
    }
}

/// Runs the mutants command with its arguments.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = parse_args(args)?;
    let cargo_mutants = install::crate_tool(
        root,
        "cargo-mutants",
        "cargo-mutants",
        CARGO_MUTANTS_VERSION,
        &[],
    )?;
    let survivors = read_survivors(root)?;
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for scope in SCOPES.iter().filter(|s| options.scopes.contains(&s.name)) {
        let out = root
            .join(WORK_DIR)
            .join(scope.name)
            .join(run_dir(options.shard));
        println!("mutants: {} ({})", scope.name, describe_files(scope));
        if options.retest {
            retest(root, &cargo_mutants, scope, &options, &out)?;
        } else {
            // A new run makes an earlier retest of the old one meaningless.
            let _ = std::fs::remove_dir_all(out.join(RETEST_DIR));
            std::fs::create_dir_all(&out)
                .map_err(|err| Error::new(format!("cannot create {}: {err}", out.display())))?;
            let mut command = mutants_command(root, &cargo_mutants, scope, &options, &out);
            if let Some((k, n)) = options.shard {
                command.arg(format!("--shard={k}/{n}"));
            }
            run_mutants(command, scope, &out)?;
        }
        // A shard counts alone until every shard of the same split has run; then the
        // scope's figures are the sum of the shards.
        let (label, dirs) = match options.shard {
            None => ("all".to_owned(), vec![out]),
            Some((_, n)) => {
                let dirs: Vec<PathBuf> = (0..n)
                    .map(|k| {
                        root.join(WORK_DIR)
                            .join(scope.name)
                            .join(run_dir(Some((k, n))))
                    })
                    .filter(|dir| dir.join("mutants.out").is_dir())
                    .collect();
                if dirs.len() == n as usize {
                    (format!("{n} shards"), dirs)
                } else {
                    (format!("{} of {n} shards", dirs.len()), dirs)
                }
            }
        };
        let complete = options
            .shard
            .map_or(true, |(_, n)| dirs.len() == n as usize);
        let mut tally = Tally::default();
        for dir in &dirs {
            tally.add(read_run(dir)?);
        }
        let unlisted: Vec<String> = tally
            .missed
            .iter()
            .filter(|m| !survivors.contains(&without_position(m)))
            .cloned()
            .collect();
        for mutant in &unlisted {
            failures.push(format!("missed, not in {SURVIVORS_FILE}: {mutant}"));
        }
        if let Some(score) = tally.score().filter(|&s| complete && s < TARGET_SCORE) {
            failures.push(format!(
                "{}: {:.1} % of viable mutants caught, under the {:.0} % target",
                scope.name,
                score * 100.0,
                TARGET_SCORE * 100.0
            ));
        }
        summary.push((format!("{} ({label})", scope.name), tally, unlisted.len()));
    }
    println!("\nmutants: summary (cargo-mutants {CARGO_MUTANTS_VERSION})");
    println!(
        "  {:<20} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}",
        "scope", "caught", "timeout", "missed", "unviable", "score", "unlisted"
    );
    for (name, tally, unlisted) in &summary {
        println!(
            "  {:<20} {:>7} {:>7} {:>7} {:>8} {:>7.1}% {:>8}",
            name,
            tally.caught,
            tally.timeout,
            tally.missed.len(),
            tally.unviable,
            tally.score().unwrap_or(0.0) * 100.0,
            unlisted
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(failures.join("\n")))
    }
}

/// The directory of one run under the scope's: `all`, or `shard-K-of-N`.
fn run_dir(shard: Option<(u32, u32)>) -> String {
    match shard {
        None => "all".to_owned(),
        Some((k, n)) => format!("shard-{k}-of-{n}"),
    }
}

fn describe_files(scope: &Scope) -> String {
    if scope.files.is_empty() {
        format!("every file of package {}", scope.package)
    } else {
        scope.files.join(", ")
    }
}

fn mutants_command(
    root: &Path,
    cargo_mutants: &Path,
    scope: &Scope,
    options: &Options,
    out: &Path,
) -> Command {
    let mut command = Command::new(cargo_mutants);
    // Invoked directly, a cargo subcommand gets its own name as the first argument.
    command
        .args(["mutants", "--package", scope.package])
        .args(["--test-package", scope.package])
        .arg(format!("--jobs={}", options.jobs))
        .arg("--output")
        .arg(out)
        .current_dir(root);
    for file in scope.files {
        command.arg(format!("--file={file}"));
    }
    for arg in scope.test_args {
        command.arg(format!("--cargo-arg={arg}"));
    }
    command
}

/// Runs cargo-mutants; its exit status says whether it could test at all.
fn run_mutants(mut command: Command, scope: &Scope, out: &Path) -> Result<()> {
    let status = command
        .status()
        .map_err(|err| Error::new(format!("cannot run cargo-mutants: {err}")))?;
    // cargo-mutants exits 2 when mutants were missed, 3 on timeouts: the lists say
    // which; anything else (1: bad arguments, 4: the unmutated tree fails) is an error.
    if matches!(status.code(), Some(0 | 2 | 3)) {
        Ok(())
    } else {
        Err(Error::new(format!(
            "cargo-mutants failed on scope {} ({status}); see {}/mutants.out/log",
            scope.name,
            out.display()
        )))
    }
}

/// Tests again, by exact name, the mutants the run in `out` missed.
fn retest(
    root: &Path,
    cargo_mutants: &Path,
    scope: &Scope,
    options: &Options,
    out: &Path,
) -> Result<()> {
    let run = out.join("mutants.out");
    if !run.is_dir() {
        return Err(Error::new(format!(
            "--retest: {} has no run to retest; run it first without --retest",
            out.display()
        )));
    }
    let missed = read_tally(&run)?.missed;
    let dir = out.join(RETEST_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
    if missed.is_empty() {
        println!("mutants: {}: the run missed nothing", scope.name);
        return std::fs::create_dir_all(dir.join("mutants.out"))
            .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())));
    }
    println!(
        "mutants: {}: testing again the {} the run missed",
        scope.name,
        missed.len()
    );
    let mut command = mutants_command(root, cargo_mutants, scope, options, &dir);
    for mutant in &missed {
        command.arg(format!("--re=^{}$", regex_escape(mutant)));
    }
    run_mutants(command, scope, &dir)?;
    // Every missed mutant must have been tested again, by its exact name (a name can
    // stand for two identical mutants, so more may have run).
    let tested = tested_names(&dir.join("mutants.out"))?;
    let gone: Vec<&String> = missed.iter().filter(|m| !tested.contains(*m)).collect();
    if !gone.is_empty() {
        return Err(Error::new(format!(
            "--retest: {} of the {} missed mutants are no longer where the run found them (the code moved since): {}; redo the run without --retest",
            gone.len(),
            missed.len(),
            gone.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(())
}

/// Every mutant named in a run's outcome lists.
fn tested_names(dir: &Path) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for list in ["caught.txt", "missed.txt", "timeout.txt", "unviable.txt"] {
        names.extend(read_list(dir, list, |_| true)?);
    }
    Ok(names)
}

/// A run's outcomes, with what its retest (if any) found for the mutants it missed.
fn read_run(out: &Path) -> Result<Tally> {
    let mut tally = read_tally(&out.join("mutants.out"))?;
    let retest = out.join(RETEST_DIR).join("mutants.out");
    if retest.is_dir() {
        // Only the outcomes of the mutants the run missed replace its missed list; a
        // pattern may have matched another mutant too, which the run already counted.
        let missed: BTreeSet<String> = std::mem::take(&mut tally.missed).into_iter().collect();
        let again = read_tally_of(&retest, |name| missed.contains(name))?;
        tally.add(again);
    }
    Ok(tally)
}

/// `text` as a regular expression matching exactly it.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The outcome lists cargo-mutants writes: one mutant per line.
fn read_tally(dir: &Path) -> Result<Tally> {
    read_tally_of(dir, |_| true)
}

/// [`read_tally`] counting only the mutants `keep` accepts.
fn read_tally_of(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Tally> {
    Ok(Tally {
        caught: read_list(dir, "caught.txt", &keep)?.len(),
        missed: read_list(dir, "missed.txt", &keep)?,
        timeout: read_list(dir, "timeout.txt", &keep)?.len(),
        unviable: read_list(dir, "unviable.txt", &keep)?.len(),
    })
}

/// One outcome list, one mutant per line, those `keep` accepts.
fn read_list(dir: &Path, name: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty() && keep(l))
            .map(str::to_owned)
            .collect()),
        // A list with nothing in it may not be written at all.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(Error::new(format!("cannot read {}: {err}", path.display()))),
    }
}

/// `src/a.rs:12:5: replace x with y` as `src/a.rs: replace x with y`: line numbers move
/// with every edit, the file and the change do not.
fn without_position(mutant: &str) -> String {
    let mut parts = mutant.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column), Some(rest))
            if line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok() =>
        {
            format!("{file}:{rest}")
        }
        _ => mutant.to_owned(),
    }
}

/// The accepted survivors: each entry line is a mutant without its position, followed by
/// `  # reason`; lines starting with `#` are comments.
fn read_survivors(root: &Path) -> Result<BTreeSet<String>> {
    let path: PathBuf = root.join(SURVIVORS_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Error::new(format!("cannot read {}: {err}", path.display())))?;
    let mut entries = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((mutant, reason)) = line.split_once("  # ") else {
            return Err(Error::new(format!(
                "{SURVIVORS_FILE}:{}: expected `<mutant>  # <why it is equivalent or harmless>`",
                number + 1
            )));
        };
        if reason.trim().is_empty() {
            return Err(Error::new(format!(
                "{SURVIVORS_FILE}:{}: the reason is empty",
                number + 1
            )));
        }
        entries.insert(mutant.trim().to_owned());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outcome lists as cargo-mutants writes them, in a fresh `dir`.
    fn write_lists(dir: &Path, lists: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in lists {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_default_to_every_scope_one_job() {
        let options = parse_args(&[]).unwrap();
        assert_eq!(options.scopes, ["core", "cli"]);
        assert_eq!((options.jobs, options.shard), (1, None));
        let options = parse_args(&args(&["--jobs", "2", "--shard", "1/4", "cli"])).unwrap();
        assert_eq!(options.scopes, ["cli"]);
        assert_eq!((options.jobs, options.shard), (2, Some((1, 4))));
        assert!(!options.retest);
        assert!(parse_args(&args(&["--retest", "core"])).unwrap().retest);
    }

    #[test]
    fn names_are_escaped_to_match_only_themselves() {
        assert_eq!(
            regex_escape("src/a.rs:1:2: replace a.b() -> [u8; 2] with ^"),
            "src/a\\.rs:1:2: replace a\\.b\\(\\) \\-> \\[u8; 2\\] with \\^"
        );
    }

    #[test]
    fn a_retest_replaces_what_the_run_missed() {
        let out = std::env::temp_dir().join(format!("rampart-retest-{}", std::process::id()));
        write_lists(
            &out.join("mutants.out"),
            &[
                ("caught.txt", "a:1:1: x\n"),
                ("unviable.txt", "u:1:1: x\n"),
                ("missed.txt", "b:2:2: y\nc:3:3: z\n"),
            ],
        );
        assert_eq!(read_run(&out).unwrap().missed.len(), 2);
        write_lists(
            &out.join(RETEST_DIR).join("mutants.out"),
            &[
                ("caught.txt", "b:2:2: y\na:1:1: x\n"),
                ("missed.txt", "c:3:3: z\n"),
            ],
        );
        let tally = read_run(&out).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(
            tally,
            Tally {
                caught: 2,
                missed: vec!["c:3:3: z".into()],
                timeout: 0,
                unviable: 1,
            }
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (bad, named) in [
            (vec!["--jobs", "0"], "--jobs"),
            (vec!["--shard", "4/4"], "--shard"),
            (vec!["--shard", "x"], "--shard"),
            (vec!["filter"], "`filter`"),
        ] {
            let err = parse_args(&args(&bad)).unwrap_err().to_string();
            assert!(err.contains(named), "{bad:?}: {err}");
        }
    }

    #[test]
    fn positions_are_dropped_from_mutant_names() {
        assert_eq!(
            without_position("src/decide.rs:45:9: replace < with <= in decide"),
            "src/decide.rs: replace < with <= in decide"
        );
        assert_eq!(without_position("no position here"), "no position here");
    }

    #[test]
    fn the_score_counts_timeouts_as_caught_and_ignores_unviable() {
        let tally = Tally {
            caught: 8,
            missed: vec!["m".into()],
            timeout: 1,
            unviable: 5,
        };
        assert_eq!(tally.score(), Some(0.9));
        assert_eq!(Tally::default().score(), None);
    }

    #[test]
    fn the_survivors_file_gives_every_entry_a_reason() {
        let survivors = read_survivors(&crate::repo_root()).unwrap();
        for entry in &survivors {
            assert!(
                entry.starts_with("src/") || entry.starts_with("crates/cli/src/"),
                "{entry}"
            );
            assert_eq!(without_position(entry), *entry, "{entry} has a position");
        }
    }

    #[test]
    fn outcome_lists_are_counted_and_missing_lists_are_empty() {
        let dir = std::env::temp_dir().join(format!("rampart-mutants-{}", std::process::id()));
        write_lists(
            &dir,
            &[
                ("caught.txt", "a:1:1: x\nb:2:2: y\n"),
                ("missed.txt", "c:3:3: z\n"),
            ],
        );
        let tally = read_tally(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            tally,
            Tally {
                caught: 2,
                missed: vec!["c:3:3: z".into()],
                timeout: 0,
                unviable: 0,
            }
        );
    }
}
