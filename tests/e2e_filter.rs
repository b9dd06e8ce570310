//! The Rampart filter in a real Envoy 1.40: the built `.wasm`, real HTTP, real `/stats`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use rampart::snapshot::digest_of;
use rampart::Json;
use serde_json::{json, Value};
use support::{
    assert_no_vm_failure, get, get_raw, repo_root, validate, Bootstrap, Client, Envoy, Response,
};
use support::{carrying, example_contract, matching, stat_name, tenant_metadata_filter, FLAGS};

/// The example contract's counters as Envoy names them.
const STATS_PREFIX: &str = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart";

fn start(contract: &Value) -> Envoy {
    start_with_node(contract, json!({ "CONFIG_REV": "r42" }))
}

fn start_with_node(contract: &Value, node: Value) -> Envoy {
    Envoy::start(
        &Bootstrap::new()
            .pre_filter(tenant_metadata_filter())
            .plugin_config(&contract.to_string())
            .node_metadata(node)
            .build(),
    )
}

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&stat_name("checkout-v2", name))
}

/// The decision summary the debug header carries.
fn decision(r: &Response) -> &str {
    r.header("x-rampart-decision")
        .unwrap_or_else(|| panic!("no x-rampart-decision: {} {}", r.status, r.body))
}

fn served_by(r: &Response) -> &str {
    r.header("x-served-by")
        .unwrap_or_else(|| panic!("no x-served-by: {} {}", r.status, r.body))
}

#[test]
fn shared_decision_vectors_hold_in_envoy() {
    support::decisions::assert_vectors_hold(|addr, headers| get(addr, "/", headers));
}

#[test]
fn sticky_split_over_a_thousand_users_follows_the_percent() {
    let envoy = start(&example_contract());
    let mut client = Client::new(envoy.addr("main"));
    let users = 1000;
    let mut canary = 0;
    for i in 0..users {
        let user = format!("user-{i}");
        let first = served_by(&client.get("/", &matching(&user))).to_owned();
        let second = served_by(&client.get("/cart", &matching(&user))).to_owned();
        assert_eq!(first, second, "{user} must stay on one side");
        // The side is exactly what the core (and `rampart bucket`) computes.
        let expected = if rampart::bucket::bucket("checkout-v2", user.as_bytes()) < 3000 {
            "canary"
        } else {
            "stable"
        };
        assert_eq!(first, expected, "{user}");
        canary += usize::from(first == "canary");
    }
    // 30% of 1000: binomial sd ≈ 14.5 users; the tolerance is ±45 (about 3 sd).
    assert!(
        (255..=345).contains(&canary),
        "{canary} of {users} users on the canary at 30%"
    );
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.requests"), 2000);
    assert_eq!(counter(&envoy, "canary"), 2 * canary as u64);
    assert_eq!(counter(&envoy, "stable"), 2 * (users - canary) as u64);
    assert_eq!(counter(&envoy, "match"), 2000);
    assert_eq!(
        envoy.counter("cluster.canary.upstream_rq_total"),
        2 * canary as u64
    );
}

#[test]
fn counters_add_up_to_the_requests_sent() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    let mut client = Client::new(main);
    let mut sent = 0u64;
    for i in 0..20 {
        client.get("/", &matching(&format!("u{i}")));
        sent += 1;
    }
    for _ in 0..7 {
        client.get("/", &carrying("alice", "{}", "gold"));
        sent += 1;
    }
    for _ in 0..5 {
        client.get("/", &[("x-user-id", "alice"), ("x-user-config", FLAGS)]);
        sent += 1;
    }
    for _ in 0..3 {
        client.get("/", &[("x-user-config", FLAGS), ("x-tenant-tier", "gold")]);
        sent += 1;
    }
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.requests"), sent);
    assert_eq!(counter(&envoy, "drift"), 7);
    assert_eq!(counter(&envoy, "field.flags.drift"), 7);
    assert_eq!(counter(&envoy, "missing"), 5);
    assert_eq!(counter(&envoy, "field.tier.missing"), 5);
    assert_eq!(counter(&envoy, "unkeyed"), 3);
    assert_eq!(counter(&envoy, "match"), 20);
    assert_eq!(counter(&envoy, "canary") + counter(&envoy, "stable"), sent);
    assert_eq!(
        counter(&envoy, "match")
            + counter(&envoy, "drift")
            + counter(&envoy, "missing")
            + counter(&envoy, "unkeyed"),
        sent
    );
    assert_eq!(
        envoy.counter("cluster.canary.upstream_rq_total"),
        counter(&envoy, "canary")
    );
    assert_eq!(counter(&envoy, "threshold_bp"), 3000);
}

