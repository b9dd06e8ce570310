//! The decision: which side a request goes to, and why.
//!
//! Order (first that applies wins): paused → stable; any input drifted, undecodable or
//! missing → the drift action; no sticky key → the `unkeyed` side; else the bucket.
//! An invalid contract never reaches this code: the filter's safe mode routes stable.

use std::fmt::Write as _;

use crate::cache::DigestCache;
use crate::contract::{Compare, Input, OnDrift, OnMissing, Plan, Side};
use crate::decode::{decode, DecodeError, Value};
use crate::digest::{Digest, Hasher};
use crate::host::{HostError, Request};
use crate::jcs::{self, Sink};

/// The filter-state key under which the filter records each decision's summary.
/// Envoy prefixes it with `wasm.`: access logs and the debug header read it as
/// [`DECISION_FORMAT`].
pub const FILTER_STATE_KEY: &str = "rampart.decision";

/// Envoy's format string for the recorded decision, for access logs and for the
/// debug header Envoy adds with `response_headers_to_add`.
pub const DECISION_FORMAT: &str = "%FILTER_STATE(wasm.rampart.decision:PLAIN)%";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Route header = canary value.
    Canary,
    /// Route header = stable value.
    Stable,
    /// Local reply with the contract's reject status.
    Reject,
}

impl Route {
    /// `canary`, `stable` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Canary => "canary",
            Route::Stable => "stable",
            Route::Reject => "reject",
        }
    }
}

impl From<Side> for Route {
    fn from(side: Side) -> Route {
        match side {
            Side::Canary => Route::Canary,
            Side::Stable => Route::Stable,
        }
    }
}

/// Why a request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Config matched the lock; the bucket decided.
    Match,
    /// Some input differed from the lock or could not be decoded.
    Drift,
    /// No input differed, but some were missing (`on_missing: drift`).
    Missing,
    /// The contract is paused.
    Paused,
    /// The data-plane drift pause tripped: too many requests drifted over its window.
    DriftPaused,
    /// Config matched, but the request had no sticky key.
    Unkeyed,
    /// The contract was invalid: safe mode (the filter's, never returned by [`decide`]).
    InvalidContract,
}

impl Reason {
    /// Label used in metrics, logs, filter state and the debug header.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Match => "match",
            Reason::Drift => "drift",
            Reason::Missing => "missing",
            Reason::Paused => "paused",
            Reason::DriftPaused => "drift_paused",
            Reason::Unkeyed => "unkeyed",
            Reason::InvalidContract => "invalid_contract",
        }
    }
}

/// What was wrong with one input (or with the whole snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// The value decoded, but its digest is not the locked one.
    Drift {
        /// Digest of what the request carried (a digest, never the raw value).
        observed: Digest,
    },
    /// Absent from the request.
    Missing,
    /// Present but undecodable.
    Invalid(DecodeError),
}

/// What a [`FieldIssue`] concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An input: its index into [`Plan::inputs`].
    Input(usize),
    /// The whole snapshot (`lock.snapshot`), which did not match as a whole.
    Snapshot,
    /// The sticky key (`ramp.sticky`), longer than `limits.max_input_bytes`.
    StickyKey,
}

impl Subject {
    /// The name reports use: the input's, `*` for the snapshot, [`STICKY_KEY_NAME`]
    /// for the sticky key.
    pub fn name(self, plan: &Plan) -> &str {
        match self {
            Subject::Input(ix) => plan.inputs.get(ix).map_or("*", |i| i.name.as_str()),
            Subject::Snapshot => "*",
            Subject::StickyKey => STICKY_KEY_NAME,
        }
    }
}

/// How reports name the sticky key: the contract field, which no input name (only
/// `a-z`, `0-9`, `_`) can spell.
pub const STICKY_KEY_NAME: &str = "ramp.sticky";

