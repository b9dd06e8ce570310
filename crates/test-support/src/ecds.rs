//! ECDS in the harness: an Envoy whose Rampart filter configuration comes from a
//! watched file, and publishing to it the way the `rampart` CLI does.
//!
//! The file format and the atomic replace are the CLI's own code (the `rampart-cli`
//! library), so the tests exercise exactly what users run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{utf8, wasm_path, Bootstrap, Envoy, TempDir};

/// The CLI's ECDS module: resource format, filter entry, publish.
pub use rampart_cli::ecds as format;

/// The name of the ECDS resource and of the HTTP filter entry that asks for it.
pub const FILTER_NAME: &str = "rampart";

/// The watched file's name inside the ECDS directory.
pub const ECDS_FILE: &str = "rampart.ecds.json";

/// A ramp plan over the example contract for `rampart ramp`, publishing to `ecds_path`
/// with the built module: its contract, snapshot and live config (the snapshot, so it
/// matches) are written beside it into `dir`. The gates block on drift above
/// `max_drift_ratio` once `min_requests` were seen, with no bake time; callers set
/// `steps`, `metrics` and anything else on the value before writing it as `plan.json`.
pub fn example_ramp_plan(
    dir: &TempDir,
    ecds_path: &Path,
    max_drift_ratio: f64,
    min_requests: u64,
) -> Value {
    let example = |name: &str| {
        std::fs::read_to_string(crate::repo_root().join("examples").join(name))
            .unwrap_or_else(|err| panic!("examples/{name}: {err}"))
    };
    dir.write("contract.json", &example("contract.json"));
    dir.write("snapshot.json", &example("snapshot.json"));
    dir.write("live.json", &example("snapshot.json"));
    serde_json::json!({
        "contract": "contract.json",
        "snapshot": "snapshot.json",
        "live": { "file": "live.json" },
        "steps": [1, 50, 100],
        "gates": {
            "max_drift_ratio": max_drift_ratio,
            "min_requests": min_requests,
            "bake_seconds": 0,
            "on_mismatch": "block",
        },
        "approval": { "after_approval": "restart" },
        "publish": {
            "ecds_path": utf8(ecds_path),
            "filter_name": FILTER_NAME,
            "wasm": utf8(&wasm_path()),
        },
        "metrics": null,
    })
}
/// The counter Envoy increments each time it applies a new ECDS resource.
pub fn update_success_stat() -> String {
    format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_success")
}

/// The counter Envoy increments when it rejects an ECDS resource.
pub fn update_rejected_stat() -> String {
    format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_rejected")
}

/// A watched directory holding the ECDS file for one Envoy.
pub struct EcdsFile {
    dir: TempDir,
    path: PathBuf,
}

