//! Prometheus for the ramp's metrics gate: the end-to-end tests start a real one
//! that scrapes Envoy's `/stats/prometheus`.

use crate::install;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The Debian package, which installs `/usr/bin/prometheus`.
const PACKAGE: &str = "prometheus";

/// Returns the Prometheus binary, installing the Debian package if it is missing.
///
/// `RAMPART_PROMETHEUS` names a binary to use instead (never installed over).
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAMPART_PROMETHEUS") {
        let path = PathBuf::from(path);
        println!("setup: prometheus: {} (RAMPART_PROMETHEUS)", path.display());
        return Ok(path);
    }
    if let Some(path) = find() {
        println!("setup: prometheus: already installed at {}", path.display());
        return Ok(path);
    }
    install::debian("prometheus", &[PACKAGE], || false)?;
    find().ok_or_else(|| {
        Error::new(format!(
            "`apt-get install {PACKAGE}` succeeded but no `prometheus` binary was found"
        ))
    })
}

/// Returns `promtool` (the PromQL tests run it), which the Debian package installs next
/// to `prometheus`. `RAMPART_PROMTOOL` names a binary to use instead.
pub fn promtool(prometheus: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAMPART_PROMTOOL") {
        let path = PathBuf::from(path);
        println!("setup: promtool: {} (RAMPART_PROMTOOL)", path.display());
        return Ok(path);
    }
    let beside = prometheus.with_file_name("promtool");
    [beside, PathBuf::from("/usr/bin/promtool")]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::new(format!(
                "no `promtool` next to {} or in /usr/bin (package `{PACKAGE}` installs it)",
                prometheus.display()
            ))
        })
}

fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
}
