//! `cargo xtask soak [--minutes N | --seconds N]`: the soak test, longer, with its figures
//! written into RELIABILITY.md.
//!
//! The soak itself is `tests/soak/` (HTTP/1.1 and HTTP/2 clients mixed, through a real
//! Envoy with two workers, `--concurrency 2`, which the test checks in Envoy's
//! `/server_info`, while the contract is re-published by ECDS); `cargo xtask test` runs
//! it for 20 seconds. Here it runs for N minutes (default 10) and the figures it prints
//! are copied, as printed, between the soak markers of RELIABILITY.md.

use std::path::Path;

use crate::process::{self, cargo};
use crate::tasks;
use crate::{Error, Result};

const DEFAULT_MINUTES: u64 = 10;
const REPORT: &str = "target/soak/figures.md";
const RELIABILITY: &str = "RELIABILITY.md";
const BEGIN: &str = "<!-- soak figures: begin (written by `cargo xtask soak`) -->";
const END: &str = "<!-- soak figures: end -->";

/// Runs the soak with its arguments.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let seconds = parse_args(args)?;
    let envoy = tasks::setup(root)?;
    let wasm = tasks::wasm(root)?;
    let report = root.join(REPORT);
    // A stale report must not be mistaken for this run's.
    let _ = std::fs::remove_file(&report);
    println!("soak: {seconds} s of mixed HTTP/1.1 and HTTP/2 traffic with contract reloads (tests/soak/)");
    process::run(
        cargo()
            .args([
                "test",
                "-p",
                "rampart",
                "--test",
                "soak",
                "--",
                "--nocapture",
            ])
            .env("RAMPART_SOAK_SECONDS", seconds.to_string())
            .env("RAMPART_SOAK_REPORT", &report)
            .env("RAMPART_ENVOY", &envoy)
            .env("RAMPART_WASM", &wasm)
            .current_dir(root),
    )?;
    let figures = std::fs::read_to_string(&report)
        .map_err(|err| Error::new(format!("the soak wrote no figures to {REPORT}: {err}")))?;
    let path = root.join(RELIABILITY);
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Error::new(format!("cannot read {RELIABILITY}: {err}")))?;
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return Err(Error::new(format!(
            "{RELIABILITY} has no soak markers ({BEGIN} … {END})"
        )));
    };
    let updated = format!(
        "{}{BEGIN}\n{}\n{}",
        &text[..start],
        figures.trim_end(),
        &text[end..]
    );
    std::fs::write(&path, updated)
        .map_err(|err| Error::new(format!("cannot write {RELIABILITY}: {err}")))?;
    println!("soak: figures written to {RELIABILITY}");
    Ok(())
}

fn parse_args(args: &[String]) -> Result<u64> {
    let usage = "usage: cargo xtask soak [--minutes N | --seconds N]";
    match args {
        [] => Ok(DEFAULT_MINUTES * 60),
        [flag, value] if flag == "--minutes" || flag == "--seconds" => {
            let n: u64 = value.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::new(format!(
                    "{flag}: {value:?} is not a positive number; {usage}"
                ))
            })?;
            Ok(if flag == "--minutes" { n * 60 } else { n })
        }
        _ => Err(Error::new(usage)),
    }
}
