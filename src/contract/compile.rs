//! Validation and compilation: a [`ContractSpec`] becomes the [`Plan`] the filter keeps
//! for every request.

use crate::bucket::{threshold_for_percent, BucketSalt};
use crate::digest::Digest;
use crate::jcs::Json;

use super::error::{number_text, quoted, ContractError};
use super::spec::{
    ContractSpec, DriftPausePolicy, DriftPauseSpec, Format, LimitsSpec, OnDrift, OnMissing,
    RouteSpec, Side,
};

/// Most inputs a contract may declare; decisions track fields in a 32-bit set.
pub const MAX_INPUTS: usize = 32;

impl ContractSpec {
    /// Validates the contract and compiles it into the form used per request.
    pub fn compile(&self) -> Result<Plan, ContractError> {
        Plan::compile(self)
    }
}

/// Where the filter reads a value, resolved once.
///
/// How a host asks for it is the host's business: the filter reads header sources from
/// the request's header map and properties by their `proxy_get_property` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header. Every value of a repeated header counts, joined by `,` in
    /// map order (as Envoy's `request.headers.<name>` attribute answers): a client
    /// repeating a config header must not get one copy checked while the upstream
    /// reads another.
    Header {
        /// Lowercase header name.
        name: String,
    },
    /// An Envoy property.
    Property {
        /// Path segments, none empty and none holding a NUL.
        path: Vec<String>,
    },
}

/// One compiled input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Input name.
    pub name: String,
    /// Where it is read.
    pub source: Source,
    /// How its bytes decode.
    pub format: Format,
    /// Locked field digest, when the lock has fields.
    pub locked: Option<Digest>,
}

/// How observed inputs are compared with the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Field by field: drifted inputs are named.
    Fields,
    /// Whole snapshot against `lock.digest`: a mismatch cannot name the field.
    Snapshot(Digest),
}

/// A validated contract, ready for every request: parsed once, shared read-only.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Contract name.
    pub name: String,
    /// Route header name.
    pub route_header: String,
    /// Route header value for canary.
    pub canary_value: String,
    /// Route header value for stable.
    pub stable_value: String,
    /// Requested percent, kept for display.
    pub percent: f64,
    /// Canary iff bucket < threshold (basis points, 0..=10000).
    pub threshold: u16,
    /// Where the sticky key comes from.
    pub sticky: Source,
    /// Side for requests without a key.
    pub unkeyed: Side,
    /// Inputs in canonical (name) order.
    pub inputs: Vec<Input>,
    /// `lock.digest`, if given.
    pub lock_digest: Option<Digest>,
    /// Field or whole-snapshot comparison.
    pub compare: Compare,
    /// Drift action.
    pub on_drift: OnDrift,
    /// Missing-input rule.
    pub on_missing: OnMissing,
    /// Reject status.
    pub reject_status: u16,
    /// Everyone to stable.
    pub paused: bool,
    /// Parse bounds.
    pub limits: LimitsSpec,
    /// Debug response header, if any (Envoy adds it from filter state).
    pub response_header: Option<String>,
    /// Whether each decision is written to filter state: `explain.filter_state`, or a
    /// debug header that reads it.
    pub record_decision: bool,
    /// Drift log interval in seconds.
    pub log_interval_seconds: u32,
    /// The bucket hash, pre-seeded with the contract name.
    pub salt: BucketSalt,
    /// What identifies the lock: `lock.digest`, or when only `lock.fields` is given, the
    /// digest of the canonical `lock.fields` object. A drift pause holds until it changes.
    pub lock_id: Digest,
    /// The data-plane drift pause, when the contract asks for one.
    pub drift_pause: Option<DriftPausePolicy>,
}

impl Plan {
    fn compile(spec: &ContractSpec) -> Result<Plan, ContractError> {
        check_name("contract", &spec.contract, 63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
        })?;
        let route = &spec.route;
        let route_header = header_name("route.header", &route.header)?;
        check_header_value("route.canary", &route.canary)?;
        check_header_value("route.stable", &route.stable)?;
        if route.canary == route.stable {
            return Err(ContractError::new(
                "route.stable",
                "must differ from route.canary",
            ));
        }

