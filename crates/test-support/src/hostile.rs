//! A run of hostile (or ordinary) requests against the real filter, whatever the
//! protocol: an Envoy whose filter reloads its VM on a failure, so a trap shows in the
//! stats; a tally of what each request should have counted; and the final check that
//! the counters match it and the VMs are the ones Envoy started with.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    assert_no_vm_failure, example_contract, get_raw, stat_name, tenant_metadata_filter, Bootstrap,
    Envoy, Response,
};

/// Envoy's own wasm stats (verified on 1.40): VMs created and alive per runtime, and
/// the plugin's reload counters, which move when a VM fails.
const WASM_HEALTH_STATS: &[&str] = &[
    "wasm.envoy.wasm.runtime.v8.created",
    "wasm.envoy.wasm.runtime.v8.active",
    "wasm.wasm_vm_count",
    "wasm.rampart.vm_reload",
    "wasm.rampart.vm_reload_failure",
    "wasm.rampart.vm_reload_success",
    "wasm.rampart.vm_reload_backoff",
];

/// The reasons a decided request is counted under; they add up to `requests`.
const REASONS: &[&str] = &["match", "drift", "missing", "unkeyed", "paused"];

/// One Envoy with a contract, the wasm stats it started with, and a tally of what
/// each request should have counted.
pub struct Hostile {
    /// The Envoy under test.
    pub envoy: Envoy,
    /// Envoy's wasm VM stats right after startup.
    health: BTreeMap<String, u64>,
    /// The contract's name, which its metrics carry.
    contract: String,
    expected: BTreeMap<String, u64>,
}

impl Hostile {
    /// Envoy with `contract`, the demo's `header_to_metadata` for the tier, and the
    /// harness's internal upstreams.
    pub fn start(contract: &Value) -> Hostile {
        Hostile::with(
            Bootstrap::new()
                .pre_filter(tenant_metadata_filter())
                .plugin_config(&contract.to_string()),
        )
    }

    /// Envoy with `bootstrap`, which must carry a contract (its name names the metrics,
    /// `checkout-v2` if it has none).
    pub fn with(bootstrap: Bootstrap) -> Hostile {
        let mut bootstrap = bootstrap.to_value();
        // FAIL_RELOAD makes a trap visible in the stats (`vm_reload_backoff`, then
        // `vm_reload` and a new VM); under the default FAIL_CLOSED only the 503s and
        // the log would show it.
        let filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"]["http_filters"]
            .as_array_mut()
            .expect("the main listener's HTTP filters");
        let wasm = filters
            .iter_mut()
            .find(|f| f["name"] == "envoy.filters.http.wasm")
            .expect("the bootstrap has the Rampart filter");
        wasm["typed_config"]["config"]["failure_policy"] = "FAIL_RELOAD".into();
        let config = wasm["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .unwrap_or_else(example_contract);
        let contract = config["contract"]
            .as_str()
            .unwrap_or("checkout-v2")
            .to_owned();
        let envoy = Envoy::start(&bootstrap.to_string());
        let health = wasm_health(&envoy);
        assert!(
            health["wasm.envoy.wasm.runtime.v8.active"] >= 2,
            "{health:?}"
        );
        Hostile {
            envoy,
            health,
            contract,
            expected: BTreeMap::new(),
        }
    }

    /// Adds one to each of the contract's metrics `names` (`requests`, `canary`,
    /// `drift`, `field.flags.invalid`, …) in the tally.
    pub fn count(&mut self, names: &[&str]) {
        for name in names {
            *self.expected.entry((*name).to_owned()).or_default() += 1;
        }
    }

    /// How many requests the tally holds.
    pub fn requests(&self) -> u64 {
        self.expected.get("requests").copied().unwrap_or(0)
    }

    /// Sends the raw HTTP/1.1 request `raw`, checks its side and reason, and counts it
    /// under `requests`, its side, its reason and `extra`.
    pub fn expect(&mut self, what: &str, raw: &[u8], side: &str, reason: &str, extra: &[&str]) {
        let r = get_raw(self.envoy.addr("main"), raw);
        self.record(what, &r, side, reason, extra);
    }

    /// Checks a response's side and reason ([`Hostile::check`]) and counts it under
    /// `requests`, its side, its reason and `extra`.
    pub fn record(&mut self, what: &str, r: &Response, side: &str, reason: &str, extra: &[&str]) {
        self.check(what, r, side, reason);
        self.count(&["requests", side, reason]);
        self.count(extra);
    }

    /// The response is a 200 from the `side` upstream, which saw the route header set
    /// to `side`, and the debug header gives `side` and `reason`.
    pub fn check(&self, what: &str, r: &Response, side: &str, reason: &str) {
        assert_eq!(r.status, 200, "{what}: {} {}", r.status, r.body);
        assert_eq!(r.header("x-served-by"), Some(side), "{what}");
        assert_eq!(
            r.header("x-seen-route"),
            Some(side),
            "{what}: route header the upstream saw"
        );
        let decision = r.header("x-rampart-decision").unwrap_or_default();
        assert!(
            decision.starts_with(&format!("route={side} reason={reason}")),
            "{what}: {decision}"
        );
    }

    /// The `/stats` name of one of the contract's metrics.
    pub fn stat(&self, metric: &str) -> String {
        stat_name(&self.contract, metric)
    }

    /// Every counter matches the tally, the sides and reasons add up to the requests,
    /// nothing reached the canary cluster that the filter did not send there, and the
    /// VMs are the ones Envoy started with.
    pub fn finish(&self) {
        let requests = self.requests();
        self.envoy
            .wait_for_counter(&self.stat("requests"), requests);
        let stats = self.envoy.stats();
        let get = |name: &str| stats.get(&self.stat(name)).copied().unwrap_or(0);
        for (name, value) in &self.expected {
            assert_eq!(get(name), *value, "{}", self.stat(name));
        }
        assert_eq!(get("canary") + get("stable") + get("rejected"), requests);
        assert_eq!(REASONS.iter().map(|r| get(r)).sum::<u64>(), requests);
        assert_eq!(
            stats
                .get("cluster.canary.upstream_rq_total")
                .copied()
                .unwrap_or(0),
            get("canary"),
            "only requests the filter sent to the canary reach it"
        );
        self.assert_healthy();
    }

    /// Every request the filter let through reached the canary or the stable cluster.
    pub fn assert_every_request_reached_a_cluster(&self) {
        assert_eq!(
            self.envoy.counter("cluster.stable.upstream_rq_total")
                + self.envoy.counter("cluster.canary.upstream_rq_total"),
            self.requests()
        );
    }

    /// Envoy's wasm stats have not moved since startup and its log shows no VM failure.
    pub fn assert_healthy(&self) {
        assert_eq!(
            wasm_health(&self.envoy),
            self.health,
            "wasm VM health stats moved"
        );
        assert_no_vm_failure(&self.envoy, &["Failed to"]);
    }
}

/// The [`WASM_HEALTH_STATS`] now (0 for a stat Envoy has not created).
fn wasm_health(envoy: &Envoy) -> BTreeMap<String, u64> {
    let stats = envoy.stats();
    WASM_HEALTH_STATS
        .iter()
        .map(|name| ((*name).to_owned(), stats.get(*name).copied().unwrap_or(0)))
        .collect()
}
