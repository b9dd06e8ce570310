//! The built Rampart component, run by wasmtime through bindings generated from the
//! same `wit/`, against the core called natively: over the shared vectors and over
//! generated contracts, requests and JSON texts, every digest and decision must be
//! identical.
//!
//! The component is `RAMPART_COMPONENT` (set by `cargo xtask test`), else the release
//! build under `target/`.

// Test helpers outside `#[test]` functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use rampart::contract::ContractSpec;
use rampart::host::StaticRequest;
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::{digest_of, lock_from_snapshot};
use rampart::{Plan, Source};
use serde_json::{json, Value as J};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store};

use rampart_test_support::rng;
use rng::Rng;

wasmtime::component::bindgen!({
    world: "rampart",
    path: "../../wit",
});

use exports::rampart::core::engine as wit;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn component_path() -> PathBuf {
    let path = std::env::var_os("RAMPART_COMPONENT").map_or_else(
        || repo_root().join("target/wasm32-wasip2/release/rampart_component.wasm"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no component at {}; run `cargo xtask test`",
        path.display()
    );
    path
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(rel)).unwrap()
}

/// A running instance of the component.
struct Guest {
    store: Store<()>,
    bindings: Rampart,
}

/// The engine and the component, compiled once per test process: Cranelift in an
/// unoptimised wasmtime takes a while, and every test instantiates the same code.
fn compiled() -> &'static (Engine, Component) {
    static COMPILED: OnceLock<(Engine, Component)> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let engine = Engine::new(&Config::new()).unwrap();
        let component = Component::from_file(&engine, component_path()).unwrap();
        (engine, component)
    })
}

impl Guest {
    /// Instantiates the component as the `rampart` world. Its WASI imports (Rust's
    /// standard library links them) become traps: the engine is pure, so any host call
    /// would fail the test.
    fn start() -> Guest {
        let (engine, component) = compiled();
        let mut linker = Linker::new(engine);
        linker.define_unknown_imports_as_traps(component).unwrap();
        let mut store = Store::new(engine, ());
        let bindings = Rampart::instantiate(&mut store, component, &linker).unwrap();
        Guest { store, bindings }
    }

    fn digest(&mut self, json: &str) -> Result<String, wit::JsonError> {
        let engine = self.bindings.rampart_core_engine();
        engine.call_digest(&mut self.store, json).unwrap()
    }

    fn canonical(&mut self, json: &str) -> Result<String, wit::JsonError> {
        let engine = self.bindings.rampart_core_engine();
        engine.call_canonical_json(&mut self.store, json).unwrap()
    }

    fn load(&mut self, json: &str) -> Result<ResourceAny, wit::ContractError> {
        let engine = self.bindings.rampart_core_engine();
        engine.contract().call_load(&mut self.store, json).unwrap()
    }

    fn drop_contract(&mut self, contract: ResourceAny) {
        contract.resource_drop(&mut self.store).unwrap();
    }

    fn inputs(&mut self, contract: ResourceAny) -> Vec<wit::Input> {
        let engine = self.bindings.rampart_core_engine();
        engine
            .contract()
            .call_inputs(&mut self.store, contract)
            .unwrap()
    }

    fn sticky(&mut self, contract: ResourceAny) -> wit::Source {
        let engine = self.bindings.rampart_core_engine();
        engine
            .contract()
            .call_sticky(&mut self.store, contract)
            .unwrap()
    }

    fn decide(
        &mut self,
        contract: ResourceAny,
        inputs: &[wit::Observed],
        sticky_key: Option<&wit::Value>,
    ) -> Result<wit::Decision, wit::DecideError> {
        let engine = self.bindings.rampart_core_engine();
        engine
            .contract()
            .call_decide(&mut self.store, contract, inputs, sticky_key)
            .unwrap()
    }

