//! `rampart`: parses the command line, runs the command ([`rampart_cli::run`]), and
//! turns a failure into one line on standard error and the exit code.
//!
//! Exit codes: 0 success; 1 the input was read but does not pass (bad JSON, bad
//! contract or plan, a gate that blocks, a config delta, a failed audit check);
//! 2 usage error, unreadable file or unreachable endpoint; 3 not allowed in the
//! ramp's current status; 4 a gate is still waiting (bake time, request count).

use std::process::ExitCode;

use clap::Parser;
use rampart_cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version are "errors" to clap; they print to stdout and exit 0.
            if error.use_stderr() {
                let args: Vec<String> = std::env::args_os()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                if let Some(json) = rampart_cli::usage_error_json(&args, &error) {
                    println!("{json}");
                }
            }
            error.exit()
        }
    };
    match rampart_cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}: {}", failure.prefix(), failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}
