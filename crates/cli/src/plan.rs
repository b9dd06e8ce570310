//! The ramp plan: which contract, which tested snapshot, the steps, the gates, how an
//! approval continues, where to publish, where to read metrics and the live config.
//!
//! Relative paths in a plan are relative to the plan file, so a plan and its files
//! can be moved together.

use std::path::{Path, PathBuf};

use rampart::contract::{ContractSpec, LockSpec};
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use serde_json::Value;

use crate::metrics::MetricsSource;

/// What happens when the live config no longer has the locked digest at `advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMismatch {
    /// Stop the ramp where it is (status `blocked`) until an approval or a restored config.
    Block,
    /// Send everyone to stable at once (status `reverted`).
    Revert,
}

/// Where the ramp continues after an approval re-locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterApproval {
    /// Back to the first step: the new config has not been tested at wider steps.
    Restart,
    /// Stay at the current step.
    Resume,
}

impl AfterApproval {
    /// The name used in the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            AfterApproval::Restart => "restart",
            AfterApproval::Resume => "resume",
        }
    }
}

/// Where the live config snapshot is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveSource {
    /// A JSON file `{input: value}`.
    File(PathBuf),
    /// An http URL answering the JSON snapshot.
    Url(String),
}

/// The limits each step must meet before the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gates {
    /// Highest (drift + missing) / requests since the step began.
    pub max_drift_ratio: f64,
    /// Fewest requests since the step began.
    pub min_requests: u64,
    /// Shortest time since the step began.
    pub bake_seconds: u64,
    /// What a live config that does not match the lock does.
    pub on_mismatch: OnMismatch,
}

/// Where and how a contract is published (ECDS from a watched file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The ECDS file Envoy watches.
    pub ecds_path: PathBuf,
    /// Name of the filter's ECDS resource.
    pub filter_name: String,
    /// Path of the filter's `.wasm` as Envoy should load it.
    pub wasm: String,
}

/// A validated ramp plan.
#[derive(Debug, Clone)]
pub struct RampPlan {
    /// The plan file.
    pub path: PathBuf,
    /// The contract template file.
    pub contract_path: PathBuf,
    /// The contract template as written.
    pub template: Value,
    /// The contract's name (metrics and buckets use it).
    pub name: String,
    /// The snapshot the canary was tested with.
    pub snapshot_path: PathBuf,
    /// Where the live config is read.
    pub live: LiveSource,
    /// Canary percents, strictly increasing.
    pub steps: Vec<f64>,
    /// The gates.
    pub gates: Gates,
    /// Where an approved ramp continues.
    pub after_approval: AfterApproval,
    /// The OpenSSH `allowed_signers` file of the keys whose signature an approval needs;
    /// `None`: approvals are unsigned (`--by NAME`).
    pub allowed_signers: Option<PathBuf>,
    /// Where to publish.
    pub publish: Publish,
    /// Where the drift gate reads counters; `None` turns the drift gate off.
    pub metrics: Option<MetricsSource>,
    /// The contract's data-plane `drift_pause` block, copied into every publish.
    pub drift_pause: Option<Value>,
    /// The state file.
    pub state_path: PathBuf,
    /// The audit log.
    pub audit_path: PathBuf,
}

/// A plan field that is wrong, named by its path (`gates.max_drift_ratio`).
fn bad(field: &str, message: impl std::fmt::Display) -> String {
    format!("{field}: {message}")
}

const FIELDS: &[&str] = &[
    "contract",
    "snapshot",
    "live",
    "steps",
    "gates",
    "approval",
    "publish",
    "metrics",
    "drift_pause",
    "state",
    "audit",
];

fn only(object: &serde_json::Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            &join(at, k),
            format!("unknown field; expected one of: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| bad(at, "must be an object"))
}

fn string<'a>(value: Option<&'a Value>, at: &str) -> Result<&'a str, String> {
    match value {
        None => Err(bad(at, "missing; it is required")),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(bad(at, "must be a non-empty string")),
    }
}

