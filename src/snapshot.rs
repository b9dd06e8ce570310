//! Snapshots — `{input name: value}` — and the lock computed from one.

use std::collections::BTreeMap;

use crate::contract::{ContractError, ContractSpec, Format, LockSpec, OnMissing};
use crate::digest::Digest;
use crate::jcs::Json;

/// Digest of a JSON value: `sha256:` + hex(SHA-256(JCS(value))).
pub fn digest_of(json: &Json) -> Digest {
    Digest::of_canonical(|h| json.write_canonical(h))
}

/// The lock for `snapshot` under `spec`: whole-snapshot digest and one digest per field.
///
/// The snapshot must name exactly the contract's inputs, with values of the type each
/// input's format decodes to — otherwise the lock could never match a request.
pub fn lock_from_snapshot(spec: &ContractSpec, snapshot: &Json) -> Result<LockSpec, ContractError> {
    let Json::Object(members) = snapshot else {
        return Err(err(
            "snapshot",
            "must be a JSON object of input name → value",
        ));
    };
    for (name, _) in members {
        if !spec.inputs.contains_key(name) {
            return Err(err(
                format!("snapshot.{name}"),
                "names no input of the contract; a snapshot holds exactly the contract's inputs",
            ));
        }
    }
    let mut fields = BTreeMap::new();
    for (name, input) in &spec.inputs {
        let value = members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                err(
                    format!("snapshot.{name}"),
                    "missing; the snapshot needs a value for every input (null is a value)",
                )
            })?;
        check_type(name, input.format, spec.on_missing, value)?;
        fields.insert(name.clone(), digest_of(value).to_string());
    }
    Ok(LockSpec {
        digest: Some(digest_of(snapshot).to_string()),
        fields: Some(fields),
    })
}

fn check_type(
    name: &str,
    format: Format,
    on_missing: OnMissing,
    value: &Json,
) -> Result<(), ContractError> {
    let fits = match (format, value) {
        (_, Json::Null) => {
            on_missing == OnMissing::Null || format == Format::Json || format == Format::Digest
        }
        (Format::String, v) => matches!(v, Json::String(_)),
        (Format::Int | Format::Double, v) => matches!(v, Json::Number(_)),
        (Format::Bool, v) => matches!(v, Json::Bool(_)),
        (Format::Json | Format::Digest, _) => true,
    };
    if fits {
        return Ok(());
    }
    let want = match format {
        Format::String => "a JSON string",
        Format::Int | Format::Double => "a number",
        Format::Bool => "true or false",
        Format::Json | Format::Digest => "any JSON value",
    };
    let hint = if matches!(value, Json::Null) {
        " (null is allowed with on_missing: null)"
    } else {
        ""
    };
    Err(err(
        format!("snapshot.{name}"),
        format!(
            "input format `{}` decodes to {want}; this value would never match{hint}",
            format.as_str()
        ),
    ))
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ContractError {
    ContractError {
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContractSpec {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/contract.json");
        ContractSpec::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    fn snapshot(text: &str) -> Json {
        Json::parse(text.as_bytes(), 16).unwrap()
    }

    /// `null` fits an input only where it can be observed: on_missing null, or a JSON or
    /// digest input (which can carry `null` itself).
    #[test]
    fn null_fits_only_where_it_can_be_observed() {
        let null = Json::Null;
        let fits = |format, on_missing| check_type("x", format, on_missing, &null).is_ok();
        assert!(fits(Format::String, OnMissing::Null));
        assert!(fits(Format::Json, OnMissing::Drift));
        assert!(fits(Format::Digest, OnMissing::Drift));
        for format in [Format::String, Format::Int, Format::Double, Format::Bool] {
            let err = check_type("x", format, OnMissing::Drift, &null).unwrap_err();
            assert_eq!(err.field, "snapshot.x");
            assert!(
                err.message
                    .contains("null is allowed with on_missing: null"),
                "{err}"
            );
        }
    }

    #[test]
    fn example_lock_is_the_lock_of_the_example_snapshot() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/snapshot.json");
        let snap = Json::parse(&std::fs::read(path).unwrap(), 16).unwrap();
        assert_eq!(
            lock_from_snapshot(&spec(), &snap).unwrap(),
            spec().lock.unwrap()
        );
    }

    #[test]
    fn lock_digests_are_jcs_sha256() {
        let lock = lock_from_snapshot(
            &spec(),
            &snapshot(r#"{"tier":"gold","rev":"r42","flags":{"b":1,"a":[true,null]}}"#),
        )
        .unwrap();
        let canonical = br#"{"flags":{"a":[true,null],"b":1},"rev":"r42","tier":"gold"}"#;
        assert_eq!(
            lock.digest.unwrap(),
            Digest::of_bytes(canonical).to_string()
        );
        let fields = lock.fields.unwrap();
        assert_eq!(fields["tier"], Digest::of_bytes(b"\"gold\"").to_string());
        assert_eq!(
            fields["flags"],
            Digest::of_bytes(br#"{"a":[true,null],"b":1}"#).to_string()
        );
    }

    #[test]
    fn snapshot_must_fit_the_inputs() {
        let err = |text: &str| {
            lock_from_snapshot(&spec(), &snapshot(text))
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"flags":{},"tier":"gold"}"#).starts_with("snapshot.rev: missing"));
        assert!(err(r#"{"flags":{},"tier":"gold","rev":"r","x":1}"#)
            .starts_with("snapshot.x: names no input"));
        assert!(err(r#"{"flags":{},"tier":5,"rev":"r"}"#)
            .starts_with("snapshot.tier: input format `string`"));
        assert!(err(r#"{"flags":{},"tier":null,"rev":"r"}"#).contains("on_missing: null"));
        assert!(err("[]").starts_with("snapshot: must be a JSON object"));
    }
}
