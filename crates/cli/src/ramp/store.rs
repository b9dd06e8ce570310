//! What the ramp commands read and write: the plan's files, the state, the audit log,
//! the ECDS publish, the live config and the counters; and the repair of what a crash
//! left half done.
//!
//! Every change follows one order: state file (atomic, carrying the new audit
//! record), then the audit append, then the publish. So a crash at any point leaves a
//! state that names everything still to do, and the next changing command finishes it
//! ([`Ctx::reconcile`]) before doing anything else.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use rampart::contract::LockSpec;
use rampart::jcs::{Json, DEFAULT_MAX_DEPTH};
use rampart::snapshot::lock_from_snapshot;
use serde_json::{json, Value};

use crate::args::{ChangeArgs, PlanArgs};
use crate::audit;
use crate::ecds;
use crate::files::{file_name, parent_dir, temp_prefix};
use crate::metrics::{self, Reading};
use crate::plan::{LiveSource, RampPlan};
use crate::state::{self, ChangeLock, HistoryEntry, Lock, State};
use crate::time::rfc3339;
use crate::Failure;

/// What one ramp command works with.
pub struct Ctx {
    /// The plan.
    pub plan: RampPlan,
    /// The state file (the plan's, or `--state`).
    pub state_path: PathBuf,
    /// The audit log (the plan's, or `--audit`).
    pub audit_path: PathBuf,
    /// Who the audit records name.
    pub actor: String,
    /// Why, recorded in every record this command writes.
    pub reason: Option<String>,
    /// Whether the answer is one JSON object.
    pub json: bool,
    /// Whether this command printed its answer already (so a failure adds none).
    pub printed: Cell<bool>,
}

impl Ctx {
    /// Loads the plan and settles the paths and the actor (`--by`, else `$USER`).
    pub fn new(args: &PlanArgs, change: &ChangeArgs) -> Result<Ctx, Failure> {
        let plan = RampPlan::load(&args.plan)?;
        let state_path = args
            .state
            .clone()
            .unwrap_or_else(|| plan.state_path.clone());
        let audit_path = args
            .audit
            .clone()
            .unwrap_or_else(|| plan.audit_path.clone());
        let actor = change
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        Ok(Ctx {
            plan,
            state_path,
            audit_path,
            actor,
            reason: change.reason.clone(),
            json: args.json,
            printed: Cell::new(false),
        })
    }

    /// The state, or `None` before the first start.
    pub fn load_state(&self) -> Result<Option<State>, Failure> {
        State::load(&self.state_path)
    }

    /// The state of a started ramp, as it is on disk now.
    pub fn require_state(&self) -> Result<State, Failure> {
        self.load_state()?.ok_or_else(|| {
            Failure::NotAllowed(format!(
                "no ramp started ({} does not exist); run `rampart ramp start --plan {}`",
                self.state_path.display(),
                self.plan.path.display()
            ))
        })
    }

    /// The state of a started ramp, after finishing what a crash left undone, with
    /// the lock that keeps other commands from changing it meanwhile.
    pub fn started_state(&self) -> Result<(State, ChangeLock), Failure> {
        let guard = ChangeLock::acquire(&self.state_path)?;
        let state = self.require_state()?;
        self.reconcile(&state)?;
        Ok((state, guard))
    }

