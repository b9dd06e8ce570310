//! The shared decision vectors (`tests/vectors/decisions.json`, which the core, the
//! component and the filter all answer) through a real Envoy, over any client.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::Value;

use crate::{assert_no_vm_failure, repo_root, tenant_metadata_filter, Bootstrap, Envoy, Response};

/// Runs every vector through Envoy (one per distinct node metadata, with the vectors'
/// contract and the demo's `header_to_metadata` for the tier), sending each case's
/// headers with `send(address, headers)`, and asserts the side the upstream served,
/// the route header it saw, the reason, the drifted fields and the bucket.
pub fn assert_vectors_hold(mut send: impl FnMut(SocketAddr, &[(&str, &str)]) -> Response) {
    let doc = read_json("tests/vectors/decisions.json");
    let contract = read_json(
        doc["contract"]
            .as_str()
            .expect("the vectors name a contract"),
    );
    let cases = doc["cases"].as_array().expect("the vectors' cases");
    // One Envoy per distinct node metadata.
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for case in cases {
        let node = case.get("node_metadata").unwrap_or(&doc["node_metadata"]);
        groups.entry(node.to_string()).or_default().push(case);
    }
    let mut checked = 0;
    for (node, group) in groups {
        let envoy = Envoy::start(
            &Bootstrap::new()
                .pre_filter(tenant_metadata_filter())
                .plugin_config(&contract.to_string())
                .node_metadata(serde_json::from_str(&node).expect("node metadata"))
                .build(),
        );
        for case in group {
            assert_case(case, &mut send, envoy.addr("main"));
            checked += 1;
        }
        assert_no_vm_failure(&envoy, &[]);
    }
    assert_eq!(checked, cases.len());
}

fn assert_case(
    case: &Value,
    send: &mut impl FnMut(SocketAddr, &[(&str, &str)]) -> Response,
    addr: SocketAddr,
) {
    let name = case["name"].as_str().expect("a case's name");
    let mut headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .expect("a case's headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("header values").to_owned()))
        .collect();
    if let Some(tier) = case.pointer("/metadata/tenant/tier") {
        headers.push(("x-tenant-tier".into(), tier.as_str().expect("tier").into()));
    }
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = send(addr, &refs);
    let expect = &case["expect"];
    assert_eq!(r.status, 200, "{name}: {}", r.body);
    assert_eq!(r.header("x-served-by"), expect["route"].as_str(), "{name}");
    assert_eq!(
        r.header("x-seen-route"),
        expect["route"].as_str(),
        "{name}: the upstream sees the filter's value"
    );
    let decision = r
        .header("x-rampart-decision")
        .unwrap_or_else(|| panic!("{name}: no x-rampart-decision"));
    let reason = expect["reason"].as_str().expect("a reason");
    assert!(
        decision.contains(&format!("reason={reason}")),
        "{name}: {decision}"
    );
    let fields: Vec<&str> = expect["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f.as_str().expect("a field name"))
        .collect();
    if fields.is_empty() {
        assert!(!decision.contains("fields="), "{name}: {decision}");
    } else {
        assert!(
            decision.contains(&format!("fields={}", fields.join(","))),
            "{name}: {decision}"
        );
    }
    if let Some(bucket) = expect.get("bucket") {
        assert!(
            decision.contains(&format!("bucket={bucket}")),
            "{name}: {decision}"
        );
    }
}

fn read_json(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}
