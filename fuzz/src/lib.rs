//! The properties each fuzz target checks, one function per target.
//!
//! Every function takes arbitrary bytes, drives the core through its public API and
//! panics when a property fails; a panic (or a crash, a hang, an allocation blow-up) is
//! what libFuzzer reports. The same functions replay the committed seeds and every
//! regression input in the normal test run (`tests/fuzz_replay.rs`), so they are built
//! and exercised by `cargo xtask test` on stable Rust, without libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use rampart::cache::{DigestCache, ENTRIES_PER_INPUT, MAX_VALUE_BYTES, PROTECTED_ENTRIES};
use rampart::contract::{Format, OnDrift, Side};
use rampart::decode::{decode as decode_value, Value};
use rampart::digest::Digest;
use rampart::host::HostError;
use rampart::jcs::{self, Json};
use rampart::snapshot::{digest_of, lock_from_snapshot};
use rampart::{
    decide as decide_request, decide_cached, decide_with_pause, ContractSpec, Plan, Reason,
    Request, Route, Source,
};

/// A target's check: panics when a property fails for the input.
pub type Check = fn(&[u8]);

/// Every target: its name (the directory of its seeds and regressions) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("jcs", jcs),
    ("number", number),
    ("contract", contract),
    ("decode", decode),
    ("decide", decide),
    ("cached", cached),
    ("cache", cache),
    ("digest", digest),
];

/// Nesting limit of the canonicalizer target: the largest a contract may configure.
const MAX_DEPTH: usize = 128;

/// JCS: whatever parses has a canonical form that re-parses to an equal value, is a
/// fixed point, hashes to the value's digest and keeps the input's nesting depth.
pub fn jcs(data: &[u8]) {
    let depth = jcs::nesting_depth(data);
    let Ok(value) = Json::parse(data, MAX_DEPTH) else {
        return;
    };
    assert!(depth <= MAX_DEPTH, "accepted JSON nested {depth} deep");
    let canonical = value.to_canonical();
    let text = std::str::from_utf8(&canonical).expect("canonical JSON is UTF-8");
    let again = Json::parse(&canonical, MAX_DEPTH)
        .unwrap_or_else(|e| panic!("canonical form {text:?} does not re-parse: {e}"));
    assert_eq!(
        again, value,
        "canonical form {text:?} re-parses to another value"
    );
    assert_eq!(
        again.to_canonical(),
        canonical,
        "canonicalization is not a fixed point"
    );
    assert_eq!(digest_of(&value), Digest::of_bytes(&canonical));
    assert_eq!(
        jcs::nesting_depth(&canonical),
        depth,
        "nesting depth changed"
    );
    assert_no_insignificant_whitespace(&canonical);
}

/// No byte of whitespace outside strings: JCS output has none.
fn assert_no_insignificant_whitespace(canonical: &[u8]) {
    let (mut in_string, mut escaped) = (false, false);
    for &b in canonical {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else {
            assert!(
                !b.is_ascii_whitespace(),
                "whitespace in canonical JSON {:?}",
                String::from_utf8_lossy(canonical)
            );
        }
    }
}

/// Numbers: any finite double is written in the ES6 layout and reads back as itself.
pub fn number(data: &[u8]) {
    let Some(head) = data.get(..8) else { return };
    let value = f64::from_le_bytes(head.try_into().unwrap());
    let mut out = Vec::new();
    jcs::write_number(value, &mut out);
    let text = String::from_utf8(out).unwrap();
    if !value.is_finite() {
        assert_eq!(text, "null");
        return;
    }
    let back: f64 = text
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} for {value:e} is not a number: {e}"));
    assert!(
        back == value || (back == 0.0 && value == 0.0),
        "{value:e} written as {text:?} reads back as {back:e}"
    );
    assert_es6_layout(&text);
    // As JSON the text is the same number, and canonical already.
    let json = Json::parse(text.as_bytes(), 1).unwrap();
    assert_eq!(json.to_canonical(), text.as_bytes());
}

