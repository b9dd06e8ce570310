//! The contract and the input reach Prometheus as labels on every platform: one real
//! Envoy 1.40 per platform, each with that platform's own `stats_config`
//! (tests/fixtures/stats_config) plus what Rampart renders for it, scraped by one real
//! Prometheus. The queries are the CLI's gate queries.
//!
//! - Istio: its bootstrap's stats_config with the rule it generates for each name in the
//!   `extraStatTags` of `examples/istio/stats-tags.yaml`, written here in Istio's form.
//! - Envoy Gateway: its bootstrap's stats_config with the `jsonPatches` of
//!   `examples/envoy-gateway/envoyproxy.yaml` applied.
//! - Rampart's own bootstrap: the stats_config of `examples/envoy-ecds/envoy.yaml`.
//!
//! On each platform, `rampart ramp advance` itself, gated by a Prometheus scraping only
//! that platform's Envoy, passes under a drift limit above the traffic's drift ratio and
//! blocks under one below it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;
use support::FLAGS;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use rampart::metrics::Counter;
use rampart_cli::metrics::{Counters, MetricsSource};
use rampart_cli::{drift_pause_query, gate_counter_query, gate_drift_paused_query};
use serde::Deserialize;
use serde_json::{json, Value};
use support::ecds::{eventually, rampart_cli};
use support::prometheus::Prometheus;
use support::{
    example_contract, repo_root, stat_name, tenant_metadata_filter, wasm_filter, Bootstrap, Client,
    Envoy, TempDir,
};

const CONTRACT: &str = "checkout-v2";
/// A second contract whose name differs only by `-`/`_`: Prometheus must keep them apart.
const TWIN: &str = "checkout_v2";
const MATCHING: u64 = 12;
const DRIFTED: u64 = 5;

fn read_yaml(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(relative)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .collect()
}