    /// Decides for `request` the way a gateway would: it asks the contract where each
    /// input and the sticky key are carried, and passes what it finds by name.
    fn decide_request(&mut self, contract: ResourceAny, request: &Req) -> wit::Decision {
        let observed: Vec<wit::Observed> = self
            .inputs(contract)
            .into_iter()
            .filter_map(|input| {
                request.find(&input.source).map(|bytes| wit::Observed {
                    name: input.name,
                    value: value_of(bytes),
                })
            })
            .collect();
        let sticky = self.sticky(contract);
        let key = request.find(&sticky).map(value_of);
        self.decide(contract, &observed, key.as_ref()).unwrap()
    }
}

/// Text when the bytes are UTF-8 (as most callers have them), raw bytes otherwise.
fn value_of(bytes: &[u8]) -> wit::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => wit::Value::Text(text.to_owned()),
        Err(_) => wit::Value::Bytes(bytes.to_vec()),
    }
}

/// A request as the vectors describe it: headers and Envoy properties.
#[derive(Debug, Clone, Default)]
struct Req {
    headers: BTreeMap<String, Vec<u8>>,
    properties: BTreeMap<Vec<String>, Vec<u8>>,
}

impl Req {
    fn find(&self, source: &wit::Source) -> Option<&[u8]> {
        match source {
            wit::Source::Header(name) => self.headers.get(name),
            wit::Source::Property(path) => self.properties.get(path),
        }
        .map(Vec::as_slice)
    }

    fn native(&self) -> StaticRequest {
        StaticRequest {
            headers: self.headers.clone().into_iter().collect::<HashMap<_, _>>(),
            properties: self.properties.clone().into_iter().collect(),
        }
    }

    /// A case of `tests/vectors/decisions.json`, mapped as the end-to-end bootstrap
    /// maps it: `metadata` is dynamic metadata, `node_metadata` the node's.
    fn from_vector(case: &J, node: &J) -> Req {
        let mut req = Req::default();
        for (name, value) in case["headers"].as_object().unwrap() {
            req.headers
                .insert(name.clone(), value.as_str().unwrap().as_bytes().to_vec());
        }
        if let Some(namespaces) = case["metadata"].as_object() {
            for (namespace, keys) in namespaces {
                for (key, value) in keys.as_object().unwrap() {
                    req.properties.insert(
                        path(&["metadata", "filter_metadata", namespace, key]),
                        value.as_str().unwrap().as_bytes().to_vec(),
                    );
                }
            }
        }
        let node = case.get("node_metadata").unwrap_or(node);
        for (key, value) in node.as_object().unwrap() {
            req.properties.insert(
                path(&["xds", "node", "metadata", key]),
                value.as_str().unwrap().as_bytes().to_vec(),
            );
        }
        req
    }
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

fn reason_label(reason: wit::Reason) -> &'static str {
    match reason {
        wit::Reason::Match => "match",
        wit::Reason::Drift => "drift",
        wit::Reason::Missing => "missing",
        wit::Reason::Paused => "paused",
        wit::Reason::DriftPaused => "drift_paused",
        wit::Reason::Unkeyed => "unkeyed",
        wit::Reason::InvalidContract => "invalid_contract",
    }
}

fn side_label(side: wit::Side) -> &'static str {
    match side {
        wit::Side::Canary => "canary",
        wit::Side::Stable => "stable",
        wit::Side::Reject => "reject",
    }
}

/// The component decided `request` as the core does: the same route and reason by their
/// labels, the same fields, bucket, observed values, summary and drift report.
fn assert_same_decision(got: &wit::Decision, plan: &Plan, request: &Req, what: &str) {
    let want = rampart::decide(plan, &mut request.native());
    assert_eq!(
        (side_label(got.side), reason_label(got.reason)),
        (want.route.as_str(), want.reason.as_str()),
        "{what}"
    );
    let fields: Vec<&str> = want.field_names(plan).collect();
    assert_eq!(got.fields, fields, "{what}");
    assert_eq!(got.bucket, want.bucket, "{what}");
    assert_eq!(got.observed, want.observed, "{what}");
    assert_eq!(got.summary, want.summary(plan), "{what}");
    assert_eq!(got.drift_report, want.drift_report(plan), "{what}");
}

