//! Installing what a command needs and the machine lacks: Debian packages and rustup
//! targets. Every command that needs one of them asks here, so a fresh machine gets
//! the same steps, printed the same way, whichever command runs first.

use std::process::Command;

use crate::process;
use crate::Result;

/// Whether `program --version` runs and succeeds.
pub fn answers(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Installs Debian `packages` unless `present` says they are there already; `what`
/// names them in the step's line.
pub fn debian(what: &str, packages: &[&str], present: impl Fn() -> bool) -> Result<()> {
    if present() {
        println!("setup: {what}: already installed");
        return Ok(());
    }
    println!(
        "setup: {what}: installing the Debian package(s) {}",
        packages.join(" ")
    );
    // The package lists may be missing or stale on a fresh machine.
    process::run(Command::new("apt-get").args(["update", "-q"]))?;
    process::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Adds a rustup target unless it is installed.
pub fn rust_target(target: &str) -> Result<()> {
    let output = process::capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let installed = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && installed.lines().any(|line| line.trim() == target) {
        println!("setup: rust target {target}: already installed");
        return Ok(());
    }
    println!("setup: rust target {target}: installing");
    process::run(Command::new("rustup").args(["target", "add", target]))
}