    /// Repairs what a crash between the three writes of a change left: a cut-off or
    /// missing last audit record (rewritten from the state), an unpublished contract.
    pub fn reconcile(&self, state: &State) -> Result<(), Failure> {
        self.remove_leftovers();
        let bytes = read_log(&self.audit_path)?;
        let report = audit::verify(&bytes, Some((&state.audit, &state.last_record)));
        if let Some(finding) = &report.finding {
            if !finding.repairable {
                return Err(Failure::Invalid(format!(
                    "audit log {}: {}; refusing to change the ramp (see `rampart audit verify`)",
                    self.audit_path.display(),
                    finding.message
                )));
            }
            if finding.kind == "torn" {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&self.audit_path)
                    .and_then(|f| {
                        f.set_len(report.complete_len as u64)?;
                        f.sync_all()
                    });
                file.map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
                eprintln!(
                    "repaired: removed the cut-off last line of {}",
                    self.audit_path.display()
                );
            }
            audit::append(&self.audit_path, &state.last_record)
                .map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
            eprintln!(
                "repaired: appended audit record {} from the state (a crash came before its append)",
                state.audit.seq
            );
        }
        let contract = self.contract_of(state)?;
        if !self.is_published(&contract) {
            self.publish(&contract)?;
            eprintln!(
                "repaired: published {} at {}% (a crash came before the publish)",
                state.contract, state.percent
            );
        }
        Ok(())
    }

    /// Deletes temporary and pid files that killed commands left (the caller holds
    /// the change lock).
    fn remove_leftovers(&self) {
        let state_name = file_name(&self.state_path);
        let state_dir = parent_dir(&self.state_path);
        state::remove_leftovers(&state_dir, &temp_prefix(&state_name));
        state::remove_leftovers(&state_dir, &format!("{state_name}.lock."));
        let ecds = &self.plan.publish.ecds_path;
        state::remove_leftovers(&parent_dir(ecds), &temp_prefix(&file_name(ecds)));
    }

    /// The contract `state` publishes: paused while the drift pause is durable.
    pub fn contract_of(&self, state: &State) -> Result<Value, Failure> {
        self.plan
            .contract(state.percent, &lock_spec(&state.lock), state.durable_pause)
            .map_err(Failure::Invalid)
    }

    /// Whether the ECDS file holds `contract` now.
    pub fn is_published(&self, contract: &Value) -> bool {
        let p = &self.plan.publish;
        let expected = ecds::discovery_resource(&p.filter_name, &p.wasm, contract);
        std::fs::read(&p.ecds_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|current| current == expected)
    }

    fn publish(&self, contract: &Value) -> Result<(), Failure> {
        let p = &self.plan.publish;
        ecds::publish(&p.ecds_path, &p.filter_name, &p.wasm, contract)
            .map_err(|e| Failure::Io(format!("publishing to {}: {e}", p.ecds_path.display())))
    }

    /// Records a change made at `now` by this command's actor: the new state (carrying
    /// the audit record), then the record, then the publish. Returns the record.
    pub fn commit(
        &self,
        head: Option<&State>,
        next: &mut State,
        action: &str,
        details: Value,
        now: u64,
    ) -> Result<Value, Failure> {
        self.commit_as(&self.actor, head, next, action, details, now)
    }

    /// [`Ctx::commit`] with another actor (a signed approval's principal).
    pub fn commit_as(
        &self,
        actor: &str,
        head: Option<&State>,
        next: &mut State,
        action: &str,
        mut details: Value,
        now: u64,
    ) -> Result<Value, Failure> {
        let time = rfc3339(now);
        if let Some(reason) = &self.reason {
            details["reason"] = Value::String(reason.clone());
        }
        details["status"] = json!(next.status.as_str());
        details["step"] = json!(next.step);
        details["percent"] = json!(next.percent);
        details["lock"] = json!(next.lock.digest);
        let contract = self.contract_of(next)?;
        next.published = crate::canonical_digest(&contract);
        let record = audit::new_record(
            head.map(|s| &s.audit),
            &time,
            actor,
            action,
            &next.contract,
            details,
        );
        next.audit = audit::head_of(&record);
        next.last_record = record.clone();
        next.history.push(HistoryEntry {
            seq: next.audit.seq,
            time,
            actor: actor.to_owned(),
            action: action.to_owned(),
            status: next.status,
            step: next.step,
            percent: next.percent,
        });
        next.save(&self.state_path)?;
        audit::append(&self.audit_path, &record)
            .map_err(|e| Failure::Io(format!("{}: {e}", self.audit_path.display())))?;
        if !self.is_published(&contract) {
            self.publish(&contract)?;
        }
        Ok(record)
    }

    /// The live config snapshot.
    pub fn read_live(&self) -> Result<Json, Failure> {
        let (bytes, source) = match &self.plan.live {
            LiveSource::File(path) => (
                std::fs::read(path)
                    .map_err(|e| Failure::Io(format!("live snapshot {}: {e}", path.display())))?,
                path.display().to_string(),
            ),
            LiveSource::Url(url) => (
                crate::http::get(url).map_err(|e| Failure::Io(format!("live snapshot: {e}")))?,
                url.clone(),
            ),
        };
        Json::parse(&bytes, DEFAULT_MAX_DEPTH)
            .map_err(|e| Failure::Invalid(format!("live snapshot {source}: {e}")))
    }

    /// The counters now, or `None` without a metrics source.
    pub fn read_metrics(&self) -> Result<Option<Reading>, Failure> {
        match &self.plan.metrics {
            None => Ok(None),
            Some(source) => metrics::read(source, &self.plan.name)
                .map(Some)
                .map_err(|e| Failure::Io(format!("metrics ({}): {e}", source.describe()))),
        }
    }

    /// The plan's tested snapshot.
    pub fn read_snapshot(&self) -> Result<Json, Failure> {
        let path = &self.plan.snapshot_path;
        let bytes =
            std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
        Json::parse(&bytes, DEFAULT_MAX_DEPTH)
            .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))
    }
}

/// The audit log's bytes; a log not written yet is empty.
pub fn read_log(path: &Path) -> Result<Vec<u8>, Failure> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Failure::Usage(format!("{}: {e}", path.display()))),
    }
}

/// The contract's `lock` member for the lock in force.
pub fn lock_spec(lock: &Lock) -> LockSpec {
    LockSpec {
        digest: Some(lock.digest.clone()),
        fields: Some(lock.fields.clone()),
    }
}

/// A stored snapshot (state file JSON) as the core's JSON.
pub fn to_json(value: &Value) -> Json {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Json::parse(&bytes, DEFAULT_MAX_DEPTH).unwrap_or(Json::Null)
}

/// A snapshot as JSON for the state file.
pub fn to_value(json: &Json) -> Value {
    serde_json::from_slice(&json.to_canonical()).unwrap_or(Value::Null)
}

/// The lock of `snapshot` under the plan's contract, or the field that does not fit.
pub fn lock_of(plan: &RampPlan, snapshot: &Json, what: &str) -> Result<Lock, Failure> {
    let spec = plan.spec(plan.steps[0]).map_err(Failure::Invalid)?;
    let lock = lock_from_snapshot(&spec, snapshot)
        .map_err(|e| Failure::Invalid(format!("{what}: {e}")))?;
    Ok(Lock {
        digest: lock.digest.unwrap_or_default(),
        fields: lock.fields.unwrap_or_default(),
    })
}

/// A fresh window for the gates, starting `now` from the counters of `reading`.
pub fn new_window(state: &mut State, reading: Option<Reading>, now: u64) {
    state.step_started = rfc3339(now);
    state.step_started_unix = now;
    state.baseline = reading.map(|r| r.counters);
}