#[test]
fn two_workers_share_counters_and_decide_alike() {
    let bootstrap = Bootstrap::new()
        .pre_filter(tenant_metadata_filter())
        .plugin_config(&example_contract().to_string())
        .build();
    let envoy = Envoy::start_with(&bootstrap, &["--concurrency", "2"], None);
    let main = envoy.addr("main");
    // Four clients on their own connections, spread over both workers.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut client = Client::new(main);
                let mut canary = 0u64;
                for i in 0..100 {
                    let user = format!("w{t}-{i}");
                    let side = served_by(&client.get("/", &matching(&user))).to_owned();
                    let expected = rampart::bucket::bucket("checkout-v2", user.as_bytes()) < 3000;
                    assert_eq!(side == "canary", expected, "{user}");
                    canary += u64::from(expected);
                }
                canary
            })
        })
        .collect();
    let canary: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.requests"), 400);
    assert_eq!(counter(&envoy, "canary"), canary);
    assert_eq!(counter(&envoy, "stable"), 400 - canary);
    assert!(envoy.counter("wasm.wasm_vm_count") >= 3, "a VM per worker");
    assert_no_vm_failure(&envoy, &[]);
}

#[test]
fn forged_route_header_never_survives() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    let bob = rampart::bucket::bucket("checkout-v2", b"bob");
    assert!(bob >= 3000, "bob is a stable user");
    for forged in ["canary", "stable", "anything"] {
        let mut headers = matching("bob");
        headers.push(("x-rampart-route", forged));
        let r = get(main, "/", &headers);
        assert_eq!(served_by(&r), "stable", "forged {forged}");
        assert_eq!(r.header("x-seen-route"), Some("stable"));
    }
    // Two copies of the header, one of them canary, on a drifted request.
    let raw = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-user-id: alice\r\nx-tenant-tier: silver\r\nx-user-config: {FLAGS}\r\nx-rampart-route: canary\r\nx-rampart-route: canary\r\nconnection: close\r\n\r\n"
    );
    let r = get_raw(main, raw.as_bytes());
    assert_eq!(served_by(&r), "stable");
    assert_eq!(r.header("x-seen-route"), Some("stable"));
}

#[test]
fn repeated_config_header_is_drift_whichever_copy_matches() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    // A matching copy first and a drifted one after (an upstream may read either), the
    // reverse, and two identical copies: never a match.
    for (first, second) in [
        (FLAGS, r#"{"checkout_v2":false}"#),
        (r#"{"checkout_v2":false}"#, FLAGS),
        (FLAGS, FLAGS),
    ] {
        let raw = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-user-id: alice\r\nx-tenant-tier: gold\r\nx-user-config: {first}\r\nx-user-config: {second}\r\nconnection: close\r\n\r\n"
        );
        let r = get_raw(main, raw.as_bytes());
        assert_eq!(served_by(&r), "stable", "{first} + {second}");
        assert!(decision(&r).contains("reason=drift fields=flags"));
    }
}