#[test]
fn artifact_is_a_component_exporting_the_rampart_world() {
    let (engine, component) = compiled();
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    assert_eq!(exports, ["rampart:core/engine@0.1.0"]);
    // Only what Rust's standard library links (streams, environment, exit), never
    // clocks, randomness, files or sockets: the engine cannot depend on its host.
    for (name, _) in ty.imports(engine) {
        assert!(
            name.starts_with("wasi:cli/") || name.starts_with("wasi:io/"),
            "unexpected import {name}"
        );
    }
    // Typed instantiation checks every exported function against `wit/rampart.wit`.
    let mut guest = Guest::start();
    let contract = guest
        .load(std::str::from_utf8(&read("examples/contract.json")).unwrap())
        .unwrap();
    let api = guest.bindings.rampart_core_engine().contract();
    let name = api.call_name(&mut guest.store, contract).unwrap();
    let percent = api.call_percent(&mut guest.store, contract).unwrap();
    assert_eq!((name.as_str(), percent), ("checkout-v2", 30.0));
    guest.drop_contract(contract);
}

#[test]
fn digests_equal_the_core_and_rfc_8785_vectors() {
    let mut guest = Guest::start();
    let dir = repo_root().join("tests/vectors/jcs/input");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let input = String::from_utf8(read(&format!("tests/vectors/jcs/input/{name}"))).unwrap();
        let output = read(&format!("tests/vectors/jcs/output/{name}"));
        let native = Json::parse(input.as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(native.to_canonical(), output, "{name}: core");
        assert_eq!(
            guest.canonical(&input).unwrap().as_bytes(),
            output.as_slice(),
            "{name}"
        );
        let digest = guest.digest(&input).unwrap();
        assert_eq!(digest, digest_of(&native).to_string(), "{name}");
        assert_eq!(
            digest,
            rampart::Digest::of_bytes(&output).to_string(),
            "{name}"
        );
    }
}

#[test]
fn numbers_are_written_as_ecmascript_writes_them() {
    let mut guest = Guest::start();
    let doc: J = serde_json::from_slice(&read("tests/vectors/numbers.json")).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for case in cases {
        let bits = u64::from_str_radix(case[0].as_str().unwrap(), 16).unwrap();
        let want = case[1].as_str().unwrap();
        // Rust's own exponent form: a different spelling of the same double.
        let text = format!("{:e}", f64::from_bits(bits));
        assert_eq!(guest.canonical(&text).unwrap(), want, "{text}");
        assert_eq!(guest.canonical(want).unwrap(), want);
    }
}

#[test]
fn lock_digests_equal_the_example_contracts_lock() {
    let mut guest = Guest::start();
    let snapshot: J = serde_json::from_slice(&read("examples/snapshot.json")).unwrap();
    let contract: J = serde_json::from_slice(&read("examples/contract.json")).unwrap();
    assert_eq!(
        guest.digest(&snapshot.to_string()).unwrap(),
        contract["lock"]["digest"]
    );
    for (name, value) in snapshot.as_object().unwrap() {
        assert_eq!(
            guest.digest(&value.to_string()).unwrap(),
            contract["lock"]["fields"][name],
            "{name}"
        );
    }
}

/// A random JSON text: nested values, odd strings and numbers, random spacing.
fn random_json(rng: &mut Rng, depth: usize) -> String {
    const STRINGS: &[&str] = &[
        "",
        "gold",
        "\\u00e9t\\u00e9",
        "\u{20ac}",
        "\\ud83d\\ude00",
        "line\\nbreak",
        "\\u0000\\u001f",
        "quote\\\"back\\\\slash",
        "\u{10000}",
        "\u{7f}",
    ];
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "1.0",
        "5.0e1",
        "1e21",
        "1e-7",
        "0.1",
        "123456789012345678",
        "-2.5E-3",
        "9007199254740993",
        "1.7976931348623157e308",
        "5e-324",
        "333333333.33333329",
    ];
    let space = |rng: &mut Rng| [" ", "", "\n", "\t", ""][rng.below(5)];
    match if depth == 0 {
        rng.below(4)
    } else {
        rng.below(6)
    } {
        0 => format!("\"{}\"", rng.pick(STRINGS)),
        1 => rng.pick(NUMBERS).to_string(),
        2 => rng.pick(&["true", "false", "null"]).to_string(),
        3 => format!("\"k{}\"", rng.below(1000)),
        4 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| format!("{}{}", space(rng), random_json(rng, depth - 1)))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let mut keys: Vec<String> = (0..rng.below(5))
                .map(|_| rng.pick(STRINGS).to_string())
                .collect();
            keys.sort();
            keys.dedup();
            let members: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "\"{k}\"{}:{}{}",
                        space(rng),
                        space(rng),
                        random_json(rng, depth - 1)
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
    }
}