        let percent = spec.ramp.percent;
        if !(0.0..=100.0).contains(&percent) {
            return Err(ContractError::new(
                "ramp.percent",
                format!("must be between 0 and 100, got {}", number_text(percent)),
            ));
        }
        let sticky = compile_source(
            "ramp.sticky",
            spec.ramp.sticky.header.as_deref(),
            spec.ramp.sticky.property.as_deref(),
        )?;

        if spec.inputs.is_empty() {
            return Err(ContractError::new(
                "inputs",
                "declare at least one input: the config the canary was tested with",
            ));
        }
        if spec.inputs.len() > MAX_INPUTS {
            return Err(ContractError::new(
                "inputs",
                format!("at most {MAX_INPUTS} inputs, got {}", spec.inputs.len()),
            ));
        }

        let lock = spec.lock.as_ref().ok_or_else(|| {
            ContractError::new(
                "lock",
                "missing; run `rampart lock --contract C --snapshot S` to fill it",
            )
        })?;
        let lock_digest = match &lock.digest {
            Some(text) => Some(parse_digest("lock.digest", text)?),
            None => None,
        };
        let locked_fields = match &lock.fields {
            Some(fields) => {
                for name in fields.keys() {
                    if !spec.inputs.contains_key(name) {
                        return Err(ContractError::new(
                            format!("lock.fields.{name}"),
                            "names no input; every lock field must be a key of `inputs`",
                        ));
                    }
                }
                Some(fields)
            }
            None => None,
        };
        let compare = match (locked_fields, lock_digest) {
            (Some(_), _) => Compare::Fields,
            (None, Some(digest)) => Compare::Snapshot(digest),
            (None, None) => return Err(ContractError::new(
                "lock",
                "give `digest` or `fields` (or both); `rampart lock` fills them from a snapshot",
            )),
        };

        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, input) in &spec.inputs {
            let at = format!("inputs.{name}");
            check_name(&at, name, 32, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
            })?;
            let source = compile_source(&at, input.header.as_deref(), input.property.as_deref())?;
            if matches!(source, Source::Header { .. })
                && !matches!(input.format, Format::String | Format::Json | Format::Digest)
            {
                return Err(ContractError::new(
                    format!("{at}.format"),
                    format!(
                        "`{}` is a property encoding; a header is `string`, `json` or `digest`",
                        input.format.as_str()
                    ),
                ));
            }
            if let Source::Header { name: h, .. } = &source {
                if *h == route_header {
                    return Err(ContractError::new(
                        format!("{at}.header"),
                        "is the route header, which the filter overwrites; read config from another header",
                    ));
                }
            }
            let locked = match locked_fields {
                Some(fields) => {
                    let text = fields.get(name).ok_or_else(|| {
                        ContractError::new(
                            format!("lock.fields.{name}"),
                            "missing; `lock.fields` must cover every input (or drop `fields` and lock the whole snapshot with `lock.digest`)",
                        )
                    })?;
                    Some(parse_digest(&format!("lock.fields.{name}"), text)?)
                }
                None => None,
            };
            if input.format == Format::Digest && locked.is_none() {
                return Err(ContractError::new(
                    format!("lock.fields.{name}"),
                    "required: input has format `digest`, which is compared field by field",
                ));
            }
            inputs.push(Input {
                name: name.clone(),
                source,
                format: input.format,
                locked,
            });
        }
        if let Source::Header { name: h, .. } = &sticky {
            if *h == route_header {
                return Err(ContractError::new(
                    "ramp.sticky.header",
                    "is the route header; name the header that identifies a user",
                ));
            }
        }

        if !(400..=599).contains(&spec.reject_status) {
            return Err(ContractError::new(
                "reject_status",
                format!("must be a 4xx or 5xx status, got {}", spec.reject_status),
            ));
        }
        let limits = spec.limits;
        if !(1..=65_536).contains(&limits.max_input_bytes) {
            return Err(ContractError::new(
                "limits.max_input_bytes",
                "must be between 1 and 65536",
            ));
        }
        if !(1..=128).contains(&limits.max_json_depth) {
            return Err(ContractError::new(
                "limits.max_json_depth",
                "must be between 1 and 128",
            ));
        }
        let drift_pause = match &spec.drift_pause {
            None => None,
            Some(d) => Some(compile_drift_pause(d)?),
        };
        let lock_id = match (lock_digest, locked_fields) {
            (Some(digest), _) => digest,
            (None, fields) => Digest::of_canonical(|h| {
                let mut members = Vec::new();
                for (name, text) in fields.into_iter().flatten() {
                    members.push((name.clone(), Json::String(text.clone())));
                }
                Json::Object(members).write_canonical(h);
            }),
        };
        let response_header = match &spec.explain.response_header {
            Some(h) => Some(header_name("explain.response_header", h)?),
            None => None,
        };

        Ok(Plan {
            name: spec.contract.clone(),
            route_header,
            canary_value: route.canary.clone(),
            stable_value: route.stable.clone(),
            percent,
            threshold: threshold_for_percent(percent),
            sticky,
            unkeyed: spec.ramp.unkeyed,
            inputs,
            lock_digest,
            compare,
            on_drift: spec.on_drift,
            on_missing: spec.on_missing,
            reject_status: spec.reject_status,
            paused: spec.paused,
            limits,
            record_decision: spec.explain.filter_state || response_header.is_some(),
            response_header,
            log_interval_seconds: spec.explain.log_interval_seconds,
            salt: BucketSalt::new(&spec.contract),
            lock_id,
            drift_pause,
        })
    }

    /// Parses, validates and compiles contract JSON in one step.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, ContractError> {
        ContractSpec::parse(bytes)?.compile()
    }
}

