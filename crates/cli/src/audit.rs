//! The audit log: append-only JSON Lines, each record hash-chained to the one before.
//!
//! A record is `{seq, time, actor, action, contract, details, prev, hash}`: `prev` is
//! the previous record's `hash` (64 zeros after `sha256:` for the first), and `hash`
//! is the SHA-256 of the RFC 8785 canonical JSON of the record without `hash`. Editing
//! any field breaks that record's hash; deleting, inserting or moving a record breaks
//! `seq` or `prev` of the next one; and the state file holds the head's `seq` and
//! `hash`, so deleting or replacing the last record is caught as well.
//!
//! Each record is written with one `write` on a file opened for appending, then
//! fsynced: a crash can at worst leave a cut-off last line. The state is written
//! before the record and carries it in full, so `verify` reports that cut-off line
//! (or a record missing at the end) and the next ramp command repairs it from the
//! state — a log that disagrees with the state in any other way is refused.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::state::Head;

/// `prev` of the first record.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record: digest of its canonical JSON without the `hash` member.
pub fn record_hash(record: &Value) -> String {
    let mut body = record.clone();
    if let Some(members) = body.as_object_mut() {
        members.remove("hash");
    }
    crate::canonical_digest(&body)
}

/// A new record after `head` (or the first one), with its hash.
pub fn new_record(
    head: Option<&Head>,
    time: &str,
    actor: &str,
    action: &str,
    contract: &str,
    details: Value,
) -> Value {
    let (seq, prev) = match head {
        Some(h) => (h.seq + 1, h.hash.clone()),
        None => (1, GENESIS.to_owned()),
    };
    let mut record = json!({
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "contract": contract,
        "details": details,
        "prev": prev,
    });
    record["hash"] = Value::String(record_hash(&record));
    record
}