/// An issue and what it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldIssue {
    /// The input, the snapshot or the sticky key.
    pub subject: Subject,
    /// What was wrong.
    pub issue: Issue,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Where it goes.
    pub route: Route,
    /// Why.
    pub reason: Reason,
    /// The sticky bucket, when a key was present and the bucket was consulted.
    pub bucket: Option<u16>,
    /// Drift routed normally because `on_drift` is `observe`.
    pub observed: bool,
    /// Inputs that did not match; empty (and unallocated) on the matching path.
    pub issues: Vec<FieldIssue>,
}

impl Decision {
    /// Names of inputs with an issue, in canonical order (`*` for the whole snapshot,
    /// [`STICKY_KEY_NAME`] last for an oversized sticky key).
    pub fn field_names<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = &'a str> + 'a {
        self.issues.iter().map(move |i| i.subject.name(plan))
    }

    /// One-line summary, for filter state and the debug header:
    /// `route=stable reason=drift fields=flags,tier bucket=421`.
    pub fn summary(&self, plan: &Plan) -> String {
        let mut out = String::with_capacity(64);
        self.write_summary(plan, &mut out);
        out
    }

    /// Appends [`Decision::summary`] to `out` (so a caller can size the buffer once).
    pub fn write_summary(&self, plan: &Plan, out: &mut String) {
        // Per request in the filter: plain appends, no formatting machinery.
        out.push_str("route=");
        out.push_str(self.route.as_str());
        out.push_str(" reason=");
        out.push_str(self.reason.as_str());
        if !self.issues.is_empty() {
            out.push_str(" fields=");
            for (i, name) in self.field_names(plan).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
            }
        }
        if let Some(b) = self.bucket {
            out.push_str(" bucket=");
            let mut digits = [0u8; 20];
            for &d in crate::jcs::decimal_digits(u64::from(b), &mut digits) {
                out.push(char::from(d));
            }
        }
        if self.observed {
            out.push_str(" observed=true");
        }
    }

    /// The fields that did not match, with digests and never raw values:
    /// `flags=drift(observed sha256:…, locked sha256:…) tier=missing`.
    pub fn drift_report(&self, plan: &Plan) -> String {
        let mut out = String::new();
        for (n, fi) in self.issues.iter().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            let input = match fi.subject {
                Subject::Input(ix) => plan.inputs.get(ix),
                Subject::Snapshot | Subject::StickyKey => None,
            };
            let name = match fi.subject {
                Subject::Snapshot => "snapshot",
                subject => subject.name(plan),
            };
            let locked = match (input, fi.subject, plan.compare) {
                (Some(i), _, _) => i.locked,
                (None, Subject::Snapshot, Compare::Snapshot(d)) => Some(d),
                _ => None,
            };
            let _ = match fi.issue {
                Issue::Drift { observed } => match locked {
                    Some(l) => write!(out, "{name}=drift(observed {observed}, locked {l})"),
                    None => write!(out, "{name}=drift(observed {observed})"),
                },
                Issue::Missing => write!(out, "{name}=missing"),
                Issue::Invalid(e) => write!(out, "{name}=invalid({})", e.as_str()),
            };
        }
        out
    }
}

/// Decides for one request.
pub fn decide<R: Request>(plan: &Plan, request: &mut R) -> Decision {
    decide_with_pause(plan, false, request)
}

/// Decides for one request while the data-plane drift pause (`drift_paused`, kept by
/// the caller, see [`crate::drift_pause`]) may hold: after `paused`, before the inputs.
pub fn decide_with_pause<R: Request>(plan: &Plan, drift_paused: bool, request: &mut R) -> Decision {
    decide_inner(plan, drift_paused, None, request)
}

/// [`decide_with_pause`], reusing the field digests of recently seen input values from
/// `cache` (one per configuration and VM, see [`crate::cache`]) instead of parsing and
/// hashing them again. Same decisions; only `lock.fields` comparisons use the cache.
pub fn decide_cached<R: Request>(
    plan: &Plan,
    drift_paused: bool,
    cache: &mut DigestCache,
    request: &mut R,
) -> Decision {
    decide_inner(plan, drift_paused, Some(cache), request)
}

