//! Faults around the filter, in a real Envoy 1.40: an invalid contract pushed by ECDS
//! under traffic, a module that fails to load or traps under each `failure_policy`,
//! Envoy restarted mid-traffic, and the canary cluster down. Whatever fails, requests
//! reach stable or at worst the canary — never another cluster — and Rampart's counters
//! stay exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::ecds::{format, EcdsEnvoy, FILTER_NAME};
use support::{example_contract, matching, tenant_metadata_filter};
use support::{get, wasm_path, Bootstrap, Client, Envoy, TempDir};

const PREFIX: &str = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart";

/// The `failure_policy` values of Envoy 1.40's wasm `PluginConfig` (besides
/// `UNSPECIFIED`, which means `FAIL_CLOSED`).
const POLICIES: [&str; 3] = ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"];

fn bucket_side(user: &str, percent: u16) -> &'static str {
    if rampart::bucket::bucket("checkout-v2", user.as_bytes()) < percent * 100 {
        "canary"
    } else {
        "stable"
    }
}

/// The main listener's HTTP filters in a bootstrap value.
fn http_filters(bootstrap: &mut Value) -> &mut Vec<Value> {
    bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["name"] == "main")
        .unwrap()["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap()
}

/// A bootstrap whose wasm filter loads `module` under `policy`.
fn with_module(module: &Path, policy: &str) -> String {
    let mut bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .plugin_config(&example_contract().to_string())
        .to_value();
    let wasm = http_filters(&mut bootstrap)
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .unwrap();
    let config = &mut wasm["typed_config"]["config"];
    config["vm_config"]["code"]["local"]["filename"] = module.to_str().unwrap().into();
    config["failure_policy"] = policy.into();
    bootstrap.to_string()
}

