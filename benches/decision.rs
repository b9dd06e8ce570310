//! Micro-benchmark of the core decision, natively: `cargo bench --bench decision`.
//!
//! The realistic contract of the benchmarks: the example contract's three inputs — a
//! JSON config header of a few hundred bytes, one dynamic-metadata input, one
//! node-metadata input — a sticky key, and a lock on every field. The request below
//! hands out owned copies of its values, as the filter gets them from the host (a
//! buffer the host allocates in the module per read).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use divan::Bencher;
use rampart::cache::DigestCache;
use rampart::contract::{ContractSpec, Format};
use rampart::decide::{decide, decide_cached};
use rampart::decode::decode;
use rampart::host::{HostError, Request};
use rampart::snapshot::lock_from_snapshot;
use rampart::{Json, Plan, Source};

fn main() {
    // `RAMPART_PROFILE=<scenario> [RAMPART_PROFILE_ITERATIONS=n]` runs one scenario in
    // a plain loop instead, for an instruction profiler (valgrind --tool=callgrind).
    match std::env::var("RAMPART_PROFILE") {
        Ok(scenario) => profile(&scenario),
        Err(_) => divan::main(),
    }
}

fn profile(scenario: &str) {
    let iterations: usize = std::env::var("RAMPART_PROFILE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let plan = plan();
    let mut cache = DigestCache::new(plan.inputs.len());
    let tier = if scenario.contains("drift") {
        "silver"
    } else {
        "gold"
    };
    let mut request = HostLike::new(&plan, "alice", CONFIG, tier);
    for _ in 0..iterations {
        match scenario {
            "digest" => {
                black_box(
                    decode(Format::Json, black_box(CONFIG.as_bytes()), 8192, 16)
                        .map(|v| v.digest())
                        .ok(),
                );
            }
            "match" | "drift" => {
                black_box(decide(black_box(&plan), &mut request));
            }
            "match_cached" | "drift_cached" => {
                black_box(decide_cached(&plan, false, &mut cache, &mut request));
            }
            other => {
                panic!("unknown scenario {other}: digest, match, drift, match_cached, drift_cached")
            }
        }
    }
}

/// A user config of 300-odd bytes, as apps send them: flags, a few settings, a list.
const CONFIG: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50,"locale":"de-DE","theme":"dark","experiments":{"one_click":false,"new_cart":true,"reco_model":"v3"},"limits":{"daily_orders":20,"cart_value_eur":2500.5},"regions":["eu-west-1","eu-central-1"],"payment_methods":["card","sepa","paypal"],"tier_features":{"priority_support":true,"beta_access":false}}"#;

/// The same config, keys reordered and spaced out: the same digest.
const CONFIG_REORDERED: &str = r#"{ "tier_features": {"beta_access": false, "priority_support": true}, "payment_methods": ["card","sepa","paypal"], "regions": ["eu-west-1","eu-central-1"], "limits": {"cart_value_eur": 2500.5, "daily_orders": 20}, "experiments": {"reco_model": "v3", "new_cart": true, "one_click": false}, "theme": "dark", "locale": "de-DE", "max_items": 50, "currency": "EUR", "checkout_v2": true }"#;

fn plan() -> Plan {
    let mut spec = ContractSpec::parse(include_bytes!("../examples/contract.json"))
        .unwrap_or_else(|e| panic!("example contract: {e}"));
    let snapshot = Json::parse(
        format!(r#"{{"flags":{CONFIG},"tier":"gold","rev":"r42"}}"#).as_bytes(),
        16,
    )
    .unwrap_or_else(|e| panic!("snapshot: {e}"));
    spec.lock = Some(lock_from_snapshot(&spec, &snapshot).unwrap_or_else(|e| panic!("{e}")));
    spec.compile().unwrap_or_else(|e| panic!("{e}"))
}

/// A request as the filter sees it: values by source, each read a fresh copy.
struct HostLike {
    values: Vec<(Source, Vec<u8>)>,
}

impl HostLike {
    fn new(plan: &Plan, user: &str, config: &str, tier: &str) -> HostLike {
        let mut values = vec![(plan.sticky.clone(), user.as_bytes().to_vec())];
        for input in &plan.inputs {
            let value: &str = match input.name.as_str() {
                "flags" => config,
                "tier" => tier,
                "rev" => "r42",
                other => panic!("unexpected input {other}"),
            };
            values.push((input.source.clone(), value.as_bytes().to_vec()));
        }
        HostLike { values }
    }
}

impl Request for HostLike {
    type Bytes<'a> = Vec<u8>;

    fn read(&mut self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .values
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, v)| v.clone()))
    }
}

/// Matching config: checks every input, then the bucket (alice is on the canary).
#[divan::bench]
fn decide_match(bencher: Bencher) {
    let plan = plan();
    let mut request = HostLike::new(&plan, "alice", CONFIG, "gold");
    assert_eq!(decide(&plan, &mut request).reason.as_str(), "match");
    bencher.bench_local(|| decide(black_box(&plan), black_box(&mut request)));
}

/// The same config with other key order and whitespace: canonicalization matters.
#[divan::bench]
fn decide_match_reordered(bencher: Bencher) {
    let plan = plan();
    let mut request = HostLike::new(&plan, "alice", CONFIG_REORDERED, "gold");
    assert_eq!(decide(&plan, &mut request).reason.as_str(), "match");
    bencher.bench_local(|| decide(black_box(&plan), black_box(&mut request)));
}

