//! Installing what a command needs and the machine lacks: Debian packages, rustup
//! targets and tools built from crates.io. Every command that needs one of them asks here, so a fresh machine gets
//! the same steps, printed the same way, whichever command runs first.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, cargo};
use crate::{Error, Result};

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

/// Returns the program `name`: the path in environment variable `env` if set (never
/// installed over), else the one on PATH or in /usr/bin, installing the Debian
/// `package` that provides it if it is missing.
pub fn program(env: &str, name: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        println!("setup: {name}: {} ({env})", path.display());
        return Ok(path);
    }
    if let Some(path) = find(name) {
        println!("setup: {name}: already installed at {}", path.display());
        return Ok(path);
    }
    debian(name, &[package], || false)?;
    find(name).ok_or_else(|| {
        Error::new(format!(
            "`apt-get install {package}` succeeded but no `{name}` binary was found"
        ))
    })
}

/// `name` on PATH or in /usr/bin.
fn find(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Where tools built from crates.io are installed, relative to the repository root.
pub const TOOLS_DIR: &str = "target/tools";

/// The binary `binary` of crate `krate` at `version`, built from crates.io into
/// `TOOLS_DIR` once (`--locked`: its dependencies are pinned too) and again only when
/// its `--version` does not name `version`; `extra` goes to `cargo install` as is.
pub fn crate_tool(
    root: &Path,
    krate: &str,
    binary: &str,
    version: &str,
    extra: &[&str],
) -> Result<PathBuf> {
    let tools = root.join(TOOLS_DIR);
    let path = tools.join("bin").join(binary);
    // A cargo subcommand run directly expects its own name first (`cargo-x x --version`).
    let subcommand = binary.strip_prefix("cargo-");
    let installed = Command::new(&path)
        .args(subcommand)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(version));
    if installed {
        println!("setup: {krate} {version}: already installed at {TOOLS_DIR}/bin");
        return Ok(path);
    }
    println!(
        "setup: {krate} {version}: building from crates.io into {TOOLS_DIR} (once; a few minutes)"
    );
    process::run(
        cargo()
            .args(["install", krate, "--locked", "--version", version])
            .args(extra)
            .arg("--root")
            .arg(&tools),
    )?;
    Ok(path)
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
