//! Reading a contract from JSON: a hand-written field reader that names the field at
//! fault in every error.

use std::collections::BTreeMap;

use crate::jcs::Json;

use super::error::{quoted, ContractError};
use super::spec::{
    default_reject_status, ContractSpec, DriftPauseSpec, ExplainSpec, Format, InputSpec,
    LimitsSpec, LockSpec, OnDrift, OnMissing, RampSpec, RouteSpec, Side, SourceSpec,
};

const TOP_LEVEL_FIELDS: &[&str] = &[
    "contract",
    "route",
    "ramp",
    "inputs",
    "lock",
    "on_drift",
    "on_missing",
    "reject_status",
    "paused",
    "limits",
    "explain",
    "drift_pause",
];

impl ContractSpec {
    /// Parses contract JSON, naming the field at fault in every error.
    ///
    /// The lock may be absent here (`rampart lock` fills it); [`ContractSpec::compile`]
    /// requires it.
    pub fn parse(bytes: &[u8]) -> Result<ContractSpec, ContractError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ContractError::new(
                "",
                "the configuration is empty; it needs at least `contract`, `ramp`, `inputs` and `lock` (see examples/contract.json)",
            ));
        }
        let json = Json::parse(bytes, 32)
            .map_err(|e| ContractError::new("", format!("not usable JSON: {e}")))?;
        ContractSpec::from_json(&json)
    }

    /// Reads a contract from parsed JSON (see [`ContractSpec::parse`]).
    pub fn from_json(json: &Json) -> Result<ContractSpec, ContractError> {
        let top = Fields::of(json, "")?;
        if top.members.is_empty() {
            return Err(ContractError::new(
                "",
                "the contract is `{}`; it needs at least `contract`, `ramp`, `inputs` and `lock` (see examples/contract.json)",
            ));
        }
        top.only(TOP_LEVEL_FIELDS)?;
        let defaults = RouteSpec::default();
        let route = match top.get("route") {
            None => defaults,
            Some(r) => {
                let r = Fields::of(r, "route")?;
                r.only(&["header", "canary", "stable"])?;
                RouteSpec {
                    header: r.string_or("header", defaults.header)?,
                    canary: r.string_or("canary", defaults.canary)?,
                    stable: r.string_or("stable", defaults.stable)?,
                }
            }
        };
        let ramp = Fields::of(top.required("ramp")?, "ramp")?;
        ramp.only(&["percent", "sticky", "unkeyed"])?;
        let sticky = Fields::of(ramp.required("sticky")?, "ramp.sticky")?;
        sticky.only(&["header", "property"])?;
        let ramp = RampSpec {
            percent: ramp.number("percent")?,
            sticky: SourceSpec {
                header: sticky.opt_string("header")?,
                property: sticky.opt_path("property")?,
            },
            unkeyed: ramp.choice(
                "unkeyed",
                &[("stable", Side::Stable), ("canary", Side::Canary)],
                Side::Stable,
            )?,
        };
        let inputs_at = Fields::of(top.required("inputs")?, "inputs")?;
        let mut inputs = BTreeMap::new();
        for (name, input) in inputs_at.members {
            let at = format!("inputs.{name}");
            let input = Fields::of(input, &at)?;
            input.only(&["header", "property", "format"])?;
            let format = input.choice(
                "format",
                &[
                    ("string", Format::String),
                    ("json", Format::Json),
                    ("int", Format::Int),
                    ("double", Format::Double),
                    ("bool", Format::Bool),
                    ("digest", Format::Digest),
                ],
                Format::String,
            )?;
            inputs.insert(
                name.clone(),
                InputSpec {
                    header: input.opt_string("header")?,
                    property: input.opt_path("property")?,
                    format,
                },
            );
        }
        let lock = match top.get("lock") {
            None => None,
            Some(l) => {
                let l = Fields::of(l, "lock")?;
                l.only(&["digest", "fields"])?;
                let fields = match l.get("fields") {
                    None => None,
                    Some(f) => {
                        let f = Fields::of(f, "lock.fields")?;
                        let mut out = BTreeMap::new();
                        for (name, _) in f.members {
                            out.insert(name.clone(), f.string_or(name, String::new())?);
                        }
                        Some(out)
                    }
                };
                Some(LockSpec {
                    digest: l.opt_string("digest")?,
                    fields,
                })
            }
        };
        let limits = match top.get("limits") {
            None => LimitsSpec::default(),
            Some(l) => {
                let l = Fields::of(l, "limits")?;
                l.only(&["max_input_bytes", "max_json_depth"])?;
                let d = LimitsSpec::default();
                LimitsSpec {
                    max_input_bytes: l.integer_or("max_input_bytes", d.max_input_bytes as u64)?
                        as usize,
                    max_json_depth: l.integer_or("max_json_depth", d.max_json_depth as u64)?
                        as usize,
                }
            }
        };
        let explain = match top.get("explain") {
            None => ExplainSpec::default(),
            Some(e) => {
                let e = Fields::of(e, "explain")?;
                e.only(&["response_header", "log_interval_seconds", "filter_state"])?;
                let seconds = e.integer_or(
                    "log_interval_seconds",
                    u64::from(ExplainSpec::default().log_interval_seconds),
                )?;
                ExplainSpec {
                    response_header: e.opt_string("response_header")?,
                    log_interval_seconds: u32::try_from(seconds).map_err(|_| {
                        ContractError::new("explain.log_interval_seconds", "is too large")
                    })?,
                    filter_state: e.boolean_or("filter_state", false)?,
                }
            }
        };
        let drift_pause = match top.get("drift_pause") {
            None => None,
            Some(d) => {
                let d = Fields::of(d, "drift_pause")?;
                d.only(&["max_ratio", "min_requests", "window_seconds"])?;
                let defaults = DriftPauseSpec::default();
                Some(DriftPauseSpec {
                    max_ratio: d.number_or("max_ratio", defaults.max_ratio)?,
                    min_requests: d.integer_or("min_requests", defaults.min_requests)?,
                    window_seconds: d.integer_or("window_seconds", defaults.window_seconds)?,
                })
            }
        };
        let reject_status = top.integer_or("reject_status", u64::from(default_reject_status()))?;
        Ok(ContractSpec {
            contract: top.string("contract")?,
            route,
            ramp,
            inputs,
            lock,
            on_drift: top.choice(
                "on_drift",
                &[
                    ("stable", OnDrift::Stable),
                    ("reject", OnDrift::Reject),
                    ("observe", OnDrift::Observe),
                ],
                OnDrift::Stable,
            )?,
            on_missing: top.choice(
                "on_missing",
                &[("drift", OnMissing::Drift), ("null", OnMissing::Null)],
                OnMissing::Drift,
            )?,
            reject_status: u16::try_from(reject_status).unwrap_or(0),
            paused: top.boolean_or("paused", false)?,
            limits,
            explain,
            drift_pause,
        })
    }
}