/// The head a record makes.
pub fn head_of(record: &Value) -> Head {
    Head {
        seq: record["seq"].as_u64().unwrap_or(0),
        hash: record["hash"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Appends `record` as one line with a single `write`, then fsyncs.
pub fn append(path: &Path, record: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    line.push(b'\n');
    let created = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // One write call: the kernel appends it whole or, if the process dies inside
    // it, leaves a prefix without the final newline, which `verify` recognises.
    let written = file.write(&line)?;
    if written != line.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short append ({written} of {} bytes)", line.len()),
        ));
    }
    file.sync_all()?;
    if created {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What is wrong with a log, at the first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line number of the first bad record (or one past the end).
    pub line: usize,
    /// Its `seq` if it has one.
    pub seq: Option<u64>,
    /// `malformed`, `edited`, `sequence`, `chain`, `torn`, `behind`, `ahead`, `head`.
    pub kind: &'static str,
    /// What it means.
    pub message: String,
    /// A crash left it and the next ramp command repairs it from the state.
    pub repairable: bool,
}

/// The outcome of checking a log.
#[derive(Debug, Clone)]
pub struct Report {
    /// Records that passed, in order.
    pub records: Vec<Value>,
    /// Byte length of the log up to the end of its last complete line.
    pub complete_len: usize,
    /// The first problem, if any.
    pub finding: Option<Finding>,
}

impl Report {
    /// Head of the records that passed.
    pub fn head(&self) -> Option<Head> {
        self.records.last().map(head_of)
    }
}

/// Checks the chain in `bytes`; with `state` (its head and its copy of the head
/// record), also that the log ends where the state says.
pub fn verify(bytes: &[u8], state: Option<(&Head, &Value)>) -> Report {
    let mut report = Report {
        records: Vec::new(),
        complete_len: 0,
        finding: None,
    };
    let mut prev = GENESIS.to_owned();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    let mut rest = bytes;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // A last line without its newline: an append that did not finish.
            let expected = report.records.len() as u64 + 1;
            let repairable = state.is_some_and(|(head, last)| {
                head.seq == expected && last["prev"].as_str() == Some(prev.as_str())
            });
            report.finding = Some(Finding {
                line: line_no,
                seq: None,
                kind: "torn",
                message: format!(
                    "line {line_no} is cut off (no newline at the end): an append interrupted by a crash, or a truncated log{}",
                    if repairable {
                        "; the state holds this record, the next ramp command rewrites it"
                    } else {
                        ""
                    }
                ),
                repairable,
            });
            return report;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let expected = report.records.len() as u64 + 1;
        let bad = |kind: &'static str, seq: Option<u64>, message: String| Finding {
            line: line_no,
            seq,
            kind,
            message,
            repairable: false,
        };
        let record: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                report.finding = Some(bad(
                    "malformed",
                    None,
                    format!("line {line_no} is not a JSON record (expected seq {expected})"),
                ));
                return report;
            }
        };
        let seq = record["seq"].as_u64();
        let missing = ["seq", "time", "actor", "action", "details", "prev", "hash"]
            .into_iter()
            .find(|k| record.get(k).is_none());
        if let Some(field) = missing {
            report.finding = Some(bad(
                "malformed",
                seq,
                format!("line {line_no}: the record has no `{field}`"),
            ));
            return report;
        }
        if record["hash"].as_str() != Some(record_hash(&record).as_str()) {
            report.finding = Some(bad(
                "edited",
                seq,
                format!(
                    "line {line_no} (seq {}): the record was changed after it was written (its hash does not match its content)",
                    seq.map_or("?".into(), |s| s.to_string())
                ),
            ));
            return report;
        }
        if seq != Some(expected) {
            report.finding = Some(bad(
                "sequence",
                seq,
                format!(
                    "line {line_no} holds seq {}, expected {expected}: a record was deleted, inserted or moved here",
                    seq.map_or("?".into(), |s| s.to_string())
                ),
            ));
            return report;
        }
        if record["prev"].as_str() != Some(prev.as_str()) {
            report.finding = Some(bad(
                "chain",
                seq,
                format!(
                    "line {line_no} (seq {expected}) does not link to the record before it: a record was replaced, inserted or moved"
                ),
            ));
            return report;
        }
        prev = record["hash"].as_str().unwrap_or_default().to_owned();
        offset += end + 1;
        report.complete_len = offset;
        report.records.push(record);
    }
    if let Some((head, last)) = state {
        let have = report.records.len() as u64;
        let at_end = line_no + 1;
        if have < head.seq {
            let repairable = have + 1 == head.seq
                && last["prev"].as_str() == Some(prev.as_str())
                && head_of(last) == *head;
            report.finding = Some(Finding {
                line: at_end,
                seq: Some(have + 1),
                kind: "behind",
                message: if repairable {
                    format!(
                        "the log ends at seq {have} but the state reflects seq {}: the last record was deleted, or a crash came before its append (the state holds it; the next ramp command appends it)",
                        head.seq
                    )
                } else {
                    format!(
                        "the log ends at seq {have} but the state reflects seq {}: records were deleted from the end",
                        head.seq
                    )
                },
                repairable,
            });
        } else if have > head.seq {
            report.finding = Some(Finding {
                line: head.seq as usize + 1,
                seq: Some(head.seq + 1),
                kind: "ahead",
                message: format!(
                    "the log goes on past seq {}, the last record the state reflects: records were added outside rampart, or the state file is an old copy",
                    head.seq
                ),
                repairable: false,
            });
        } else if prev != head.hash {
            // An empty log with a state at seq 0: no ramp command writes such a state
            // (`start` writes record 1 with it), so the state was edited.
            report.finding = Some(Finding {
                line: if have == 0 { at_end } else { have as usize },
                seq: Some(have),
                kind: "head",
                message: if have == 0 {
                    "the log is empty and the state reflects seq 0 with a head that is not the chain's start: the state file was edited".to_owned()
                } else {
                    format!(
                        "line {have} (seq {have}) is not the record the state reflects: the last record was replaced"
                    )
                },
                repairable: false,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> (Vec<u8>, Head, Value) {
        let mut bytes = Vec::new();
        let mut head: Option<Head> = None;
        let mut last = Value::Null;
        for i in 0..n {
            let r = new_record(
                head.as_ref(),
                "2026-01-01T00:00:00Z",
                "ops",
                "advance",
                "c",
                json!({ "step": i }),
            );
            bytes.extend(serde_json::to_vec(&r).unwrap());
            bytes.push(b'\n');
            head = Some(head_of(&r));
            last = r;
        }
        (bytes, head.unwrap(), last)
    }

    #[test]
    fn an_intact_log_verifies() {
        let (bytes, head, last) = log(4);
        let r = verify(&bytes, Some((&head, &last)));
        assert_eq!(r.finding, None);
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.head(), Some(head));
        assert_eq!(r.complete_len, bytes.len());
    }

    #[test]
    fn a_cut_off_append_is_torn_and_repairable_from_the_state() {
        let (bytes, _, _) = log(3);
        let (full, head, last) = log(4);
        let mut torn = full[..bytes.len() + 10].to_vec();
        let r = verify(&torn, Some((&head, &last)));
        let f = r.finding.unwrap();
        assert_eq!((f.kind, f.line, f.repairable), ("torn", 4, true));
        assert_eq!(r.complete_len, bytes.len());
        torn.truncate(bytes.len());
        let f = verify(&torn, Some((&head, &last))).finding.unwrap();
        assert_eq!((f.kind, f.repairable), ("behind", true));
    }

    #[test]
    fn a_log_two_records_behind_its_state_names_the_first_missing_one_and_is_not_repairable() {
        let (bytes, _, _) = log(4);
        let (_, head, last) = log(6);
        let f = verify(&bytes, Some((&head, &last))).finding.unwrap();
        // Only one missing record can come from a crash before its append.
        assert_eq!((f.kind, f.line, f.seq), ("behind", 5, Some(5)));
        assert!(!f.repairable, "{}", f.message);
        assert!(f.message.contains("deleted from the end"), "{}", f.message);
    }

    #[test]
    fn a_state_whose_head_record_disagrees_with_the_log_makes_nothing_repairable() {
        // Torn last line, the state at its seq, but the state's record links elsewhere.
        let (bytes, _, _) = log(3);
        let (full, head, mut last) = log(4);
        last["prev"] = GENESIS.into();
        let torn = &full[..bytes.len() + 10];
        let f = verify(torn, Some((&head, &last))).finding.unwrap();
        assert_eq!((f.kind, f.line, f.repairable), ("torn", 4, false));
        assert!(!f.message.contains("rewrites it"), "{}", f.message);
        // Torn last line whose record links right, but the state is one further on.
        let (_, head5, _) = log(5);
        let (_, _, last4) = log(4);
        let f = verify(torn, Some((&head5, &last4))).finding.unwrap();
        assert_eq!((f.kind, f.repairable), ("torn", false));
        // One record behind, the state's head is that record, but it links elsewhere.
        let f = verify(&bytes, Some((&head, &last))).finding.unwrap();
        assert_eq!((f.kind, f.seq, f.repairable), ("behind", Some(4), false));
        assert!(f.message.contains("deleted from the end"), "{}", f.message);
        // One record behind and linking right, but the state's head is another record.
        let (_, _, last4) = log(4);
        let other = Head {
            seq: 4,
            hash: GENESIS.into(),
        };
        let f = verify(&bytes, Some((&other, &last4))).finding.unwrap();
        assert_eq!((f.kind, f.repairable), ("behind", false));
    }

    #[test]
    fn the_last_record_replaced_or_an_edited_empty_state_is_a_head_finding() {
        let (bytes, head, last) = log(3);
        let replaced = Head {
            seq: 3,
            hash: GENESIS.into(),
        };
        let f = verify(&bytes, Some((&replaced, &last))).finding.unwrap();
        assert_eq!((f.kind, f.line, f.seq), ("head", 3, Some(3)));
        assert!(verify(&bytes, Some((&head, &last))).finding.is_none());
        // An empty log and a state at seq 0: consistent only with the chain's start.
        let start = Head {
            seq: 0,
            hash: GENESIS.into(),
        };
        assert!(verify(b"", Some((&start, &Value::Null))).finding.is_none());
        let edited = Head {
            seq: 0,
            hash: head.hash.clone(),
        };
        let f = verify(b"", Some((&edited, &Value::Null))).finding.unwrap();
        assert_eq!(
            (f.kind, f.line, f.seq, f.repairable),
            ("head", 1, Some(0), false)
        );
        assert!(f.message.contains("state file was edited"), "{}", f.message);
    }

    #[test]
    fn a_log_past_its_state_points_at_the_first_record_the_state_does_not_reflect() {
        let (bytes, _, _) = log(4);
        let (_, head, last) = log(2);
        let r = verify(&bytes, Some((&head, &last)));
        let f = r.finding.unwrap();
        assert_eq!((f.kind, f.line, f.seq), ("ahead", 3, Some(3)));
        assert!(!f.repairable);
        assert_eq!(r.records.len(), 4);
    }
}
