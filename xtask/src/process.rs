//! Running child processes with errors that name the command.

use std::ffi::OsString;
use std::process::{Command, Output};

use crate::{Error, Result};

/// A `cargo` command using the same cargo (and toolchain) that runs xtask.
pub fn cargo() -> Command {
    // `cargo run` exports the path of the running cargo; prefer it over PATH so a
    // pinned toolchain is not swapped for whatever `cargo` PATH finds first.
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    Command::new(program)
}

/// Runs `cmd` with inherited stdio; fails with its exit code unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|err| cannot_start(cmd, &err))?;
    if status.success() {
        return Ok(());
    }
    let code = status.code().unwrap_or(1);
    Err(Error::with_code(
        format!("`{}` failed ({status})", describe(cmd)),
        code,
    ))
}

/// Runs `cmd` to completion, capturing stdout and stderr.
pub fn capture(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|err| cannot_start(cmd, &err))
}

/// Runs `cmd` to completion, capturing its output; fails unless it succeeds, with its
/// stderr in the message.
pub fn capture_success(cmd: &mut Command) -> Result<Output> {
    let output = capture(cmd)?;
    if !output.status.success() {
        return Err(Error::new(format!(
            "`{}` failed ({}): {}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output)
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    // `cargo` reads better than the toolchain path `CARGO` points at.
    let program = cmd.get_program();
    let program = if std::env::var_os("CARGO").is_some_and(|cargo| cargo == program) {
        "cargo".into()
    } else {
        program.to_string_lossy()
    };
    let mut words = vec![program.into_owned()];
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

fn cannot_start(cmd: &Command, err: &std::io::Error) -> Error {
    Error::new(format!("cannot run `{}`: {err}", describe(cmd)))
}
