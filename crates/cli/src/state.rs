//! The ramp's state file: where the ramp is, what it is locked to, and which audit
//! record it reflects. Written atomically, so a crash leaves the old or the new state.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::Counters;

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// Where a ramp stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Advancing while the gates pass.
    Running,
    /// Held by an operator; traffic stays at the current step.
    Paused,
    /// Stopped by a gate; traffic stays at the current step.
    Blocked,
    /// The last step passed its gates.
    Completed,
    /// Everyone sent to stable.
    Reverted,
}

impl Status {
    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Blocked => "blocked",
            Status::Completed => "completed",
            Status::Reverted => "reverted",
        }
    }
}

/// Why a ramp is blocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// `config` (live snapshot differs from the lock; needs an approval or the old
    /// config back) or `drift` (drift ratio over the limit, or the data plane's drift
    /// pause; `resume` after review, or an approval).
    pub reason: String,
    /// Digest of the live snapshot (config) when it blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_digest: Option<String>,
    /// The drift ratio (drift) when it blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_ratio: Option<f64>,
    /// Audit sequence number of the blocking record.
    pub seq: u64,
}

/// The lock in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Digest of the whole locked snapshot.
    pub digest: String,
    /// Digest of each input's value.
    pub fields: BTreeMap<String, String>,
}

/// The audit record a state reflects: the head of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// One step change or status change, for a quick look without the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Audit sequence number.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Who.
    pub actor: String,
    /// What (`start`, `advance`, `block`, ...).
    pub action: String,
    /// Status after it.
    pub status: Status,
    /// Step after it (1-based).
    pub step: usize,
    /// Published percent after it.
    pub percent: f64,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Contract name.
    pub contract: String,
    /// Where the ramp stands.
    pub status: Status,
    /// Why it is blocked, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Block>,
    /// The data plane's drift pause was seen and made durable: the published contract
    /// carries `paused: true` (everyone on stable, also in an Envoy that restarts and so
    /// forgets its own pause) until an approval or a resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub durable_pause: bool,
    /// Current step, 1-based into the plan's steps.
    pub step: usize,
    /// Number of steps in the plan when the ramp started.
    pub steps: usize,
    /// Published canary percent (0 once reverted).
    pub percent: f64,
    /// The lock in force.
    pub lock: Lock,
    /// The snapshot the lock was computed from (after an approval: the approved one).
    pub locked_snapshot: Value,
    /// When the current step (or window, after a resume) began: RFC 3339.
    pub step_started: String,
    /// The same as Unix seconds.
    pub step_started_unix: u64,
    /// The counters when the step began; `None` without a metrics source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Counters>,
    /// Digest of the canonical JSON of the contract this state publishes.
    pub published: String,
    /// Head of the audit chain this state reflects.
    pub audit: Head,
    /// That head record in full: a crash between writing this state and appending the
    /// record to the log is repaired from here.
    pub last_record: Value,
    /// Step and status changes.
    pub history: Vec<HistoryEntry>,
}

impl State {
    /// Reads the state at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<State>, crate::Failure> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::Failure::Usage(format!("{}: {e}", path.display()))),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| {
            crate::Failure::Invalid(format!("{}: not a ramp state file: {e}", path.display()))
        })?;
        if state.version != STATE_VERSION {
            return Err(crate::Failure::Invalid(format!(
                "{}: version: {} is not supported (expected {STATE_VERSION})",
                path.display(),
                state.version
            )));
        }
        Ok(Some(state))
    }

    /// Writes the state atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: &Path) -> Result<(), crate::Failure> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| crate::Failure::Invalid(format!("state: {e}")))?;
        text.push('\n');
        crate::files::write_atomically(path, text.as_bytes())
            .map_err(|e| crate::Failure::Io(format!("{}: {e}", path.display())))
    }
}

/// Held while one command changes a ramp, so two commands cannot interleave their
/// state, audit and publish writes. A file `<state>.lock` holding the owner's pid,
/// created exclusively; a lock left by a killed command (its pid no longer runs) is
/// taken over. Released on drop.
pub struct ChangeLock {
    path: std::path::PathBuf,
}

impl ChangeLock {
    /// Takes the lock next to the state file at `state_path`.
    pub fn acquire(state_path: &Path) -> Result<ChangeLock, crate::Failure> {
        let mut name = state_path.as_os_str().to_owned();
        name.push(".lock");
        let path = std::path::PathBuf::from(name);
        // The pid is written to a file of its own first and then linked into place, so
        // the lock file never exists without its owner's pid, even after a kill -9.
        let mut own = path.as_os_str().to_owned();
        own.push(format!(".{}", std::process::id()));
        let own = std::path::PathBuf::from(own);
        std::fs::write(&own, format!("{}\n", std::process::id()))
            .map_err(|e| crate::Failure::Io(format!("{}: {e}", own.display())))?;
        let taken = (|| {
            for _ in 0..2 {
                match std::fs::hard_link(&own, &path) {
                    Ok(()) => return Ok(ChangeLock { path: path.clone() }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let owner = std::fs::read_to_string(&path).unwrap_or_default();
                        let owner = owner.trim().to_owned();
                        // Without /proc (not Linux) a leftover cannot be told from a live owner.
                        if !process_gone(&owner) {
                            return Err(crate::Failure::NotAllowed(format!(
                                "another rampart command (pid {owner}) is changing this ramp; if none runs, remove {}",
                                path.display()
                            )));
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                    Err(e) => {
                        return Err(crate::Failure::Io(format!("{}: {e}", path.display())));
                    }
                }
            }
            Err(crate::Failure::NotAllowed(format!(
                "could not take {}; another rampart command may be changing this ramp",
                path.display()
            )))
        })();
        let _ = std::fs::remove_file(&own);
        taken
    }
}

/// Whether process `pid` has ended (only known where /proc exists).
fn process_gone(pid: &str) -> bool {
    Path::new("/proc/self").exists()
        && pid.parse::<u32>().is_ok()
        && !Path::new("/proc").join(pid).exists()
}

/// Removes what killed commands left in `dir`: files named `prefix` + a pid (+ more)
/// whose process has ended — temporary files of atomic writes, pid files of locks.
/// Call it holding the [`ChangeLock`], so no live command of this ramp is writing them.
pub fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or_default();
        if process_gone(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for ChangeLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