impl EcdsFile {
    /// Creates the directory and publishes `contract` (JSON text) as the first version,
    /// so Envoy finds a configuration when it starts.
    pub fn new(contract: &str) -> Self {
        let dir = TempDir::new("ecds");
        let path = dir.path().join(ECDS_FILE);
        let file = Self { dir, path };
        file.publish(contract);
        file
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes `contract` (JSON text, passed to the filter verbatim, so invalid
    /// contracts can be published too) by atomically replacing the file.
    pub fn publish(&self, contract: &str) {
        let mut resource = format::discovery_resource(
            FILTER_NAME,
            utf8(&wasm_path()),
            &Value::String(String::new()),
        );
        resource["resources"][0]["typed_config"]["config"]["configuration"]["value"] =
            Value::String(contract.to_owned());
        self.publish_raw(resource.to_string().as_bytes());
    }

    /// Publishes a contract value with the CLI's own `ecds::publish`.
    pub fn publish_value(&self, contract: &Value) {
        format::publish(&self.path, FILTER_NAME, utf8(&wasm_path()), contract)
            .unwrap_or_else(|err| panic!("publishing to {}: {err}", self.path.display()));
    }

    /// Atomically replaces the file with arbitrary bytes (for malformed resources).
    pub fn publish_raw(&self, bytes: &[u8]) {
        rampart_cli::files::write_atomically(&self.path, bytes)
            .unwrap_or_else(|err| panic!("writing {}: {err}", self.path.display()));
    }

    /// `bootstrap` with the Rampart filter delivered by ECDS from this file, inserted
    /// right before the router of the `main` listener (the bootstrap must not carry
    /// an inline `plugin_config`).
    pub fn bootstrap(&self, bootstrap: &Bootstrap) -> String {
        self.bootstrap_value(bootstrap).to_string()
    }

    /// As [`EcdsFile::bootstrap`], as a JSON value for further adjustments.
    pub fn bootstrap_value(&self, bootstrap: &Bootstrap) -> Value {
        let mut value = bootstrap.to_value();
        let listeners = value["static_resources"]["listeners"]
            .as_array_mut()
            .expect("bootstrap has listeners");
        let main = listeners
            .iter_mut()
            .find(|listener| listener["name"] == "main")
            .expect("bootstrap has a `main` listener");
        let filters = main["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .expect("main listener has http_filters");
        assert!(
            !filters
                .iter()
                .any(|f| f["name"] == "envoy.filters.http.wasm"),
            "use a Bootstrap without plugin_config: the filter comes by ECDS"
        );
        let router = filters.len() - 1;
        filters.insert(router, format::http_filter_entry(FILTER_NAME, &self.path));
        value
    }
}

/// An Envoy started with the Rampart filter delivered by ECDS, and its ECDS file.
pub struct EcdsEnvoy {
    // Declared first so Envoy stops before its ECDS directory is removed.
    /// The running Envoy.
    pub envoy: Envoy,
    /// The watched ECDS file.
    pub file: EcdsFile,
    /// The bootstrap and flags it was started with, to start it again.
    bootstrap: String,
    args: Vec<String>,
}

impl EcdsEnvoy {
    /// Starts Envoy from `bootstrap` (without `plugin_config`) with `contract` as the
    /// first ECDS version; `extra_args` as for [`Envoy::start_with`].
    pub fn start(bootstrap: &Bootstrap, contract: &str, extra_args: &[&str]) -> Self {
        Self::start_with(bootstrap, contract, extra_args, |_| {})
    }

    /// As [`EcdsEnvoy::start`], letting `adjust` change the bootstrap JSON first
    /// (e.g. add `stats_config`).
    pub fn start_with(
        bootstrap: &Bootstrap,
        contract: &str,
        extra_args: &[&str],
        adjust: impl FnOnce(&mut Value),
    ) -> Self {
        let file = EcdsFile::new(contract);
        let mut value = file.bootstrap_value(bootstrap);
        adjust(&mut value);
        let bootstrap = value.to_string();
        let envoy = Envoy::start_with(&bootstrap, extra_args, None);
        wait_for_update(&envoy, 1);
        let args = extra_args.iter().map(|&a| a.to_owned()).collect();
        Self {
            envoy,
            file,
            bootstrap,
            args,
        }
    }

    /// Restarts Envoy: a new process from the same bootstrap and flags, on free ports
    /// (admin included), then the old one is stopped. Like a restarted Envoy in
    /// production it starts with an empty memory (counters, shared data) and the ECDS
    /// file's current contract, which is its first (and only) update.
    pub fn restart(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let envoy = Envoy::start_with(&self.bootstrap, &args, None);
        wait_for_update(&envoy, 1);
        self.envoy = envoy;
    }

    /// Publishes `contract` (JSON text) as the next version.
    pub fn publish(&self, contract: &str) {
        self.file.publish(contract);
    }

    /// Waits until Envoy has applied `n` ECDS versions in total (the first one counts).
    pub fn wait_for_update(&self, n: u64) {
        wait_for_update(&self.envoy, n);
    }

    /// How many ECDS versions Envoy has applied.
    pub fn updates(&self) -> u64 {
        self.envoy.counter(&update_success_stat())
    }
}

/// Waits until `envoy` has applied `n` ECDS versions in total.
pub fn wait_for_update(envoy: &Envoy, n: u64) {
    envoy.wait_for_counter(&update_success_stat(), n);
}

/// How long [`eventually`] waits: its checks may send hundreds of requests each, on a
/// machine busy with parallel tests.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `check` holds, e.g. until ECDS updates reach the worker threads
/// (shortly after the main thread counts them).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY_TIMEOUT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {EVENTUALLY_TIMEOUT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The `rampart` command the tests drive: `RAMPART_CLI` (set by `cargo xtask test`),
/// else the debug build in cargo's target directory.
pub fn rampart_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("RAMPART_CLI") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| super::repo_root().join("target"), PathBuf::from);
    let path = target.join("debug").join("rampart");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p rampart-cli` or set RAMPART_CLI",
        path.display()
    );
    path
}