/// `-?` then digits with at most one `.`, or `D[.DDD]e[+-]X`; no leading `+`, no
/// trailing zeros after a point, no leading zeros except `0.`.
fn assert_es6_layout(text: &str) {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let ok_mantissa = !mantissa.is_empty()
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.matches('.').count() <= 1
        && !mantissa.ends_with('.')
        && !(mantissa.contains('.') && mantissa.ends_with('0'))
        && !(mantissa.len() > 1 && mantissa.starts_with('0') && !mantissa.starts_with("0."));
    let ok_exponent = exponent.map_or(true, |e| {
        (e.starts_with('+') || e.starts_with('-'))
            && e.len() > 1
            && e[1..].chars().all(|c| c.is_ascii_digit())
            && !e[1..].starts_with('0')
            && mantissa.split('.').next().is_some_and(|int| int.len() == 1)
    });
    assert!(ok_mantissa && ok_exponent, "{text:?} is not ES6 layout");
}

/// Contracts: parsing and compiling never panic; an accepted contract keeps its
/// invariants; safe mode always finds a usable route header and stable value.
pub fn contract(data: &[u8]) {
    let (header, stable) = rampart::contract::safe_mode_route(data);
    // Any case: Envoy lowercases header names it is handed.
    assert!(
        is_header_name(&header.to_ascii_lowercase()),
        "safe-mode route header {header:?}"
    );
    assert!(
        !stable.is_empty() && stable.bytes().all(|b| b.is_ascii_graphic()),
        "safe-mode stable value {stable:?}"
    );
    let Ok(spec) = ContractSpec::parse(data) else {
        return;
    };
    let Ok(plan) = spec.compile() else { return };
    assert!(plan.threshold <= rampart::bucket::BUCKETS);
    assert!(!plan.inputs.is_empty() && plan.inputs.len() <= rampart::contract::MAX_INPUTS);
    assert!(is_header_name(&plan.route_header));
    assert_ne!(plan.canary_value, plan.stable_value);
    assert!(plan.inputs.windows(2).all(|w| w[0].name < w[1].name));
    // An accepted contract decides any request; an empty one is missing everything.
    let d = decide_request(&plan, &mut Chunks::default());
    check_decision(&plan, &d, None);
    // The spec serializes (as `rampart lock` writes it) and re-parses to itself.
    let text = serde_json::to_vec(&spec).expect("a spec serializes");
    let again = ContractSpec::parse(&text)
        .unwrap_or_else(|e| panic!("{} does not re-parse: {e}", String::from_utf8_lossy(&text)));
    assert_eq!(again, spec);
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Formats in the order the first byte of a `decode` input selects them.
const FORMATS: [Format; 6] = Format::ALL;

/// Input decoders: byte 0 picks the format, byte 1 the limits, the rest is the value.
/// Each format accepts exactly its documented encoding, and anything accepted has a
/// digest that matches its canonical form.
pub fn decode(data: &[u8]) {
    let [selector, limits, bytes @ ..] = data else {
        return;
    };
    let format = FORMATS[usize::from(*selector) % FORMATS.len()];
    let max_bytes = usize::from(limits & 0x0f) * 64 + 1;
    let max_depth = usize::from(limits >> 4) + 1;
    let result = decode_value(format, bytes, max_bytes, max_depth);
    if bytes.len() > max_bytes {
        assert!(
            result.is_err(),
            "{} accepted over the size limit",
            format.as_str()
        );
        return;
    }
    let expect_ok = match format {
        Format::String => std::str::from_utf8(bytes).is_ok(),
        Format::Int => bytes.len() == 8,
        Format::Double => {
            bytes.len() == 8 && f64::from_le_bytes(bytes.try_into().unwrap()).is_finite()
        }
        Format::Bool => bytes == [0] || bytes == [1],
        Format::Digest => {
            bytes.len() == 71
                && bytes.starts_with(b"sha256:")
                && bytes[7..]
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        Format::Json => Json::parse(bytes, max_depth).is_ok(),
    };
    assert_eq!(
        result.is_ok(),
        expect_ok,
        "{} decoder on {:?}",
        format.as_str(),
        String::from_utf8_lossy(bytes)
    );
    let Ok(value) = result else { return };
    match &value {
        Value::Digest(d) => assert_eq!(d.to_string().as_bytes(), bytes),
        other => {
            let mut canonical = Vec::new();
            other.write_canonical(&mut canonical);
            assert_eq!(other.digest(), Digest::of_bytes(&canonical));
            // What a value decodes to is what a snapshot holding it locks.
            let reparsed = Json::parse(&canonical, MAX_DEPTH).expect("canonical re-parses");
            assert_eq!(digest_of(&reparsed), other.digest());
        }
    }
}

/// Precomputed digests: exactly `sha256:` and 64 lowercase hex digits parse, and
/// print back byte for byte.
pub fn digest(data: &[u8]) {
    match Digest::parse_bytes(data) {
        Ok(d) => assert_eq!(d.to_string().as_bytes(), data),
        Err(_) => assert!(
            data.len() != 71
                || !data.starts_with(b"sha256:")
                || !data[7..]
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "valid digest rejected"
        ),
    }
}

/// Contracts the `decide` target chooses from with its first byte.
fn plans() -> &'static [Plan] {
    static PLANS: OnceLock<Vec<Plan>> = OnceLock::new();
    PLANS.get_or_init(build_plans)
}

const EXAMPLE: &str = include_str!("../../examples/contract.json");

fn build_plans() -> Vec<Plan> {
    let example = || ContractSpec::parse(EXAMPLE.as_bytes()).expect("example contract");
    let mut specs = vec![example()];
    let mut reject = example();
    reject.on_drift = OnDrift::Reject;
    reject.on_missing = rampart::contract::OnMissing::Null;
    specs.push(reject);
    let mut observe = example();
    observe.on_drift = OnDrift::Observe;
    observe.ramp.unkeyed = Side::Canary;
    specs.push(observe);
    let mut whole = example();
    if let Some(lock) = whole.lock.as_mut() {
        lock.fields = None;
    }
    whole.ramp.percent = 100.0;
    specs.push(whole);
    let mut paused = example();
    paused.paused = true;
    specs.push(paused);
    let mut none = example();
    none.ramp.percent = 0.0;
    none.ramp.unkeyed = Side::Canary;
    specs.push(none);
    specs.push(typed_contract());
    specs
        .iter()
        .map(|s| s.compile().expect("fuzz contract compiles"))
        .collect()
}

/// Every property format, locked to `{"b":true,"d":12.5,"h":sha256:…,"i":-7,"j":{"x":[1]},"s":"v"}`.
fn typed_contract() -> ContractSpec {
    let text = br#"{
      "contract": "typed",
      "ramp": { "percent": 50, "sticky": { "property": ["xds", "node", "id"] }, "unkeyed": "canary" },
      "inputs": {
        "b": { "property": ["p", "b"], "format": "bool" },
        "d": { "property": ["p", "d"], "format": "double" },
        "h": { "header": "x-config-digest", "format": "digest" },
        "i": { "property": ["p", "i"], "format": "int" },
        "j": { "property": ["p", "j"], "format": "json" },
        "s": { "header": "x-s" }
      },
      "on_missing": "null"
    }"#;
    let mut spec = ContractSpec::parse(text).expect("typed contract");
    let stamped = Digest::of_bytes(b"\"app-v7\"").to_string();
    let snapshot = Json::parse(
        format!(r#"{{"b":true,"d":12.5,"h":"{stamped}","i":-7,"j":{{"x":[1]}},"s":"v"}}"#)
            .as_bytes(),
        8,
    )
    .expect("typed snapshot");
    let mut lock = lock_from_snapshot(&spec, &snapshot).expect("typed lock");
    // A precomputed digest is compared as it is, not hashed again.
    if let Some(fields) = lock.fields.as_mut() {
        fields.insert("h".into(), stamped);
    }
    lock.digest = None;
    spec.lock = Some(lock);
    spec
}

/// What reading one source returns.
type Read = Result<Option<Vec<u8>>, HostError>;

/// A request made of byte chunks: the sticky key, then each input in plan order.
#[derive(Default)]
struct Chunks {
    values: Vec<(Source, Read)>,
}

impl Request for Chunks {
    type Bytes<'a> = Vec<u8>;

    fn read(&mut self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        self.values
            .iter()
            .find(|(s, _)| s == source)
            .map_or(Ok(None), |(_, v)| v.clone())
    }
}

/// The decision: byte 0 picks a contract; the rest, split at `0xff`, is the sticky key
/// and then each input's bytes (absent when the chunks run out; a lone `0xfe` is a
/// host error). Whatever arrives, the decision obeys the documented order, never
/// sends drift to the canary unless the contract only observes, and explains itself
/// with names and digests only.
pub fn decide(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let plans = plans();
    let plan = &plans[usize::from(*selector) % plans.len()];
    let mut request = chunk_request(plan, rest);
    let key = request.read(&plan.sticky).ok().flatten();
    let d = decide_request(plan, &mut request);
    check_decision(plan, &d, key.as_deref());
    // Deciding twice on the same request is the same decision.
    assert_eq!(decide_request(plan, &mut request), d);
}

/// The request a `decide` input describes: the sticky key, then each input in plan
/// order, separated by `0xff`.
fn chunk_request(plan: &Plan, bytes: &[u8]) -> Chunks {
    let mut chunks = bytes.split(|&b| b == 0xff);
    let mut request = Chunks::default();
    let sticky = chunks.next().map(<[u8]>::to_vec);
    let sources = std::iter::once(&plan.sticky).chain(plan.inputs.iter().map(|i| &i.source));
    let values = std::iter::once(sticky).chain(chunks.map(|c| Some(c.to_vec())));
    for (source, chunk) in sources.zip(values) {
        let value = match chunk {
            Some(c) if c == [0xfe] => Err(HostError),
            other => Ok(other),
        };
        if !request.values.iter().any(|(s, _)| s == source) {
            request.values.push((source.clone(), value));
        }
    }
    request
}

/// The cached decision: byte 0 picks a contract (bit 7 of byte 1 sets the drift
/// pause), the rest is requests separated by `0xfd`, each as in `decide`, decided twice
/// in turn through one digest cache. Every cached decision equals the uncached one:
/// a cache hit never lets one value pass for another.
pub fn cached(data: &[u8]) {
    let [selector, flags, rest @ ..] = data else {
        return;
    };
    let plans = plans();
    let plan = &plans[usize::from(*selector) % plans.len()];
    let drift_paused = flags & 0x80 != 0;
    let mut cache = DigestCache::new(plan.inputs.len());
    for bytes in rest.split(|&b| b == 0xfd).chain(rest.split(|&b| b == 0xfd)) {
        let mut request = chunk_request(plan, bytes);
        let with_cache = decide_cached(plan, drift_paused, &mut cache, &mut request);
        let without = decide_with_pause(plan, drift_paused, &mut request);
        assert_eq!(with_cache, without, "cached decision differs");
        if drift_paused && !plan.paused {
            assert_eq!(
                (without.route, without.reason),
                (Route::Stable, Reason::DriftPaused)
            );
        }
        for input in 0..plan.inputs.len() {
            assert!(cache.len(input) <= ENTRIES_PER_INPUT);
            assert!(cache.protected(input) <= PROTECTED_ENTRIES);
        }
    }
}

/// The digest cache alone: pairs of bytes are operations (lookup or insert of one of
/// 256 values, some longer than the cacheable limit, on one of three inputs). A lookup
/// answers only with the outcome inserted for exactly those bytes, and sizes stay
/// within the bounds.
pub fn cache(data: &[u8]) {
    let mut cache = DigestCache::new(3);
    for op in data.chunks_exact(2) {
        let (a, b) = (op[0], op[1]);
        let input = usize::from(a % 3);
        let value = if b == 0xff {
            vec![b'x'; MAX_VALUE_BYTES + 1]
        } else {
            vec![b & 0x1f; usize::from(b >> 5) + 1]
        };
        let outcome = Ok(Digest::of_bytes(&[&[a % 3], value.as_slice()].concat()));
        if a & 0x80 == 0 {
            if let Some(found) = cache.lookup(input, &value) {
                assert_eq!(
                    found, outcome,
                    "a lookup answered with another value's outcome"
                );
            }
        } else {
            cache.insert(input, &value, outcome);
            if value.len() > MAX_VALUE_BYTES {
                assert_eq!(
                    cache.lookup(input, &value),
                    None,
                    "an over-long value was cached"
                );
            }
        }
        assert!(cache.len(input) <= ENTRIES_PER_INPUT);
        assert!(cache.protected(input) <= PROTECTED_ENTRIES);
    }
}

fn check_decision(plan: &Plan, d: &rampart::Decision, key: Option<&[u8]>) {
    assert_ne!(d.reason, Reason::InvalidContract);
    if plan.paused {
        assert_eq!((d.route, d.reason), (Route::Stable, Reason::Paused));
        return;
    }
    let clean = matches!(d.reason, Reason::Match | Reason::Unkeyed);
    assert_eq!(clean, d.issues.is_empty(), "{d:?}");
    if !clean {
        let expected = match plan.on_drift {
            OnDrift::Stable => Some(Route::Stable),
            OnDrift::Reject => Some(Route::Reject),
            OnDrift::Observe => None,
        };
        if let Some(route) = expected {
            assert_eq!(d.route, route, "drift goes where on_drift says: {d:?}");
            assert!(d.bucket.is_none() && !d.observed);
        } else {
            assert!(d.observed, "{d:?}");
        }
    }
    match d.bucket {
        Some(b) => {
            let key = key.expect("a bucket needs a key");
            assert_eq!(b, plan.salt.bucket(key));
            let side = if b < plan.threshold {
                Route::Canary
            } else {
                Route::Stable
            };
            assert_eq!(d.route, side, "{d:?}");
        }
        None if d.route == Route::Canary => {
            // Only an unkeyed request may reach the canary without a bucket, and only
            // when the contract says so and the ramp is above 0%.
            assert_eq!(plan.unkeyed, Side::Canary, "{d:?}");
            assert!(plan.threshold > 0, "{d:?}");
        }
        None => {}
    }
    if d.route == Route::Reject {
        assert_eq!(plan.on_drift, OnDrift::Reject);
    }
    let summary = d.summary(plan);
    assert!(
        summary.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
        "summary is not a valid header value: {summary:?}"
    );
    check_report(plan, &d.drift_report(plan));
}

/// The drift report is made of input names, fixed words and digests — never anything
/// a request carried (raw values may be personal data).
fn check_report(plan: &Plan, report: &str) {
    for item in report.split(' ').filter(|s| !s.is_empty()) {
        let known = |name: &str| name == "snapshot" || plan.inputs.iter().any(|i| i.name == name);
        let ok = if let Some(rest) = item.strip_prefix("sha256:") {
            let hex = rest.trim_end_matches([',', ')']);
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        } else if item == "locked" {
            true
        } else if let Some((name, what)) = item.split_once('=') {
            known(name)
                && (what == "missing"
                    || what == "drift(observed"
                    || (what.starts_with("invalid(")
                        && what.ends_with(')')
                        && what[8..what.len() - 1]
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')))
        } else {
            false
        };
        assert!(ok, "unexpected item {item:?} in drift report {report:?}");
    }
}