fn fixture(name: &str) -> Value {
    let path = repo_root().join("tests/fixtures/stats_config").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Istio's stats_config with the rules its bootstrap template generates for the
/// `extraStatTags` that `rampart render istio` sets, where the template puts them.
fn istio_stats_config() -> Value {
    let patch = &read_yaml("examples/istio/stats-tags.yaml")[0];
    let proxy_config = patch["spec"]["template"]["metadata"]["annotations"]
        ["proxy.istio.io/config"]
        .as_str()
        .unwrap();
    let proxy_config: Value = serde_yaml::from_str(proxy_config).unwrap();
    let tags: Vec<&str> = proxy_config["extraStatTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["rampart_contract", "rampart_input"]);
    let mut config = fixture("istio.json");
    let rules = config["stats_tags"].as_array_mut().unwrap();
    let at = rules
        .iter()
        .position(|r| r["tag_name"] == "mongo_prefix")
        .unwrap()
        + 1;
    for (i, tag) in tags.iter().enumerate() {
        rules.insert(
            at + i,
            json!({ "regex": format!(r"({tag}=\.=(.*?);\.;)"), "tag_name": tag }),
        );
    }
    config
}

/// Envoy Gateway's stats_config with the rendered EnvoyProxy's JSON patches applied
/// (the `add` to an array end they use; anything else fails the test).
fn envoy_gateway_stats_config() -> Value {
    let proxy = &read_yaml("examples/envoy-gateway/envoyproxy.yaml")[0];
    assert_eq!(proxy["kind"], "EnvoyProxy");
    assert_eq!(proxy["spec"]["bootstrap"]["type"], "JSONPatch");
    let mut bootstrap = json!({ "stats_config": fixture("envoy-gateway.json") });
    let patches = proxy["spec"]["bootstrap"]["jsonPatches"]
        .as_array()
        .unwrap();
    assert_eq!(patches.len(), 2);
    for patch in patches {
        assert_eq!(patch["op"], "add", "{patch}");
        let path = patch["path"].as_str().unwrap();
        let parent = path.strip_suffix("/-").unwrap_or_else(|| panic!("{path}"));
        let list = bootstrap
            .pointer_mut(parent)
            .and_then(Value::as_array_mut)
            .unwrap_or_else(|| panic!("{parent} is not a list in Envoy Gateway's bootstrap"));
        list.push(patch["value"].clone());
    }
    bootstrap["stats_config"].take()
}

/// The stats_config `rampart render envoy` writes.
fn rampart_stats_config() -> Value {
    read_yaml("examples/envoy-ecds/envoy.yaml")[0]["stats_config"].clone()
}

/// The example contract, and a twin named `checkout_v2` running before it.
fn start_envoy(stats_config: Value) -> Envoy {
    let mut twin = example_contract();
    twin["contract"] = json!(TWIN);
    let mut bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .pre_filter(wasm_filter(&twin.to_string()))
        .plugin_config(&example_contract().to_string())
        .to_value();
    bootstrap["stats_config"] = stats_config;
    Envoy::start(&bootstrap.to_string())
}

fn send_traffic(envoy: &Envoy) {
    let mut client = Client::new(envoy.addr("main"));
    for i in 0..MATCHING {
        let user = format!("u{i}");
        let headers = [
            ("x-user-id", user.as_str()),
            ("x-user-config", FLAGS),
            ("x-tenant-tier", "gold"),
        ];
        assert_eq!(client.get("/", &headers).status, 200);
    }
    for i in 0..DRIFTED {
        let user = format!("d{i}");
        let headers = [
            ("x-user-id", user.as_str()),
            ("x-user-config", r#"{"checkout_v2":false}"#),
            ("x-tenant-tier", "gold"),
        ];
        assert_eq!(client.get("/", &headers).status, 200);
    }
    for contract in [CONTRACT, TWIN] {
        envoy.wait_for_counter(&stat_name(contract, "requests"), MATCHING + DRIFTED);
        assert_eq!(
            envoy.counter(&stat_name(contract, "field.flags.drift")),
            DRIFTED
        );
    }
}

/// A ramp of the example contract as a user runs it (`rampart ramp`, a plan in a scratch
/// directory, the live config equal to the locked snapshot), its drift gate reading
/// `prometheus` with the limit `max_drift_ratio`. It publishes to an ECDS file no Envoy
/// reads: only the gate is under test here.
struct GatedRamp {
    _dir: TempDir,
    plan: PathBuf,
}

impl GatedRamp {
    fn start(prometheus: &Prometheus, max_drift_ratio: f64) -> Self {
        let dir = TempDir::new("gated-ramp");
        let ecds_path = dir.path().join("rampart.ecds.json");
        let mut plan =
            support::ecds::example_ramp_plan(&dir, &ecds_path, max_drift_ratio, MATCHING + DRIFTED);
        plan["metrics"] = json!({ "prometheus": format!("http://{}", prometheus.addr) });
        let plan = dir.write("plan.json", &plan.to_string());
        let ramp = GatedRamp { _dir: dir, plan };
        let output = ramp.ramp("start");
        assert_eq!(output.status.code(), Some(0), "start: {output:?}");
        ramp
    }

    /// `rampart ramp COMMAND --plan PLAN --json`.
    fn ramp(&self, command: &str) -> Output {
        Command::new(rampart_cli())
            .args(["ramp", command, "--plan"])
            .arg(&self.plan)
            .arg("--json")
            .output()
            .unwrap()
    }
}

#[test]
fn contract_and_input_are_prometheus_labels_on_istio_envoy_gateway_and_rampart_bootstraps() {
    let platforms = [
        ("istio", istio_stats_config()),
        ("envoy_gateway", envoy_gateway_stats_config()),
        ("rampart", rampart_stats_config()),
    ];
    let envoys: Vec<(&str, Envoy)> = platforms
        .into_iter()
        .map(|(job, stats_config)| (job, start_envoy(stats_config)))
        .collect();
    // Per platform, a Prometheus scraping only its Envoy, and two ramps gated by it,
    // started before any traffic: one whose drift limit the traffic stays under, one
    // whose limit it exceeds.
    let drifted_share = DRIFTED as f64 / (MATCHING + DRIFTED) as f64;
    let gated: Vec<(Prometheus, GatedRamp, GatedRamp)> = envoys
        .iter()
        .map(|(job, envoy)| {
            let alone = Prometheus::start(&[(job, envoy.admin_addr())]);
            let passes = GatedRamp::start(&alone, drifted_share + 0.05);
            let blocks = GatedRamp::start(&alone, drifted_share - 0.05);
            (alone, passes, blocks)
        })
        .collect();
    for (_, envoy) in &envoys {
        send_traffic(envoy);
    }
    let jobs: Vec<(&str, SocketAddr)> = envoys
        .iter()
        .map(|(job, envoy)| (*job, envoy.admin_addr()))
        .collect();
    let prometheus = Prometheus::start(&jobs);
    let total = (MATCHING + DRIFTED) as f64;
    for (job, _) in &jobs {
        for contract in [CONTRACT, TWIN] {
            // The gate's query (crates/cli/src/metrics.rs), per platform.
            let requests =
                format!(r#"sum(rampart_requests{{rampart_contract="{contract}",job="{job}"}})"#);
            eventually(&format!("{job}: {requests} == {total}"), || {
                prometheus.value(&requests) == total
            });
            let drift =
                format!(r#"sum(rampart_drift{{rampart_contract="{contract}",job="{job}"}})"#);
            assert_eq!(prometheus.value(&drift), DRIFTED as f64, "{job}: {drift}");
            let field = format!(
                r#"rampart_field_drift{{rampart_contract="{contract}",rampart_input="flags",job="{job}"}}"#
            );
            assert_eq!(prometheus.value(&field), DRIFTED as f64, "{job}: {field}");
            let tier = format!(
                r#"rampart_field_drift{{rampart_contract="{contract}",rampart_input="tier",job="{job}"}}"#
            );
            assert_eq!(prometheus.value(&tier), 0.0, "{job}: {tier}");
        }
        // One series name per metric: the contract and the input are only labels.
        let rampart_names = prometheus.query(&format!(
            r#"count by (__name__) ({{__name__=~"rampart_.*",job="{job}"}})"#
        ));
        let names: Vec<&str> = rampart_names
            .iter()
            .map(|r| r["metric"]["__name__"].as_str().unwrap())
            .collect();
        for expected in ["rampart_requests", "rampart_drift", "rampart_field_drift"] {
            assert!(names.contains(&expected), "{job}: {names:?}");
        }
        for name in &names {
            assert!(
                !name.contains("checkout") && !name.contains("flags") && !name.contains("tier"),
                "{job}: {name} keeps a contract or input in its name"
            );
        }
        let leaked = prometheus.query(&format!(
            r#"{{__name__=~".*(checkout|rampart_contract|rampart_input).*",job="{job}"}}"#
        ));
        assert!(leaked.is_empty(), "{job}: {leaked:?}");
    }
    // The ramp's drift gate, with its own queries, sums every platform's series: three
    // Envoys' worth of requests and drift, so a ratio over the example plan's limit
    // blocks; the drift-pause gauge is exported (not absent) and off.
    let platforms = jobs.len() as f64;
    let plan: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/ramp.json")).unwrap(),
    )
    .unwrap();
    let max_drift_ratio = plan["gates"]["max_drift_ratio"].as_f64().unwrap();
    for contract in [CONTRACT, TWIN] {
        let value = |counter: Counter| prometheus.value(&gate_counter_query(counter, contract));
        assert_eq!(value(Counter::Requests), platforms * total, "{contract}");
        assert_eq!(
            value(Counter::Drift),
            platforms * DRIFTED as f64,
            "{contract}"
        );
        assert_eq!(value(Counter::Missing), 0.0, "{contract}");
        let ratio = (value(Counter::Drift) + value(Counter::Missing)) / value(Counter::Requests);
        assert!(ratio > max_drift_ratio, "{contract}: {ratio}");
        let paused = prometheus.query(&gate_drift_paused_query(contract));
        assert_eq!(paused.len(), 1, "{contract}: {paused:?}");
        assert_eq!(prometheus.value(&drift_pause_query(contract)), 0.0);
    }
    // Per platform, the ramp's own reader (what `rampart ramp advance` and `status` call)
    // against a Prometheus scraping only that platform's Envoy: the labelled series give
    // the exact counts, so the drift gate blocks at the example plan's limit and would
    // pass at a limit above the drifted share.
    for ((job, _), (alone, passes, blocks)) in jobs.iter().zip(&gated) {
        let source = MetricsSource::Prometheus(format!("http://{}", alone.addr));
        for contract in [CONTRACT, TWIN] {
            let mut reading = None;
            eventually(&format!("{job}: the gate reads {contract}"), || {
                let r = rampart_cli::metrics::read(&source, contract).unwrap();
                let complete = r.counters.requests == MATCHING + DRIFTED;
                reading = Some(r);
                complete
            });
            let reading = reading.unwrap();
            let expected = Counters {
                requests: MATCHING + DRIFTED,
                drift: DRIFTED,
                missing: 0,
            };
            assert_eq!(reading.counters, expected, "{job}: {contract}");
            assert_eq!(reading.drift_paused, Some(false), "{job}: {contract}");
            let ratio = reading.counters.drift_ratio();
            assert!(
                ratio > max_drift_ratio,
                "{job}: blocks at {max_drift_ratio}"
            );
            assert!(ratio <= 0.5, "{job}: passes at 0.5 ({ratio})");
        }
        // The whole `ramp advance` on this platform's series: the same window of
        // requests passes one limit and blocks the other.
        let output = passes.ramp("advance");
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(0), "{job}: advance: {out}");
        assert_eq!(out["state"]["step"], json!(2), "{job}: {out}");
        assert_eq!(
            out["gates"]["requests"],
            json!(MATCHING + DRIFTED),
            "{job}: {out}"
        );
        assert_eq!(out["gates"]["drift"], json!(DRIFTED), "{job}: {out}");
        let output = blocks.ramp("advance");
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(1), "{job}: advance: {out}");
        assert_eq!(out["gate"], "drift", "{job}: {out}");
        let seen = out["drift_ratio"].as_f64().unwrap();
        assert!((seen - drifted_share).abs() < 1e-9, "{job}: {out}");
    }
}
