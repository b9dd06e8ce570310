//! The data-plane drift pause in a real Envoy 1.40 with two workers: drift counted on
//! both workers trips one shared pause, which sends everyone to stable; pushing the
//! same lock again by ECDS keeps it, pushing a new (approved) lock clears it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;
use support::FLAGS;

use std::time::{Duration, Instant};

use rampart::snapshot::digest_of;
use rampart::Json;
use serde_json::{json, Value};
use support::ecds::EcdsEnvoy;
use support::tenant_metadata_filter;
use support::{repo_root, Bootstrap, Client, Envoy, Response};

const STATS_PREFIX: &str = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart";
const LOCK_SHORT: &str = "sha256:57e6117d105a";
const TRIP_LINE: &str = "drift pause TRIPPED";

/// Two workers, wasm logs at info (the clear and still-paused lines), the rest at warn.
const ARGS: &[&str] = &["--concurrency", "2", "--component-log-level", "wasm:info"];

fn contract_with_pause() -> Value {
    let mut contract: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("examples/contract.json")).unwrap())
            .unwrap();
    contract["drift_pause"] =
        json!({ "max_ratio": 0.5, "min_requests": 100, "window_seconds": 30 });
    contract
}

fn headers<'a>(user: &'a str, tier: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-user-id", user),
        ("x-user-config", FLAGS),
        ("x-tenant-tier", tier),
    ]
}

fn served_by(r: &Response) -> &str {
    r.header("x-served-by")
        .unwrap_or_else(|| panic!("no x-served-by: {} {}", r.status, r.body))
}

fn decision(r: &Response) -> &str {
    r.header("x-rampart-decision")
        .unwrap_or_else(|| panic!("no x-rampart-decision: {} {}", r.status, r.body))
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("{STATS_PREFIX}.{name}"))
}

/// Waits until the `drift_paused` gauge is `value`.
fn wait_for_drift_paused(envoy: &Envoy, value: u64) {
    eventually(&format!("drift_paused == {value}"), || {
        match stat(envoy, "drift_paused") {
            v if v == value => Ok(()),
            v => Err(format!("drift_paused is {v}")),
        }
    });
}

/// Retries `check` for up to 60 s (the pause is merged once a second per worker; a
/// machine busy with parallel tests can take much longer than that).
fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Connections made in the order they were opened, and the worker each landed on
/// (Envoy's per-worker listener stats tell), until both workers have one.
fn one_client_per_worker(envoy: &Envoy) -> [Client; 2] {
    let main = envoy.addr("main");
    // Listener stats are named after the configured address (port 0).
    let prefix = "listener.127.0.0.1_0.worker_";
    let per_worker = |envoy: &Envoy| -> [u64; 2] {
        let stats = envoy.stats();
        [0, 1].map(|w| {
            stats
                .get(&format!("{prefix}{w}.downstream_cx_total"))
                .copied()
                .unwrap_or(0)
        })
    };
    let mut found: [Option<Client>; 2] = [None, None];
    for _ in 0..64 {
        let before = per_worker(envoy);
        let mut client = Client::new(main);
        // `bob` is a stable user: these requests match the lock and are counted.
        let r = client.get("/", &headers("bob", "gold"));
        assert_eq!(served_by(&r), "stable");
        let after = per_worker(envoy);
        let worker = (0..2).find(|&w| after[w] > before[w]).unwrap();
        if found[worker].is_none() {
            found[worker] = Some(client);
        }
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap);
        }
    }
    panic!("64 connections all landed on one worker");
}

/// Sends drifted requests on both workers (60 each: neither alone reaches
/// `min_requests: 100`), so only the shared window can trip the pause.
fn drift_on_both_workers(clients: &mut [Client; 2]) {
    for client in clients.iter_mut() {
        for i in 0..60 {
            let user = format!("drifter-{i}");
            let r = client.get("/", &headers(&user, "silver"));
            assert_eq!(served_by(&r), "stable");
            assert!(
                decision(&r).contains("reason=drift")
                    || decision(&r).contains("reason=drift_paused"),
                "{}",
                decision(&r)
            );
        }
    }
}

/// Every client's next request for alice (a canary user with a matching config) is
/// stable because of the pause.
fn assert_paused_everywhere(clients: &mut [Client; 2]) {
    for client in clients.iter_mut() {
        for _ in 0..10 {
            let r = client.get("/", &headers("alice", "gold"));
            assert_eq!(served_by(&r), "stable");
            assert!(
                decision(&r).starts_with("route=stable reason=drift_paused"),
                "{}",
                decision(&r)
            );
        }
    }
}

fn wait_until_paused_everywhere(clients: &mut [Client; 2]) {
    eventually("alice is stable on both workers", || {
        for client in clients.iter_mut() {
            let r = client.get("/", &headers("alice", "gold"));
            if served_by(&r) != "stable" {
                return Err(decision(&r).to_owned());
            }
        }
        Ok(())
    });
}