fn decide_inner<R: Request>(
    plan: &Plan,
    drift_paused: bool,
    cache: Option<&mut DigestCache>,
    request: &mut R,
) -> Decision {
    let paused = if plan.paused {
        Some(Reason::Paused)
    } else if drift_paused {
        Some(Reason::DriftPaused)
    } else {
        None
    };
    if let Some(reason) = paused {
        return Decision {
            route: Route::Stable,
            reason,
            bucket: None,
            observed: false,
            issues: Vec::new(),
        };
    }
    let mut issues = match plan.compare {
        Compare::Fields => compare_fields(plan, request, cache),
        Compare::Snapshot(locked) => compare_snapshot(plan, locked, request),
    };
    // The sticky key is read only when it can still matter: a request already sent to
    // `on_drift` needs no bucket (and makes no host call for one).
    let bucket = if issues.is_empty() || plan.on_drift == OnDrift::Observe {
        match sticky_bucket(plan, request) {
            StickyKey::Bucket(bucket) => Some(bucket),
            StickyKey::Absent => None,
            StickyKey::TooLarge => {
                // As for an input: too long to read is drift, so an oversized key
                // can neither escape `on_drift: reject` nor take the `unkeyed` side.
                issues.push(FieldIssue {
                    subject: Subject::StickyKey,
                    issue: Issue::Invalid(DecodeError::TooLarge),
                });
                None
            }
        }
    } else {
        None
    };
    let reason = if issues.iter().any(|i| !matches!(i.issue, Issue::Missing)) {
        Reason::Drift
    } else if !issues.is_empty() {
        Reason::Missing
    } else {
        Reason::Match
    };
    if reason != Reason::Match && plan.on_drift != OnDrift::Observe {
        let route = match plan.on_drift {
            OnDrift::Reject => Route::Reject,
            OnDrift::Stable | OnDrift::Observe => Route::Stable,
        };
        return Decision {
            route,
            reason,
            bucket: None,
            observed: false,
            issues,
        };
    }
    let observed = reason != Reason::Match;
    match bucket {
        Some(bucket) => {
            let side = if crate::bucket::is_canary(bucket, plan.threshold) {
                Route::Canary
            } else {
                Route::Stable
            };
            Decision {
                route: side,
                reason,
                bucket: Some(bucket),
                observed,
                issues,
            }
        }
        None => Decision {
            // At 0% nobody is on the canary, keyed or not.
            route: if plan.threshold == 0 {
                Route::Stable
            } else {
                plan.unkeyed.into()
            },
            reason: if observed { reason } else { Reason::Unkeyed },
            bucket: None,
            observed,
            issues,
        },
    }
}

/// What the request's sticky key gave.
enum StickyKey {
    /// The key's bucket.
    Bucket(u16),
    /// No key: absent, empty or unreadable (the `unkeyed` side).
    Absent,
    /// Longer than `limits.max_input_bytes`: drift, like an oversized input.
    TooLarge,
}

fn sticky_bucket<R: Request>(plan: &Plan, request: &mut R) -> StickyKey {
    let Ok(Some(key)) = request.read(&plan.sticky) else {
        return StickyKey::Absent;
    };
    let key = key.as_ref();
    if key.is_empty() {
        StickyKey::Absent
    } else if key.len() > plan.limits.max_input_bytes {
        StickyKey::TooLarge
    } else {
        StickyKey::Bucket(plan.salt.bucket(key))
    }
}

/// Decodes what was read for one input; `Ok(None)` means missing.
fn read_value<'b>(
    plan: &Plan,
    input: &Input,
    bytes: &'b Result<Option<impl AsRef<[u8]>>, HostError>,
) -> Result<Option<Value<'b>>, DecodeError> {
    match bytes {
        Err(HostError) => Err(DecodeError::HostError),
        Ok(None) => match plan.on_missing {
            OnMissing::Drift => Ok(None),
            OnMissing::Null => Ok(Some(Value::Null)),
        },
        Ok(Some(b)) => decode(
            input.format,
            b.as_ref(),
            plan.limits.max_input_bytes,
            plan.limits.max_json_depth,
        )
        .map(Some),
    }
}

