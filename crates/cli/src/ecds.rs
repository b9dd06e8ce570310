//! Publishing a contract to Envoy by ECDS (extension config discovery) from a file.
//!
//! Envoy's HTTP filter entry names a `config_discovery` source with
//! `path_config_source { path, watched_directory }`; Envoy re-reads the file when a
//! file is moved into the watched directory. So publishing is an atomic replace: the
//! new resource is written to a temporary file in the same directory, synced, and
//! renamed over the old one. Envoy sees the old or the new configuration, never a
//! torn one, and requests in flight keep the filter chain they started with.
//!
//! The end-to-end tests publish with this module too (through the library), so they
//! exercise the format users run.

use std::path::Path;

use serde_json::{json, Value};

use crate::files::{parent_dir, write_atomically};

/// Type URL of an ECDS resource: a named, typed extension configuration.
pub const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// Type URL of Envoy's wasm HTTP filter configuration.
pub const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// The Rampart wasm filter configuration carrying `contract` as its plugin configuration.
///
/// `failure_policy: FAIL_CLOSED` is stated because a skipped filter would let a
/// client-forged route header through. The VM settings never change between
/// publishes, so Envoy keeps the base VM and only re-runs `on_configure`; the filter
/// never fails `on_configure` (it falls back to safe mode), which keeps that cached
/// VM healthy for the next publish.
pub fn wasm_filter_config(wasm_path: &str, contract: &Value) -> Value {
    // Pretty text keeps `/config_dump` readable; the filter parses JSON either way.
    let text = serde_json::to_string_pretty(contract).unwrap_or_else(|_| contract.to_string());
    wasm_filter_config_text(wasm_path, &text)
}

/// [`wasm_filter_config`] with the plugin configuration as given, byte for byte: for
/// configurations that are not a contract, or not even JSON (the filter's tests of bad
/// input).
pub fn wasm_filter_config_text(wasm_path: &str, configuration: &str) -> Value {
    json!({
        "@type": WASM_FILTER,
        "config": {
            "name": "rampart",
            "root_id": "rampart",
            "vm_config": {
                "vm_id": "rampart",
                "runtime": "envoy.wasm.runtime.v8",
                "code": { "local": { "filename": wasm_path } },
            },
            "failure_policy": "FAIL_CLOSED",
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
        },
    })
}

/// The ECDS discovery response Envoy reads from the watched file: one
/// `TypedExtensionConfig` named `filter_name` (the name the HTTP filter's
/// `config_discovery` asks for) wrapping the Rampart wasm filter with `contract`.
pub fn discovery_resource(filter_name: &str, wasm_path: &str, contract: &Value) -> Value {
    json!({
        "resources": [{
            "@type": TYPED_EXTENSION_CONFIG,
            "name": filter_name,
            "typed_config": wasm_filter_config(wasm_path, contract),
        }],
    })
}

/// The HTTP filter entry that loads `filter_name` by ECDS from the file `path`,
/// watching the file's directory for atomic replaces.
pub fn http_filter_entry(filter_name: &str, path: &Path) -> Value {
    let dir = parent_dir(path);
    json!({
        "name": filter_name,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": path.to_string_lossy(),
                    "watched_directory": { "path": dir.to_string_lossy() },
                },
            },
            "type_urls": [WASM_FILTER],
        },
    })
}

/// Writes the ECDS resource for `contract` to `path`, atomically replacing the
/// watched file ([`write_atomically`]), so Envoy applies it live.
pub fn publish(
    path: &Path,
    filter_name: &str,
    wasm_path: &str,
    contract: &Value,
) -> std::io::Result<()> {
    let resource = discovery_resource(filter_name, wasm_path, contract);
    let mut text = serde_json::to_string_pretty(&resource)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}