#[test]
fn header_inputs_read_from_the_header_map_agree_with_envoys_request_headers_attribute() {
    // In front of Rampart, a module reads `request.headers.x-user-tier` (Envoy's own
    // join of a repeated header) into filter state; Rampart reads the same header from
    // one header-map read and joins it itself. On every request the two must agree:
    // Rampart matches exactly when Envoy's attribute gives the locked value.
    let dir = support::TempDir::new("echo");
    let echo = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "echo", "root_id": "echo",
                "vm_config": {
                    "vm_id": "echo", "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": support::fixture_module(&dir, "echo_filter").to_str().unwrap() } },
                },
                "configuration": { "@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x-user-tier" },
            },
        },
    });
    let locked = "gold,silver";
    let lock = digest_of(&Json::String(locked.to_owned())).to_string();
    let contract = json!({
        "contract": "joined",
        "ramp": { "percent": 100, "sticky": { "header": "x-user-id" } },
        "inputs": { "tier": { "header": "x-user-tier" } },
        "lock": { "fields": { "tier": lock } },
        "explain": { "response_header": "x-rampart-decision" },
    });
    let mut bootstrap = Bootstrap::new()
        .pre_filter(echo)
        .plugin_config(&contract.to_string())
        .to_value();
    let route = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
    for r in route.as_array_mut().unwrap() {
        r["response_headers_to_add"].as_array_mut().unwrap().push(
            json!({ "header": { "key": "x-echo", "value": "%FILTER_STATE(wasm.echo:PLAIN)%" } }),
        );
    }
    let envoy = Envoy::start(&bootstrap.to_string());
    let main = envoy.addr("main");
    // (copies of x-user-tier in order, what Envoy's attribute answers)
    let cases: &[(&[&str], &str)] = &[
        (&["gold", "silver"], "gold,silver"),
        (&["gold,silver"], "gold,silver"),
        (&["silver", "gold"], "silver,gold"),
        (&["gold"], "gold"),
        (&["gold", "", "silver"], "gold,,silver"),
        (&["gold", "silver", "gold"], "gold,silver,gold"),
        (&[], "<absent>"),
    ];
    for (copies, envoy_reads) in cases {
        let mut raw = String::from("GET / HTTP/1.1\r\nhost: x\r\nx-user-id: alice\r\n");
        for copy in *copies {
            raw.push_str(&format!("x-user-tier: {copy}\r\n"));
        }
        raw.push_str("connection: close\r\n\r\n");
        let r = get_raw(main, raw.as_bytes());
        assert_eq!(r.header("x-echo"), Some(*envoy_reads), "{copies:?}");
        let matched = decision(&r).starts_with("route=canary reason=match");
        assert_eq!(
            matched,
            *envoy_reads == locked,
            "{copies:?}: {}",
            decision(&r)
        );
    }
}

#[test]
fn reject_answers_with_the_contract_status_and_names_the_fields() {
    let mut contract = example_contract();
    contract["on_drift"] = "reject".into();
    contract["reject_status"] = 409.into();
    let envoy = start(&contract);
    let main = envoy.addr("main");

    let r = get(main, "/", &carrying("alice", "[]", "bronze"));
    assert_eq!(r.status, 409);
    assert_eq!(r.header("x-served-by"), None, "never reached an upstream");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"error": "config drift", "contract": "checkout-v2", "reason": "drift", "fields": ["flags", "tier"]})
    );
    assert!(
        !r.body.contains("bronze"),
        "no raw config values in the reply"
    );
    assert_eq!(r.header("x-rampart-decision"), Some("route=reject reason=drift fields=flags,tier contract=checkout-v2 lock=sha256:57e6117d105a"));
    let copies = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-rampart-decision"))
        .count();
    assert_eq!(copies, 1, "the local reply carries the debug header once");

    let ok = get(main, "/", &matching("alice"));
    assert_eq!((ok.status, served_by(&ok)), (200, "canary"));
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.requests"), 2);
    assert_eq!(counter(&envoy, "rejected"), 1);
    assert_eq!(
        envoy.counter("cluster.stable.upstream_rq_total")
            + envoy.counter("cluster.canary.upstream_rq_total"),
        1
    );
}

#[test]
fn observe_routes_drift_by_bucket_and_only_counts_it() {
    let mut contract = example_contract();
    contract["on_drift"] = "observe".into();
    let envoy = start(&contract);
    let r = get(envoy.addr("main"), "/", &carrying("alice", "{}", "gold"));
    assert_eq!(served_by(&r), "canary", "alice's bucket is on the canary");
    assert_eq!(decision(&r), "route=canary reason=drift fields=flags bucket=2815 observed=true contract=checkout-v2 lock=sha256:57e6117d105a");
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.observed"), 1);
    assert_eq!(counter(&envoy, "drift"), 1);
    let log = envoy.wait_for_log("(observe only)");
    assert!(log.contains("flags=drift(observed sha256:"), "{log}");
}

