//! Prometheus for the ramp's metrics gate: the end-to-end tests start a real one
//! that scrapes Envoy's `/stats/prometheus`.

use crate::install;
use crate::Result;
use std::path::PathBuf;

/// Returns the Prometheus binary, installing the Debian package `prometheus` (which
/// installs `/usr/bin/prometheus`) if it is missing.
///
/// `RAMPART_PROMETHEUS` names a binary to use instead (never installed over).
pub fn ensure() -> Result<PathBuf> {
    install::program("RAMPART_PROMETHEUS", "prometheus", "prometheus")
}

/// Returns `promtool` (the PromQL tests run it), which the Debian package `prometheus`
/// installs beside `prometheus`. `RAMPART_PROMTOOL` names a binary to use instead.
pub fn promtool() -> Result<PathBuf> {
    install::program("RAMPART_PROMTOOL", "promtool", "prometheus")
}
