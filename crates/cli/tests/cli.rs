//! The `rampart` binary, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rampart::{Digest, Plan};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The example contract, for tests that write variants of it.
fn example_contract() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root().join("examples/contract.json")).unwrap()).unwrap()
}

/// The command exited 1 (invalid input) and its error names what `needle` says.
fn assert_invalid(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn digest_of_each_rfc_8785_input_is_sha256_of_its_canonical_output() {
    let dir = root().join("tests/vectors/jcs");
    for entry in std::fs::read_dir(dir.join("input")).unwrap() {
        let input = entry.unwrap().path();
        let expected = std::fs::read(dir.join("output").join(input.file_name().unwrap())).unwrap();
        let out = rampart(&["digest", input.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            Digest::of_bytes(&expected).to_string(),
            "{}",
            input.display()
        );

        let canonical = rampart(&["digest", "--canonical", input.to_str().unwrap()]);
        assert_eq!(canonical.stdout, [expected.as_slice(), b"\n"].concat());
    }
}

#[test]
fn digest_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["digest", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b" { \"b\" : 1, \"a\" : 2 } ")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        Digest::of_bytes(br#"{"a":2,"b":1}"#).to_string()
    );
}

#[test]
fn digest_of_invalid_json_fails_with_one_line() {
    let dir = scratch("badjson");
    for (name, text) in [
        ("trunc.json", "{\"a\": "),
        ("dup.json", r#"{"a":1,"a":2}"#),
        ("big.json", "1e999"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = rampart(&["digest", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(name), "{err}");
    }
    let missing = rampart(&["digest", "no/such/file.json"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn check_accepts_the_example_and_names_the_bad_field() {
    let ok = rampart(&[
        "check",
        "examples/contract.json",
        "--snapshot",
        "examples/snapshot.json",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).starts_with("ok: contract checkout-v2"));

    let dir = scratch("check");
    let mut contract = example_contract();
    contract["ramp"]["percent"] = 120.into();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, contract.to_string()).unwrap();
    let out = rampart(&["check", bad.to_str().unwrap()]);
    assert_invalid(&out, "ramp.percent: must be between 0 and 100, got 120");

    let other_snapshot = dir.join("snap.json");
    std::fs::write(&other_snapshot, r#"{"flags":{},"tier":"gold","rev":"r42"}"#).unwrap();
    let out = rampart(&[
        "check",
        "examples/contract.json",
        "--snapshot",
        other_snapshot.to_str().unwrap(),
    ]);
    assert_invalid(&out, "differs at: lock.digest lock.fields.flags");
}

#[test]
fn lock_fills_the_lock_from_a_snapshot_and_writes_atomically() {
    let dir = scratch("lock");
    let mut contract = example_contract();
    let expected_lock = contract["lock"].clone();
    contract.as_object_mut().unwrap().remove("lock");
    let unlocked = dir.join("unlocked.json");
    std::fs::write(&unlocked, contract.to_string()).unwrap();
    let locked = dir.join("locked.json");

    let out = rampart(&[
        "lock",
        "--contract",
        unlocked.to_str().unwrap(),
        "--snapshot",
        "examples/snapshot.json",
        "--output",
        locked.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&locked).unwrap()).unwrap();
    assert_eq!(written["lock"], expected_lock);
    assert!(Plan::from_json(&std::fs::read(&locked).unwrap()).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let bad_snapshot = dir.join("bad-snapshot.json");
    std::fs::write(&bad_snapshot, r#"{"flags":{},"tier":"gold"}"#).unwrap();
    let out = rampart(&[
        "lock",
        "--contract",
        unlocked.to_str().unwrap(),
        "--snapshot",
        bad_snapshot.to_str().unwrap(),
    ]);
    assert_invalid(&out, "snapshot.rev: missing");
}

#[test]
fn bucket_prints_what_the_core_computes() {
    let out = rampart(&[
        "bucket",
        "--contract",
        "examples/contract.json",
        "--json",
        "alice",
        "bob",
        "user-7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        let key = line["key"].as_str().unwrap();
        let bucket = rampart::bucket::bucket("checkout-v2", key.as_bytes());
        assert_eq!(line["bucket"], u64::from(bucket));
        assert_eq!(
            line["side"],
            if bucket < 3000 { "canary" } else { "stable" }
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(rampart(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        rampart(&["lock", "--contract", "examples/contract.json"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        rampart(&["bucket", "--contract", "examples/contract.json"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(rampart(&["digest", "--bogus", "x"]).status.code(), Some(2));
    assert_eq!(rampart(&["ramp", "advance"]).status.code(), Some(2));
    assert_eq!(rampart(&["audit", "verify"]).status.code(), Some(2));
    assert_eq!(
        rampart(&[
            "render",
            "istio",
            "--contract",
            "examples/contract.json",
            "--port",
            "1"
        ])
        .status
        .code(),
        Some(2),
        "--port is an envoy-gateway option"
    );
    assert_eq!(
        rampart(&[
            "render",
            "envoy-gateway",
            "--contract",
            "examples/contract.json",
            "--port",
            "http"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        rampart(&["render", "envoy", "--contract", "examples/contract.json"])
            .status
            .code(),
        Some(2),
        "render envoy writes two files and needs --out-dir"
    );
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["help"][..],
        &["--help"],
        &[],
        &["ramp", "approve", "--help"],
        &["render", "envoy", "--help"],
    ] {
        let out = rampart(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage: rampart"), "{args:?}");
    }
    let help = stdout(&rampart(&["render", "istio", "--help"]));
    assert!(help.contains("--selector <KEY=VALUE>") && help.contains("[default: AUTHZ]"));
    assert!(!help.contains("--port"), "{help}");
    let version = rampart(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        stdout(&version).trim(),
        format!("rampart {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stdout(&rampart(&["version"])), stdout(&version));
}

#[test]
fn a_ramp_usage_error_with_json_still_answers_one_json_object() {
    let out = rampart(&[
        "ramp",
        "approve",
        "--plan",
        "examples/ramp.json",
        "--by",
        "alice",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["command"], "approve");
    assert_eq!(answer["error"], "usage");
    assert!(
        answer["message"].as_str().unwrap().contains("--reason"),
        "{answer}"
    );
}