#[test]
fn invalid_contract_means_safe_mode_not_a_dead_filter() {
    let mut contract = example_contract();
    contract["ramp"]["percent"] = 250.into();
    let envoy = start(&contract);
    let main = envoy.addr("main");
    for user in ["alice", "bob"] {
        let mut headers = matching(user);
        headers.push(("x-rampart-route", "canary"));
        let r = get(main, "/", &headers);
        assert_eq!((r.status, served_by(&r)), (200, "stable"), "{user}");
        assert_eq!(r.header("x-seen-route"), Some("stable"));
    }
    envoy.wait_for_counter("wasmcustom.rampart.safe_mode", 2);
    assert!(envoy.counter("wasmcustom.rampart.invalid_config") >= 1);
    assert_eq!(envoy.counter(&format!("{STATS_PREFIX}.requests")), 0);
    let log = envoy.wait_for_log("SAFE MODE");
    assert!(
        log.contains("ramp.percent: must be between 0 and 100, got 250"),
        "{log}"
    );
    let access = envoy.wait_for_access_log(2);
    assert!(
        access
            .iter()
            .all(|l| l.contains("route=stable reason=invalid_contract")),
        "{access:?}"
    );
    assert_no_vm_failure(&envoy, &[]);
}

#[test]
fn empty_plugin_configuration_is_safe_mode_too() {
    let envoy = Envoy::start(&Bootstrap::new().plugin_config("").build());
    let r = get(envoy.addr("main"), "/", &[("x-rampart-route", "canary")]);
    assert_eq!(served_by(&r), "stable");
    envoy.wait_for_log("the configuration is empty");
}

#[test]
fn decision_is_in_filter_state_for_access_logs() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    get(main, "/", &matching("alice"));
    get(main, "/", &carrying("bob", FLAGS, "silver"));
    let lines = envoy.wait_for_access_log(2);
    assert_eq!(lines[0], "200 canary route=canary reason=match bucket=2815 contract=checkout-v2 lock=sha256:57e6117d105a");
    assert_eq!(lines[1], "200 stable route=stable reason=drift fields=tier contract=checkout-v2 lock=sha256:57e6117d105a");
}

#[test]
fn drift_log_names_fields_and_digests_never_values_and_is_rate_limited() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    let secret = "tenant-secret-tier-value";
    for _ in 0..5 {
        get(main, "/", &carrying("alice", FLAGS, secret));
    }
    let log = envoy.wait_for_log("config drift");
    let observed = digest_of(&Json::String(secret.into())).to_string();
    assert!(
        log.contains(&format!(
            "tier=drift(observed {observed}, locked sha256:8dd7871b"
        )),
        "{log}"
    );
    assert!(!log.contains(secret), "raw value leaked into the log");
    assert_eq!(
        log.matches("config drift").count(),
        1,
        "one line per 10 s interval:\n{log}"
    );
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.drift"), 5);
}

#[test]
fn drift_log_interval_zero_logs_every_drifted_request() {
    let mut contract = example_contract();
    contract["explain"]["log_interval_seconds"] = 0.into();
    let envoy = start(&contract);
    for _ in 0..3 {
        get(envoy.addr("main"), "/", &carrying("alice", FLAGS, "silver"));
    }
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.drift"), 3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while envoy.log().matches("config drift").count() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let log = envoy.log();
    assert_eq!(log.matches("config drift").count(), 3, "{log}");
    assert!(!log.contains("not logged"), "nothing was suppressed: {log}");
}

#[test]
fn hostile_inputs_are_drift_and_never_trap_the_vm() {
    let envoy = start(&example_contract());
    let main = envoy.addr("main");
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(20_000));
    let hostile = [
        deep.as_str(),
        huge.as_str(),
        r#"{"max_items":1e400}"#,
        r#"{"a":"\ud800"}"#,
        "null",
        "\"\"",
    ];
    for value in hostile {
        let r = get(main, "/", &carrying("alice", value, "gold"));
        assert_eq!(
            (r.status, served_by(&r)),
            (200, "stable"),
            "{}",
            &value[..value.len().min(40)]
        );
    }
    // Invalid UTF-8 in a string-format input (the tier) and in the sticky key.
    let raw = b"GET / HTTP/1.1\r\nhost: x\r\nx-user-id: \xff\xfe\r\nx-user-config: {}\r\nx-tenant-tier: \xc3\x28\r\nconnection: close\r\n\r\n";
    let r = get_raw(main, raw);
    assert_eq!(served_by(&r), "stable");
    envoy.wait_for_counter(
        &format!("{STATS_PREFIX}.requests"),
        hostile.len() as u64 + 1,
    );
    assert!(counter(&envoy, "invalid_input") >= 4);
    // Still healthy afterwards.
    let ok = get(main, "/", &matching("alice"));
    assert_eq!(served_by(&ok), "canary");
    assert_no_vm_failure(&envoy, &[]);
}

