use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

// Rust types for the `rampart` world, generated from the WIT package.
wasmtime::component::bindgen!({ world: "rampart", path: "../../wit" });
use exports::rampart::core::engine::{Observed, Side, Value};

#[test]
fn a_wasmtime_host_routes_a_request() -> wasmtime::Result<()> {
    let engine = Engine::default();
    let component = Component::from_file(&engine, std::env::var("RAMPART_COMPONENT")?)?;
    let mut linker = Linker::new(&engine);
    // The engine never calls its host; the WASI imports Rust's std links can trap.
    linker.define_unknown_imports_as_traps(&component)?;
    let mut store = Store::new(&engine, ());
    let rampart = Rampart::instantiate(&mut store, &component, &linker)?;
    let api = rampart.rampart_core_engine();

    // Load the contract once; decide per request with the values it carries.
    let json = std::fs::read_to_string("../../examples/contract.json")?;
    let contract = api.contract().call_load(&mut store, &json)?.expect("valid");
    let text = |s: &str| Value::Text(s.into());
    let input = |name: &str, value: &str| Observed {
        name: name.into(),
        value: text(value),
    };
    let flags = r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#;
    let observed = [
        input("flags", flags),
        input("rev", "r42"),
        input("tier", "gold"),
    ];
    let sticky_key = text("alice");
    let decision = api
        .contract()
        .call_decide(&mut store, contract, &observed, Some(&sticky_key))?
        .expect("known inputs");
    assert_eq!(decision.side, Side::Canary);
    assert_eq!(decision.summary, "route=canary reason=match bucket=2815");

    // Digests are the CLI's: SHA-256 of the RFC 8785 canonical form.
    let digest = api
        .call_digest(&mut store, r#"{ "b": 2, "a": 1 }"#)?
        .expect("JSON");
    assert_eq!(
        digest,
        "sha256:43258cff783fe7036d8a43033f830adfc60ec037382473548ac742b888292777"
    );
    contract.resource_drop(&mut store)?;
    Ok(())
}