/// Drifted tier: every input is still read and digested; no bucket.
#[divan::bench]
fn decide_drift(bencher: Bencher) {
    let plan = plan();
    let mut request = HostLike::new(&plan, "alice", CONFIG, "silver");
    assert_eq!(decide(&plan, &mut request).reason.as_str(), "drift");
    bencher.bench_local(|| decide(black_box(&plan), black_box(&mut request)));
}

/// Matching config through the per-VM cache, as the filter decides (warm cache).
#[divan::bench]
fn decide_match_cached(bencher: Bencher) {
    let plan = plan();
    let mut cache = DigestCache::new(plan.inputs.len());
    let mut request = HostLike::new(&plan, "alice", CONFIG, "gold");
    assert_eq!(
        decide_cached(&plan, false, &mut cache, &mut request)
            .reason
            .as_str(),
        "match"
    );
    bencher.bench_local(|| {
        decide_cached(black_box(&plan), false, &mut cache, black_box(&mut request))
    });
}

/// Drifted tier through the warm cache (a drifted config that keeps coming back).
#[divan::bench]
fn decide_drift_cached(bencher: Bencher) {
    let plan = plan();
    let mut cache = DigestCache::new(plan.inputs.len());
    let mut request = HostLike::new(&plan, "alice", CONFIG, "silver");
    assert_eq!(
        decide_cached(&plan, false, &mut cache, &mut request)
            .reason
            .as_str(),
        "drift"
    );
    bencher.bench_local(|| {
        decide_cached(black_box(&plan), false, &mut cache, black_box(&mut request))
    });
}

/// What the filter derives per request beyond the decision: the one-line summary.
#[divan::bench]
fn decide_match_and_summary(bencher: Bencher) {
    let plan = plan();
    let mut request = HostLike::new(&plan, "alice", CONFIG, "gold");
    bencher.bench_local(|| {
        let decision = decide(black_box(&plan), black_box(&mut request));
        let mut summary = String::with_capacity(128);
        decision.write_summary(&plan, &mut summary);
        summary
    });
}

/// The config header alone: strict parse, canonical form and SHA-256.
#[divan::bench]
fn digest_config_header(bencher: Bencher) {
    bencher.bench_local(|| {
        decode(Format::Json, black_box(CONFIG.as_bytes()), 8192, 16)
            .map(|value| value.digest())
            .ok()
    });
}

/// The parse alone, for profiling.
#[divan::bench]
fn parse_config_header(bencher: Bencher) {
    bencher.bench_local(|| Json::parse(black_box(CONFIG.as_bytes()), 16).ok());
}

/// The sticky bucket alone (one SHA-256 of a short key).
#[divan::bench]
fn sticky_bucket(bencher: Bencher) {
    let plan = plan();
    bencher.bench_local(|| plan.salt.bucket(black_box(b"alice")));
}

/// Canonical form of a number with a fraction (shortest digits search).
#[divan::bench]
fn number_with_fraction(bencher: Bencher) {
    bencher.bench_local(|| {
        let mut out = Vec::with_capacity(32);
        rampart::jcs::write_number(black_box(2500.5), &mut out);
        out
    });
}

/// Canonical form of numbers at the ends of the double range: what a hostile number
/// can cost.
#[divan::bench(args = ["5e-324", "2.2250738585072014e-308", "1.7976931348623157e308"])]
fn number_extreme(bencher: Bencher, text: &str) {
    let value: f64 = text.parse().unwrap();
    bencher.bench_local(|| {
        let mut out = Vec::with_capacity(32);
        rampart::jcs::write_number(black_box(value), &mut out);
        out
    });
}

/// std's shortest digits for the same values (`{:e}`), the reference for the two above.
#[divan::bench(args = ["2500.5", "5e-324", "2.2250738585072014e-308", "1.7976931348623157e308"])]
fn number_std_reference(bencher: Bencher, text: &str) {
    use std::fmt::Write as _;
    let value: f64 = text.parse().unwrap();
    bencher.bench_local(|| {
        let mut out = String::with_capacity(32);
        write!(out, "{:e}", black_box(value)).unwrap();
        out
    });
}

/// Number texts through the core's reader: a config number, then what hostile ones
/// cost (exponent extremes, 17 and 19 digits, a halfway case, 800 digits).
const NUMBER_TEXTS: &[&str] = &[
    "0.05",
    "1e-300",
    "1.7976931348623157e308",
    "2.2250738585072011e-308",
    "0.30000000000000004",
    "9007199254740993",
    "1234567890123456789e-200",
    "LONG",
];

fn number_text(arg: &str) -> String {
    if arg == "LONG" {
        // 800 significant digits just above a halfway point.
        format!("1.{}e-300", "7".repeat(799))
    } else {
        arg.to_owned()
    }
}

/// One number parsed by the core (`Json::parse` of the bare number).
#[divan::bench(args = NUMBER_TEXTS)]
fn number_parse(bencher: Bencher, arg: &str) {
    let text = number_text(arg);
    bencher.bench_local(|| Json::parse(black_box(text.as_bytes()), 1).ok());
}

/// The same texts through `str::parse::<f64>`, the reference.
#[divan::bench(args = NUMBER_TEXTS)]
fn number_parse_std_reference(bencher: Bencher, arg: &str) {
    let text = number_text(arg);
    bencher.bench_local(|| black_box(text.as_str()).parse::<f64>().ok());
}

/// A 4 KiB config header of hostile numbers (`[1e-300,1e-300,…]`), parsed whole.
#[divan::bench]
fn parse_hostile_numbers(bencher: Bencher) {
    let mut text = String::from("[");
    while text.len() < 4000 {
        text.push_str("1.2345678901234567e-300,");
    }
    text.push_str("0]");
    bencher.bench_local(|| Json::parse(black_box(text.as_bytes()), 2).ok());
}