#[test]
fn missing_input_can_count_as_null() {
    let mut contract = example_contract();
    contract["on_missing"] = "null".into();
    contract["lock"]["fields"]["tier"] = digest_of(&Json::Null).to_string().into();
    contract["lock"].as_object_mut().unwrap().remove("digest");
    let envoy = start(&contract);
    let r = get(
        envoy.addr("main"),
        "/",
        &[("x-user-id", "alice"), ("x-user-config", FLAGS)],
    );
    assert_eq!(served_by(&r), "canary");
    assert!(decision(&r).starts_with("route=canary reason=match"));
    let gold = get(envoy.addr("main"), "/", &matching("alice"));
    assert_eq!(served_by(&gold), "stable", "gold is not the locked null");
}

#[test]
fn precomputed_digest_header_is_compared_without_hashing() {
    let stamped = digest_of(&Json::String("app-config-v7".into())).to_string();
    let mut contract = example_contract();
    contract["inputs"] = json!({ "app": { "header": "x-config-digest", "format": "digest" } });
    contract["lock"] = json!({ "fields": { "app": stamped } });
    let envoy = start(&contract);
    let main = envoy.addr("main");
    let r = get(
        main,
        "/",
        &[
            ("x-user-id", "alice"),
            ("x-config-digest", stamped.as_str()),
        ],
    );
    assert_eq!(served_by(&r), "canary");
    let other = digest_of(&Json::String("app-config-v8".into())).to_string();
    let r = get(
        main,
        "/",
        &[("x-user-id", "alice"), ("x-config-digest", other.as_str())],
    );
    assert_eq!(served_by(&r), "stable");
    assert!(decision(&r).contains("reason=drift fields=app"));
}

#[test]
fn node_metadata_numbers_and_booleans_decode_as_envoy_encodes_them() {
    let mut contract = example_contract();
    contract["inputs"] = json!({
        "rev": { "property": ["xds", "node", "metadata", "CONFIG_REV"] },
        "shards": { "property": ["xds", "node", "metadata", "SHARDS"], "format": "double" },
        "beta": { "property": ["xds", "node", "metadata", "BETA"], "format": "bool" },
        "node": { "property": ["xds", "node", "id"] },
    });
    let spec = rampart::ContractSpec::parse(contract.to_string().as_bytes()).unwrap();
    let snapshot = Json::parse(
        br#"{"rev":"r42","shards":12,"beta":true,"node":"rampart-test"}"#,
        8,
    )
    .unwrap();
    let lock = rampart::snapshot::lock_from_snapshot(&spec, &snapshot).unwrap();
    contract["lock"] = serde_json::to_value(&lock).unwrap();
    let envoy = start_with_node(
        &contract,
        json!({ "CONFIG_REV": "r42", "SHARDS": 12, "BETA": true }),
    );
    let r = get(envoy.addr("main"), "/", &[("x-user-id", "alice")]);
    assert_eq!(
        decision(&r).split(" contract").next(),
        Some("route=canary reason=match bucket=2815")
    );

    let drifted = start_with_node(
        &contract,
        json!({ "CONFIG_REV": "r42", "SHARDS": 13, "BETA": true }),
    );
    let r = get(drifted.addr("main"), "/", &[("x-user-id", "alice")]);
    assert!(decision(&r).contains("reason=drift fields=shards"));
}

