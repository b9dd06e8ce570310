//! `rampart render`: the committed examples are exactly what the command produces,
//! the Envoy bootstrap runs in a real Envoy, and the Istio / Envoy Gateway resources
//! have the kinds, the contract and the safe exact-match routing they must have.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use rampart::metrics::{Counter, FieldCounter};
use rampart::snapshot::lock_from_snapshot;
use rampart::{ContractSpec, Json};
use rampart_cli::args::{DEFAULT_MAX_DRIFT_RATIO, DEFAULT_PROMETHEUS, DEFAULT_WINDOW};
use rampart_cli::{
    contract_values_query, counter_rate_query, drift_pause_by_envoy_query, drift_pause_query,
    drift_ratio_query, field_rate_query, invalid_config_query, safe_mode_rate_query,
};
use serde::Deserialize;
use serde_json::{json, Value};
use support::ecds::{rampart_cli, wait_for_update};
use support::example_contract;
use support::{get, repo_root, validate, wasm_path, Bootstrap, Envoy, TempDir};

/// Each committed example: the render arguments and the directory they were written to.
const EXAMPLES: &[(&[&str], &str)] = &[
    (
        &["render", "envoy", "--contract", "examples/contract.json"],
        "examples/envoy-ecds",
    ),
    (
        &["render", "istio", "--contract", "examples/contract.json"],
        "examples/istio",
    ),
    (
        &[
            "render",
            "envoy-gateway",
            "--contract",
            "examples/contract.json",
        ],
        "examples/envoy-gateway",
    ),
    (
        &[
            "render",
            "argo-rollouts",
            "--contract",
            "examples/contract.json",
        ],
        "examples/argo-rollouts",
    ),
    (
        &["render", "flagger", "--contract", "examples/contract.json"],
        "examples/flagger",
    ),
    (&["render", "grafana"], "examples/grafana"),
];

/// The demo's first ECDS resource and the command that renders it.
const DEMO_ECDS: (&[&str], &str) = (
    &[
        "render",
        "ecds",
        "--contract",
        "examples/contract.json",
        "--wasm",
        "target/rampart.wasm",
    ],
    "envoy/demo.ecds.json",
);

