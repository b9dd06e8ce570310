//! Publishing the filter's configuration by ECDS from a watched file, in a real Envoy:
//! the CLI's resource format, the atomic replace, and live changes without restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use serde_json::{json, Value};
use support::ecds::{format, EcdsEnvoy, FILTER_NAME};
use support::{example_contract, matching, tenant_metadata_filter};
use support::{get, Bootstrap, TempDir};

fn with_percent(percent: f64) -> Value {
    let mut contract = example_contract();
    contract["ramp"]["percent"] = percent.into();
    contract
}

#[test]
fn resource_wraps_the_contract_as_a_typed_extension_config() {
    let contract = json!({ "contract": "c", "ramp": { "percent": 5.0 } });
    let resource = format::discovery_resource("rampart", "/x/f.wasm", &contract);
    let entry = &resource["resources"][0];
    assert_eq!(entry["@type"], format::TYPED_EXTENSION_CONFIG);
    assert_eq!(entry["name"], "rampart");
    assert_eq!(entry["typed_config"]["@type"], format::WASM_FILTER);
    let config = &entry["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "/x/f.wasm"
    );
    let text = config["configuration"]["value"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), contract);
}

#[test]
fn publish_replaces_the_file_and_leaves_no_temporary_file() {
    let dir = TempDir::new("ecds-format");
    let path = dir.path().join("rampart.ecds.json");
    for percent in [1.0, 5.0] {
        let contract = json!({ "ramp": { "percent": percent } });
        format::publish(&path, "rampart", "f.wasm", &contract).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            written,
            format::discovery_resource("rampart", "f.wasm", &contract)
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["rampart.ecds.json".to_owned()]);
}

#[test]
fn filter_entry_watches_the_files_directory() {
    let entry = format::http_filter_entry("rampart", "/var/run/rampart/ecds.json".as_ref());
    let source = &entry["config_discovery"]["config_source"]["path_config_source"];
    assert_eq!(source["path"], "/var/run/rampart/ecds.json");
    assert_eq!(source["watched_directory"]["path"], "/var/run/rampart");
}

#[test]
fn a_published_contract_applies_live_without_restart() {
    let bootstrap = Bootstrap::new().pre_filter(tenant_metadata_filter());
    let envoy = EcdsEnvoy::start(&bootstrap, &with_percent(0.0).to_string(), &[]);
    let main = envoy.envoy.addr("main");
    let side = |user: &str| {
        get(main, "/", &matching(user))
            .header("x-served-by")
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(side("alice"), "stable");
    // The CLI's publish: the same process, the same Envoy, the next request.
    envoy.file.publish_value(&with_percent(100.0));
    envoy.wait_for_update(2);
    support::ecds::eventually("alice on the canary after the publish", || {
        side("alice") == "canary"
    });
    // A resource Envoy cannot parse is rejected; the last good one stays in force.
    envoy.file.publish_raw(b"{ not json");
    envoy.envoy.wait_for_counter(
        &format!("extension_config_discovery.http_filter.{FILTER_NAME}.update_failure"),
        1,
    );
    assert_eq!(side("alice"), "canary");
    assert_eq!(envoy.updates(), 2);
}
