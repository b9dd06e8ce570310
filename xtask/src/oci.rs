//! The registry round trip of `rampart package` (tests/oci.rs): skopeo pushes the
//! OCI image layout to a `docker-registry` on loopback and pulls it back.

use crate::install;
use crate::Result;
use std::path::PathBuf;

/// The tools tests/oci.rs needs, by the environment variable that passes each.
pub struct Tools {
    /// `skopeo` (RAMPART_SKOPEO).
    pub skopeo: PathBuf,
    /// `docker-registry` (RAMPART_REGISTRY), the CNCF distribution registry.
    pub registry: PathBuf,
}

/// Returns skopeo and docker-registry, installing the Debian packages of those names
/// if missing; RAMPART_SKOPEO and RAMPART_REGISTRY name binaries to use instead.
pub fn ensure() -> Result<Tools> {
    Ok(Tools {
        skopeo: install::program("RAMPART_SKOPEO", "skopeo", "skopeo")?,
        registry: install::program("RAMPART_REGISTRY", "docker-registry", "docker-registry")?,
    })
}