/// Bytes that are not a wasm module.
fn corrupt_module(dir: &TempDir) -> PathBuf {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let path = dir.path().join("corrupt.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_module_that_fails_to_load_keeps_envoy_from_serving_under_every_policy() {
    let dir = TempDir::new("faults");
    let module = corrupt_module(&dir);
    for policy in POLICIES {
        // The listener cannot be built without its filter: Envoy exits at startup, so
        // there is no moment when requests pass unfiltered.
        let started = std::panic::catch_unwind(|| Envoy::start(&with_module(&module, policy)));
        let message = match started {
            Ok(_) => panic!("{policy}: Envoy started with a corrupt module"),
            Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        assert!(
            message.contains("Envoy exited during startup")
                && message.contains("Unable to create Wasm plugin rampart"),
            "{policy}: {message}"
        );
    }
}

#[test]
fn a_module_that_fails_to_load_by_ecds_is_rejected_and_the_last_contract_keeps_serving() {
    let dir = TempDir::new("faults");
    let module = corrupt_module(&dir);
    let envoy = EcdsEnvoy::start(
        &Bootstrap::new().pre_filter(tenant_metadata_filter()),
        &example_contract().to_string(),
        &[],
    );
    let main = envoy.envoy.addr("main");
    for (n, policy) in POLICIES.iter().enumerate() {
        let mut resource =
            format::discovery_resource(FILTER_NAME, module.to_str().unwrap(), &example_contract());
        resource["resources"][0]["typed_config"]["config"]["failure_policy"] = (*policy).into();
        envoy.file.publish_raw(resource.to_string().as_bytes());
        // Envoy cannot build the filter from it: the version is rejected (NACKed).
        envoy.envoy.wait_for_counter(
            &format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_rejected"),
            n as u64 + 1,
        );
        for (user, forged) in [("alice", "stable"), ("bob", "canary")] {
            let mut headers = matching(user);
            headers.push(("x-rampart-route", forged));
            let r = get(main, "/", &headers);
            assert_eq!(
                (r.status, r.header("x-served-by")),
                (200, Some(bucket_side(user, 30))),
                "{policy}: {user}"
            );
        }
    }
    assert_eq!(
        envoy.updates(),
        1,
        "only the first, good version was applied"
    );
    envoy
        .envoy
        .wait_for_counter(&format!("{PREFIX}.requests"), 2 * POLICIES.len() as u64);
}

#[test]
fn a_trapping_module_fails_closed_open_or_reloads_and_forged_headers_reach_at_most_the_canary() {
    let dir = TempDir::new("faults");
    let module = support::fixture_module(&dir, "trap_filter");
    for policy in POLICIES {
        let envoy = Envoy::start(&with_module(&module, policy));
        let main = envoy.addr("main");
        // The first request traps the VM: Envoy answers 503 itself under every policy.
        let first = get(main, "/", &[("x-rampart-route", "canary")]);
        assert_eq!(
            (first.status, first.header("x-served-by")),
            (503, None),
            "{policy}"
        );
        let mut sides = Vec::new();
        for forged in ["canary", "stable", "other", "", "CANARY"] {
            let headers: Vec<(&str, &str)> = if forged.is_empty() {
                Vec::new()
            } else {
                vec![("x-rampart-route", forged)]
            };
            let r = get(main, "/", &headers);
            sides.push((r.status, r.header("x-served-by").map(str::to_owned)));
        }
        let served = |side: &str| (200, Some(side.to_owned()));
        let refused = (503, None);
        match policy {
            // The failed VM stays failed: every request is refused.
            "FAIL_CLOSED" => assert_eq!(sides, vec![refused.clone(); 5], "{policy}"),
            // The filter is skipped: the client's header is routed as sent, and the
            // routes bound the damage — the canary on an exact `canary`, else stable.
            "FAIL_OPEN" => assert_eq!(
                sides,
                vec![
                    served("canary"),
                    served("stable"),
                    served("stable"),
                    served("stable"),
                    served("stable")
                ],
                "{policy}"
            ),
            // Refused while Envoy backs off before reloading the VM.
            _ => {
                assert_eq!(sides, vec![refused.clone(); 5], "{policy}");
                assert!(envoy.counter("wasm.rampart.vm_reload_backoff") >= 1);
            }
        }
        let canary = envoy.counter("cluster.canary.upstream_rq_total");
        let stable = envoy.counter("cluster.stable.upstream_rq_total");
        let expected = if policy == "FAIL_OPEN" {
            (1, 4)
        } else {
            (0, 0)
        };
        assert_eq!((canary, stable), expected, "{policy}");
        envoy.wait_for_log("Function: proxy_on_request_headers failed");
    }
}

/// Sends matching requests for users `u0`, `u1`, … until `stop`, checking each side;
/// returns (requests answered, canary among them, non-200 answers).
fn traffic(main: SocketAddr, stop: Arc<AtomicBool>, percent: u16) -> (u64, u64, u64) {
    let mut client = Client::new(main);
    let (mut sent, mut canary, mut failed) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let user = format!("u{sent}");
        let r = client.get("/", &matching(&user));
        sent += 1;
        if r.status != 200 {
            failed += 1;
            continue;
        }
        let side = r.header("x-served-by").unwrap().to_owned();
        let reason = r
            .header("x-rampart-decision")
            .unwrap_or_default()
            .to_owned();
        if reason.contains("reason=invalid_contract") {
            assert_eq!(side, "stable", "safe mode sends {user} to stable");
        } else {
            assert_eq!(side, bucket_side(&user, percent), "{user}: {reason}");
        }
        canary += u64::from(side == "canary");
    }
    (sent, canary, failed)
}

#[test]
fn an_invalid_contract_pushed_under_traffic_engages_safe_mode_and_a_valid_one_recovers() {
    let envoy = EcdsEnvoy::start(
        &Bootstrap::new().pre_filter(tenant_metadata_filter()),
        &example_contract().to_string(),
        &[],
    );
    let main = envoy.envoy.addr("main");
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || traffic(main, stop, 30))
    };
    thread::sleep(Duration::from_millis(300));
    // An invalid contract is still a valid filter configuration for Envoy: it is
    // applied, the filter's on_configure enters safe mode instead of failing.
    let mut invalid = example_contract();
    invalid["ramp"]["percent"] = 250.into();
    envoy.publish(&invalid.to_string());
    envoy.wait_for_update(2);
    support::ecds::eventually("safe mode counts requests", || {
        envoy.envoy.counter("wasmcustom.rampart.safe_mode") >= 20
    });
    let forged = get(main, "/", &{
        let mut h = matching("alice");
        h.push(("x-rampart-route", "canary"));
        h
    });
    assert_eq!(forged.header("x-served-by"), Some("stable"), "safe mode");
    envoy.publish(&example_contract().to_string());
    envoy.wait_for_update(3);
    support::ecds::eventually("the valid contract decides again", || {
        get(main, "/", &matching("alice")).header("x-served-by") == Some("canary")
    });
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (sent, canary, failed) = worker.join().unwrap();
    assert_eq!(failed, 0, "no request failed across both pushes");
    assert!(sent > 50, "{sent} requests");
    let stats = envoy.envoy.settled_stats();
    assert!(stats["wasmcustom.rampart.invalid_config"] >= 1);
    assert_eq!(
        stats.get("extension_config_discovery.http_filter.rampart.update_rejected"),
        Some(&0),
        "Envoy accepted every version"
    );
    // Every request was counted once, by the contract or by safe mode; the canary got
    // exactly what the traffic saw there (plus alice's recovery probes).
    // The recovery probes for alice: stable in safe mode, then one on the canary.
    let decided = stats[&format!("{PREFIX}.requests")] + stats["wasmcustom.rampart.safe_mode"];
    assert!(
        decided > sent + 1,
        "{decided} decided, {sent} sent + 1 forged + probes"
    );
    assert_eq!(stats[&format!("{PREFIX}.canary")], canary + 1);
    assert_eq!(stats["cluster.canary.upstream_rq_total"], canary + 1);
    let log = envoy.envoy.wait_for_log("SAFE MODE");
    assert!(log.contains("ramp.percent"), "{log}");
}