#[test]
fn generated_json_digests_and_errors_equal_the_core() {
    let mut guest = Guest::start();
    let mut rng = Rng(0x0005_eed0_fda7);
    let mut texts: Vec<String> = (0..1500).map(|_| random_json(&mut rng, 4)).collect();
    texts.extend(
        [
            "",
            "{",
            "[1,]",
            "{\"a\":1,\"a\":2}",
            "\"\\ud800\"",
            "1e400",
            "01",
            "{} x",
            "NaN",
            "\"\u{1}\"",
        ]
        .map(String::from),
    );
    texts.push(format!("{}{}", "[".repeat(128), "]".repeat(128)));
    texts.push(format!("{}{}", "[".repeat(129), "]".repeat(129)));
    let (mut ok, mut invalid) = (0, 0);
    for text in &texts {
        let native = Json::parse(text.as_bytes(), DEFAULT_MAX_DEPTH);
        let digest = guest.digest(text);
        let canonical = guest.canonical(text);
        match native {
            Ok(json) => {
                ok += 1;
                assert_eq!(digest.unwrap(), digest_of(&json).to_string(), "{text}");
                assert_eq!(canonical.unwrap().into_bytes(), json.to_canonical());
            }
            Err(rampart::jcs::JsonError::Invalid(message)) => {
                invalid += 1;
                assert!(
                    matches!(&digest, Err(wit::JsonError::Invalid(m)) if *m == message),
                    "{text}: {digest:?}"
                );
                assert!(matches!(canonical, Err(wit::JsonError::Invalid(_))));
            }
            Err(rampart::jcs::JsonError::TooDeep { limit }) => {
                invalid += 1;
                assert!(
                    matches!(digest, Err(wit::JsonError::TooDeep(l)) if l as usize == limit),
                    "{text}"
                );
            }
        }
    }
    assert!(ok > 1000 && invalid >= 10, "{ok} valid, {invalid} invalid");
}

/// The shared vectors hold for the component exactly as for the core and Envoy.
#[test]
fn shared_decision_vectors_equal_the_core() {
    let mut guest = Guest::start();
    let doc: J = serde_json::from_slice(&read("tests/vectors/decisions.json")).unwrap();
    let text = String::from_utf8(read(doc["contract"].as_str().unwrap())).unwrap();
    let plan = Plan::from_json(text.as_bytes()).unwrap();
    let contract = guest.load(&text).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let request = Req::from_vector(case, &doc["node_metadata"]);
        let got = guest.decide_request(contract, &request);
        assert_same_decision(&got, &plan, &request, name);
        let expect = &case["expect"];
        assert_eq!(side_label(got.side), expect["route"], "{name}");
        assert_eq!(reason_label(got.reason), expect["reason"], "{name}");
        assert_eq!(json!(got.fields), expect["fields"], "{name}");
        if let Some(bucket) = expect.get("bucket") {
            assert_eq!(got.bucket.map(u64::from), bucket.as_u64(), "{name}");
        }
    }
    guest.drop_contract(contract);
}

