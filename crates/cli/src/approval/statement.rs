//! The approval statement: what an approver signs. Its bytes are defined once, here:
//! the RFC 8785 canonical JSON of
//!
//! ```json
//! {"approval":"rampart-approval/v1","contract":"checkout-v2","delta":"sha256:…",
//!  "extends":{"hash":"sha256:…","seq":3},"new":"sha256:…","old":"sha256:…",
//!  "time":"2026-01-01T12:00:00Z"}
//! ```
//!
//! followed by one newline, so the file `ramp statement` writes is a text line that
//! `ssh-keygen -Y sign` signs as it is. `extends` is the audit record the approval
//! follows (the state's head): once anything else is recorded, the statement no
//! longer applies. `time` bounds how long a signature stays usable.

use serde::{Deserialize, Serialize};

use crate::state::Head;
use crate::time::{parse_rfc3339, rfc3339};

/// The statement's `approval` member: what the bytes are, and their version.
pub const KIND: &str = "rampart-approval/v1";

/// How long after its `time` a statement may be used to approve: long enough to review
/// and sign, short enough that a leaked signature soon stops mattering.
pub const MAX_AGE_SECONDS: u64 = 15 * 60;

/// How far a statement's `time` may be ahead of the approving machine's clock (the
/// statement may be printed on another machine).
pub const MAX_SKEW_SECONDS: u64 = 2 * 60;

/// An approval statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`KIND`].
    pub approval: String,
    /// The contract of the ramp.
    pub contract: String,
    /// Digest of the locked snapshot the approval moves from.
    pub old: String,
    /// Digest of the live snapshot it approves.
    pub new: String,
    /// Digest of the delta between them.
    pub delta: String,
    /// The audit record the approval follows.
    pub extends: Head,
    /// When the statement was made: `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
}

impl Statement {
    /// The statement approving `old` → `new` (delta `delta`) of `contract` after audit
    /// record `extends`, made at Unix time `now`.
    pub fn new(
        contract: &str,
        old: &str,
        new: &str,
        delta: &str,
        extends: &Head,
        now: u64,
    ) -> Statement {
        Statement {
            approval: KIND.to_owned(),
            contract: contract.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
            delta: delta.to_owned(),
            extends: extends.clone(),
            time: rfc3339(now),
        }
    }