#[test]
fn envoy_restarted_mid_traffic_decides_the_same_and_counts_from_zero() {
    let bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .plugin_config(&example_contract().to_string());
    let first = Envoy::start(&bootstrap.build());
    let port = first.port("main");
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        let main = first.addr("main");
        thread::spawn(move || traffic(main, stop, 30))
    };
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (before, canary_before, failed) = worker.join().unwrap();
    assert_eq!(failed, 0);
    first.wait_for_counter(&format!("{PREFIX}.requests"), before);
    assert_eq!(first.counter(&format!("{PREFIX}.canary")), canary_before);
    // Stop it and start a new Envoy with the same configuration on the same port.
    drop(first);
    let mut same = bootstrap.to_value();
    same["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] =
        port.into();
    let second = Envoy::start(&same.to_string());
    assert_eq!(second.port("main"), port);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        let main = second.addr("main");
        thread::spawn(move || traffic(main, stop, 30))
    };
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (after, canary_after, failed) = worker.join().unwrap();
    assert_eq!(failed, 0);
    // The same users got the same sides (checked per request), and the counters are the
    // new process's own.
    second.wait_for_counter(&format!("{PREFIX}.requests"), after);
    assert_eq!(second.counter(&format!("{PREFIX}.canary")), canary_after);
    assert_eq!(
        second.counter(&format!("{PREFIX}.stable")),
        after - canary_after
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn canary_cluster_down_answers_503_and_rampart_counts_stay_right() {
    let mut bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .plugin_config(&example_contract().to_string())
        .to_value();
    // The canary cluster points at a closed port; no retries, no outlier detection:
    // Envoy answers 503 (connection failure) for what the filter sent there.
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap();
    let canary = clusters.iter_mut().find(|c| c["name"] == "canary").unwrap();
    canary["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
        json!({ "socket_address": { "address": "127.0.0.1", "port_value": closed_port() } });
    canary["connect_timeout"] = "1s".into();
    let envoy = Envoy::start(&bootstrap.to_string());
    let main = envoy.addr("main");
    let mut client = Client::new(main);
    let (mut canary_sent, mut stable_sent) = (0u64, 0u64);
    for i in 0..60 {
        let user = format!("user-{i}");
        let r = client.get("/", &matching(&user));
        match bucket_side(&user, 30) {
            "canary" => {
                assert_eq!((r.status, r.header("x-served-by")), (503, None), "{user}");
                canary_sent += 1;
            }
            _ => {
                assert_eq!(
                    (r.status, r.header("x-served-by")),
                    (200, Some("stable")),
                    "{user}"
                );
                stable_sent += 1;
            }
        }
    }
    assert!(canary_sent > 5 && stable_sent > 5);
    envoy.wait_for_counter(&format!("{PREFIX}.requests"), 60);
    assert_eq!(envoy.counter(&format!("{PREFIX}.canary")), canary_sent);
    assert_eq!(envoy.counter(&format!("{PREFIX}.stable")), stable_sent);
    assert_eq!(envoy.counter(&format!("{PREFIX}.match")), 60);
    assert_eq!(
        envoy.counter("cluster.canary.upstream_cx_connect_fail"),
        canary_sent
    );
    assert_eq!(envoy.counter("cluster.stable.upstream_rq_200"), stable_sent);
    // The access log records the decision and the upstream failure side by side.
    let lines = envoy.wait_for_access_log(60);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("503 canary route=canary reason=match"))
            .count() as u64,
        canary_sent
    );
    assert!(wasm_path().is_file());
}
