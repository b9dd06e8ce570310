//! Signed approvals. A plan's `approval.allowed_signers` names an OpenSSH
//! `allowed_signers` file; `ramp approve` then takes an SSHSIG signature (`ssh-keygen -Y
//! sign -n rampart-approval`) over the approval [`Statement`] `ramp statement` prints,
//! and records who signed, with which key, the statement and the signature, so that
//! `audit verify` can check every approval again later.
//!
//! Everything here is pure (bytes in, verdict out), so each check is tested on its
//! own: [`statement`] the signed bytes and their freshness, [`signers`] the
//! `allowed_signers` file, [`check`] the whole verdict for `approve` and for an audit
//! record.

pub mod signers;
pub mod statement;

use serde_json::{json, Value};
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::audit::Finding;
use crate::state::Head;
use crate::time::parse_rfc3339;

pub use signers::AllowedSigners;
pub use statement::Statement;

/// The SSHSIG namespace of approvals: a signature made for anything else (a git commit,
/// a file) is refused, and an approval signature means nothing elsewhere.
pub const NAMESPACE: &str = "rampart-approval";

/// The audit action whose records carry approvals.
pub const APPROVE_ACTION: &str = "approve";

/// A signature that passed every check: who signed, and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principals the key is listed for (the `allowed_signers` field as written).
    pub principal: String,
    /// The key's SHA-256 fingerprint, as `ssh-keygen -l` prints it (`SHA256:…`).
    pub key: String,
}

/// A signed approval as the audit record keeps it: enough to verify it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedApproval {
    /// Who signed and with which key.
    pub signer: Verified,
    /// The statement exactly as signed.
    pub statement: String,
    /// The signature, ASCII-armored as `ssh-keygen -Y sign` writes it.
    pub armored: String,
}

impl SignedApproval {
    /// The `signature` member of an approve record's details.
    pub fn to_json(&self) -> Value {
        json!({
            "principal": self.signer.principal,
            "key": self.signer.key,
            "namespace": NAMESPACE,
            "statement": self.statement,
            "armored": self.armored,
        })
    }

    /// Reads the `signature` member back; `None` if `value` is not one.
    pub fn from_json(value: &Value) -> Option<SignedApproval> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(SignedApproval {
            signer: Verified {
                principal: text("principal")?,
                key: text("key")?,
            },
            statement: text("statement")?,
            armored: text("armored")?,
        })
    }
}

/// The full check of a signed approval: `statement` (the bytes signed) parses as a
/// statement, `armored` is a valid signature over them in [`NAMESPACE`] by a key
/// `signers` list for that namespace at the statement's time, the statement approves
/// what `expected` describes (its time aside: a statement for another head, delta or
/// contract is a replay), and it was made no longer than [`statement::MAX_AGE_SECONDS`]
/// before `now` (nor more than [`statement::MAX_SKEW_SECONDS`] after it).
pub fn check(
    signers: &AllowedSigners,
    statement: &[u8],
    armored: &str,
    expected: &Statement,
    now: u64,
) -> Result<SignedApproval, String> {
    let parsed = Statement::parse(statement)?;
    let at = parsed.time_unix()?;
    let signer = verify_signature(signers, statement, armored, at)?;
    if let Some(what) = parsed.differs_from(expected) {
        return Err(format!(
            "the signed statement {what}: it approves another state of the ramp (replayed or stale); print a new one with `rampart ramp statement`"
        ));
    }
    parsed.check_fresh(now)?;
    Ok(SignedApproval {
        signer,
        statement: String::from_utf8_lossy(statement).into_owned(),
        armored: armored.to_owned(),
    })
}

/// Checks that `armored` is a valid SSHSIG signature over `message` in [`NAMESPACE`],
/// by a key `signers` list for that namespace at Unix time `at`.
pub fn verify_signature(
    signers: &AllowedSigners,
    message: &[u8],
    armored: &str,
    at: u64,
) -> Result<Verified, String> {
    let signature = SshSig::from_pem(armored.trim()).map_err(|e| {
        format!("the signature is not an SSH signature (-----BEGIN SSH SIGNATURE-----): {e}")
    })?;
    if signature.namespace() != NAMESPACE {
        return Err(format!(
            "the signature is for the namespace `{}`, not `{NAMESPACE}`: sign with `ssh-keygen -Y sign -n {NAMESPACE}`",
            signature.namespace()
        ));
    }
    let key = signature.public_key();
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    PublicKey::from(key.clone())
        .verify(NAMESPACE, message, &signature)
        .map_err(|_| {
            format!(
                "the signature by key {fingerprint} does not verify over the statement: the statement was altered, or the signature was made over other bytes"
            )
        })?;
    let signer = signers
        .find(key, NAMESPACE, at)
        .map_err(|why| format!("key {fingerprint} {why}"))?;
    Ok(Verified {
        principal: signer.principals.clone(),
        key: fingerprint,
    })
}

