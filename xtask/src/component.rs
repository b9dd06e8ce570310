//! The Rampart component (`wit/rampart.wit`, `crates/component`): build it for
//! `wasm32-wasip2`, lint that build, and run it from Node through jco.
//!
//! The wasmtime host tests are ordinary workspace tests; `cargo xtask test` hands them
//! the built component in `RAMPART_COMPONENT`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;
use crate::process::{self, cargo};
use crate::{Error, Result};

/// The target the component is compiled for: wasm32 with WASI 0.2, which rustc links
/// into a component directly.
const TARGET: &str = "wasm32-wasip2";

/// The component's package and the file cargo produces for it.
const PACKAGE: &str = "rampart-component";
const ARTIFACT: &str = "rampart_component.wasm";

/// The environment variable naming the component for the host tests.
pub const ENV: &str = "RAMPART_COMPONENT";

/// The Node test directory: jco and the WASI shims pinned by its lock file.
const JS_DIR: &str = "tests/js";

/// Where jco writes the transpiled component, inside `JS_DIR` so Node resolves the
/// WASI shims from its `node_modules`.
const JS_OUT: &str = "rampart";

/// Installs the target if missing and builds the component in release mode; returns
/// the artifact's path.
pub fn build(root: &Path) -> Result<PathBuf> {
    ensure_target()?;
    println!("component: building {PACKAGE} for {TARGET} (release)");
    process::run(
        cargo()
            .args(["build", "--release", "--target", TARGET, "-p", PACKAGE])
            .current_dir(root),
    )?;
    let artifact = target_dir(root).join(TARGET).join("release").join(ARTIFACT);
    let bytes = std::fs::metadata(&artifact)
        .map_err(|err| Error::new(format!("{} was not produced: {err}", artifact.display())))?
        .len();
    let shown = artifact.strip_prefix(root).unwrap_or(&artifact);
    println!(
        "component: {}: {bytes} bytes ({:.1} KiB)",
        shown.display(),
        bytes as f64 / 1024.0
    );
    Ok(artifact)
}

/// Clippy on the component as it ships (its wasm32-wasip2 build), warnings denied.
pub fn lint(root: &Path) -> Result<()> {
    ensure_target()?;
    let args = [
        "clippy", "-p", PACKAGE, "--target", TARGET, "--", "-D", "warnings",
    ];
    println!("lint: cargo {}", args.join(" "));
    process::run(cargo().args(args).current_dir(root))
}

/// Installs the pinned jco from the lock file, transpiles `component` to JavaScript
/// and runs the Node tests (which include docs/component.md's JavaScript example).
pub fn node_test(root: &Path, component: &Path) -> Result<()> {
    ensure_node()?;
    let dir = root.join(JS_DIR);
    if jco_installed(&dir) {
        println!("component: {JS_DIR}: npm packages already installed");
    } else {
        println!("component: {JS_DIR}: npm ci");
        process::run(
            npm()
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )?;
    }
    println!("component: jco transpile into {JS_DIR}/{JS_OUT}");
    process::run(
        Command::new("node")
            .arg(dir.join("node_modules/.bin/jco"))
            .arg("transpile")
            .arg(component)
            .args(["--name", "rampart", "--quiet", "-o", JS_OUT])
            .current_dir(&dir),
    )?;
    println!("component: node --test in {JS_DIR}");
    process::run(Command::new("node").arg("--test").current_dir(&dir))
}

/// True when `npm ci` already installed what the lock file pins: npm records the
/// installed tree in `node_modules/.package-lock.json`, written after the lock file.
fn jco_installed(dir: &Path) -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("node_modules/.package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => {
            installed >= locked
                && dir
                    .join("node_modules/@bytecodealliance/jco/package.json")
                    .is_file()
        }
        _ => false,
    }
}

fn npm() -> Command {
    Command::new("npm")
}

/// Node.js and npm run jco and the tests; Debian's packages suffice (Node 20+).
fn ensure_node() -> Result<()> {
    install::debian("node and npm", &["nodejs", "npm"], || {
        install::answers("node") && install::answers("npm")
    })
}

fn ensure_target() -> Result<()> {
    install::rust_target(TARGET)
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