fn rampart(args: &[&str]) -> Output {
    // From the repository root, as the examples were rendered.
    Command::new(rampart_cli())
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

fn rampart_ok(args: &[&str]) -> String {
    let output = rampart(args);
    assert!(
        output.status.success(),
        "rampart {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The YAML documents of a file, as JSON values.
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).unwrap())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_examples_are_what_render_produces() {
    for (args, dir) in EXAMPLES {
        let out = TempDir::new("render");
        let out_dir = out.path().to_str().unwrap();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--out-dir", out_dir]);
        rampart_ok(&full);
        let mut rendered: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        rendered.sort();
        assert!(!rendered.is_empty());
        for name in rendered {
            let fresh = read(&out.path().join(&name));
            let committed = read(&repo_root().join(dir).join(&name));
            assert!(
                fresh == committed,
                "{dir}/{} is stale; regenerate it with: rampart {} --out-dir {dir}",
                name.to_string_lossy(),
                args.join(" ")
            );
        }
    }
    let (args, file) = DEMO_ECDS;
    assert!(
        rampart_ok(args) == read(&repo_root().join(file)),
        "{file} is stale; regenerate it with: rampart {} > {file}",
        args.join(" ")
    );
}

/// The example contract reduced to its header input and locked to `flags`, so a
/// plain Envoy (no tenant metadata, no node metadata) can match it.
fn header_only_contract(flags: &Value, percent: f64) -> Value {
    let mut contract = example_contract();
    contract["inputs"] = json!({ "flags": contract["inputs"]["flags"].clone() });
    contract["ramp"]["percent"] = percent.into();
    contract.as_object_mut().unwrap().remove("lock");
    let mut spec = ContractSpec::parse(contract.to_string().as_bytes()).unwrap();
    let snapshot = Json::parse(
        json!({ "flags": flags }).to_string().as_bytes(),
        rampart::jcs::DEFAULT_MAX_DEPTH,
    )
    .unwrap();
    spec.lock = Some(lock_from_snapshot(&spec, &snapshot).unwrap());
    serde_json::to_value(&spec).unwrap()
}

#[test]
fn rendered_envoy_bootstrap_validates_and_routes_by_exact_match() {
    // The upstream: a plain Envoy answering `x-served-by: canary|stable` by the route header.
    let upstream = Envoy::start(&Bootstrap::new().build());
    let upstream_addr = upstream.addr("main").to_string();
    let flags = json!({ "checkout_v2": true });
    let dir = TempDir::new("render-envoy");
    let contract_path = dir.write(
        "contract.json",
        &header_only_contract(&flags, 100.0).to_string(),
    );
    let ecds_path = dir.path().join("ecds").join("rampart.ecds.json");
    std::fs::create_dir_all(ecds_path.parent().unwrap()).unwrap();
    let wasm = wasm_path();
    rampart_ok(&[
        "render",
        "envoy",
        "--contract",
        contract_path.to_str().unwrap(),
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--ecds-path",
        ecds_path.to_str().unwrap(),
        "--wasm",
        wasm.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--canary",
        &upstream_addr,
        "--stable",
        &upstream_addr,
    ]);
    // `render envoy` writes the resource beside the bootstrap; Envoy watches --ecds-path.
    std::fs::rename(dir.path().join("rampart.ecds.json"), &ecds_path).unwrap();
    let bootstrap_path = dir.path().join("envoy.yaml");
    validate(&bootstrap_path).unwrap();

    let envoy = Envoy::start(&read(&bootstrap_path));
    wait_for_update(&envoy, 1);
    let ingress = envoy.addr("ingress");
    let flags_text = flags.to_string();
    let matching = [
        ("x-user-id", "alice"),
        ("x-user-config", flags_text.as_str()),
    ];
    let canary = get(ingress, "/", &matching);
    assert_eq!(canary.status, 200);
    assert_eq!(canary.header("x-served-by"), Some("canary"));
    // A forged route header without the locked config: the filter overwrites it.
    let forged = get(
        ingress,
        "/",
        &[("x-user-id", "alice"), ("x-rampart-route", "canary")],
    );
    assert_eq!(forged.header("x-served-by"), Some("stable"));
    envoy.wait_for_counter("cluster.canary.upstream_rq_200", 1);
    envoy.wait_for_counter("cluster.stable.upstream_rq_200", 1);
}

#[test]
fn committed_envoy_example_validates() {
    // The example names production paths; validate it with those pointing here.
    let dir = TempDir::new("render-validate");
    let ecds = dir.path().join("rampart.ecds.json");
    std::fs::copy(
        repo_root().join("examples/envoy-ecds/rampart.ecds.json"),
        &ecds,
    )
    .unwrap();
    let text = read(&repo_root().join("examples/envoy-ecds/envoy.yaml"))
        .replace("/etc/envoy/rampart", dir.path().to_str().unwrap());
    let config = dir.write("envoy.yaml", &text);
    validate(&config).unwrap();
    let resource: Value = serde_json::from_str(&read(&ecds)).unwrap();
    let config = &resource["resources"][0]["typed_config"]["config"];
    let embedded: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, example_contract());
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
}

#[test]
fn istio_example_carries_the_contract_and_routes_by_exact_match() {
    let plugin = yaml_documents(&read(&repo_root().join("examples/istio/wasmplugin.yaml")));
    assert_eq!(plugin.len(), 1);
    let plugin = &plugin[0];
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["kind"], "WasmPlugin");
    assert_eq!(plugin["spec"]["pluginConfig"], example_contract());
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(plugin["spec"]["type"], "HTTP");
    assert_eq!(plugin["spec"]["phase"], "AUTHZ");
    assert!(plugin["spec"]["priority"].is_i64());
    assert_eq!(plugin["spec"]["selector"]["matchLabels"]["app"], "frontend");

    let routing = yaml_documents(&read(&repo_root().join("examples/istio/routing.yaml")));
    let kinds: Vec<&str> = routing
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["VirtualService", "DestinationRule"]);
    let service = &routing[0];
    assert_eq!(service["apiVersion"], "networking.istio.io/v1");
    let http = service["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[0]["match"],
        json!([{ "headers": { "x-rampart-route": { "exact": "canary" } } }])
    );
    assert_eq!(http[0]["route"][0]["destination"]["subset"], "canary");
    // The last route has no match: everything else, forged or unfiltered, is stable.
    assert!(http[1].get("match").is_none());
    assert_eq!(
        http[1]["route"],
        json!([{ "destination": { "host": "checkout", "subset": "stable" } }])
    );
    let rule = &routing[1];
    assert_eq!(rule["apiVersion"], "networking.istio.io/v1");
    let subsets: Vec<&str> = rule["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subsets, ["canary", "stable"]);
}