fn compile_drift_pause(spec: &DriftPauseSpec) -> Result<DriftPausePolicy, ContractError> {
    if !(0.0..1.0).contains(&spec.max_ratio) {
        return Err(ContractError::new(
            "drift_pause.max_ratio",
            format!(
                "must be at least 0 and below 1 (0.05 = 5% of requests), got {}",
                number_text(spec.max_ratio)
            ),
        ));
    }
    if !(1..=DriftPausePolicy::MAX_MIN_REQUESTS).contains(&spec.min_requests) {
        return Err(ContractError::new(
            "drift_pause.min_requests",
            format!(
                "must be between 1 and {}",
                DriftPausePolicy::MAX_MIN_REQUESTS
            ),
        ));
    }
    let max_window = DriftPausePolicy::MAX_WINDOW_SECONDS;
    let window_seconds = u32::try_from(spec.window_seconds)
        .ok()
        .filter(|w| (1..=max_window).contains(w))
        .ok_or_else(|| {
            ContractError::new(
                "drift_pause.window_seconds",
                format!("must be between 1 and {max_window}"),
            )
        })?;
    Ok(DriftPausePolicy {
        max_ratio: spec.max_ratio,
        min_requests: spec.min_requests,
        window_seconds,
    })
}

fn parse_digest(field: &str, text: &str) -> Result<Digest, ContractError> {
    text.parse::<Digest>()
        .map_err(|e| ContractError::new(field, format!("{e}, got {}", quoted(text))))
}

fn compile_source(
    at: &str,
    header: Option<&str>,
    property: Option<&[String]>,
) -> Result<Source, ContractError> {
    match (header, property) {
        (Some(h), None) => {
            let name = header_name(&format!("{at}.header"), h)?;
            Ok(Source::Header { name })
        }
        (None, Some(path)) => {
            if path.is_empty() || path.iter().any(|s| s.is_empty() || s.contains('\0')) {
                return Err(ContractError::new(
                    format!("{at}.property"),
                    "must be a non-empty list of non-empty segments, e.g. [\"xds\",\"node\",\"metadata\",\"CONFIG_REV\"]",
                ));
            }
            Ok(Source::Property {
                path: path.to_vec(),
            })
        }
        (None, None) => Err(ContractError::new(
            at,
            "has no source: give `header` or `property`",
        )),
        (Some(_), Some(_)) => Err(ContractError::new(
            at,
            "give `header` or `property`, not both",
        )),
    }
}