/// The field digest of what was read for one input; `Ok(None)` means missing.
fn observe_field<B: AsRef<[u8]>>(
    plan: &Plan,
    ix: usize,
    input: &Input,
    bytes: &Result<Option<B>, HostError>,
    cache: Option<&mut DigestCache>,
) -> Result<Option<Digest>, DecodeError> {
    let Ok(Some(b)) = bytes else {
        return read_value(plan, input, bytes).map(|v| v.map(|v| v.digest()));
    };
    let b = b.as_ref();
    let limits = &plan.limits;
    let decode_digest = || {
        decode(
            input.format,
            b,
            limits.max_input_bytes,
            limits.max_json_depth,
        )
        .map(|v| v.digest())
    };
    match cache {
        // Over-limit values are refused before any work; not worth a slot.
        Some(cache) if b.len() <= limits.max_input_bytes => {
            if let Some(outcome) = cache.lookup(ix, b) {
                return outcome.map(Some);
            }
            let outcome = decode_digest();
            cache.insert(ix, b, outcome);
            outcome.map(Some)
        }
        _ => decode_digest().map(Some),
    }
}

fn compare_fields<R: Request>(
    plan: &Plan,
    request: &mut R,
    mut cache: Option<&mut DigestCache>,
) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    for (ix, input) in plan.inputs.iter().enumerate() {
        let bytes = request.read(&input.source);
        let issue = match observe_field(plan, ix, input, &bytes, cache.as_deref_mut()) {
            Ok(Some(observed)) => {
                if Some(observed) == input.locked {
                    continue;
                }
                Issue::Drift { observed }
            }
            Ok(None) => Issue::Missing,
            Err(e) => Issue::Invalid(e),
        };
        issues.push(FieldIssue {
            subject: Subject::Input(ix),
            issue,
        });
    }
    issues
}