#[test]
fn drift_on_two_workers_trips_one_pause_for_everyone() {
    let bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .plugin_config(&contract_with_pause().to_string())
        .build();
    let envoy = Envoy::start_with(&bootstrap, ARGS, None);
    let mut clients = one_client_per_worker(&envoy);
    // Before: alice (bucket 2815 < 3000) with the locked config is on the canary.
    for client in clients.iter_mut() {
        let r = client.get("/", &headers("alice", "gold"));
        assert_eq!(served_by(&r), "canary", "{}", decision(&r));
    }
    assert_eq!(stat(&envoy, "drift_paused"), 0);

    drift_on_both_workers(&mut clients);
    wait_for_drift_paused(&envoy, 1);
    wait_until_paused_everywhere(&mut clients);
    assert_paused_everywhere(&mut clients);

    let log = envoy.wait_for_log(TRIP_LINE);
    let trips: Vec<&str> = log.lines().filter(|l| l.contains(TRIP_LINE)).collect();
    assert_eq!(trips.len(), 1, "one warning per Envoy: {trips:#?}");
    let line = trips[0];
    for part in [
        "[warning]",
        "rampart[checkout-v2]: drift pause TRIPPED for lock sha256:57e6117d105a: drift ratio 0.",
        "> max 0.5000 over the last 30s (",
        "requests drifted or missing); canary paused, all requests to stable until a new lock arrives",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert!(line.contains(LOCK_SHORT));
    // Paused requests are counted as such, and nothing reached the canary since.
    let before = envoy.settled_stats();
    let canary_before = before[&format!("{STATS_PREFIX}.canary")];
    let paused_before = before[&format!("{STATS_PREFIX}.paused")];
    assert_paused_everywhere(&mut clients);
    // Each worker hands all its counts over at once: once `paused` has them all, so
    // has `canary`.
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.paused"), paused_before + 20);
    assert_eq!(stat(&envoy, "canary"), canary_before);
    assert!(
        !log.contains("panicked") && !log.contains("wasm trap"),
        "{log}"
    );
    assert!(!log.contains("shared data unavailable"), "{log}");
}

/// The lock of the example snapshot with `tier` approved as `silver`.
fn silver_lock() -> Value {
    let snapshot = format!(r#"{{"flags":{FLAGS},"rev":"r42","tier":"silver"}}"#);
    let whole = digest_of(&Json::parse(snapshot.as_bytes(), 16).unwrap());
    let tier = digest_of(&Json::String("silver".into()));
    let mut lock = contract_with_pause()["lock"].clone();
    lock["digest"] = json!(whole.to_string());
    lock["fields"]["tier"] = json!(tier.to_string());
    lock
}

#[test]
fn same_lock_pushed_again_keeps_the_pause_and_a_new_lock_clears_it() {
    let contract = contract_with_pause();
    let ecds = EcdsEnvoy::start(
        &Bootstrap::new().pre_filter(tenant_metadata_filter()),
        &contract.to_string(),
        ARGS,
    );
    let envoy = &ecds.envoy;
    let mut clients = one_client_per_worker(envoy);
    drift_on_both_workers(&mut clients);
    wait_for_drift_paused(envoy, 1);
    wait_until_paused_everywhere(&mut clients);

    // The same lock again, with another stable route value so each response tells
    // (the upstream echoes the route header) which configuration decided it: still paused.
    let mut same_lock = contract.clone();
    same_lock["route"]["stable"] = json!("stable-again");
    same_lock["ramp"]["percent"] = json!(50);
    ecds.publish(&same_lock.to_string());
    ecds.wait_for_update(2);
    eventually("the same-lock configuration on both workers", || {
        for client in clients.iter_mut() {
            let r = client.get("/", &headers("alice", "gold"));
            match (r.header("x-seen-route"), r.header("x-rampart-decision")) {
                (Some("stable-again"), Some(why))
                    if why.starts_with("route=stable reason=drift_paused") => {}
                other => return Err(format!("{other:?}")),
            }
        }
        Ok(())
    });
    for client in clients.iter_mut() {
        for _ in 0..10 {
            let r = client.get("/", &headers("alice", "gold"));
            assert_eq!(served_by(&r), "stable");
            assert_eq!(r.header("x-seen-route"), Some("stable-again"));
            assert!(r
                .header("x-rampart-decision")
                .unwrap()
                .contains("reason=drift_paused"));
        }
    }
    assert_eq!(stat(envoy, "drift_paused"), 1);
    let log = envoy.wait_for_log("drift pause still in effect for lock sha256:57e6117d105a");
    assert!(log.contains("approve and re-lock to resume"), "{log}");
    assert_eq!(count_lines(&log, "drift pause cleared"), 0);

    // The approved lock (tier silver) clears the pause: silver users reach the canary.
    let mut relocked = contract.clone();
    relocked["lock"] = silver_lock();
    let new_short = relocked["lock"]["digest"].as_str().unwrap()[..19].to_owned();
    ecds.publish(&relocked.to_string());
    ecds.wait_for_update(3);
    eventually("alice (tier silver) on the canary on both workers", || {
        for client in clients.iter_mut() {
            let r = client.get("/", &headers("alice", "silver"));
            if served_by(&r) != "canary" {
                return Err(decision(&r).to_owned());
            }
            assert!(decision(&r).contains(&format!("lock={new_short}")));
        }
        Ok(())
    });
    wait_for_drift_paused(envoy, 0);
    let log = envoy.wait_for_log("drift pause cleared");
    let cleared: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("drift pause cleared"))
        .collect();
    assert_eq!(cleared.len(), 1, "one line per Envoy: {cleared:#?}");
    assert!(
        cleared[0].contains(&format!(
            "rampart[checkout-v2]: drift pause cleared: lock {LOCK_SHORT} replaced by {new_short}"
        )),
        "{}",
        cleared[0]
    );
    // The new lock starts from a clean window: a few drifted requests do not trip it.
    for client in clients.iter_mut() {
        for _ in 0..5 {
            let r = client.get("/", &headers("alice", "gold"));
            assert_eq!(served_by(&r), "stable");
            assert!(decision(&r).contains("reason=drift "), "{}", decision(&r));
        }
        let r = client.get("/", &headers("alice", "silver"));
        assert_eq!(served_by(&r), "canary", "{}", decision(&r));
    }
    let log = envoy.log();
    assert_eq!(count_lines(&log, TRIP_LINE), 1);
    assert!(!log.contains("shared data unavailable"), "{log}");
}