fn check_name(
    field: &str,
    name: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ContractError> {
    if name.is_empty() || name.len() > max || !name.chars().all(allowed) {
        return Err(ContractError::new(
            field,
            format!(
                "{} is not a valid name: 1..={max} of a-z, 0-9, '_'{}",
                quoted(name),
                if field == "contract" { ", '-'" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// A header name in the lowercase form Envoy stores (HTTP names are case-insensitive).
fn header_name(field: &str, name: &str) -> Result<String, ContractError> {
    let token = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '.'
                    | '^'
                    | '_'
                    | '`'
                    | '|'
                    | '~'
            )
    };
    if name.is_empty() || !name.chars().all(token) {
        return Err(ContractError::new(
            field,
            format!(
                "{} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
                quoted(name)
            ),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn check_header_name(field: &str, name: &str) -> Result<(), ContractError> {
    header_name(field, name).map(drop)
}

fn check_header_value(field: &str, value: &str) -> Result<(), ContractError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ContractError::new(
            field,
            format!("{} must be non-empty visible ASCII", quoted(value)),
        ));
    }
    Ok(())
}

/// Route header and stable value for safe mode, taken from a contract that failed
/// validation when those two fields are themselves usable, else the defaults.
pub fn safe_mode_route(bytes: &[u8]) -> (String, String) {
    let defaults = RouteSpec::default();
    let json = Json::parse(bytes, 32).ok();
    let route = match &json {
        Some(Json::Object(top)) => top.iter().find(|(k, _)| k == "route").map(|(_, v)| v),
        _ => None,
    };
    let pick = |key: &str,
                ok: &dyn Fn(&str, &str) -> Result<(), ContractError>,
                fallback: String| match route {
        Some(Json::Object(r)) => match r.iter().find(|(k, _)| k == key) {
            Some((_, Json::String(s))) if ok(key, s).is_ok() => s.clone(),
            _ => fallback,
        },
        _ => fallback,
    };
    (
        pick("header", &check_header_name, defaults.header),
        pick("stable", &check_header_value, defaults.stable),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::tests::{example, rejects};
    use serde_json::{json, Value as J};

    #[test]
    fn example_contract_is_valid() {
        let plan = Plan::from_json(example().to_string().as_bytes()).unwrap();
        assert_eq!(plan.name, "checkout-v2");
        assert_eq!(plan.threshold, 3000);
        assert_eq!(
            plan.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["flags", "rev", "tier"]
        );
        assert_eq!(plan.compare, Compare::Fields);
        assert_eq!(
            plan.inputs[1].source,
            Source::Property {
                path: vec![
                    "xds".into(),
                    "node".into(),
                    "metadata".into(),
                    "CONFIG_REV".into()
                ]
            }
        );
    }

    /// A contract with `count` string inputs named `i0`, `i1`, … and no lock fields.
    fn with_inputs(count: usize) -> J {
        let mut c = example();
        let inputs: serde_json::Map<String, J> = (0..count)
            .map(|i| (format!("i{i}"), json!({ "header": format!("x-i{i}") })))
            .collect();
        c["inputs"] = J::Object(inputs);
        c["lock"] = json!({ "digest": format!("sha256:{}", "0".repeat(64)) });
        c
    }

    #[test]
    fn at_most_max_inputs() {
        let plan = Plan::from_json(with_inputs(MAX_INPUTS).to_string().as_bytes()).unwrap();
        assert_eq!(plan.inputs.len(), MAX_INPUTS);
        let err = Plan::from_json(with_inputs(MAX_INPUTS + 1).to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "inputs");
        assert!(
            err.to_string()
                .contains(&format!("at most {MAX_INPUTS} inputs, got 33")),
            "{err}"
        );
    }

    #[test]
    fn input_names_are_1_to_32_of_lowercase_digits_and_underscore() {
        let renamed = |name: &str| {
            let mut c = example();
            let tier = c["inputs"]["tier"].take();
            c["inputs"].as_object_mut().unwrap().remove("tier");
            c["inputs"][name] = tier;
            let digest = c["lock"]["fields"]["tier"].take();
            c["lock"]["fields"].as_object_mut().unwrap().remove("tier");
            c["lock"]["fields"][name] = digest;
            Plan::from_json(c.to_string().as_bytes())
        };
        for ok in ["t_1", "_", &"a".repeat(32)] {
            assert!(renamed(ok).is_ok(), "{ok}: {:?}", renamed(ok).err());
        }
        for bad in ["", &"a".repeat(33), "Tier", "t-1"] {
            let err = renamed(bad).unwrap_err();
            assert_eq!(err.field, format!("inputs.{bad}"), "{err}");
            assert!(
                err.to_string().contains("is not a valid name: 1..=32"),
                "{err}"
            );
        }
    }

    #[test]
    fn property_segments_are_non_empty_and_hold_no_nul() {
        for path in [json!([]), json!(["a", ""]), json!(["a\0b"])] {
            rejects(
                |c| c["inputs"]["rev"]["property"] = path.clone(),
                "inputs.rev.property",
                "non-empty list of non-empty segments",
            );
        }
    }

    #[test]
    fn number_messages_print_the_number_as_json_does() {
        rejects(
            |c| c["ramp"]["percent"] = json!(100.25),
            "ramp.percent",
            "between 0 and 100, got 100.25",
        );
        rejects(
            |c| c["ramp"]["percent"] = json!(1e300),
            "ramp.percent",
            "got 1e+300",
        );
    }

    #[test]
    fn percent_must_be_within_0_and_100() {
        rejects(
            |c| c["ramp"]["percent"] = json!(100.5),
            "ramp.percent",
            "between 0 and 100",
        );
        rejects(
            |c| c["ramp"]["percent"] = json!(-1),
            "ramp.percent",
            "between 0 and 100",
        );
        for ok in [0.0, 0.01, 100.0] {
            let mut c = example();
            c["ramp"]["percent"] = json!(ok);
            assert!(Plan::from_json(c.to_string().as_bytes()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn digests_must_be_well_formed() {
        rejects(
            |c| c["lock"]["digest"] = json!("sha256:abc"),
            "lock.digest",
            "64 lowercase hex",
        );
        rejects(
            |c| c["lock"]["fields"]["tier"] = json!("md5:00"),
            "lock.fields.tier",
            "64 lowercase hex",
        );
    }

    #[test]
    fn inputs_need_exactly_one_source() {
        rejects(
            |c| c["inputs"]["tier"] = json!({"format": "string"}),
            "inputs.tier",
            "has no source",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x-tier", "property": ["a"]}),
            "inputs.tier",
            "not both",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"property": []}),
            "inputs.tier.property",
            "non-empty",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x tier"}),
            "inputs.tier.header",
            "not an HTTP header name",
        );
        rejects(
            |c| c["inputs"]["tier"] = json!({"header": "x-tier", "format": "int"}),
            "inputs.tier.format",
            "property encoding",
        );
        rejects(
            |c| c["inputs"]["flags"]["header"] = json!("x-rampart-route"),
            "inputs.flags.header",
            "route header",
        );
        rejects(|c| c["inputs"] = json!({}), "inputs", "at least one input");
        rejects(
            |c| c["ramp"]["sticky"] = json!({"header": "x-rampart-route"}),
            "ramp.sticky.header",
            "is the route header",
        );
    }

    #[test]
    fn lock_fields_must_match_the_inputs() {
        rejects(
            |c| c["lock"]["fields"]["region"] = c["lock"]["fields"]["tier"].clone(),
            "lock.fields.region",
            "names no input",
        );
        rejects(
            |c| drop(c["lock"]["fields"].as_object_mut().unwrap().remove("rev")),
            "lock.fields.rev",
            "cover every input",
        );
        rejects(
            |c| c["lock"] = json!({}),
            "lock",
            "give `digest` or `fields`",
        );
    }

    #[test]
    fn route_and_limits_are_checked() {
        rejects(
            |c| c["route"]["stable"] = json!("canary"),
            "route.stable",
            "must differ",
        );
        rejects(
            |c| c["route"]["canary"] = json!("can ary"),
            "route.canary",
            "visible ASCII",
        );
        rejects(
            |c| c["contract"] = json!("Checkout.V2"),
            "contract",
            "not a valid name",
        );
        rejects(
            |c| c["reject_status"] = json!(200),
            "reject_status",
            "4xx or 5xx",
        );
        rejects(
            |c| c["limits"] = json!({"max_json_depth": 0}),
            "limits.max_json_depth",
            "between 1 and 128",
        );
        rejects(
            |c| c["explain"] = json!({"response_header": "X Bad"}),
            "explain.response_header",
            "not an HTTP header name",
        );
    }

    #[test]
    fn drift_pause_is_off_by_default_and_validated() {
        let plan = Plan::from_json(example().to_string().as_bytes()).unwrap();
        assert_eq!(plan.drift_pause, None);
        assert_eq!(plan.lock_id, plan.lock_digest.unwrap());

        let mut c = example();
        c["drift_pause"] = json!({});
        let plan = Plan::from_json(c.to_string().as_bytes()).unwrap();
        assert_eq!(
            plan.drift_pause,
            Some(DriftPausePolicy {
                max_ratio: 0.05,
                min_requests: 100,
                window_seconds: 30
            })
        );
        c["drift_pause"] = json!({"max_ratio": 0.2, "min_requests": 5, "window_seconds": 1});
        let spec = ContractSpec::parse(c.to_string().as_bytes()).unwrap();
        // `rampart lock` writes the contract back: the field survives.
        let written = serde_json::to_value(&spec).unwrap();
        assert_eq!(written["drift_pause"]["max_ratio"], json!(0.2));
        assert_eq!(written["drift_pause"]["window_seconds"], json!(1));

        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": 1}),
            "drift_pause.max_ratio",
            "below 1",
        );
        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": -0.1}),
            "drift_pause.max_ratio",
            "at least 0",
        );
        rejects(
            |c| c["drift_pause"] = json!({"max_ratio": "5%"}),
            "drift_pause.max_ratio",
            "must be a number",
        );
        rejects(
            |c| c["drift_pause"] = json!({"min_requests": 0}),
            "drift_pause.min_requests",
            "between 1 and",
        );
        rejects(
            |c| c["drift_pause"] = json!({"window_seconds": 3601}),
            "drift_pause.window_seconds",
            "between 1 and 3600",
        );
        rejects(
            |c| c["drift_pause"] = json!({"window": 30}),
            "drift_pause.window",
            "expected one of: max_ratio, min_requests, window_seconds",
        );
        rejects(
            |c| c["drift_pause"] = json!(true),
            "drift_pause",
            "must be an object",
        );
    }

    #[test]
    fn lock_identity_without_a_whole_digest_follows_the_fields() {
        let fields_only = |tier: &str| {
            let mut c = example();
            c["lock"].as_object_mut().unwrap().remove("digest");
            c["lock"]["fields"]["tier"] = json!(tier);
            Plan::from_json(c.to_string().as_bytes()).unwrap().lock_id
        };
        let a = fields_only(&crate::digest::Digest::of_bytes(b"\"gold\"").to_string());
        let b = fields_only(&crate::digest::Digest::of_bytes(b"\"silver\"").to_string());
        assert_ne!(a, b);
        assert_eq!(
            a,
            fields_only(&crate::digest::Digest::of_bytes(b"\"gold\"").to_string())
        );
    }

    #[test]
    fn decisions_are_recorded_for_a_debug_header_or_when_asked() {
        let plan = |edit: &dyn Fn(&mut J)| {
            let mut c = example();
            edit(&mut c);
            Plan::from_json(c.to_string().as_bytes()).unwrap()
        };
        assert!(
            plan(&|_| {}).record_decision,
            "the example names a debug header"
        );
        let quiet = |c: &mut J| {
            drop(
                c["explain"]
                    .as_object_mut()
                    .unwrap()
                    .remove("response_header"),
            )
        };
        assert!(
            !plan(&quiet).record_decision,
            "off by default: a host call per request"
        );
        let asked = |c: &mut J| {
            quiet(c);
            c["explain"]["filter_state"] = json!(true);
        };
        assert!(plan(&asked).record_decision);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut c = example();
        c["inputs"]["flags"]["header"] = json!("X-User-Config");
        c["ramp"]["sticky"]["header"] = json!("X-User-Id");
        c["route"]["header"] = json!("X-Rampart-Route");
        let plan = Plan::from_json(c.to_string().as_bytes()).unwrap();
        assert_eq!(plan.route_header, "x-rampart-route");
        assert!(matches!(&plan.sticky, Source::Header { name, .. } if name == "x-user-id"));
        assert_eq!(
            plan.inputs[0].source,
            Source::Header {
                name: "x-user-config".into()
            }
        );
        c["inputs"]["flags"]["header"] = json!("X-RAMPART-ROUTE");
        let err = Plan::from_json(c.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "inputs.flags.header");
    }

    #[test]
    fn safe_mode_route_uses_usable_route_fields_only() {
        assert_eq!(
            safe_mode_route(b"garbage"),
            ("x-rampart-route".into(), "stable".into())
        );
        assert_eq!(
            safe_mode_route(br#"{"route":{"header":"x-lane","stable":"blue"},"ramp":7}"#),
            ("x-lane".into(), "blue".into())
        );
        assert_eq!(
            safe_mode_route(br#"{"route":{"header":"Bad Header","stable":""}}"#),
            ("x-rampart-route".into(), "stable".into())
        );
    }
}