/// Verifies the approval an `approve` audit record carries against `signers`: the
/// signature and statement as [`check`] does at approval time, with the record's own
/// seq, chain link, contract and digests as what it must approve and the record's time
/// as "now"; and the principal, key and actor the record names are the signer's.
pub fn check_record(record: &Value, signers: &AllowedSigners) -> Result<Verified, String> {
    let details = &record["details"];
    let Some(signed) = SignedApproval::from_json(&details["signature"]) else {
        return Err(
            "the approval carries no signature, but the plan requires signed approvals (approval.allowed_signers)"
                .into(),
        );
    };
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let seq = record["seq"].as_u64().unwrap_or(0);
    let expected = Statement::new(
        &text(&record["contract"]),
        &text(&details["old"]),
        &text(&details["new"]),
        &text(&details["delta_digest"]),
        &Head {
            seq: seq.saturating_sub(1),
            hash: text(&record["prev"]),
        },
        0,
    );
    let recorded_at = parse_rfc3339(record["time"].as_str().unwrap_or_default())
        .ok_or("the record's time is not RFC 3339 UTC")?;
    let verified = check(
        signers,
        signed.statement.as_bytes(),
        &signed.armored,
        &expected,
        recorded_at,
    )?
    .signer;
    if verified != signed.signer {
        return Err(format!(
            "the record names {} (key {}), but the signature is by {} (key {})",
            signed.signer.principal, signed.signer.key, verified.principal, verified.key
        ));
    }
    if record["actor"].as_str() != Some(verified.principal.as_str()) {
        return Err(format!(
            "the record's actor is {}, but the signature is by {}",
            record["actor"], verified.principal
        ));
    }
    Ok(verified)
}

/// What checking a log's approvals found.
#[derive(Debug, Clone, Default)]
pub struct LogCheck {
    /// The signed approvals that verified: seq and signer.
    pub verified: Vec<(u64, Verified)>,
    /// The first approval that did not, as an audit finding.
    pub finding: Option<Finding>,
}

/// Checks every approve record of `records` (a verified chain, line `i + 1` holding
/// `records[i]`) against `signers`.
pub fn check_log(records: &[Value], signers: &AllowedSigners) -> LogCheck {
    let mut out = LogCheck::default();
    for (index, record) in records.iter().enumerate() {
        if record["action"] != APPROVE_ACTION {
            continue;
        }
        let seq = record["seq"].as_u64().unwrap_or(0);
        match check_record(record, signers) {
            Ok(signer) => out.verified.push((seq, signer)),
            Err(why) => {
                let line = index + 1;
                out.finding = Some(Finding {
                    line,
                    seq: Some(seq),
                    kind: "signature",
                    message: format!("line {line} (seq {seq}): approval refused: {why}"),
                    repairable: false,
                });
                return out;
            }
        }
    }
    out
}

/// How many approve records of `records` carry a signature (to say they went unchecked).
pub fn signed_count(records: &[Value]) -> usize {
    records
        .iter()
        .filter(|r| r["action"] == APPROVE_ACTION && r["details"].get("signature").is_some())
        .count()
}

#[cfg(test)]
mod tests {
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::{LineEnding, PrivateKey};

    use super::*;
    use crate::audit::new_record;

    const NOW: u64 = 1_767_268_800; // 2026-01-01T12:00:00Z

    /// A deterministic Ed25519 key from `seed` (Ed25519 signatures are deterministic).
    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn public_line(key: &PrivateKey) -> String {
        key.public_key().to_openssh().unwrap()
    }

