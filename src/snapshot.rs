//! Snapshots — `{input name: value}` — and the lock computed from one.

use std::collections::BTreeMap;

use crate::contract::{ContractError, ContractSpec, Format, LockSpec, OnMissing};
use crate::digest::{Digest, Hasher};
use crate::jcs::Json;

/// Digest of a JSON value: `sha256:` + hex(SHA-256(JCS(value))).
pub fn digest_of(json: &Json) -> Digest {
    let mut h = Hasher::new();
    json.write_canonical(&mut h);
    h.finish()
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
