//! Prometheus for the ramp's metrics gate: the end-to-end tests start a real one
//! that scrapes Envoy's `/stats/prometheus`.

use crate::install;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Returns the Prometheus binary, installing the Debian package `prometheus` (which
/// installs `/usr/bin/prometheus`) if it is missing.
///
/// `RAMPART_PROMETHEUS` names a binary to use instead (never installed over).
pub fn ensure() -> Result<PathBuf> {
    install::program("RAMPART_PROMETHEUS", "prometheus", "prometheus")
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
                "no `promtool` next to {} or in /usr/bin (package `prometheus` installs it)",
                prometheus.display()
            ))
        })
}