#[test]
fn sticky_key_can_come_from_dynamic_metadata() {
    let mut contract = example_contract();
    contract["ramp"]["sticky"] =
        json!({ "property": ["metadata", "filter_metadata", "auth", "sub"] });
    // As an authenticating filter would: the subject into dynamic metadata.
    let subject_filter = json!({
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
            "request_rules": [{
                "header": "x-authenticated-sub",
                "on_header_present": { "metadata_namespace": "auth", "key": "sub", "type": "STRING" },
                "remove": true,
            }],
        },
    });
    let envoy = Envoy::start(
        &Bootstrap::new()
            .pre_filter(tenant_metadata_filter())
            .pre_filter(subject_filter)
            .plugin_config(&contract.to_string())
            .build(),
    );
    let main = envoy.addr("main");
    for (sub, side) in [("alice", "canary"), ("bob", "stable")] {
        let r = get(
            main,
            "/",
            &[
                ("x-authenticated-sub", sub),
                ("x-user-config", FLAGS),
                ("x-tenant-tier", "gold"),
            ],
        );
        assert_eq!(served_by(&r), side, "{sub}");
    }
    // The x-user-id header no longer counts: without the metadata the request is unkeyed.
    let r = get(main, "/", &matching("alice"));
    assert_eq!(served_by(&r), "stable");
    assert!(decision(&r).starts_with("route=stable reason=unkeyed"));
}

#[test]
fn whole_snapshot_lock_works_without_field_digests() {
    let mut contract = example_contract();
    contract["lock"].as_object_mut().unwrap().remove("fields");
    let envoy = start(&contract);
    assert_eq!(
        served_by(&get(envoy.addr("main"), "/", &matching("alice"))),
        "canary"
    );
    let r = get(envoy.addr("main"), "/", &carrying("alice", "{}", "gold"));
    assert_eq!(served_by(&r), "stable");
    assert!(decision(&r).contains("reason=drift fields=*"));
}

#[test]
fn paused_contract_sends_everyone_to_stable() {
    let mut contract = example_contract();
    contract["paused"] = true.into();
    let envoy = start(&contract);
    let r = get(envoy.addr("main"), "/", &matching("alice"));
    assert_eq!(served_by(&r), "stable");
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.paused"), 1);
    assert_eq!(counter(&envoy, "paused_flag"), 1);
}

#[test]
fn demo_bootstrap_serves_the_example_contract() {
    let demo = std::fs::read_to_string(repo_root().join("envoy/demo.yaml")).unwrap();
    // The demo's filter comes by ECDS; its first resource carries examples/contract.json.
    let mut initial: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("envoy/demo.ecds.json")).unwrap())
            .unwrap();
    let config = &mut initial["resources"][0]["typed_config"]["config"];
    let embedded: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, example_contract());
    // Run it on free ports, from a directory of its own (the demo reads the watched
    // file relative to its working directory), with the freshly built filter.
    config["vm_config"]["code"]["local"]["filename"] =
        Value::String(support::wasm_path().to_string_lossy().into_owned());
    let cwd = support::TempDir::new("demo");
    std::fs::create_dir_all(cwd.path().join("target/rampart-demo")).unwrap();
    cwd.write(
        "target/rampart-demo/rampart.ecds.json",
        &initial.to_string(),
    );
    let config = demo
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0");
    let envoy = Envoy::start_with(&config, &[], Some(cwd.path()));
    let main = envoy.addr("main");
    let alice = get(main, "/", &matching("alice"));
    assert_eq!(
        (alice.status, alice.body.as_str()),
        (200, "served by canary\n")
    );
    let bob = get(main, "/", &matching("bob"));
    assert_eq!(bob.body, "served by stable\n");
    let drift = get(
        main,
        "/",
        &[
            ("x-user-id", "alice"),
            ("x-user-config", FLAGS),
            ("x-tenant-tier", "silver"),
            ("x-rampart-route", "canary"),
        ],
    );
    assert_eq!(drift.body, "served by stable\n");
    envoy.wait_for_counter(&format!("{STATS_PREFIX}.requests"), 3);
    assert!(envoy
        .get_admin("/stats/prometheus")
        .contains("rampart_requests{rampart_contract=\"checkout-v2\"} 3"));
}

#[test]
fn every_envoy_config_in_the_repo_validates() {
    // Envoy checks that the demo's watched ECDS file exists; `cargo xtask demo` writes it.
    let demo_ecds = repo_root().join("target/rampart-demo/rampart.ecds.json");
    if !demo_ecds.exists() {
        std::fs::create_dir_all(demo_ecds.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join("envoy/demo.ecds.json"), &demo_ecds).unwrap();
    }
    let mut checked = 0;
    for dir in ["envoy", "examples"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            );
            if !is_yaml
                || !std::fs::read_to_string(&path)
                    .unwrap()
                    .contains("static_resources")
            {
                continue;
            }
            validate(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Envoy config found");
}