/// A contract with every input format, locked to `snapshot` by the core's own
/// `lock_from_snapshot` (what `rampart lock` writes); `whole` keeps only the
/// whole-snapshot digest.
fn locked_contract(edit: impl FnOnce(&mut J), snapshot: &J, whole: bool) -> String {
    let mut contract = json!({
        "contract": "wide-ramp",
        "ramp": { "percent": 50, "sticky": { "header": "x-user-id" } },
        "inputs": {
            "flags": { "header": "x-user-config", "format": "json" },
            "rev": { "property": ["xds", "node", "metadata", "CONFIG_REV"] },
            "tier": { "property": ["metadata", "filter_metadata", "tenant", "tier"] },
            "max": { "property": ["xds", "node", "metadata", "MAX"], "format": "int" },
            "ratio": { "property": ["xds", "node", "metadata", "RATIO"], "format": "double" },
            "beta": { "property": ["xds", "node", "metadata", "BETA"], "format": "bool" },
            "app": { "header": "x-config-digest", "format": "digest" }
        }
    });
    if whole {
        // A precomputed digest can only be locked field by field.
        contract["inputs"].as_object_mut().unwrap().remove("app");
    }
    edit(&mut contract);
    let text = contract.to_string();
    let spec = ContractSpec::parse(text.as_bytes()).unwrap();
    let mut snapshot = snapshot.clone();
    snapshot
        .as_object_mut()
        .unwrap()
        .retain(|name, _| spec.inputs.contains_key(name));
    let snapshot = Json::parse(snapshot.to_string().as_bytes(), DEFAULT_MAX_DEPTH).unwrap();
    let lock = lock_from_snapshot(&spec, &snapshot).unwrap();
    contract["lock"] = if whole {
        json!({ "digest": lock.digest })
    } else {
        json!({ "digest": lock.digest, "fields": lock.fields })
    };
    contract.to_string()
}

fn app_digest(version: &str) -> String {
    digest_of(&Json::String(version.into())).to_string()
}

/// Where an input is carried, the value that matches the lock, and the ways it can
/// differ: drifted values, undecodable bytes and `None` for missing.
type InputValues = (wit::Source, Vec<u8>, Vec<Option<Vec<u8>>>);