    fn sign(key: &PrivateKey, namespace: &str, message: &[u8]) -> String {
        SshSig::sign(key, namespace, HashAlg::Sha512, message)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    fn fingerprint(key: &PrivateKey) -> String {
        key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// alice (key 1) is listed for approvals; key 2 is listed for git only.
    fn signers() -> AllowedSigners {
        AllowedSigners::parse(&format!(
            "alice@example.com {}\nbob@example.com namespaces=\"git\" {}\n",
            public_line(&key(1)),
            public_line(&key(2))
        ))
        .unwrap()
    }

    fn head() -> Head {
        Head {
            seq: 2,
            hash: "sha256:head".into(),
        }
    }

    fn statement(at: u64) -> Statement {
        Statement::new(
            "checkout-v2",
            "sha256:old",
            "sha256:new",
            "sha256:delta",
            &head(),
            at,
        )
    }

    #[test]
    fn a_listed_key_signing_the_current_statement_passes() {
        let bytes = statement(NOW).to_bytes();
        let armored = sign(&key(1), NAMESPACE, &bytes);
        let signed = check(&signers(), &bytes, &armored, &statement(0), NOW + 60).unwrap();
        assert_eq!(
            signed.signer,
            Verified {
                principal: "alice@example.com".into(),
                key: fingerprint(&key(1)),
            }
        );
        assert_eq!(signed.statement.as_bytes(), bytes.as_slice());
        assert_eq!(SignedApproval::from_json(&signed.to_json()), Some(signed));
    }

    #[test]
    fn forged_misplaced_replayed_and_stale_signatures_are_refused() {
        let bytes = statement(NOW).to_bytes();
        let refused = |armored: &str, message: &[u8], expected: &Statement, now: u64| {
            check(&signers(), message, armored, expected, now).unwrap_err()
        };
        let good = sign(&key(1), NAMESPACE, &bytes);
        let cases = [
            (
                refused(
                    &sign(&key(3), NAMESPACE, &bytes),
                    &bytes,
                    &statement(0),
                    NOW,
                ),
                "is not listed",
            ),
            (
                refused(
                    &sign(&key(2), NAMESPACE, &bytes),
                    &bytes,
                    &statement(0),
                    NOW,
                ),
                "only for the namespaces \"git\"",
            ),
            (
                refused(&sign(&key(1), "git", &bytes), &bytes, &statement(0), NOW),
                "namespace `git`",
            ),
            (
                refused(&good, &statement(NOW + 1).to_bytes(), &statement(0), NOW),
                "does not verify",
            ),
            (
                refused(
                    &good,
                    &bytes,
                    &Statement {
                        extends: Head {
                            seq: 3,
                            hash: "sha256:next".into(),
                        },
                        ..statement(0)
                    },
                    NOW,
                ),
                "extends audit record seq 2",
            ),
            (
                refused(
                    &good,
                    &bytes,
                    &Statement {
                        delta: "sha256:other".into(),
                        ..statement(0)
                    },
                    NOW,
                ),
                "has delta sha256:delta",
            ),
            (
                refused(
                    &good,
                    &bytes,
                    &statement(0),
                    NOW + statement::MAX_AGE_SECONDS + 1,
                ),
                "expired",
            ),
            (
                refused("not armored", &bytes, &statement(0), NOW),
                "not an SSH signature",
            ),
            (
                refused(&good, b"{}\n", &statement(0), NOW),
                "not an approval statement",
            ),
        ];
        for (error, needle) in cases {
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }

    /// An approve record as `ramp approve` writes it, signed by `signer` with `armored`
    /// over `statement`, after `head`.
    fn record(statement: &Statement, signer: &PrivateKey, principal: &str) -> Value {
        let bytes = statement.to_bytes();
        let signed = SignedApproval {
            signer: Verified {
                principal: principal.into(),
                key: fingerprint(signer),
            },
            statement: String::from_utf8(bytes.clone()).unwrap(),
            armored: sign(signer, NAMESPACE, &bytes),
        };
        let details = json!({
            "old": statement.old, "new": statement.new, "delta_digest": statement.delta,
            "signature": signed.to_json(),
        });
        new_record(
            Some(&head()),
            &crate::time::rfc3339(NOW + 30),
            principal,
            APPROVE_ACTION,
            "checkout-v2",
            details,
        )
    }

    #[test]
    fn an_audit_record_is_checked_against_its_own_seq_link_digests_and_time() {
        let good = record(&statement(NOW), &key(1), "alice@example.com");
        assert_eq!(
            check_record(&good, &signers()).unwrap().principal,
            "alice@example.com"
        );
        type Edit = fn(&mut Value);
        let edits: [(&str, Edit); 8] = [
            ("actor is \"mallory\"", |r| r["actor"] = json!("mallory")),
            ("names mallory", |r| {
                r["details"]["signature"]["principal"] = json!("mallory")
            }),
            ("(key SHA256:x)", |r| {
                r["details"]["signature"]["key"] = json!("SHA256:x")
            }),
            ("has new sha256:new", |r| {
                r["details"]["new"] = json!("sha256:forged")
            }),
            ("extends audit record seq 2", |r| r["seq"] = json!(9)),
            ("extends audit record seq 2 (sha256:head)", |r| {
                r["prev"] = json!("sha256:x")
            }),
            ("expired", |r| r["time"] = json!("2026-01-02T00:00:00Z")),
            ("carries no signature", |r| {
                r["details"].as_object_mut().unwrap().remove("signature");
            }),
        ];
        for (needle, edit) in edits {
            let mut tampered = good.clone();
            edit(&mut tampered);
            let error = check_record(&tampered, &signers()).unwrap_err();
            assert!(error.contains(needle), "{needle}: {error}");
        }
        let mut time = good.clone();
        time["time"] = json!("later");
        assert!(check_record(&time, &signers())
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn a_log_check_names_the_line_of_the_first_refused_approval() {
        let good = record(&statement(NOW), &key(1), "alice@example.com");
        let forged = record(&statement(NOW), &key(3), "alice@example.com");
        let other = json!({ "action": "advance", "seq": 1 });
        let check = check_log(&[other.clone(), good.clone()], &signers());
        assert_eq!(check.verified.len(), 1);
        assert_eq!(check.finding, None);
        let check = check_log(&[other, good.clone(), forged.clone(), good], &signers());
        assert_eq!(check.verified.len(), 1);
        let finding = check.finding.unwrap();
        assert_eq!(
            (finding.line, finding.kind, finding.repairable),
            (3, "signature", false)
        );
        assert!(
            finding.message.contains("is not listed"),
            "{}",
            finding.message
        );
        assert_eq!(signed_count(&[forged]), 1);
        assert_eq!(
            signed_count(&[json!({ "action": "approve", "details": {} })]),
            0
        );
    }
}
