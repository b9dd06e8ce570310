//! The field-level delta between two config snapshots: JSON pointers (RFC 6901) with
//! the digests of the old and new values, never the values themselves (they may be
//! personal data).

use rampart::jcs::Json;
use rampart::snapshot::digest_of;
use serde_json::{json, Value};

/// One changed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where, as a JSON pointer into the snapshot (`/flags/currency`).
    pub pointer: String,
    /// Digest of the old value; `None` if the member was added.
    pub old: Option<String>,
    /// Digest of the new value; `None` if the member was removed.
    pub new: Option<String>,
}

impl Change {
    fn kind(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        }
    }
}

/// The delta from the locked snapshot to the live one.
#[derive(Debug, Clone)]
pub struct Delta {
    /// Digest of the locked snapshot.
    pub from: String,
    /// Digest of the live snapshot.
    pub to: String,
    /// Changed top-level inputs with their field digests (what `lock.fields` holds).
    pub fields: Vec<Change>,
    /// Changed values at the deepest level where both sides are objects.
    pub changes: Vec<Change>,
}

impl Delta {
    /// The delta from `old` to `new`.
    pub fn between(old: &Json, new: &Json) -> Delta {
        let mut changes = Vec::new();
        diff(old, new, String::new(), &mut changes);
        let mut fields = Vec::new();
        diff_members(old, new, String::new(), &mut fields, false);
        Delta {
            from: digest_of(old).to_string(),
            to: digest_of(new).to_string(),
            fields,
            changes,
        }
    }

    /// Whether the two snapshots are the same config.
    pub fn is_empty(&self) -> bool {
        self.from == self.to
    }

    /// The delta as JSON, without its own digest.
    fn body(&self) -> Value {
        let list = |changes: &[Change]| -> Value {
            changes
                .iter()
                .map(|c| json!({ "pointer": c.pointer, "change": c.kind(), "old": c.old, "new": c.new }))
                .collect()
        };
        json!({
            "from": self.from,
            "to": self.to,
            "fields": list(&self.fields),
            "changes": list(&self.changes),
        })
    }

    /// Digest of the delta's canonical JSON (without the `digest` member); an
    /// approval binds it, so the approved change cannot be swapped for another.
    pub fn digest(&self) -> String {
        crate::canonical_digest(&self.body())
    }

    /// The delta as JSON, with its digest.
    pub fn to_json(&self) -> Value {
        let mut body = self.body();
        body["digest"] = Value::String(self.digest());
        body
    }

    /// Human lines: one per change.
    pub fn describe(&self) -> String {
        let mut out = format!("config delta {} -> {}\n", self.from, self.to);
        for c in &self.changes {
            let pointer = if c.pointer.is_empty() {
                "(whole snapshot)"
            } else {
                &c.pointer
            };
            out.push_str(&format!(
                "  {:<8} {pointer}  {} -> {}\n",
                c.kind(),
                c.old.as_deref().unwrap_or("(absent)"),
                c.new.as_deref().unwrap_or("(absent)")
            ));
        }
        out.push_str(&format!("  delta digest {}", self.digest()));
        out
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff(old: &Json, new: &Json, at: String, out: &mut Vec<Change>) {
    if let (Json::Object(_), Json::Object(_)) = (old, new) {
        diff_members(old, new, at, out, true);
    } else if old.to_canonical() != new.to_canonical() {
        out.push(Change {
            pointer: at,
            old: Some(digest_of(old).to_string()),
            new: Some(digest_of(new).to_string()),
        });
    }
}

/// Compares two objects member by member (`deep`: recurse into nested objects).
fn diff_members(old: &Json, new: &Json, at: String, out: &mut Vec<Change>, deep: bool) {
    let (Json::Object(a), Json::Object(b)) = (old, new) else {
        if old.to_canonical() != new.to_canonical() {
            out.push(Change {
                pointer: at,
                old: Some(digest_of(old).to_string()),
                new: Some(digest_of(new).to_string()),
            });
        }
        return;
    };
    let mut keys: Vec<&String> = a.iter().chain(b.iter()).map(|(k, _)| k).collect();
    keys.sort_by(|x, y| rampart::jcs::utf16_cmp(x, y));
    keys.dedup();
    let find = |members: &'_ [(String, Json)], key: &str| -> Option<Json> {
        members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    for key in keys {
        let pointer = format!("{at}/{}", escape(key));
        match (find(a, key), find(b, key)) {
            (Some(x), Some(y)) if deep => diff(&x, &y, pointer, out),
            (Some(x), Some(y)) => {
                if x.to_canonical() != y.to_canonical() {
                    out.push(Change {
                        pointer,
                        old: Some(digest_of(&x).to_string()),
                        new: Some(digest_of(&y).to_string()),
                    });
                }
            }
            (Some(x), None) => out.push(Change {
                pointer,
                old: Some(digest_of(&x).to_string()),
                new: None,
            }),
            (None, Some(y)) => out.push(Change {
                pointer,
                old: None,
                new: Some(digest_of(&y).to_string()),
            }),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::parse(text.as_bytes(), 16).unwrap()
    }

    #[test]
    fn pointers_name_each_changed_leaf_with_digests() {
        let old = json(r#"{"flags":{"a":1,"b/c":true},"tier":"gold","rev":"r1"}"#);
        let new = json(r#"{"flags":{"a":2,"b/c":true,"d":null},"tier":"gold"}"#);
        let d = Delta::between(&old, &new);
        let pointers: Vec<(&str, &str)> = d
            .changes
            .iter()
            .map(|c| (c.pointer.as_str(), c.kind()))
            .collect();
        assert_eq!(
            pointers,
            [
                ("/flags/a", "changed"),
                ("/flags/d", "added"),
                ("/rev", "removed")
            ]
        );
        assert_eq!(d.changes[0].old, Some(digest_of(&json("1")).to_string()));
        assert_eq!(d.changes[0].new, Some(digest_of(&json("2")).to_string()));
        let fields: Vec<&str> = d.fields.iter().map(|c| c.pointer.as_str()).collect();
        assert_eq!(fields, ["/flags", "/rev"]);
        assert_eq!(
            d.fields[0].old,
            Some(digest_of(&json(r#"{"a":1,"b/c":true}"#)).to_string())
        );
        assert!(!d.is_empty());
        assert!(Delta::between(&old, &old).is_empty());
        assert!(Delta::between(&old, &old).changes.is_empty());
        let escaped = Delta::between(&json(r#"{"x/y~":1}"#), &json(r#"{"x/y~":2}"#));
        assert_eq!(escaped.changes[0].pointer, "/x~1y~0");
    }

    #[test]
    fn the_delta_digest_binds_the_changes() {
        let a = Delta::between(&json(r#"{"t":"a"}"#), &json(r#"{"t":"b"}"#));
        let b = Delta::between(&json(r#"{"t":"a"}"#), &json(r#"{"t":"c"}"#));
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.to_json()["digest"], a.digest());
    }
}