/// The values of every input of `locked_contract`.
fn request_values() -> Vec<InputValues> {
    let header = |name: &str| wit::Source::Header(name.into());
    let property = |at: &[&str]| wit::Source::Property(path(at));
    let bytes = |b: &[u8]| Some(b.to_vec());
    vec![
        (
            header("x-user-config"),
            br#"{"checkout_v2":true,"max_items":50}"#.to_vec(),
            vec![
                bytes(br#"{ "max_items": 5e1, "checkout_v2": true }"#),
                bytes(br#"{"checkout_v2":false,"max_items":50}"#),
                bytes(br#"{"a":1,"a":1}"#),
                bytes(b"[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]"),
                bytes(b""),
                bytes(&[0xff, 0xfe]),
                None,
            ],
        ),
        (
            header("x-config-digest"),
            app_digest("v7").into_bytes(),
            vec![
                Some(app_digest("v8").into_bytes()),
                bytes(b"sha256:nope"),
                None,
            ],
        ),
        (
            property(&["xds", "node", "metadata", "CONFIG_REV"]),
            b"r42".to_vec(),
            vec![bytes(b"r43"), None],
        ),
        (
            property(&["metadata", "filter_metadata", "tenant", "tier"]),
            b"gold".to_vec(),
            vec![bytes(b"silver"), bytes(&[0xff]), None],
        ),
        (
            property(&["xds", "node", "metadata", "MAX"]),
            50i64.to_le_bytes().to_vec(),
            vec![bytes(&51i64.to_le_bytes()), bytes(&[1, 2, 3]), None],
        ),
        (
            property(&["xds", "node", "metadata", "RATIO"]),
            0.25f64.to_le_bytes().to_vec(),
            vec![
                bytes(&0.5f64.to_le_bytes()),
                bytes(&f64::NAN.to_le_bytes()),
                None,
            ],
        ),
        (
            property(&["xds", "node", "metadata", "BETA"]),
            vec![1],
            vec![bytes(&[0]), bytes(&[2]), None],
        ),
    ]
}

/// A random request: half match the lock, the rest differ in one to three inputs;
/// the sticky key is usually a user, sometimes absent, empty, not UTF-8 or too long.
fn random_request(rng: &mut Rng, values: &[InputValues]) -> Req {
    let mut req = Req::default();
    let mut set = |source: &wit::Source, value: Option<Vec<u8>>| {
        let Some(value) = value else { return };
        match source {
            wit::Source::Header(name) => req.headers.insert(name.clone(), value),
            wit::Source::Property(at) => req.properties.insert(at.clone(), value),
        };
    };
    let differing = if rng.below(2) == 0 {
        0
    } else {
        1 + rng.below(3)
    };
    let mut chosen: Vec<usize> = (0..differing).map(|_| rng.below(values.len())).collect();
    chosen.dedup();
    for (ix, (source, matching, others)) in values.iter().enumerate() {
        if chosen.contains(&ix) {
            set(source, rng.pick(others).clone());
        } else {
            set(source, Some(matching.clone()));
        }
    }
    let key = match rng.below(20) {
        0 => None,
        1 => Some(Vec::new()),
        2 => Some(vec![0xc3, 0x28]),
        3 => Some("u".repeat(80).into_bytes()),
        _ => Some(format!("user-{}", rng.below(1000)).into_bytes()),
    };
    set(&wit::Source::Header("x-user-id".into()), key);
    req
}

/// Contracts beyond the shared vectors' one (every drift action, missing rule, lock
/// kind, ramp bound, sticky source and limit), each with generated requests: the
/// component and the core must agree on every field of every decision.
#[test]
fn generated_contracts_and_requests_decide_as_the_core() {
    let snapshot = json!({
        "flags": { "checkout_v2": true, "max_items": 50 },
        "rev": "r42",
        "tier": "gold",
        "max": 50,
        "ratio": 0.25,
        "beta": true,
        "app": "v7"
    });
    type Edit = fn(&mut J);
    let variants: &[(&str, Edit)] = &[
        ("defaults", |_| {}),
        ("reject", |c| c["on_drift"] = json!("reject")),
        ("observe", |c| c["on_drift"] = json!("observe")),
        ("paused", |c| c["paused"] = json!(true)),
        ("missing is null", |c| c["on_missing"] = json!("null")),
        ("unkeyed canary", |c| c["ramp"]["unkeyed"] = json!("canary")),
        ("zero percent", |c| c["ramp"]["percent"] = json!(0)),
        ("all in", |c| c["ramp"]["percent"] = json!(100)),
        ("fraction", |c| c["ramp"]["percent"] = json!(0.37)),
        (
            "sticky property",
            |c| {
                c["ramp"]["sticky"] =
                    json!({"property": ["metadata", "filter_metadata", "tenant", "tier"]})
            },
        ),
        ("sticky is an input", |c| {
            c["ramp"]["sticky"] = json!({"header": "x-user-config"})
        }),
        ("tight limits", |c| {
            c["limits"] = json!({"max_input_bytes": 24, "max_json_depth": 2})
        }),
        ("whole snapshot", |_| {}),
    ];
    let mut guest = Guest::start();
    let values = request_values();
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (variant, edit) in variants {
        // A digest input is locked to the digest of "v7", which `app_digest` carries.
        let text = locked_contract(edit, &snapshot, *variant == "whole snapshot");
        let plan = Plan::from_json(text.as_bytes()).unwrap();
        let contract = guest.load(&text).unwrap();
        let inputs = guest.inputs(contract);
        assert_eq!(
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            plan.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
        );
        for (input, native) in inputs.iter().zip(&plan.inputs) {
            let same = match (&input.source, &native.source) {
                (wit::Source::Header(a), Source::Header { name, .. }) => a == name,
                (wit::Source::Property(a), Source::Property { path, .. }) => a == path,
                _ => false,
            };
            assert!(same, "{variant}: {}", input.name);
        }
        for n in 0..400 {
            let request = random_request(&mut rng, &values);
            let got = guest.decide_request(contract, &request);
            let what = format!("{variant} #{n}: {request:?}");
            assert_same_decision(&got, &plan, &request, &what);
            *seen
                .entry(format!(
                    "{}/{}",
                    side_label(got.side),
                    reason_label(got.reason)
                ))
                .or_default() += 1;
        }
        guest.drop_contract(contract);
    }
    // The corpus reaches every outcome, so agreement is not agreement on one path.
    for outcome in [
        "canary/match",
        "stable/match",
        "stable/drift",
        "stable/missing",
        "stable/paused",
        "stable/unkeyed",
        "canary/unkeyed",
        "reject/drift",
        "reject/missing",
        "canary/drift",
    ] {
        assert!(seen.contains_key(outcome), "{outcome} never seen: {seen:?}");
    }
}

#[test]
fn contract_errors_name_the_same_field_as_the_core() {
    let mut guest = Guest::start();
    let example: J = serde_json::from_slice(&read("examples/contract.json")).unwrap();
    type Edit = fn(&mut J);
    let edits: &[Edit] = &[
        |c| c["ramp"]["percent"] = json!(101),
        |c| c["ramp"]["percent"] = json!("5"),
        |c| c["colour"] = json!(1),
        |c| drop(c.as_object_mut().unwrap().remove("lock")),
        |c| drop(c["ramp"].as_object_mut().unwrap().remove("sticky")),
        |c| c["inputs"]["flags"]["format"] = json!("yaml"),
        |c| c["inputs"]["tier"] = json!({"header": "x-tier", "property": ["a"]}),
        |c| c["lock"]["fields"]["tier"] = json!("md5:00"),
        |c| c["route"]["stable"] = json!("canary"),
        |c| c["reject_status"] = json!(200),
        |c| c["on_drift"] = json!("drop"),
        |c| c["limits"] = json!({"max_json_depth": 0}),
    ];
    let mut texts: Vec<String> = edits
        .iter()
        .map(|edit| {
            let mut c = example.clone();
            edit(&mut c);
            c.to_string()
        })
        .collect();
    texts.extend(["", "{", "[]", "{}"].map(String::from));
    for text in &texts {
        let native = Plan::from_json(text.as_bytes()).unwrap_err();
        match guest.load(text) {
            Err(wit::ContractError::Field(e)) => {
                assert_eq!((e.field, e.message), (native.field, native.message));
            }
            Err(wit::ContractError::Document(message)) => {
                assert_eq!(("", message), (native.field.as_str(), native.message));
            }
            Ok(_) => panic!("{text}: the component accepted what the core rejects"),
        }
    }
}

#[test]
fn decide_refuses_unknown_and_repeated_inputs() {
    let mut guest = Guest::start();
    let contract = guest
        .load(std::str::from_utf8(&read("examples/contract.json")).unwrap())
        .unwrap();
    let observed = |name: &str, text: &str| wit::Observed {
        name: name.into(),
        value: wit::Value::Text(text.into()),
    };
    assert!(matches!(
        guest.decide(contract, &[observed("colour", "red")], None),
        Err(wit::DecideError::UnknownInput(name)) if name == "colour"
    ));
    assert!(matches!(
        guest.decide(contract, &[observed("tier", "gold"), observed("tier", "gold")], None),
        Err(wit::DecideError::RepeatedInput(name)) if name == "tier"
    ));
    // Nothing observed: every input is missing, and no key means no bucket.
    let d = guest.decide(contract, &[], None).unwrap();
    assert_eq!(
        (d.side, d.reason, d.bucket),
        (wit::Side::Stable, wit::Reason::Missing, None)
    );
    assert_eq!(d.fields, ["flags", "rev", "tier"]);
    guest.drop_contract(contract);
}

#[test]
fn docs_show_the_rust_example_as_it_is_tested() {
    let page = String::from_utf8(read("docs/component.md")).unwrap();
    let example = include_str!("docs_example.rs");
    assert!(
        page.contains(example),
        "docs/component.md lacks crates/component-tests/tests/docs_example.rs verbatim"
    );
}
