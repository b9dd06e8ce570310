//! Properties of the core that must hold for every input, checked with proptest:
//! digests ignore key order and whitespace and see every value change, canonical JSON is
//! a re-parsable fixed point, buckets are monotonic in the percent and uniform, and the
//! decision never panics whatever a request carries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rampart::bucket::{bucket, is_canary, threshold_for_percent, BUCKETS};
use rampart::contract::{OnDrift, OnMissing, Side};
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::digest_of;
use rampart::{decide, ContractSpec, Plan, Route, StaticRequest};

/// A JSON value as a test builds it; [`Tree::render`] writes it in any key order and
/// with any whitespace, the way different clients would.
#[derive(Debug, Clone)]
enum Tree {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Array(Vec<Tree>),
    Object(BTreeMap<String, Tree>),
}

/// Drives rendering choices (member order, whitespace, number layout) from one seed.
struct Style(u64);

impl Style {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn space(&mut self, out: &mut String) {
        const SPACES: [&str; 6] = ["", "", " ", "\t", "\n  ", "\r\n"];
        out.push_str(SPACES[(self.next() % SPACES.len() as u64) as usize]);
    }
}

impl Tree {
    fn render(&self, style: &mut Style) -> String {
        let mut out = String::new();
        style.space(&mut out);
        self.write(style, &mut out);
        style.space(&mut out);
        out
    }

    fn write(&self, style: &mut Style, out: &mut String) {
        match self {
            Tree::Null => out.push_str("null"),
            Tree::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            // Plain decimal or exponent form: the same double either way.
            Tree::Number(n) if style.next() % 2 == 0 => out.push_str(&format!("{n}")),
            Tree::Number(n) => out.push_str(&format!("{n:e}")),
            Tree::Text(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Tree::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    style.space(out);
                    item.write(style, out);
                    style.space(out);
                }
                out.push(']');
            }
            Tree::Object(members) => {
                let mut order: Vec<_> = members.iter().collect();
                // Any permutation: rotate, then maybe reverse.
                if !order.is_empty() {
                    let shift = (style.next() % order.len() as u64) as usize;
                    order.rotate_left(shift);
                    if style.next() % 2 == 0 {
                        order.reverse();
                    }
                }
                out.push('{');
                for (i, (key, value)) in order.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    style.space(out);
                    out.push_str(&serde_json::to_string(key).unwrap());
                    style.space(out);
                    out.push(':');
                    style.space(out);
                    value.write(style, out);
                }
                style.space(out);
                out.push('}');
            }
        }
    }

    /// Number of leaves (scalars, empty arrays and objects).
    fn leaves(&self) -> usize {
        match self {
            Tree::Array(items) if !items.is_empty() => items.iter().map(Tree::leaves).sum(),
            Tree::Object(members) if !members.is_empty() => {
                members.values().map(Tree::leaves).sum()
            }
            _ => 1,
        }
    }

    /// Changes the `n`th leaf to a different value (`n < leaves()`); returns whether a
    /// leaf was changed.
    fn change_leaf(&mut self, n: &mut usize) -> bool {
        let children: Vec<&mut Tree> = match self {
            Tree::Array(items) if !items.is_empty() => items.iter_mut().collect(),
            Tree::Object(members) if !members.is_empty() => members.values_mut().collect(),
            leaf => {
                if *n > 0 {
                    *n -= 1;
                    return false;
                }
                *leaf = match leaf {
                    Tree::Null => Tree::Bool(false),
                    Tree::Bool(b) => Tree::Bool(!*b),
                    // The next double up (or down, at the top): a one-ulp change.
                    Tree::Number(v) => {
                        let v = if *v == 0.0 { 0.0 } else { *v };
                        let up = f64::from_bits(v.to_bits() + 1);
                        // Below zero, and at the largest double, one bit less is the
                        // neighbour towards zero.
                        let next = if v >= 0.0 && up.is_finite() {
                            up
                        } else {
                            f64::from_bits(v.to_bits() - 1)
                        };
                        Tree::Number(next)
                    }
                    Tree::Text(s) => Tree::Text(format!("{s}\u{0}")),
                    Tree::Array(_) => Tree::Array(vec![Tree::Null]),
                    Tree::Object(_) => Tree::Object(BTreeMap::from([(String::new(), Tree::Null)])),
                };
                return true;
            }
        };
        children.into_iter().any(|child| child.change_leaf(n))
    }
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1e6f64..1e6),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Null),
        any::<bool>().prop_map(Tree::Bool),
        finite().prop_map(Tree::Number),
        text().prop_map(Tree::Text),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Tree::Array),
            prop::collection::btree_map(text(), inner, 0..5).prop_map(Tree::Object),
        ]
    })
}

/// Any Unicode scalar values (controls, quotes, astral planes), kept short.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..10).prop_map(String::from_iter)
}

