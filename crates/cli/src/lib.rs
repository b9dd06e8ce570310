//! `rampart`, the control plane's command line, as a library: the binary parses the
//! command line into [`Cli`] and hands it to [`run`]; tests and other crates call the
//! same functions.
//!
//! Contract tools (`digest`, `check`, `lock`, `bucket`, `render`), `package` (the
//! module as an OCI image) and the ramp control plane: `ramp start|status|advance|pause|resume|revert|diff|statement|approve` drive a plan of
//! steps through three gates (live config has the locked digest; drift ratio and
//! request count since the step began; bake time), publish each step to Envoy by ECDS,
//! keep an atomically written state file, and record every change in a hash-chained
//! audit log that `audit verify` checks. A plan may require approvals signed with SSH
//! keys (`approval`), re-verified by `audit verify`.
//!
//! Exit codes ([`Failure::exit_code`]): 0 success; 1 the input was read but does not
//! pass (bad JSON, bad contract or plan, a gate that blocks, a config delta, a failed
//! audit check); 2 usage error, unreadable file or unreachable endpoint; 3 not allowed
//! in the ramp's current status; 4 a gate is still waiting (bake time, request count).
//!
//! Where things are: [`args`] declares the command line; `tools` the contract tools;
//! `render` the deployable config; `oci` the image `package` writes; `ramp` the ramp
//! commands (its `gates` module holds the gate decision as a pure function, `durable`
//! the durable drift pause); `approval` the signed approval statement, the
//! `allowed_signers` file and the signature checks; [`ecds`]
//! the published file format; [`files`] the atomic write every file goes through;
//! [`time`] the clock and the timestamps records and statements carry.

#![warn(missing_docs)]

mod approval;
pub mod args;
mod audit;
mod delta;
pub mod ecds;
pub mod files;
mod http;
pub mod metrics;
mod oci;
mod plan;
mod ramp;
mod render;
mod state;
pub mod time;
mod tools;

/// The PromQL of the drift gate and the dashboard, one definition shared by the ramp's
/// gate, the rendered Argo Rollouts / Flagger analyses, the Grafana dashboard and the
/// promtool tests.
pub use metrics::{
    contract_values_query, counter_rate_query, drift_pause_by_envoy_query, drift_pause_query,
    drift_ratio_query, field_rate_query, gate_counter_query, gate_drift_paused_query,
    invalid_config_query, safe_mode_rate_query, ENVOY_LABEL,
};

use clap::CommandFactory;
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};

pub use args::Cli;

use args::Command;

/// A failure and the exit code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
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
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Invalid(_) => 1,
            Failure::Usage(_) | Failure::Io(_) => 2,
            Failure::NotAllowed(_) => 3,
            Failure::Waiting(_) => 4,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m)
            | Failure::Invalid(m)
            | Failure::Io(m)
            | Failure::NotAllowed(m)
            | Failure::Waiting(m) => m,
        }
    }

    /// The word before the message on standard error: `not allowed` and `waiting` tell
    /// a refusal and a retry-later apart from an error.
    pub fn prefix(&self) -> &'static str {
        match self {
            Failure::NotAllowed(_) => "not allowed",
            Failure::Waiting(_) => "waiting",
            _ => "error",
        }
    }

    /// The `error` member of a `--json` failure answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Invalid(_) => "invalid",
            Failure::Usage(_) => "usage",
            Failure::Io(_) => "io",
            Failure::NotAllowed(_) => "not_allowed",
            Failure::Waiting(_) => "waiting",
        }
    }
}

/// What a command returns.
pub type Outcome = Result<(), Failure>;

/// Runs a parsed command line. Output goes to standard output; the caller reports a
/// failure (see [`Failure::prefix`]) and exits with its code.
pub fn run(cli: Cli) -> Outcome {
    match cli.command {
        None => {
            let help = Cli::command().render_help();
            println!("{help}");
            Ok(())
        }
        Some(Command::Digest(args)) => tools::digest(&args),
        Some(Command::Check(args)) => tools::check(&args),
        Some(Command::Lock(args)) => tools::lock(&args),
        Some(Command::Bucket(args)) => tools::bucket(&args),
        Some(Command::Render(args)) => render::render(&args.target),
        Some(Command::Package(args)) => oci::package(&args),
        Some(Command::Ramp(command)) => ramp::run(&command),
        Some(Command::Audit(command)) => ramp::audit_commands::run(&command),
        Some(Command::Version) => {
            println!("rampart {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// For a command line that does not parse: the one JSON object `--json` promises, if
/// `args` (without the program name) ask for JSON from a ramp command.
pub fn usage_error_json(args: &[String], error: &clap::Error) -> Option<String> {
    if args.first().map(String::as_str) != Some("ramp") || !args.iter().any(|a| a == "--json") {
        return None;
    }
    let command = args.get(1).map_or("", String::as_str);
    // The error without the usage and tip that follow it, on one line.
    let rendered = error.to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let failure = Failure::Usage(message.trim_start_matches("error: ").to_owned());
    Some(ramp::output::failure_json(command, &failure).to_string())
}

/// The RFC 8785 canonical form of `value` (records, deltas, contracts, approval
/// statements).
pub(crate) fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    match Json::parse(&bytes, DEFAULT_MAX_DEPTH) {
        Ok(json) => json.to_canonical(),
        // Deeper than any record or contract rampart writes; still stable bytes.
        Err(_) => bytes,
    }
}

/// Digest of the RFC 8785 canonical form of `value` (records, deltas, contracts).
pub(crate) fn canonical_digest(value: &serde_json::Value) -> String {
    rampart::Digest::of_bytes(&canonical_json(value)).to_string()
}
