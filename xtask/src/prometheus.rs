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