#[test]
fn envoy_gateway_example_carries_the_contract_and_routes_by_exact_match() {
    let policy = yaml_documents(&read(
        &repo_root().join("examples/envoy-gateway/envoyextensionpolicy.yaml"),
    ));
    let policy = &policy[0];
    assert_eq!(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(policy["kind"], "EnvoyExtensionPolicy");
    assert_eq!(policy["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    let wasm = &policy["spec"]["wasm"][0];
    assert_eq!(wasm["config"], example_contract());
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(wasm["code"]["type"], "Image");

    let route = yaml_documents(&read(
        &repo_root().join("examples/envoy-gateway/httproute.yaml"),
    ));
    let route = &route[0];
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["kind"], "HTTPRoute");
    assert_eq!(
        route["metadata"]["name"],
        policy["spec"]["targetRefs"][0]["name"]
    );
    let rules = route["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["matches"][0]["headers"],
        json!([{ "type": "Exact", "name": "x-rampart-route", "value": "canary" }])
    );
    assert_eq!(rules[0]["backendRefs"][0]["name"], "checkout-canary");
    // The default rule matches every path with no header condition.
    assert!(rules[1]["matches"][0].get("headers").is_none());
    assert_eq!(rules[1]["backendRefs"][0]["name"], "checkout-stable");

    // The EnvoyProxy adds the stats_tags rules of the filter's metric tags to the
    // bootstrap (tests/e2e_metric_labels.rs runs them in a real Envoy).
    let proxy = yaml_documents(&read(
        &repo_root().join("examples/envoy-gateway/envoyproxy.yaml"),
    ));
    let proxy = &proxy[0];
    assert_eq!(proxy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(proxy["kind"], "EnvoyProxy");
    assert_eq!(
        proxy["metadata"]["namespace"],
        route["metadata"]["namespace"]
    );
    assert_eq!(proxy["spec"]["bootstrap"]["type"], "JSONPatch");
    let rules: Vec<Value> = rampart::metrics::stats_tags()
        .into_iter()
        .map(|(tag, regex)| {
            json!({ "op": "add", "path": "/stats_config/stats_tags/-",
                    "value": { "tag_name": tag, "regex": regex } })
        })
        .collect();
    assert_eq!(proxy["spec"]["bootstrap"]["jsonPatches"], json!(rules));
}

#[test]
fn istio_stats_tags_patch_names_both_tags() {
    let patch = yaml_documents(&read(&repo_root().join("examples/istio/stats-tags.yaml")));
    let annotations = &patch[0]["spec"]["template"]["metadata"]["annotations"];
    let proxy_config: Value =
        serde_yaml::from_str(annotations["proxy.istio.io/config"].as_str().unwrap()).unwrap();
    assert_eq!(
        proxy_config,
        json!({ "extraStatTags": ["rampart_contract", "rampart_input"] })
    );
}

#[test]
fn render_rejects_an_invalid_contract_naming_the_field() {
    let dir = TempDir::new("render-bad");
    let mut contract = example_contract();
    contract["ramp"]["percent"] = json!(150.0);
    let path = dir.write("contract.json", &contract.to_string());
    let output = rampart(&["render", "istio", "--contract", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ramp.percent"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn render_from_a_plan_uses_the_plans_contract() {
    let text = rampart_ok(&["render", "istio", "--plan", "examples/ramp.json"]);
    let documents = yaml_documents(&text);
    let kinds: Vec<Option<&str>> = documents.iter().map(|d| d["kind"].as_str()).collect();
    // The last document is the stats-tags patch for the workload's pod template.
    assert_eq!(
        kinds,
        [
            Some("WasmPlugin"),
            Some("VirtualService"),
            Some("DestinationRule"),
            None
        ]
    );
    assert_eq!(documents[0]["spec"]["pluginConfig"], example_contract());
}

#[test]
fn argo_rollouts_example_gates_on_the_shared_queries() {
    let docs = yaml_documents(&read(
        &repo_root().join("examples/argo-rollouts/analysistemplate.yaml"),
    ));
    assert_eq!(docs.len(), 1);
    let template = &docs[0];
    assert_eq!(template["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(template["kind"], "AnalysisTemplate");
    let metrics = template["spec"]["metrics"].as_array().unwrap();
    let limit = format!("result[0] <= {DEFAULT_MAX_DRIFT_RATIO}");
    let expected = [
        (
            "rampart-drift-ratio",
            drift_ratio_query("checkout-v2", DEFAULT_WINDOW),
            limit.as_str(),
        ),
        (
            "rampart-drift-pause",
            drift_pause_query("checkout-v2"),
            "result[0] == 0",
        ),
    ];
    assert_eq!(metrics.len(), expected.len());
    for (metric, (name, query, condition)) in metrics.iter().zip(&expected) {
        assert_eq!(metric["name"], *name);
        assert_eq!(metric["successCondition"], *condition);
        let prometheus = &metric["provider"]["prometheus"];
        assert_eq!(prometheus["query"], *query);
        assert_eq!(prometheus["address"], DEFAULT_PROMETHEUS);
        // Never empty, never NaN: no data reads 0.
        assert!(query.ends_with(" or vector(0)"), "{query}");
    }
}

#[test]
fn flagger_example_ab_routes_on_the_route_header_and_gates_on_the_shared_queries() {
    let templates = yaml_documents(&read(
        &repo_root().join("examples/flagger/metrictemplates.yaml"),
    ));
    let queries: Vec<(&str, &str)> = templates
        .iter()
        .map(|t| {
            assert_eq!(t["apiVersion"], "flagger.app/v1beta1");
            assert_eq!(t["kind"], "MetricTemplate");
            assert_eq!(t["spec"]["provider"]["type"], "prometheus");
            (
                t["metadata"]["name"].as_str().unwrap(),
                t["spec"]["query"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        queries,
        [
            (
                "rampart-checkout-v2-drift-ratio",
                drift_ratio_query("checkout-v2", DEFAULT_WINDOW).as_str()
            ),
            (
                "rampart-checkout-v2-drift-pause",
                drift_pause_query("checkout-v2").as_str()
            ),
        ]
    );
    let patch = yaml_documents(&read(
        &repo_root().join("examples/flagger/canary-analysis.yaml"),
    ));
    let analysis = &patch[0]["spec"]["analysis"];
    // A/B: the exact match on the header the filter writes, as every other target routes.
    assert_eq!(
        analysis["match"],
        json!([{ "headers": { "x-rampart-route": { "exact": "canary" } } }])
    );
    assert!(analysis["iterations"].as_u64().unwrap() > 0);
    let metrics = analysis["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2);
    for (metric, (template, _)) in metrics.iter().zip(&queries) {
        assert_eq!(metric["templateRef"]["name"], *template);
    }
    assert_eq!(
        metrics[0]["thresholdRange"],
        json!({ "max": DEFAULT_MAX_DRIFT_RATIO })
    );
    assert_eq!(metrics[1]["thresholdRange"], json!({ "max": 0.0 }));
}

#[test]
fn analysis_limit_comes_from_the_option_else_the_plan() {
    let dir = TempDir::new("render-analysis");
    let contract = repo_root().join("examples/contract.json");
    let plan = dir.write(
        "plan.json",
        &json!({ "contract": contract, "gates": { "max_drift_ratio": 0.03 } }).to_string(),
    );
    let plan = plan.to_str().unwrap();
    let text = rampart_ok(&["render", "argo-rollouts", "--plan", plan]);
    assert!(text.contains("result[0] <= 0.03"), "{text}");
    let text = rampart_ok(&[
        "render",
        "flagger",
        "--plan",
        plan,
        "--max-drift-ratio",
        "0.2",
        "--window",
        "10m",
    ]);
    assert!(text.contains("max: 0.2"), "{text}");
    assert!(text.contains(&drift_ratio_query("checkout-v2", "10m").replace('"', "\\\"")));
    assert!(
        text.contains("--max-drift-ratio 0.2 --window 10m"),
        "{text}"
    );
    let bad = dir.write(
        "bad.json",
        &json!({ "contract": contract, "gates": { "max_drift_ratio": 2 } }).to_string(),
    );
    let output = rampart(&["render", "argo-rollouts", "--plan", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("gates.max_drift_ratio"));
}

/// The schema `kubectl --validate=strict` would apply to a `kind` object of
/// `api_version`: that served version's `openAPIV3Schema` from a CRD in
/// tests/fixtures/crds, with unknown fields rejected wherever the schema lists the
/// properties and does not keep unknown ones.
fn crd_schema(file: &str, api_version: &str, kind: &str) -> Value {
    let path = repo_root().join("tests/fixtures/crds").join(file);
    let (group, version) = api_version
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{api_version} names no group"));
    let crd = yaml_documents(&read(&path))
        .into_iter()
        .find(|crd| crd["spec"]["names"]["kind"] == kind && crd["spec"]["group"] == group)
        .unwrap_or_else(|| panic!("{file} has no CRD of kind {kind} in {group}"));
    let served = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version && v["served"] == true)
        .unwrap_or_else(|| panic!("{file} does not serve {api_version} {kind}"));
    let mut schema = served["schema"]["openAPIV3Schema"].clone();
    // The API server allows these on every object whether the schema lists them or not
    // (Istio's list only spec and status).
    let root = schema["properties"].as_object_mut().unwrap();
    for (field, kind) in [
        ("apiVersion", "string"),
        ("kind", "string"),
        ("metadata", "object"),
    ] {
        root.entry(field).or_insert(json!({ "type": kind }));
    }
    strict(&mut schema);
    schema
}

/// Adds `additionalProperties: false` to every schema with `properties` that leaves
/// them open, walking only the keywords that hold schemas.
fn strict(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    let keeps_unknown = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if map.contains_key("properties") && !map.contains_key("additionalProperties") && !keeps_unknown
    {
        map.insert("additionalProperties".into(), json!(false));
    }
    for (keyword, value) in map.iter_mut() {
        match keyword.as_str() {
            "properties" => value
                .as_object_mut()
                .into_iter()
                .flatten()
                .for_each(|(_, s)| strict(s)),
            "items" | "additionalProperties" | "not" => strict(value),
            "anyOf" | "oneOf" | "allOf" => {
                value.as_array_mut().into_iter().flatten().for_each(strict);
            }
            _ => {}
        }
    }
}

/// The errors of `instance` against `schema`, each with its JSON pointer.
fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let errors = schema_errors(schema, instance);
    assert!(
        errors.is_empty(),
        "{what} does not match its CRD: {errors:#?}"
    );
}

#[test]
fn analysis_examples_match_the_controllers_crd_schemas() {
    let argo = crd_schema(
        "argo-v1.9.1-analysis-template-crd.yaml",
        "argoproj.io/v1alpha1",
        "AnalysisTemplate",
    );
    let path = "examples/argo-rollouts/analysistemplate.yaml";
    for mut doc in yaml_documents(&read(&repo_root().join(path))) {
        assert_valid(&argo, &doc, path);
        doc["spec"]["metrics"][0]["provider"]["prometheus"]["bogus"] = json!("1m");
        assert!(!jsonschema::validator_for(&argo).unwrap().is_valid(&doc));
    }
    let template = crd_schema(
        "flagger-v1.44.0-crd.yaml",
        "flagger.app/v1beta1",
        "MetricTemplate",
    );
    let path = "examples/flagger/metrictemplates.yaml";
    for doc in yaml_documents(&read(&repo_root().join(path))) {
        assert_valid(&template, &doc, path);
    }
    let canary = crd_schema("flagger-v1.44.0-crd.yaml", "flagger.app/v1beta1", "Canary");
    let analysis = &canary["properties"]["spec"]["properties"]["analysis"];
    let path = "examples/flagger/canary-analysis.yaml";
    let patch = yaml_documents(&read(&repo_root().join(path)));
    assert_valid(analysis, &patch[0]["spec"]["analysis"], path);
    assert_eq!(patch[0]["spec"].as_object().unwrap().len(), 1, "{path}");
    // The strict schema does reject an unknown field.
    let mut wrong = patch[0]["spec"]["analysis"].clone();
    wrong["metrics"][0]["maxValue"] = json!(1);
    let validator = jsonschema::validator_for(analysis).unwrap();
    assert!(!validator.is_valid(&wrong));
}

/// The dashboard's panel queries, as the CLI defines them, for `window` (the drift
/// ratio's): `$contract` the contract, `$__rate_interval` the rate window.
fn dashboard_queries(window: &str) -> Vec<String> {
    let (c, w) = ("$contract", "$__rate_interval");
    let mut queries: Vec<String> = [Counter::Canary, Counter::Stable, Counter::Rejected]
        .map(|counter| counter_rate_query(counter, c, w))
        .into();
    queries.push(drift_ratio_query(c, window));
    queries.extend(FieldCounter::ALL.map(|counter| field_rate_query(counter, c, w)));
    queries.push(drift_pause_by_envoy_query(c));
    queries.push(safe_mode_rate_query(w));
    queries.push(invalid_config_query(w));
    queries
}

/// Checks a rendered dashboard: panels with unique ids, each with the data source
/// `uid` on it and on every target, targets with unique refIds; returns the queries
/// and the drift-ratio panel's threshold.
fn check_dashboard(dashboard: &Value, uid: &str) -> (Vec<String>, f64) {
    assert_eq!(dashboard["uid"], "rampart");
    let datasource = json!({ "type": "prometheus", "uid": uid });
    let variable = &dashboard["templating"]["list"][0];
    assert_eq!(variable["name"], "contract");
    assert_eq!(variable["datasource"], datasource);
    assert_eq!(variable["query"]["query"], contract_values_query());
    assert_eq!(
        contract_values_query(),
        "label_values(rampart_requests, rampart_contract)"
    );
    let (mut ids, mut queries, mut threshold) = (BTreeSet::new(), Vec::new(), None);
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"], datasource, "{title}");
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}");
            assert!(target["legendFormat"].is_string(), "{title}");
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
        let defaults = &panel["fieldConfig"]["defaults"];
        if defaults["custom"]["thresholdsStyle"]["mode"] == "line" {
            threshold = defaults["thresholds"]["steps"][1]["value"].as_f64();
        }
    }
    (queries, threshold.expect("no threshold line"))
}

#[test]
fn grafana_dashboard_is_valid_and_queries_the_shared_definitions() {
    let text = read(&repo_root().join("examples/grafana/rampart.json"));
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let (queries, threshold) = check_dashboard(&dashboard, "${DS_PROMETHEUS}");
    assert_eq!(queries, dashboard_queries(DEFAULT_WINDOW));
    assert_eq!(threshold, DEFAULT_MAX_DRIFT_RATIO);
    // Imported with the data source asked for.
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    // Every per-contract query names the variable; the others no contract.
    for query in &queries {
        let per_contract = !query.contains("safe_mode") && !query.contains("invalid_config");
        assert_eq!(
            query.contains(r#"rampart_contract="$contract""#),
            per_contract,
            "{query}"
        );
    }
}

#[test]
fn grafana_options_set_the_data_source_the_limit_and_the_window() {
    let text = rampart_ok(&[
        "render",
        "grafana",
        "--datasource",
        "prom-main",
        "--max-drift-ratio",
        "0.05",
        "--window",
        "10m",
    ]);
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let (queries, threshold) = check_dashboard(&dashboard, "prom-main");
    assert_eq!(queries, dashboard_queries("10m"));
    assert_eq!(threshold, 0.05);
    assert!(dashboard.get("__inputs").is_none());
    let description = dashboard["description"].as_str().unwrap();
    assert!(
        description.ends_with(
            "rampart render grafana --datasource prom-main --max-drift-ratio 0.05 --window 10m"
        ),
        "{description}"
    );
    let output = rampart(&["render", "grafana", "--max-drift-ratio", "2"]);
    assert!(!output.status.success());
}

/// The CRD fixture defining each kind `rampart render istio` and `rampart render
/// envoy-gateway` write.
const PLATFORM_CRDS: &[(&str, &str)] = &[
    ("WasmPlugin", "istio-1.30.3-crds.yaml"),
    ("VirtualService", "istio-1.30.3-crds.yaml"),
    ("DestinationRule", "istio-1.30.3-crds.yaml"),
    (
        "EnvoyExtensionPolicy",
        "eg-v1.9.0-envoyextensionpolicies.yaml",
    ),
    ("EnvoyProxy", "eg-v1.9.0-envoyproxies.yaml"),
    ("HTTPRoute", "gwapi-v1.6.1-httproutes.yaml"),
];

/// Rendered files that hold no custom resource: istio's stats-tags.yaml is a
/// pod-template patch for `kubectl patch`, not an object, so no CRD schema applies.
const NOT_RESOURCES: &[&str] = &["stats-tags.yaml"];

/// The strict CRD schema of a rendered object, by its apiVersion and kind.
fn platform_schema(object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let (_, file) = PLATFORM_CRDS
        .iter()
        .find(|(k, _)| *k == kind)
        .unwrap_or_else(|| panic!("no CRD fixture for kind {kind}"));
    crd_schema(file, object["apiVersion"].as_str().unwrap(), kind)
}

/// Validates every object of every file in `dir` against its CRD; returns the kinds.
fn assert_render_matches_crds(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut kinds = Vec::new();
    for name in names {
        if NOT_RESOURCES.contains(&name.as_str()) {
            continue;
        }
        let path = dir.join(&name);
        for object in yaml_documents(&read(&path)) {
            assert_valid(
                &platform_schema(&object),
                &object,
                &path.display().to_string(),
            );
            kinds.push(object["kind"].as_str().unwrap().to_owned());
        }
    }
    kinds.sort();
    kinds
}

/// `rampart render target`: the objects of the committed example in `examples/{target}`
/// and of a fresh render with `options` and a pinned `--sha256` are of `kinds` and each
/// valid against its CRD; and `example_file`'s object with the unknown `field` added
/// by `add_unknown` is rejected for that field.
fn assert_target_matches_crds(
    target: &str,
    kinds: &[&str],
    options: &[&str],
    (example_file, field, add_unknown): (&str, &str, fn(&mut Value)),
) {
    let example = repo_root().join("examples").join(target);
    assert_eq!(assert_render_matches_crds(&example), kinds);

    let out = TempDir::new("render-crd");
    let sha256 = "ab".repeat(32);
    let mut args = vec![
        "render",
        target,
        "--contract",
        "examples/contract.json",
        "--sha256",
        &sha256,
        "--out-dir",
        out.path().to_str().unwrap(),
    ];
    args.extend(options);
    rampart_ok(&args);
    assert_eq!(assert_render_matches_crds(out.path()), kinds);

    // The strict schema does reject an unknown field.
    let mut object = yaml_documents(&read(&example.join(example_file))).remove(0);
    add_unknown(&mut object);
    let errors = schema_errors(&platform_schema(&object), &object);
    let quoted = format!("'{field}'");
    assert!(
        errors.len() == 1 && errors[0].contains(&quoted),
        "{errors:?}"
    );
}

#[test]
fn istio_render_matches_istios_crd_schemas() {
    assert_target_matches_crds(
        "istio",
        &["DestinationRule", "VirtualService", "WasmPlugin"],
        &[
            "--namespace",
            "shop",
            "--selector",
            "app.kubernetes.io/name=web",
            "--host",
            "checkout.shop.svc.cluster.local",
            "--version-label",
            "track",
            "--phase",
            "STATS",
            "--priority",
            "-5",
            "--filter-name",
            "rampart-gate",
        ],
        ("wasmplugin.yaml", "failOpen", |plugin| {
            plugin["spec"]["failOpen"] = json!(false);
        }),
    );
}

#[test]
fn envoy_gateway_render_matches_the_gateway_crd_schemas() {
    assert_target_matches_crds(
        "envoy-gateway",
        &["EnvoyExtensionPolicy", "EnvoyProxy", "HTTPRoute"],
        &[
            "--namespace",
            "shop",
            "--gateway",
            "edge",
            "--route",
            "web",
            "--canary-service",
            "web-canary",
            "--stable-service",
            "web-stable",
            "--port",
            "9090",
            "--filter-name",
            "rampart-gate",
        ],
        ("httproute.yaml", "weigth", |route| {
            route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = json!(1);
        }),
    );
}