/// An object being read, with its path for error messages.
struct Fields<'a> {
    at: String,
    members: &'a [(String, Json)],
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    fn of(json: &'a Json, at: &str) -> Result<Fields<'a>, ContractError> {
        match json {
            Json::Object(members) => Ok(Fields {
                at: at.to_owned(),
                members,
            }),
            other => Err(ContractError::new(
                at,
                format!("must be an object, got {}", kind(other)),
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), ContractError> {
        match self
            .members
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ContractError::new(
                self.path(k),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Json> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn required(&self, key: &str) -> Result<&'a Json, ContractError> {
        self.get(key)
            .ok_or_else(|| ContractError::new(self.path(key), "missing; it is required"))
    }

    fn wrong(&self, key: &str, want: &str, got: &Json) -> ContractError {
        ContractError::new(self.path(key), format!("must be {want}, got {}", kind(got)))
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, ContractError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    fn string(&self, key: &str) -> Result<String, ContractError> {
        self.opt_string(key)?
            .ok_or_else(|| ContractError::new(self.path(key), "missing; it is required"))
    }

    fn string_or(&self, key: &str, default: String) -> Result<String, ContractError> {
        Ok(self.opt_string(key)?.unwrap_or(default))
    }

    fn opt_path(&self, key: &str) -> Result<Option<Vec<String>>, ContractError> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Json::String(s) => Ok(s.clone()),
                    other => Err(self.wrong(key, "a list of strings", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(key, "a list of strings", other)),
        }
    }

    fn number(&self, key: &str) -> Result<f64, ContractError> {
        match self.required(key)? {
            Json::Number(n) => Ok(*n),
            other => Err(self.wrong(key, "a number", other)),
        }
    }

    fn number_or(&self, key: &str, default: f64) -> Result<f64, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.number(key),
        }
    }

    fn integer_or(&self, key: &str, default: u64) -> Result<u64, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Number(n))
                if n.fract() == 0.0 && *n >= 0.0 && *n <= 9_007_199_254_740_992.0 =>
            {
                Ok(*n as u64)
            }
            Some(other) => Err(self.wrong(key, "a non-negative integer", other)),
        }
    }

    fn boolean_or(&self, key: &str, default: bool) -> Result<bool, ContractError> {
        match self.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    fn choice<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ContractError> {
        let names = || {
            options
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.get(key) {
            None => Ok(default),
            Some(Json::String(s)) => options
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    ContractError::new(
                        self.path(key),
                        format!("{} is not one of: {}", quoted(s), names()),
                    )
                }),
            Some(other) => Err(self.wrong(key, &format!("one of: {}", names()), other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::tests::{example, rejects};
    use crate::contract::Plan;
    use serde_json::json;

    /// Integer fields take whole, non-negative numbers up to 2^53 (exact in a double),
    /// and say what they got otherwise.
    #[test]
    fn integers_are_whole_non_negative_and_exact() {
        for bad in [
            json!(-1),
            json!(1.5),
            json!(-0.5),
            json!(9_007_199_254_740_994u64),
        ] {
            rejects(
                |c| c["limits"] = json!({ "max_input_bytes": bad }),
                "limits.max_input_bytes",
                "must be a non-negative integer, got a number",
            );
        }
        // 2^53 itself reads exactly; the limits check then bounds it.
        let mut c = example();
        c["limits"] = json!({ "max_input_bytes": 9_007_199_254_740_992u64 });
        let err = Plan::from_json(c.to_string().as_bytes()).unwrap_err();
        assert!(!err.to_string().contains("non-negative integer"), "{err}");
        for (value, kind) in [
            (json!("8"), "a string"),
            (json!(true), "a boolean"),
            (json!(null), "null"),
            (json!([8]), "an array"),
            (json!({}), "an object"),
        ] {
            rejects(
                |c| c["limits"] = json!({ "max_input_bytes": value }),
                "limits.max_input_bytes",
                &format!("must be a non-negative integer, got {kind}"),
            );
        }
    }

    #[test]
    fn empty_configurations_are_rejected_clearly() {
        for text in ["", "  \n", "{}"] {
            let err = Plan::from_json(text.as_bytes()).unwrap_err();
            assert!(
                err.message.contains("needs at least `contract`"),
                "{text:?}: {err}"
            );
        }
        assert!(Plan::from_json(b"[]")
            .unwrap_err()
            .message
            .contains("must be an object"));
        assert!(Plan::from_json(b"{")
            .unwrap_err()
            .message
            .contains("not usable JSON"));
    }

    #[test]
    fn unknown_fields_are_named_at_every_level() {
        rejects(|c| c["colour"] = json!(1), "colour", "unknown field");
        rejects(
            |c| c["ramp"]["procent"] = json!(5),
            "ramp.procent",
            "expected one of: percent",
        );
        rejects(
            |c| c["inputs"]["flags"]["heder"] = json!("x"),
            "inputs.flags.heder",
            "unknown field",
        );
        rejects(
            |c| c["lock"]["field"] = json!({}),
            "lock.field",
            "unknown field",
        );
    }

    #[test]
    fn required_fields_and_types_are_named() {
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("ramp")),
            "ramp",
            "required",
        );
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("inputs")),
            "inputs",
            "required",
        );
        rejects(
            |c| drop(c.as_object_mut().unwrap().remove("lock")),
            "lock",
            "rampart lock",
        );
        rejects(
            |c| drop(c["ramp"].as_object_mut().unwrap().remove("sticky")),
            "ramp.sticky",
            "required",
        );
        rejects(
            |c| c["ramp"]["percent"] = json!("5"),
            "ramp.percent",
            "must be a number",
        );
        rejects(|c| c["paused"] = json!("yes"), "paused", "true or false");
        rejects(
            |c| c["explain"]["filter_state"] = json!(1),
            "explain.filter_state",
            "true or false",
        );
        rejects(
            |c| c["on_drift"] = json!("drop"),
            "on_drift",
            "stable, reject, observe",
        );
        rejects(
            |c| c["inputs"]["flags"]["format"] = json!("yaml"),
            "inputs.flags.format",
            "\"yaml\" is not one of",
        );
    }

    #[test]
    fn duplicate_keys_in_a_contract_are_rejected() {
        let text =
            example()
                .to_string()
                .replacen("\"contract\":", "\"contract\":\"x\",\"contract\":", 1);
        let err = Plan::from_json(text.as_bytes()).unwrap_err();
        assert!(err.message.contains("duplicate object key"), "{err}");
    }
}