    /// The bytes to sign: canonical JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut bytes = crate::canonical_json(&value);
        bytes.push(b'\n');
        bytes
    }

    /// Reads a statement back from exactly the bytes [`Statement::to_bytes`] writes;
    /// anything else (another layout, a member more or less, a changed line ending) is
    /// refused, so what is verified is what was signed.
    pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
        let statement: Statement = serde_json::from_slice(bytes)
            .map_err(|e| format!("the statement is not an approval statement: {e}"))?;
        if statement.approval != KIND {
            return Err(format!(
                "the statement is `{}`, not a `{KIND}` statement",
                statement.approval
            ));
        }
        if statement.to_bytes() != bytes {
            return Err(
                "the statement is not byte for byte as `rampart ramp statement` writes it (canonical JSON and one newline): sign that file unchanged"
                    .into(),
            );
        }
        Ok(statement)
    }

    /// The statement's time as Unix seconds.
    pub fn time_unix(&self) -> Result<u64, String> {
        parse_rfc3339(&self.time).ok_or_else(|| {
            format!(
                "the statement's time `{}` is not YYYY-MM-DDTHH:MM:SSZ",
                self.time
            )
        })
    }

    /// The first member that differs from `expected`, the time aside, described for
    /// an error message; `None` if the statement approves what `expected` does.
    pub fn differs_from(&self, expected: &Statement) -> Option<String> {
        let pairs = [
            ("approval", &self.approval, &expected.approval),
            ("contract", &self.contract, &expected.contract),
            ("old", &self.old, &expected.old),
            ("new", &self.new, &expected.new),
            ("delta", &self.delta, &expected.delta),
        ];
        if let Some((name, got, want)) = pairs.into_iter().find(|(_, got, want)| got != want) {
            return Some(format!("has {name} {got}, the ramp's is {want}"));
        }
        if self.extends != expected.extends {
            return Some(format!(
                "extends audit record seq {} ({}), the ramp's head is seq {} ({})",
                self.extends.seq, self.extends.hash, expected.extends.seq, expected.extends.hash
            ));
        }
        None
    }

    /// Whether the statement may still be used at Unix time `now`: made at most
    /// [`MAX_AGE_SECONDS`] before it and at most [`MAX_SKEW_SECONDS`] after it.
    pub fn check_fresh(&self, now: u64) -> Result<(), String> {
        let at = self.time_unix()?;
        if at > now.saturating_add(MAX_SKEW_SECONDS) {
            return Err(format!(
                "the statement's time {} is more than {MAX_SKEW_SECONDS}s ahead of this machine's clock ({}): check the clocks",
                self.time,
                rfc3339(now)
            ));
        }
        if now > at.saturating_add(MAX_AGE_SECONDS) {
            return Err(format!(
                "the statement was made at {}, more than {MAX_AGE_SECONDS}s before {}: it expired; print and sign a new one",
                self.time,
                rfc3339(now)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_268_800; // 2026-01-01T12:00:00Z

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: format!("sha256:{seq:064}"),
        }
    }

    fn statement() -> Statement {
        Statement::new(
            "checkout-v2",
            "sha256:old",
            "sha256:new",
            "sha256:delta",
            &head(3),
            NOW,
        )
    }

    #[test]
    fn the_bytes_are_canonical_json_and_one_newline() {
        let text = String::from_utf8(statement().to_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"approval\":\"rampart-approval/v1\",\"contract\":\"checkout-v2\",\"delta\":\"sha256:delta\",\"extends\":{{\"hash\":\"sha256:{:064}\",\"seq\":3}},\"new\":\"sha256:new\",\"old\":\"sha256:old\",\"time\":\"2026-01-01T12:00:00Z\"}}\n",
                3
            )
        );
        assert_eq!(Statement::parse(text.as_bytes()), Ok(statement()));
    }

    #[test]
    fn other_bytes_for_the_same_content_are_refused() {
        let bytes = statement().to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let variants = [
            text.trim_end().to_owned(),
            format!("{text}\n"),
            text.replace('\n', "\r\n"),
            text.replace("\"contract\"", " \"contract\""),
            text.replace(
                "{\"approval\":\"rampart-approval/v1\",",
                "{\"contract\":\"checkout-v2\",\"approval\":\"rampart-approval/v1\",",
            )
            .replacen(",\"contract\":\"checkout-v2\"", "", 1),
        ];
        for variant in variants {
            let error = Statement::parse(variant.as_bytes()).unwrap_err();
            assert!(error.contains("byte for byte"), "{variant:?}: {error}");
        }
        let extra = text.replace("\"time\"", "\"extra\":1,\"time\"");
        assert!(Statement::parse(extra.as_bytes()).is_err());
        let other_kind = text.replace("rampart-approval/v1", "rampart-approval/v2");
        let error = Statement::parse(other_kind.as_bytes()).unwrap_err();
        assert!(error.contains("not a `rampart-approval/v1`"), "{error}");
        assert!(Statement::parse(b"not json\n").is_err());
    }

    #[test]
    fn a_statement_for_another_head_delta_or_digest_differs() {
        let expected = statement();
        let mut later = statement();
        later.time = rfc3339(NOW + 60);
        assert_eq!(
            later.differs_from(&expected),
            None,
            "the time is not compared"
        );
        type Edit = fn(&mut Statement);
        let cases: [(&str, Edit); 6] = [
            ("has contract", |s| s.contract = "other".into()),
            ("has old", |s| s.old = "sha256:x".into()),
            ("has new", |s| s.new = "sha256:x".into()),
            ("has delta", |s| s.delta = "sha256:x".into()),
            ("extends audit record seq 2", |s| s.extends = head(2)),
            ("extends audit record seq 3 (sha256:x)", |s| {
                s.extends.hash = "sha256:x".into()
            }),
        ];
        for (needle, edit) in cases {
            let mut other = statement();
            edit(&mut other);
            let what = other.differs_from(&expected).unwrap();
            assert!(what.starts_with(needle), "{needle}: {what}");
        }
        let mut kind = statement();
        kind.approval = "x".into();
        assert!(kind
            .differs_from(&expected)
            .unwrap()
            .starts_with("has approval"));
    }

    #[test]
    fn freshness_is_bounded_on_both_sides() {
        let s = statement();
        assert_eq!(s.check_fresh(NOW), Ok(()));
        assert_eq!(s.check_fresh(NOW + MAX_AGE_SECONDS), Ok(()));
        let expired = s.check_fresh(NOW + MAX_AGE_SECONDS + 1).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        assert_eq!(s.check_fresh(NOW - MAX_SKEW_SECONDS), Ok(()));
        let ahead = s.check_fresh(NOW - MAX_SKEW_SECONDS - 1).unwrap_err();
        assert!(ahead.contains("ahead"), "{ahead}");
        let mut bad = statement();
        bad.time = "yesterday".into();
        assert!(bad.check_fresh(NOW).unwrap_err().contains("not YYYY"));
    }

    #[test]
    fn the_windows_are_the_documented_fifteen_and_two_minutes() {
        // docs/control-plane.md promises these: usable for 15 minutes after the
        // statement's time, and accepted up to 2 minutes before it (clock skew).
        let s = statement();
        assert_eq!(s.check_fresh(NOW + 15 * 60), Ok(()));
        assert!(s.check_fresh(NOW + 15 * 60 + 1).is_err());
        assert_eq!(s.check_fresh(NOW - 2 * 60), Ok(()));
        assert!(s.check_fresh(NOW - 2 * 60 - 1).is_err());
    }
}