fn parse(text: &str) -> Json {
    Json::parse(text.as_bytes(), DEFAULT_MAX_DEPTH)
        .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
}

/// A snapshot-shaped tree: an object of input names to values.
fn snapshot() -> impl Strategy<Value = Tree> {
    prop::collection::btree_map("[a-z_]{1,12}", tree(), 1..8).prop_map(Tree::Object)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn digest_ignores_key_order_and_whitespace(value in snapshot(), a: u64, b: u64) {
        let first = parse(&value.render(&mut Style(a | 1)));
        let second = parse(&value.render(&mut Style(b | 1)));
        prop_assert_eq!(digest_of(&first), digest_of(&second));
        prop_assert_eq!(first.to_canonical(), second.to_canonical());
    }

    #[test]
    fn any_changed_value_changes_the_digest(value in snapshot(), pick: usize, seed: u64) {
        let before = digest_of(&parse(&value.render(&mut Style(seed | 1))));
        let mut changed = value.clone();
        let mut n = pick % value.leaves();
        prop_assert!(changed.change_leaf(&mut n));
        let after = parse(&changed.render(&mut Style(seed | 1)));
        prop_assert_ne!(before, digest_of(&after));
    }

    #[test]
    fn canonical_form_reparses_to_an_equal_value_and_is_a_fixed_point(value in tree(), seed: u64) {
        let parsed = parse(&value.render(&mut Style(seed | 1)));
        let canonical = parsed.to_canonical();
        let again = Json::parse(&canonical, DEFAULT_MAX_DEPTH).unwrap();
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(again.to_canonical(), canonical);
    }

    #[test]
    fn raising_the_percent_only_moves_users_to_the_canary(
        key in prop::collection::vec(any::<u8>(), 1..64),
        low in 0.0f64..=100.0,
        high in 0.0f64..=100.0,
    ) {
        let (low, high) = if low <= high { (low, high) } else { (high, low) };
        let (t_low, t_high) = (threshold_for_percent(low), threshold_for_percent(high));
        prop_assert!(t_low <= t_high && t_high <= BUCKETS);
        let b = bucket("checkout-v2", &key);
        prop_assert!(b < BUCKETS);
        prop_assert!(!is_canary(b, t_low) || is_canary(b, t_high));
    }

    #[test]
    fn the_decision_is_monotonic_in_the_percent(user in "[ -~]{1,40}", low in 0u32..=100, high in 0u32..=100) {
        let (low, high) = (low.min(high), low.max(high));
        let request = matching_request(&user);
        let at = |percent: u32| {
            let mut spec = example_spec();
            spec.ramp.percent = f64::from(percent);
            decide(&spec.compile().unwrap(), &mut request.clone()).route
        };
        prop_assert!(at(low) != Route::Canary || at(high) == Route::Canary);
        prop_assert_eq!(at(0), Route::Stable);
        prop_assert_eq!(at(100), Route::Canary);
    }

    #[test]
    fn the_decision_never_panics_and_drift_never_reaches_the_canary(
        variant in 0usize..6,
        sticky in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        flags in prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            tree().prop_map(|t| t.render(&mut Style(7)).into_bytes()),
        ]),
        tier in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        rev in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
    ) {
        let plan = &plans()[variant];
        let mut request = StaticRequest::default();
        if let Some(v) = sticky { request = request.header("x-user-id", v); }
        if let Some(v) = flags { request = request.header("x-user-config", v); }
        if let Some(v) = tier { request = request.property(&["metadata", "filter_metadata", "tenant", "tier"], v); }
        if let Some(v) = rev { request = request.property(&["xds", "node", "metadata", "CONFIG_REV"], v); }
        let d = decide(plan, &mut request);
        if !d.issues.is_empty() && plan.on_drift != OnDrift::Observe {
            prop_assert_ne!(d.route, Route::Canary);
        }
        if d.route == Route::Reject {
            prop_assert_eq!(plan.on_drift, OnDrift::Reject);
        }
        let summary = d.summary(plan);
        prop_assert!(summary.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    }

    #[test]
    fn the_cached_decision_equals_the_uncached_one(
        variant in 0usize..6,
        requests in prop::collection::vec(
            (0usize..6, 0usize..6, 0usize..6, 0usize..4),
            1..60,
        ),
    ) {
        // Values drawn from small pools so that the cache both hits and evicts.
        const FLAGS_POOL: [&str; 6] = [FLAGS, "{}", "[1]", r#"{"checkout_v2":true}"#, "nul", r#"{"a":1,"a":1}"#];
        const TIERS: [&str; 6] = ["gold", "silver", "", "\u{ff}", "bronze", "gold "];
        const REVS: [&str; 6] = ["r42", "r41", "r42 ", "", "r4", "R42"];
        let plan = &plans()[variant];
        let mut cache = rampart::cache::DigestCache::new(plan.inputs.len());
        for (user, flags, tier, rev) in requests {
            let mut request = StaticRequest::default()
                .header("x-user-id", format!("user-{user}"))
                .header("x-user-config", FLAGS_POOL[flags])
                .property(&["metadata", "filter_metadata", "tenant", "tier"], TIERS[tier]);
            if rev > 0 {
                request = request.property(&["xds", "node", "metadata", "CONFIG_REV"], REVS[rev]);
            }
            let cached = rampart::decide_cached(plan, false, &mut cache, &mut request.clone());
            prop_assert_eq!(cached, decide(plan, &mut request));
        }
    }

    #[test]
    fn contract_parsing_never_panics(text in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        tree().prop_map(|t| t.render(&mut Style(3)).into_bytes()),
        mutated_example(),
    ]) {
        // Accepted or rejected with a named field; never a panic.
        if let Err(e) = Plan::from_json(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

/// The example contract with one member replaced by an arbitrary JSON value.
fn mutated_example() -> impl Strategy<Value = Vec<u8>> {
    (0usize..12, tree()).prop_map(|(which, value)| {
        let mut contract: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        let replacement: serde_json::Value =
            serde_json::from_str(&value.render(&mut Style(5))).unwrap_or(serde_json::Value::Null);
        let pointers = [
            "/contract",
            "/route",
            "/route/header",
            "/ramp/percent",
            "/ramp/sticky",
            "/inputs",
            "/inputs/flags",
            "/inputs/flags/format",
            "/lock/digest",
            "/lock/fields/tier",
            "/limits/max_json_depth",
            "/on_drift",
        ];
        if let Some(slot) = contract.pointer_mut(pointers[which]) {
            *slot = replacement;
        }
        contract.to_string().into_bytes()
    })
}

const EXAMPLE: &str = include_str!("../examples/contract.json");
const FLAGS: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#;

fn example_spec() -> ContractSpec {
    ContractSpec::parse(EXAMPLE.as_bytes()).unwrap()
}

fn matching_request(user: &str) -> StaticRequest {
    StaticRequest::default()
        .header("x-user-id", user)
        .header("x-user-config", FLAGS)
        .property(&["metadata", "filter_metadata", "tenant", "tier"], "gold")
        .property(&["xds", "node", "metadata", "CONFIG_REV"], "r42")
}

/// The example contract under each drift action, missing rule and lock kind.
fn plans() -> Vec<Plan> {
    let mut specs = Vec::new();
    for (on_drift, on_missing, unkeyed) in [
        (OnDrift::Stable, OnMissing::Drift, Side::Stable),
        (OnDrift::Reject, OnMissing::Drift, Side::Stable),
        (OnDrift::Observe, OnMissing::Null, Side::Canary),
        (OnDrift::Stable, OnMissing::Null, Side::Canary),
    ] {
        let mut spec = example_spec();
        spec.on_drift = on_drift;
        spec.on_missing = on_missing;
        spec.ramp.unkeyed = unkeyed;
        specs.push(spec);
    }
    let mut whole = example_spec();
    whole.lock.as_mut().unwrap().fields = None;
    specs.push(whole);
    let mut tight = example_spec();
    tight.limits.max_input_bytes = 16;
    tight.limits.max_json_depth = 1;
    specs.push(tight);
    specs.into_iter().map(|s| s.compile().unwrap()).collect()
}

/// Buckets of 100,000 keys spread evenly: chi-square over 100 equal bins stays under
/// 148.2, the 0.1% critical value for 99 degrees of freedom, and the canary share at
/// every whole percent is within 4 standard deviations of that percent.
#[test]
fn buckets_are_uniform() {
    const KEYS: u32 = 100_000;
    let buckets: Vec<u16> = (0..KEYS)
        .map(|i| bucket("checkout-v2", format!("user-{i}").as_bytes()))
        .collect();
    let mut bins = [0u32; 100];
    for &b in &buckets {
        bins[usize::from(b / 100)] += 1;
    }
    let expected = f64::from(KEYS) / 100.0;
    let chi_square: f64 = bins
        .iter()
        .map(|&n| (f64::from(n) - expected).powi(2) / expected)
        .sum();
    assert!(
        chi_square < 148.2,
        "chi-square {chi_square:.1} over 100 bins"
    );
    for percent in 1..100u16 {
        let threshold = threshold_for_percent(f64::from(percent));
        let canary = buckets.iter().filter(|&&b| is_canary(b, threshold)).count() as f64;
        let p = f64::from(percent) / 100.0;
        let sd = (f64::from(KEYS) * p * (1.0 - p)).sqrt();
        let deviation = (canary - f64::from(KEYS) * p).abs();
        assert!(
            deviation <= 4.0 * sd,
            "{percent}%: {canary} of {KEYS} keys on the canary ({:.1} sd off)",
            deviation / sd
        );
    }
}