fn http_url(value: Option<&Value>, at: &str) -> Result<String, String> {
    let url = string(value, at)?;
    if !url.starts_with("http://") {
        return Err(bad(at, "must be an http:// URL"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Absolute path of `relative` against the plan's directory.
fn resolve(dir: &Path, relative: &str) -> PathBuf {
    let path = dir.join(relative);
    std::path::absolute(&path).unwrap_or(path)
}

impl RampPlan {
    /// Reads and validates the plan at `path` and the contract template it names.
    /// Errors name the field (`steps[2]`, `gates.min_requests`, `contract: ramp.sticky`).
    pub fn load(path: &Path) -> Result<RampPlan, crate::Failure> {
        let bytes = std::fs::read(path)
            .map_err(|e| crate::Failure::Usage(format!("{}: {e}", path.display())))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| crate::Failure::Invalid(format!("{}: not JSON: {e}", path.display())))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        RampPlan::from_json(&path, &value)
            .map_err(|e| crate::Failure::Invalid(format!("{}: {e}", path.display())))
    }

    fn from_json(path: &Path, value: &Value) -> Result<RampPlan, String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let top = object(value, "plan")?;
        only(top, "", FIELDS)?;

        let contract_path = resolve(dir, string(top.get("contract"), "contract")?);
        let template_bytes = std::fs::read(&contract_path)
            .map_err(|e| bad("contract", format!("{}: {e}", contract_path.display())))?;
        let template: Value = serde_json::from_slice(&template_bytes).map_err(|e| {
            bad(
                "contract",
                format!("{}: not JSON: {e}", contract_path.display()),
            )
        })?;
        let name = template
            .get("contract")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(
                    "contract",
                    format!(
                        "{}: the template has no `contract` name",
                        contract_path.display()
                    ),
                )
            })?
            .to_owned();

        let snapshot_path = resolve(dir, string(top.get("snapshot"), "snapshot")?);

        let live = object(
            top.get("live")
                .ok_or_else(|| bad("live", "missing; give {\"file\": PATH} or {\"url\": URL}"))?,
            "live",
        )?;
        only(live, "live", &["file", "url"])?;
        let live = match (live.get("file"), live.get("url")) {
            (Some(file), None) => LiveSource::File(resolve(dir, string(Some(file), "live.file")?)),
            (None, Some(_)) => LiveSource::Url(http_url(live.get("url"), "live.url")?),
            _ => return Err(bad("live", "give exactly one of `file` and `url`")),
        };

        let steps_value = top.get("steps").ok_or_else(|| {
            bad(
                "steps",
                "missing; give canary percents such as [1, 5, 25, 50, 100]",
            )
        })?;
        let items = steps_value
            .as_array()
            .ok_or_else(|| bad("steps", "must be an array of percents"))?;
        if items.is_empty() {
            return Err(bad("steps", "must name at least one percent"));
        }
        let mut steps = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("steps[{i}]");
            let p = item.as_f64().ok_or_else(|| bad(&at, "must be a number"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad(&at, format!("{p} is outside 0 < percent <= 100")));
            }
            if let Some(&before) = steps.last() {
                if p <= before {
                    return Err(bad(
                        &at,
                        format!("{p} does not increase on the step before ({before})"),
                    ));
                }
            }
            steps.push(p);
        }

        let gates_value = top.get("gates").ok_or_else(|| {
            bad(
                "gates",
                "missing; give max_drift_ratio, min_requests and bake_seconds",
            )
        })?;
        let g = object(gates_value, "gates")?;
        only(
            g,
            "gates",
            &[
                "max_drift_ratio",
                "min_requests",
                "bake_seconds",
                "on_mismatch",
            ],
        )?;
        let max_drift_ratio = g
            .get("max_drift_ratio")
            .ok_or_else(|| {
                bad(
                    "gates.max_drift_ratio",
                    "missing; it is required (e.g. 0.01)",
                )
            })?
            .as_f64()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| bad("gates.max_drift_ratio", "must be a number from 0 to 1"))?;
        let count = |key: &str| -> Result<u64, String> {
            let at = format!("gates.{key}");
            g.get(key)
                .ok_or_else(|| bad(&at, "missing; it is required"))?
                .as_u64()
                .ok_or_else(|| bad(&at, "must be a non-negative integer"))
        };
        let min_requests = count("min_requests")?;
        let bake_seconds = count("bake_seconds")?;
        let on_mismatch = match g.get("on_mismatch").map(Value::as_str) {
            None | Some(Some("block")) => OnMismatch::Block,
            Some(Some("revert")) => OnMismatch::Revert,
            Some(_) => return Err(bad("gates.on_mismatch", "must be \"block\" or \"revert\"")),
        };

        let empty = serde_json::Map::new();
        let approval = match top.get("approval") {
            None => &empty,
            Some(a) => object(a, "approval")?,
        };
        only(approval, "approval", &["after_approval", "allowed_signers"])?;
        let after_approval = match approval.get("after_approval").map(Value::as_str) {
            None | Some(Some("restart")) => AfterApproval::Restart,
            Some(Some("resume")) => AfterApproval::Resume,
            Some(_) => {
                return Err(bad(
                    "approval.after_approval",
                    "must be \"restart\" or \"resume\"",
                ))
            }
        };
        // Read when an approval is checked, not here: a broken signers file must not
        // keep `revert` or `pause` from running.
        let allowed_signers = match approval.get("allowed_signers") {
            None => None,
            v => Some(resolve(dir, string(v, "approval.allowed_signers")?)),
        };

        let p = object(
            top.get("publish")
                .ok_or_else(|| bad("publish", "missing; give ecds_path, filter_name and wasm"))?,
            "publish",
        )?;
        only(p, "publish", &["ecds_path", "filter_name", "wasm"])?;
        let publish = Publish {
            ecds_path: resolve(dir, string(p.get("ecds_path"), "publish.ecds_path")?),
            filter_name: string(p.get("filter_name"), "publish.filter_name")?.to_owned(),
            wasm: resolve(dir, string(p.get("wasm"), "publish.wasm")?)
                .to_string_lossy()
                .into_owned(),
        };

        let metrics = match top.get("metrics") {
            None => {
                return Err(bad(
                    "metrics",
                    "missing; give {\"envoy_admin\": URL} or {\"prometheus\": URL} (or null to ramp without the drift gate)",
                ))
            }
            Some(Value::Null) => None,
            Some(m) => {
                let m = object(m, "metrics")?;
                only(m, "metrics", &["envoy_admin", "prometheus"])?;
                match (m.get("envoy_admin"), m.get("prometheus")) {
                    (Some(_), None) => Some(MetricsSource::EnvoyAdmin(http_url(
                        m.get("envoy_admin"),
                        "metrics.envoy_admin",
                    )?)),
                    (None, Some(_)) => Some(MetricsSource::Prometheus(http_url(
                        m.get("prometheus"),
                        "metrics.prometheus",
                    )?)),
                    _ => {
                        return Err(bad(
                            "metrics",
                            "give exactly one of `envoy_admin` and `prometheus`",
                        ))
                    }
                }
            }
        };

        let drift_pause = match top.get("drift_pause") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(bad("drift_pause", "must be an object")),
        };

        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ramp".into());
        let state_path = match top.get("state") {
            None => dir.join(format!("{file_name}.state.json")),
            Some(v) => resolve(dir, string(Some(v), "state")?),
        };
        let audit_path = match top.get("audit") {
            None => dir.join(format!("{file_name}.audit.jsonl")),
            Some(v) => resolve(dir, string(Some(v), "audit")?),
        };

        let plan = RampPlan {
            path: path.to_path_buf(),
            contract_path,
            template,
            name,
            snapshot_path,
            live,
            steps,
            gates: Gates {
                max_drift_ratio,
                min_requests,
                bake_seconds,
                on_mismatch,
            },
            after_approval,
            allowed_signers,
            publish,
            metrics,
            drift_pause,
            state_path,
            audit_path,
        };
        // The template must make a valid contract at every step once locked.
        plan.spec(plan.steps[0])?;
        Ok(plan)
    }

    /// The template with `percent` and the plan's `drift_pause`, unlocked, as JSON.
    fn unlocked(&self, percent: f64) -> Result<Value, String> {
        let mut contract = self.template.clone();
        let top = contract
            .as_object_mut()
            .ok_or_else(|| bad("contract", "the template must be a JSON object"))?;
        top.remove("lock");
        let ramp = top
            .get_mut("ramp")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                bad(
                    "contract",
                    "the template needs a `ramp` object (sticky, unkeyed)",
                )
            })?;
        ramp.insert("percent".into(), Value::from(percent));
        if let Some(drift_pause) = &self.drift_pause {
            top.insert("drift_pause".into(), drift_pause.clone());
        }
        Ok(contract)
    }

    /// The template as a contract spec at `percent` (unlocked), validated field by field.
    pub fn spec(&self, percent: f64) -> Result<ContractSpec, String> {
        parse_contract(&self.unlocked(percent)?)
            .map_err(|e| bad("contract", format!("{}: {e}", self.contract_path.display())))
    }

    /// The contract to publish: the template at `percent` with `lock`, and `paused:
    /// true` when `paused` (the durable drift pause), compiled once here so a bad
    /// contract is caught before Envoy sees it.
    pub fn contract(&self, percent: f64, lock: &LockSpec, paused: bool) -> Result<Value, String> {
        let mut contract = self.unlocked(percent)?;
        let lock_json = serde_json::to_value(lock).map_err(|e| bad("lock", e))?;
        if let Some(top) = contract.as_object_mut() {
            top.insert("lock".into(), lock_json);
            if paused {
                top.insert("paused".into(), Value::Bool(true));
            }
        }
        let spec = parse_contract(&contract)
            .map_err(|e| bad("contract", format!("{}: {e}", self.contract_path.display())))?;
        spec.compile()
            .map_err(|e| bad("contract", format!("{}: {e}", self.contract_path.display())))?;
        Ok(contract)
    }
}

/// Parses contract JSON with the core's validation.
///
/// A `drift_pause` block is validated by a core that knows it; a core that predates
/// it reports it as an unknown field, and then the rest is still validated.
fn parse_contract(contract: &Value) -> Result<ContractSpec, String> {
    let to_json = |v: &Value| -> Result<Json, String> {
        let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        Json::parse(&bytes, DEFAULT_MAX_DEPTH).map_err(|e| e.to_string())
    };
    match ContractSpec::from_json(&to_json(contract)?) {
        Ok(spec) => Ok(spec),
        Err(e) if e.field == "drift_pause" && e.message.starts_with("unknown field") => {
            let mut without = contract.clone();
            if let Some(top) = without.as_object_mut() {
                top.remove("drift_pause");
            }
            ContractSpec::from_json(&to_json(&without)?).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}