fn compare_snapshot<R: Request>(plan: &Plan, locked: Digest, request: &mut R) -> Vec<FieldIssue> {
    let mut issues = Vec::new();
    let mut h = Hasher::new();
    h.put(b"{");
    for (ix, input) in plan.inputs.iter().enumerate() {
        let bytes = request.read(&input.source);
        match read_value(plan, input, &bytes) {
            Ok(Some(value)) => {
                if ix > 0 {
                    h.put(b",");
                }
                jcs::write_string(&input.name, &mut h);
                h.put(b":");
                value.write_canonical(&mut h);
            }
            Ok(None) => issues.push(FieldIssue {
                subject: Subject::Input(ix),
                issue: Issue::Missing,
            }),
            Err(e) => issues.push(FieldIssue {
                subject: Subject::Input(ix),
                issue: Issue::Invalid(e),
            }),
        }
    }
    h.put(b"}");
    if issues.is_empty() {
        let observed = h.finish();
        if observed != locked {
            issues.push(FieldIssue {
                subject: Subject::Snapshot,
                issue: Issue::Drift { observed },
            });
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Format, Source};
    use crate::decode::decode;
    use crate::host::StaticRequest;
    use serde_json::Value as J;

    fn root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn example_plan() -> Plan {
        Plan::from_json(&std::fs::read(root().join("examples/contract.json")).unwrap()).unwrap()
    }

    fn request_for(case: &J, node: &J) -> StaticRequest {
        let mut req = StaticRequest::default();
        for (k, v) in case["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        if let Some(ns) = case["metadata"].as_object() {
            for (namespace, keys) in ns {
                for (key, value) in keys.as_object().unwrap() {
                    req = req.property(
                        &["metadata", "filter_metadata", namespace, key],
                        value.as_str().unwrap(),
                    );
                }
            }
        }
        let node = case.get("node_metadata").unwrap_or(node);
        for (key, value) in node.as_object().unwrap() {
            req = req.property(&["xds", "node", "metadata", key], value.as_str().unwrap());
        }
        req
    }

    #[test]
    fn the_decision_format_reads_the_filter_state_key() {
        assert_eq!(
            DECISION_FORMAT,
            format!("%FILTER_STATE(wasm.{FILTER_STATE_KEY}:PLAIN)%")
        );
    }

    /// The shared vectors (also run against Envoy end to end) give the expected decisions.
    #[test]
    fn shared_decision_vectors() {
        let doc: J = serde_json::from_slice(
            &std::fs::read(root().join("tests/vectors/decisions.json")).unwrap(),
        )
        .unwrap();
        let plan = example_plan();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 15);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let d = decide(&plan, &mut request_for(case, &doc["node_metadata"]));
            let expect = &case["expect"];
            assert_eq!(d.route.as_str(), expect["route"], "{name}");
            assert_eq!(d.reason.as_str(), expect["reason"], "{name}");
            let fields: Vec<&str> = d.field_names(&plan).collect();
            let want: Vec<&str> = expect["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(fields, want, "{name}");
            if let Some(b) = expect.get("bucket") {
                assert_eq!(d.bucket.map(u64::from), b.as_u64(), "{name}");
            }
        }
    }

    fn plan_with(edit: impl FnOnce(&mut J)) -> Plan {
        let mut contract: J =
            serde_json::from_slice(&std::fs::read(root().join("examples/contract.json")).unwrap())
                .unwrap();
        edit(&mut contract);
        Plan::from_json(contract.to_string().as_bytes()).unwrap()
    }

    fn matching(user: &str) -> StaticRequest {
        StaticRequest::default()
            .header("x-user-id", user)
            .header(
                "x-user-config",
                r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#,
            )
            .property(&["metadata", "filter_metadata", "tenant", "tier"], "gold")
            .property(&["xds", "node", "metadata", "CONFIG_REV"], "r42")
    }

    #[test]
    fn paused_sends_everyone_to_stable_before_reading_inputs() {
        let plan = plan_with(|c| c["paused"] = J::Bool(true));
        let d = decide(
            &plan,
            &mut StaticRequest::default().header("x-user-id", "alice"),
        );
        assert_eq!((d.route, d.reason), (Route::Stable, Reason::Paused));
        assert!(d.issues.is_empty());
    }

    /// The cache changes no decision: the shared vectors and random inputs, decided
    /// twice through one cache (miss, then hit), agree with the uncached decision.
    #[test]
    fn cached_decisions_equal_uncached_ones() {
        let doc: J = serde_json::from_slice(
            &std::fs::read(root().join("tests/vectors/decisions.json")).unwrap(),
        )
        .unwrap();
        let plan = example_plan();
        let mut cache = DigestCache::new(plan.inputs.len());
        for _ in 0..2 {
            for case in doc["cases"].as_array().unwrap() {
                let plain = decide(&plan, &mut request_for(case, &doc["node_metadata"]));
                let cached = decide_cached(
                    &plan,
                    false,
                    &mut cache,
                    &mut request_for(case, &doc["node_metadata"]),
                );
                assert_eq!(plain, cached, "{}", case["name"]);
            }
        }
        assert!(!cache.is_empty());
        let small = plan_with(|c| {
            c["limits"] = serde_json::json!({"max_input_bytes": 64, "max_json_depth": 4})
        });
        let mut cache = DigestCache::new(small.inputs.len());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = br#"{}[]":,0123456789.eE+-tfnrul\ ab"#;
        for _ in 0..5_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Few distinct values, so hits happen.
            let len = (state % 9) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i * 5)) as usize) % 8])
                .collect();
            let req = || {
                matching("u")
                    .header("x-user-config", bytes.clone())
                    .property(
                        &["metadata", "filter_metadata", "tenant", "tier"],
                        bytes.clone(),
                    )
            };
            assert_eq!(
                decide(&small, &mut req()),
                decide_cached(&small, false, &mut cache, &mut req())
            );
        }
    }

    /// A value over `limits.max_input_bytes` is refused before any work and takes no
    /// cache slot (it could evict a value worth keeping); one within the limit does.
    #[test]
    fn over_limit_values_take_no_cache_slot() {
        let small = plan_with(|c| {
            c["limits"] = serde_json::json!({"max_input_bytes": 64, "max_json_depth": 4})
        });
        let header = small
            .inputs
            .iter()
            .position(|i| matches!(&i.source, Source::Header { name } if name == "x-user-config"))
            .unwrap();
        let mut cache = DigestCache::new(small.inputs.len());
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(100));
        assert!(big.len() > 64 && big.len() <= crate::cache::MAX_VALUE_BYTES);
        for _ in 0..2 {
            let d = decide_cached(
                &small,
                false,
                &mut cache,
                &mut matching("u").header("x-user-config", big.clone()),
            );
            assert_eq!(
                d,
                decide(
                    &small,
                    &mut matching("u").header("x-user-config", big.clone())
                )
            );
            assert_eq!(cache.len(header), 0);
        }
        decide_cached(&small, false, &mut cache, &mut matching("u"));
        assert_eq!(cache.len(header), 1);
    }

    #[test]
    fn drift_pause_sends_everyone_to_stable_after_a_static_pause() {
        let d = decide_with_pause(&example_plan(), true, &mut matching("alice"));
        assert_eq!((d.route, d.reason), (Route::Stable, Reason::DriftPaused));
        assert_eq!(
            d.summary(&example_plan()),
            "route=stable reason=drift_paused"
        );
        let both = plan_with(|c| c["paused"] = J::Bool(true));
        assert_eq!(
            decide_with_pause(&both, true, &mut matching("alice")).reason,
            Reason::Paused
        );
        let d = decide_with_pause(&example_plan(), false, &mut matching("alice"));
        assert_eq!((d.route, d.reason), (Route::Canary, Reason::Match));
    }

    #[test]
    fn reject_and_observe_drift_actions() {
        let drifted = || matching("alice").header("x-user-config", "{}");
        let reject = plan_with(|c| c["on_drift"] = "reject".into());
        assert_eq!(decide(&reject, &mut drifted()).route, Route::Reject);
        assert_eq!(decide(&reject, &mut matching("alice")).route, Route::Canary);

        let observe = plan_with(|c| c["on_drift"] = "observe".into());
        let d = decide(&observe, &mut drifted());
        assert_eq!(
            (d.route, d.reason, d.observed),
            (Route::Canary, Reason::Drift, true)
        );
        assert_eq!(d.bucket, Some(2815));
    }

    #[test]
    fn missing_input_counts_as_null_when_asked() {
        // Lock tier as null: a request without tier then matches.
        let plan = plan_with(|c| {
            c["on_missing"] = "null".into();
            c["lock"]["fields"]["tier"] = crate::snapshot::digest_of(&crate::jcs::Json::Null)
                .to_string()
                .into();
            c["lock"].as_object_mut().unwrap().remove("digest");
        });
        let mut req = matching("alice");
        req.properties.remove(&vec![
            "metadata".into(),
            "filter_metadata".into(),
            "tenant".into(),
            "tier".into(),
        ]);
        let d = decide(&plan, &mut req);
        assert_eq!((d.route, d.reason), (Route::Canary, Reason::Match));
        assert_eq!(decide(&plan, &mut matching("alice")).reason, Reason::Drift);
    }

    #[test]
    fn whole_snapshot_lock_matches_and_cannot_name_fields() {
        let plan = plan_with(|c| {
            c["lock"].as_object_mut().unwrap().remove("fields");
        });
        assert_eq!(plan.compare, Compare::Snapshot(plan.lock_digest.unwrap()));
        assert_eq!(decide(&plan, &mut matching("alice")).reason, Reason::Match);
        let d = decide(&plan, &mut matching("alice").header("x-user-config", "{}"));
        assert_eq!(d.reason, Reason::Drift);
        assert_eq!(d.field_names(&plan).collect::<Vec<_>>(), ["*"]);
        let report = d.drift_report(&plan);
        assert!(
            report.starts_with("snapshot=drift(observed sha256:"),
            "{report}"
        );
        let locked = plan.lock_digest.unwrap();
        assert!(report.ends_with(&format!(", locked {locked})")), "{report}");
    }

    #[test]
    fn precomputed_digest_input_is_compared_as_is() {
        let locked = crate::digest::Digest::of_bytes(b"\"v7\"").to_string();
        let plan = plan_with(|c| {
            c["inputs"]["app"] =
                serde_json::json!({"header": "x-config-digest", "format": "digest"});
            c["lock"]["fields"]["app"] = locked.clone().into();
            c["lock"].as_object_mut().unwrap().remove("digest");
        });
        assert_eq!(
            decide(
                &plan,
                &mut matching("alice").header("x-config-digest", locked.as_str())
            )
            .reason,
            Reason::Match
        );
        let other = crate::digest::Digest::of_bytes(b"\"v8\"").to_string();
        let d = decide(
            &plan,
            &mut matching("alice").header("x-config-digest", other.as_str()),
        );
        assert_eq!(
            (d.reason, d.field_names(&plan).collect::<Vec<_>>()),
            (Reason::Drift, vec!["app"])
        );
        let d = decide(
            &plan,
            &mut matching("alice").header("x-config-digest", "sha256:nope"),
        );
        assert_eq!(d.issues[0].issue, Issue::Invalid(DecodeError::BadDigest));
    }

    #[test]
    fn oversized_and_deep_inputs_are_drift_not_errors() {
        let plan = plan_with(|c| {
            c["limits"] = serde_json::json!({"max_input_bytes": 64, "max_json_depth": 4})
        });
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        let d = decide(&plan, &mut matching("alice").header("x-user-config", big));
        assert_eq!(d.issues[0].issue, Issue::Invalid(DecodeError::TooLarge));
        let deep = decide(
            &plan,
            &mut matching("alice").header("x-user-config", "[[[[[1]]]]]"),
        );
        assert_eq!(deep.issues[0].issue, Issue::Invalid(DecodeError::TooDeep));
        let bad_utf8 = decide(
            &plan,
            &mut matching("alice").property(
                &["metadata", "filter_metadata", "tenant", "tier"],
                vec![0xff, 0xfe],
            ),
        );
        assert_eq!(
            bad_utf8.issues[0].issue,
            Issue::Invalid(DecodeError::InvalidUtf8)
        );
        // An oversized sticky key is drift too, named in the report; a key at the
        // limit is a key.
        let long_key = "u".repeat(65);
        let d = decide(&plan, &mut matching(&long_key));
        assert_eq!(
            (d.route, d.reason, d.bucket),
            (Route::Stable, Reason::Drift, None)
        );
        assert_eq!(
            d.issues,
            [FieldIssue {
                subject: Subject::StickyKey,
                issue: Issue::Invalid(DecodeError::TooLarge)
            }]
        );
        assert_eq!(d.drift_report(&plan), "ramp.sticky=invalid(too_large)");
        assert_eq!(
            d.summary(&plan),
            "route=stable reason=drift fields=ramp.sticky"
        );
        let at_limit = decide(&plan, &mut matching(&"u".repeat(64)));
        assert_eq!(at_limit.reason, Reason::Match);
        assert!(at_limit.bucket.is_some());
    }

    /// Arbitrary bytes in every format and through the whole decision: an answer,
    /// never a panic (a panic would trap the filter's VM).
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // JSON-ish bytes make deeper paths likely; the rest are anything.
        let alphabet = br#"{}[]":,0123456789.eE+-tfnrul\ ab"#;
        let plan = example_plan();
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            for format in Format::ALL {
                if let Ok(value) = decode(format, &bytes, 64, 8) {
                    let _ = value.digest();
                }
            }
            let mut req = matching("u")
                .header("x-user-config", bytes.clone())
                .header("x-user-id", bytes.clone())
                .property(
                    &["metadata", "filter_metadata", "tenant", "tier"],
                    bytes.clone(),
                );
            let d = decide(&plan, &mut req);
            assert!(d.route != Route::Canary || d.reason == Reason::Match);
            let _ = (d.summary(&plan), d.drift_report(&plan));
        }
    }

    #[test]
    fn unkeyed_side_is_the_contracts_choice_except_at_zero_percent() {
        let keyless = || matching("x").header("x-user-id", "");
        let plan = plan_with(|c| c["ramp"]["unkeyed"] = "canary".into());
        let d = decide(&plan, &mut keyless());
        assert_eq!(
            (d.route, d.reason, d.bucket),
            (Route::Canary, Reason::Unkeyed, None)
        );
        let zero = plan_with(|c| {
            c["ramp"]["unkeyed"] = "canary".into();
            c["ramp"]["percent"] = 0.into();
        });
        assert_eq!(decide(&zero, &mut keyless()).route, Route::Stable);
        assert_eq!(decide(&example_plan(), &mut keyless()).route, Route::Stable);
    }

    #[test]
    fn percent_bounds_put_everyone_on_one_side() {
        let none = plan_with(|c| c["ramp"]["percent"] = 0.into());
        let all = plan_with(|c| c["ramp"]["percent"] = 100.into());
        for i in 0..500 {
            let user = format!("user-{i}");
            assert_eq!(decide(&none, &mut matching(&user)).route, Route::Stable);
            assert_eq!(decide(&all, &mut matching(&user)).route, Route::Canary);
        }
    }

    #[test]
    fn host_errors_are_drift() {
        struct Failing;
        impl Request for Failing {
            type Bytes<'a> = Vec<u8>;
            fn read(&mut self, _: &Source) -> Result<Option<Vec<u8>>, HostError> {
                Err(HostError)
            }
        }
        let d = decide(&example_plan(), &mut Failing);
        assert_eq!((d.route, d.reason), (Route::Stable, Reason::Drift));
        assert_eq!(d.issues.len(), 3);
    }

    #[test]
    fn summary_names_route_reason_fields_and_bucket() {
        let plan = example_plan();
        let d = decide(&plan, &mut matching("alice"));
        assert_eq!(d.summary(&plan), "route=canary reason=match bucket=2815");
        let d = decide(&plan, &mut matching("alice").header("x-user-config", "[]"));
        assert_eq!(d.summary(&plan), "route=stable reason=drift fields=flags");
        let report = d.drift_report(&plan);
        assert!(
            report.starts_with("flags=drift(observed sha256:"),
            "{report}"
        );
        assert!(!report.contains("[]"), "raw values never appear: {report}");
        // Each field's own lock is named beside what was observed.
        let flags = plan.inputs.iter().find(|i| i.name == "flags").unwrap();
        let locked = flags.locked.unwrap();
        assert!(report.ends_with(&format!(", locked {locked})")), "{report}");
    }

    #[test]
    fn summary_and_report_list_every_drifted_field_in_order() {
        let plan = example_plan();
        let mut request = matching("alice")
            .header("x-user-config", "[]")
            .property(&["metadata", "filter_metadata", "tenant", "tier"], "silver");
        let d = decide(&plan, &mut request);
        assert_eq!(
            d.summary(&plan),
            "route=stable reason=drift fields=flags,tier"
        );
        let report = d.drift_report(&plan);
        let parts: Vec<&str> = report.split(' ').collect();
        assert_eq!(parts.len(), 8, "{report}");
        assert!(parts[0].starts_with("flags=drift(observed"), "{report}");
        assert!(parts[4].starts_with("tier=drift(observed"), "{report}");
    }
}
