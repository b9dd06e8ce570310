//! `rampart ramp` and `rampart audit`, run as users run them: a plan in a scratch
//! directory, the live snapshot as a file, the ECDS file checked after each publish.
//! The drift gate reads `/stats` text and Prometheus answers served by a tiny local
//! HTTP server (real Envoy and Prometheus are exercised by the end-to-end tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart::jcs::Json;
use rampart::snapshot::digest_of;
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn digest(text: &str) -> String {
    digest_of(&Json::parse(text.as_bytes(), 64).unwrap()).to_string()
}

/// A plan, its contract and snapshots in a fresh directory.
struct Ramp {
    dir: PathBuf,
}

impl Ramp {
    fn new(name: &str, edit: impl FnOnce(&mut Value)) -> Ramp {
        let dir = std::env::temp_dir().join(format!("rampart-ramp-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ecds")).unwrap();
        for file in ["contract.json", "snapshot.json"] {
            std::fs::copy(root().join("examples").join(file), dir.join(file)).unwrap();
        }
        std::fs::copy(root().join("examples/snapshot.json"), dir.join("live.json")).unwrap();
        let mut plan = json!({
            "contract": "contract.json",
            "snapshot": "snapshot.json",
            "live": { "file": "live.json" },
            "steps": [1, 5, 25, 50, 100],
            "gates": { "max_drift_ratio": 0.05, "min_requests": 0, "bake_seconds": 0 },
            "approval": { "after_approval": "restart" },
            "publish": { "ecds_path": "ecds/rampart.ecds.json", "filter_name": "rampart", "wasm": "rampart.wasm" },
            "metrics": null
        });
        edit(&mut plan);
        std::fs::write(dir.join("plan.json"), plan.to_string()).unwrap();
        Ramp { dir }
    }

    fn plan(&self) -> String {
        self.dir.join("plan.json").to_string_lossy().into_owned()
    }

    fn run(&self, args: &[&str]) -> Output {
        let plan = self.plan();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--plan", plan.as_str()]);
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(&all)
            .env("USER", "tester")
            .output()
            .unwrap()
    }

    /// Runs with `--json` and returns the exit code and the JSON printed.
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let text = stdout(&out);
        let value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text} / {}", stderr(&out)));
        (out.status.code().unwrap(), value)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, value) = self.json(args);
        assert_eq!(code, 0, "{args:?}: {value}");
        value
    }

    fn set_live(&self, text: &str) {
        std::fs::write(self.dir.join("live.json"), text).unwrap();
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("plan.json.state.json")).unwrap())
            .unwrap()
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.join("plan.json.audit.jsonl")
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The contract the ECDS file publishes now.
    /// The `action` of every audit record, in order.
    fn actions(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    }

    fn published(&self) -> Value {
        let resource: Value = serde_json::from_slice(
            &std::fs::read(self.dir.join("ecds/rampart.ecds.json")).unwrap(),
        )
        .unwrap();
        let text = resource["resources"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap();
        serde_json::from_str(text).unwrap()
    }

    /// Whether the published contract is paused.
    fn paused(&self) -> bool {
        self.published()["paused"] == true
    }

    fn verify(&self) -> (i32, Value) {
        self.json(&["audit", "verify"])
    }
}

impl Drop for Ramp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const DRIFTED_LIVE: &str =
    r#"{"flags":{"checkout_v2":true,"currency":"USD","max_items":50},"tier":"gold","rev":"r42"}"#;
const LOCKED_LIVE: &str =
    r#"{"flags":{"checkout_v2":true,"currency":"EUR","max_items":50},"tier":"gold","rev":"r42"}"#;

/// A change to a JSON document of the test (a plan, an audit record).
type PlanEdit = Box<dyn Fn(&mut Value)>;

#[test]
fn plan_errors_name_the_field() {
    let cases: Vec<(PlanEdit, &str)> = vec![
        (Box::new(|p| p["steps"] = json!([1, 5, 5])), "steps[2]"),
        (Box::new(|p| p["steps"] = json!([1, 150])), "steps[1]"),
        (Box::new(|p| p["steps"] = json!([])), "steps: must name"),
        (
            Box::new(|p| p["gates"]["max_drift_ratio"] = json!(2)),
            "gates.max_drift_ratio",
        ),
        (
            Box::new(|p| p["gates"]["min_requests"] = json!(-1)),
            "gates.min_requests",
        ),
        (
            Box::new(|p| {
                p["gates"].as_object_mut().unwrap().remove("bake_seconds");
            }),
            "gates.bake_seconds: missing",
        ),
        (
            Box::new(|p| p["gates"]["on_mismatch"] = json!("ignore")),
            "gates.on_mismatch",
        ),
        (
            Box::new(|p| p["approval"]["after_approval"] = json!("later")),
            "approval.after_approval",
        ),
        (
            Box::new(|p| p["live"] = json!({ "file": "a", "url": "http://x" })),
            "live: give exactly one",
        ),
        (
            Box::new(|p| p["live"] = json!({ "url": "https://x" })),
            "live.url: must be an http:// URL",
        ),
        (
            Box::new(|p| {
                p.as_object_mut().unwrap().remove("metrics");
            }),
            "metrics: missing",
        ),
        (
            Box::new(|p| p["metrics"] = json!({ "graphite": "http://x" })),
            "metrics.graphite: unknown field",
        ),
        (
            Box::new(|p| {
                p["publish"].as_object_mut().unwrap().remove("ecds_path");
            }),
            "publish.ecds_path: missing",
        ),
        (
            Box::new(|p| p["stepz"] = json!([1])),
            "stepz: unknown field",
        ),
        (
            Box::new(|p| p["contract"] = json!("nope.json")),
            "contract: ",
        ),
    ];
    for (i, (edit, needle)) in cases.iter().enumerate() {
        let ramp = Ramp::new(&format!("plan-error-{i}"), |p| edit(p));
        let out = ramp.run(&["ramp", "status"]);
        assert_eq!(out.status.code(), Some(1), "{needle}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
    }
    // A contract template that cannot make a valid contract is caught at load.
    let ramp = Ramp::new("plan-error-contract", |_| {});
    let mut contract: Value =
        serde_json::from_slice(&std::fs::read(ramp.dir.join("contract.json")).unwrap()).unwrap();
    contract["on_drift"] = json!("explode");
    std::fs::write(ramp.dir.join("contract.json"), contract.to_string()).unwrap();
    let out = ramp.run(&["ramp", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("contract: ") && stderr(&out).contains("on_drift"),
        "{}",
        stderr(&out)
    );
    // A snapshot that does not fit the contract's inputs names the input.
    let ramp = Ramp::new("plan-error-snapshot", |_| {});
    std::fs::write(
        ramp.dir.join("snapshot.json"),
        r#"{"flags":{},"tier":"gold"}"#,
    )
    .unwrap();
    let out = ramp.run(&["ramp", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("snapshot.rev"), "{}", stderr(&out));
}

#[test]
fn a_ramp_walks_every_step_and_publishes_each_percent() {
    let ramp = Ramp::new("walk", |_| {});
    let started = ramp.ok(&["ramp", "start"]);
    assert_eq!(started["state"]["status"], "running");
    assert_eq!(started["state"]["step"], 1);
    assert_eq!(started["state"]["audit_seq"], 1);
    let snapshot = std::fs::read_to_string(ramp.dir.join("snapshot.json")).unwrap();
    assert_eq!(started["state"]["lock"], digest(&snapshot));
    assert_eq!(ramp.published()["ramp"]["percent"], 1.0);
    assert_eq!(ramp.published()["lock"]["digest"], digest(&snapshot));
    for (step, percent) in [(2, 5.0), (3, 25.0), (4, 50.0), (5, 100.0)] {
        let moved = ramp.ok(&["ramp", "advance"]);
        assert_eq!(moved["action"], "advance");
        assert_eq!(moved["state"]["step"], step);
        assert_eq!(ramp.published()["ramp"]["percent"], percent);
    }
    let done = ramp.ok(&["ramp", "advance"]);
    assert_eq!(done["action"], "complete");
    assert_eq!(done["state"]["status"], "completed");
    let (code, _) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 3, "a completed ramp does not advance");
    let actions = ramp.actions();
    assert_eq!(
        actions,
        ["start", "advance", "advance", "advance", "advance", "complete"]
    );
    assert!(ramp.records().iter().all(|r| r["actor"] == "tester"));
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["records"], 6);
    // A new ramp may start after a completed one; the chain continues.
    let again = ramp.ok(&["ramp", "start"]);
    assert_eq!(again["audit_seq"], 7);
    assert_eq!(ramp.published()["ramp"]["percent"], 1.0);
}

#[test]
fn advance_on_a_drifted_live_config_blocks_and_prints_the_delta() {
    let ramp = Ramp::new("blocked", |_| {});
    ramp.ok(&["ramp", "start"]);
    ramp.ok(&["ramp", "advance"]);
    ramp.set_live(DRIFTED_LIVE);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["gate"], "config");
    assert_eq!(out["state"]["status"], "blocked");
    assert_eq!(out["state"]["step"], 2, "the ramp holds its step");
    let delta = &out["delta"];
    assert_eq!(delta["to"], digest(DRIFTED_LIVE));
    assert_eq!(delta["from"], digest(LOCKED_LIVE));
    assert_eq!(delta["changes"].as_array().unwrap().len(), 1);
    let change = &delta["changes"][0];
    assert_eq!(change["pointer"], "/flags/currency");
    assert_eq!(change["old"], digest("\"EUR\""));
    assert_eq!(change["new"], digest("\"USD\""));
    assert_eq!(delta["fields"][0]["pointer"], "/flags");
    assert_eq!(
        delta["fields"][0]["new"],
        digest(r#"{"checkout_v2":true,"currency":"USD","max_items":50}"#)
    );
    // The human form prints the same pointer and digests, and never the values.
    let human = ramp.run(&["ramp", "diff"]);
    assert_eq!(human.status.code(), Some(1));
    let text = stdout(&human);
    assert!(
        text.contains("/flags/currency") && text.contains(&digest("\"USD\"")),
        "{text}"
    );
    assert!(
        !text.contains("USD\"") && !text.contains("EUR"),
        "raw values leak: {text}"
    );
    // The block is audited with the delta; the published step stays.
    let block = ramp.records().last().unwrap().clone();
    assert_eq!(block["action"], "block");
    assert_eq!(block["details"]["delta"], *delta);
    assert_eq!(ramp.published()["ramp"]["percent"], 5.0);
    let (code, _) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 3, "a blocked ramp does not advance");
}

#[test]
fn on_mismatch_revert_sends_everyone_to_stable() {
    let ramp = Ramp::new("mismatch-revert", |p| {
        p["gates"]["on_mismatch"] = json!("revert")
    });
    ramp.ok(&["ramp", "start"]);
    ramp.set_live(DRIFTED_LIVE);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["action"], "revert");
    assert_eq!(out["state"]["status"], "reverted");
    assert_eq!(ramp.published()["ramp"]["percent"], 0.0);
}

#[test]
fn approve_relocks_to_the_live_config_and_binds_the_digests() {
    for (policy, step_after) in [("restart", 1), ("resume", 3)] {
        let ramp = Ramp::new(&format!("approve-{policy}"), |p| {
            p["approval"]["after_approval"] = json!(policy);
        });
        ramp.ok(&["ramp", "start"]);
        ramp.ok(&["ramp", "advance"]);
        ramp.ok(&["ramp", "advance"]);
        ramp.set_live(DRIFTED_LIVE);
        let (code, blocked) = ramp.json(&["ramp", "advance"]);
        assert_eq!(code, 1);
        // Approval needs a name and a reason.
        let out = ramp.run(&["ramp", "approve", "--by", "alice"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        // An approval of a delta other than the live one is refused.
        let (code, refused) = ramp.json(&[
            "ramp",
            "approve",
            "--by",
            "alice",
            "--reason",
            "r",
            "--expect-delta",
            &digest("\"another delta\""),
        ]);
        assert_eq!(code, 1, "{refused}");
        assert_eq!(refused["error"], "delta_changed");
        let reviewed = blocked["delta"]["digest"].as_str().unwrap().to_owned();
        let approved = ramp.ok(&[
            "ramp",
            "approve",
            "--expect-delta",
            &reviewed,
            "--by",
            "alice",
            "--reason",
            "USD tested in staging",
        ]);
        assert_eq!(approved["old"], digest(LOCKED_LIVE));
        assert_eq!(approved["new"], digest(DRIFTED_LIVE));
        assert_eq!(approved["delta_digest"], blocked["delta"]["digest"]);
        assert_eq!(approved["state"]["status"], "running");
        assert_eq!(approved["state"]["step"], step_after, "{policy}");
        assert_eq!(approved["state"]["lock"], digest(DRIFTED_LIVE));
        let record = ramp.records().last().unwrap().clone();
        assert_eq!(record["action"], "approve");
        assert_eq!(record["actor"], "alice");
        assert_eq!(record["details"]["old"], digest(LOCKED_LIVE));
        assert_eq!(record["details"]["new"], digest(DRIFTED_LIVE));
        assert_eq!(
            record["details"]["delta_digest"],
            blocked["delta"]["digest"]
        );
        assert_eq!(record["details"]["reason"], "USD tested in staging");
        let published = ramp.published();
        assert_eq!(published["lock"]["digest"], digest(DRIFTED_LIVE));
        assert_eq!(
            published["lock"]["fields"]["flags"],
            digest(r#"{"checkout_v2":true,"currency":"USD","max_items":50}"#)
        );
        let percent = [1.0, 5.0, 25.0][step_after - 1];
        assert_eq!(published["ramp"]["percent"], percent);
        // The new lock holds: advance passes gate 1 with the approved config.
        let moved = ramp.ok(&["ramp", "advance"]);
        assert_eq!(moved["state"]["step"], step_after + 1);
        // Nothing left to approve.
        let (code, _) = ramp.json(&["ramp", "approve", "--by", "alice", "--reason", "again"]);
        assert_eq!(code, 3);
        let (code, report) = ramp.verify();
        assert_eq!(code, 0, "{report}");
    }
}

#[test]
fn pause_resume_revert_transitions_and_refusals() {
    let ramp = Ramp::new("transitions", |_| {});
    assert_eq!(ramp.json(&["ramp", "advance"]).0, 3, "no ramp started yet");
    ramp.ok(&["ramp", "start"]);
    assert_eq!(ramp.json(&["ramp", "start"]).0, 3, "already running");
    assert_eq!(ramp.json(&["ramp", "resume"]).0, 3, "running is not paused");
    let paused = ramp.ok(&["ramp", "pause", "--reason", "holiday"]);
    assert_eq!(paused["state"]["status"], "paused");
    assert_eq!(
        ramp.published()["ramp"]["percent"],
        1.0,
        "pause keeps the step"
    );
    assert_eq!(ramp.json(&["ramp", "pause"]).0, 3);
    assert_eq!(ramp.json(&["ramp", "advance"]).0, 3);
    assert_eq!(
        ramp.records().last().unwrap()["details"]["reason"],
        "holiday"
    );
    assert_eq!(ramp.ok(&["ramp", "resume"])["state"]["status"], "running");
    ramp.ok(&["ramp", "advance"]);

    // A config block lifts with `resume` only once the live config is the locked one.
    ramp.set_live(DRIFTED_LIVE);
    assert_eq!(ramp.json(&["ramp", "advance"]).0, 1);
    let (code, refused) = ramp.json(&["ramp", "resume"]);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["delta"]["changes"][0]["pointer"], "/flags/currency");
    ramp.set_live(LOCKED_LIVE);
    assert_eq!(ramp.ok(&["ramp", "resume"])["state"]["status"], "running");

    let reverted = ramp.ok(&["ramp", "revert", "--reason", "bad canary"]);
    assert_eq!(reverted["state"]["status"], "reverted");
    assert_eq!(reverted["state"]["percent"], 0.0);
    assert_eq!(ramp.published()["ramp"]["percent"], 0.0);
    assert_eq!(ramp.json(&["ramp", "revert"]).0, 3);
    assert_eq!(ramp.json(&["ramp", "advance"]).0, 3);
    assert_eq!(ramp.json(&["ramp", "pause"]).0, 3);
    assert_eq!(ramp.json(&["ramp", "resume"]).0, 3);
    assert_eq!(
        ramp.json(&["ramp", "approve", "--by", "a", "--reason", "b"])
            .0,
        3
    );
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    let actions = ramp.actions();
    assert_eq!(
        actions,
        ["start", "pause", "resume", "advance", "block", "resume", "revert"]
    );
}

#[test]
fn bake_time_makes_advance_wait_without_writing() {
    let ramp = Ramp::new("bake", |p| p["gates"]["bake_seconds"] = json!(3600));
    ramp.ok(&["ramp", "start"]);
    let before = ramp.state();
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(out["gate"], "bake");
    assert_eq!(out["waiting"], true);
    assert_eq!(ramp.state(), before);
    assert_eq!(ramp.records().len(), 1);
}

/// Serves `body()` to every request on a local port; returns the base URL.
fn serve(body: Arc<Mutex<String>>, seen: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            seen.lock().unwrap().push(line);
            let body = body.lock().unwrap().clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn admin_stats(requests: u64, drift: u64, missing: u64, paused: u64) -> String {
    format!(
        "cluster.stable.upstream_rq_total: 7\n\
         wasmcustom.rampart_contract=.=checkout-v2;.;rampart.canary: 1\n\
         wasmcustom.rampart_contract=.=checkout-v2;.;rampart.drift: {drift}\n\
         wasmcustom.rampart_contract=.=checkout-v2;.;rampart.drift_paused: {paused}\n\
         wasmcustom.rampart_contract=.=checkout-v2;.;rampart.missing: {missing}\n\
         wasmcustom.rampart_contract=.=checkout-v2;.;rampart.requests: {requests}\n"
    )
}

#[test]
fn drift_gate_reads_envoy_admin_stats_since_the_step_began() {
    let body = Arc::new(Mutex::new(admin_stats(1000, 40, 0, 0)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = serve(body.clone(), seen.clone());
    let ramp = Ramp::new("admin-gate", |p| {
        p["metrics"] = json!({ "envoy_admin": url });
        p["gates"] = json!({ "max_drift_ratio": 0.05, "min_requests": 100, "bake_seconds": 0 });
    });
    ramp.ok(&["ramp", "start"]);
    assert_eq!(
        ramp.state()["baseline"]["requests"],
        1000,
        "counters at step start"
    );
    assert!(
        seen.lock().unwrap()[0].starts_with("GET /stats?filter="),
        "{:?}",
        seen.lock().unwrap()
    );
    // 50 requests since the step began: fewer than min_requests -> wait.
    *body.lock().unwrap() = admin_stats(1050, 40, 0, 0);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(
        (code, out["gate"].as_str()),
        (4, Some("min_requests")),
        "{out}"
    );
    assert_eq!(out["requests"], 50);
    // 200 requests, 4 drifted + 2 missing: ratio 0.03 <= 0.05 -> advance.
    *body.lock().unwrap() = admin_stats(1200, 44, 2, 0);
    let moved = ramp.ok(&["ramp", "advance"]);
    assert_eq!(moved["gates"]["requests"], 200);
    assert!((moved["gates"]["drift_ratio"].as_f64().unwrap() - 0.03).abs() < 1e-9);
    assert_eq!(
        ramp.state()["baseline"]["requests"],
        1200,
        "new window at the new step"
    );
    // status shows the readings and the data-plane drift pause.
    *body.lock().unwrap() = admin_stats(1400, 64, 2, 0);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["metrics"]["requests"], 200);
    assert_eq!(status["metrics"]["drift_paused"], false);
    let text = stdout(&ramp.run(&["ramp", "status"]));
    assert!(text.contains("drift pause: off"), "{text}");
    // 200 requests, 20 drifted: ratio 0.1 > 0.05 -> blocked.
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["gate"], "drift");
    assert_eq!(out["state"]["status"], "blocked");
    // After review, resume judges a fresh window.
    let resumed = ramp.ok(&["ramp", "resume"]);
    assert_eq!(resumed["state"]["status"], "running");
    assert_eq!(ramp.state()["baseline"]["requests"], 1400);
    // Envoy restarted: counters below the baseline count from zero.
    *body.lock().unwrap() = admin_stats(150, 1, 0, 0);
    let moved = ramp.ok(&["ramp", "advance"]);
    assert_eq!(moved["gates"]["requests"], 150);
    assert_eq!(moved["state"]["step"], 3);
    assert!(!ramp.paused(), "a ratio block does not pause");
    // The data plane's drift pause blocks the ramp even with a low ratio, and is made
    // durable: the published contract is paused.
    *body.lock().unwrap() = admin_stats(400, 1, 0, 1);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["drift_paused"], true, "{out}");
    assert_eq!(out["durable_pause"], true, "{out}");
    assert_eq!(out["state"]["status"], "blocked");
    assert_eq!(out["state"]["step"], 3);
    assert_eq!(out["state"]["durable_pause"], true);
    assert!(ramp.paused());
    assert_eq!(ramp.published()["ramp"]["percent"], 25.0);
    let record = ramp.records().last().unwrap().clone();
    assert_eq!(record["action"], "block");
    assert_eq!(record["details"]["durable_pause"], true);
}

#[test]
fn drift_gate_reads_prometheus() {
    let answer = |v: &str| {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.1,"{v}"]}}]}}}}"#
        )
    };
    let body = Arc::new(Mutex::new(answer("500")));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = serve(body.clone(), seen.clone());
    let ramp = Ramp::new("prometheus-gate", |p| {
        p["metrics"] = json!({ "prometheus": url });
        p["gates"] = json!({ "max_drift_ratio": 0.5, "min_requests": 10, "bake_seconds": 0 });
    });
    ramp.ok(&["ramp", "start"]);
    assert_eq!(
        ramp.state()["baseline"],
        json!({ "requests": 500, "drift": 500, "missing": 500 })
    );
    let queries = seen.lock().unwrap().clone();
    assert!(
        queries.iter().any(|q| q.contains("/api/v1/query?query=sum%28rampart_requests%7Brampart_contract%3D%22checkout-v2%22%7D%29")),
        "{queries:?}"
    );
    // Every counter grew by 100: requests 100, drift+missing 200 -> ratio 2 > 0.5.
    *body.lock().unwrap() = answer("600");
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!((code, out["gate"].as_str()), (1, Some("drift")), "{out}");
}

/// An http URL of a loopback port nothing listens on.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[test]
fn unreachable_metrics_are_an_io_error() {
    let url = closed_url();
    let ramp = Ramp::new("unreachable", |p| {
        p["metrics"] = json!({ "envoy_admin": url })
    });
    let out = ramp.run(&["ramp", "start"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("metrics (envoy_admin"),
        "{}",
        stderr(&out)
    );
    assert!(!ramp.dir.join("plan.json.state.json").exists());
}

/// A log of `n` records from a real ramp, plus the ramp.
fn ramp_with_records(name: &str) -> Ramp {
    let ramp = Ramp::new(name, |_| {});
    ramp.ok(&["ramp", "start"]);
    ramp.ok(&["ramp", "advance"]);
    ramp.ok(&["ramp", "pause"]);
    ramp.ok(&["ramp", "resume"]);
    ramp.ok(&["ramp", "advance"]);
    ramp.ok(&["ramp", "advance"]);
    assert_eq!(ramp.records().len(), 6);
    ramp
}

fn lines_of(ramp: &Ramp) -> Vec<String> {
    std::fs::read_to_string(ramp.audit_path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(ramp: &Ramp, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(ramp.audit_path(), text).unwrap();
}

/// `audit verify` fails and names `line` as the first bad record.
fn assert_rejected(ramp: &Ramp, line: usize, what: &str) {
    let (code, report) = ramp.verify();
    assert_eq!(code, 1, "{what}: {report}");
    assert_eq!(report["first_bad"]["line"], line, "{what}: {report}");
    let out = ramp.run(&["audit", "verify"]);
    assert!(
        stderr(&out).contains(&format!("line {line}")),
        "{what}: {}",
        stderr(&out)
    );
}

#[test]
fn audit_verify_rejects_every_single_record_tampering() {
    let ramp = ramp_with_records("tamper");
    let original = lines_of(&ramp);
    let n = original.len();
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    for i in 0..n {
        // Edit of a field, with and without a recomputed hash of that record.
        for field in [
            "actor", "time", "action", "details", "prev", "hash", "seq", "contract",
        ] {
            let mut lines = original.clone();
            let mut record: Value = serde_json::from_str(&lines[i]).unwrap();
            record[field] = match field {
                "seq" => json!(record["seq"].as_u64().unwrap() + 10),
                "details" => json!({ "status": "completed" }),
                "prev" | "hash" => json!(digest("\"forged\"")),
                _ => json!("mallory"),
            };
            lines[i] = record.to_string();
            write_lines(&ramp, &lines);
            assert_rejected(&ramp, i + 1, &format!("edit {field} of record {}", i + 1));
        }
        let mut lines = original.clone();
        let mut record: Value = serde_json::from_str(&lines[i]).unwrap();
        record["actor"] = json!("mallory");
        record.as_object_mut().unwrap().remove("hash");
        let rehashed = rampart_hash(&record);
        record["hash"] = json!(rehashed);
        lines[i] = record.to_string();
        write_lines(&ramp, &lines);
        // The next record no longer links to it; for the last, the state's head differs.
        assert_rejected(
            &ramp,
            (i + 2).min(n),
            &format!("rehashed edit of record {}", i + 1),
        );

        // Deletion.
        let mut lines = original.clone();
        lines.remove(i);
        write_lines(&ramp, &lines);
        assert_rejected(&ramp, i + 1, &format!("delete record {}", i + 1));

        // Reordering with the next record.
        if i + 1 < n {
            let mut lines = original.clone();
            lines.swap(i, i + 1);
            write_lines(&ramp, &lines);
            assert_rejected(
                &ramp,
                i + 1,
                &format!("swap records {} and {}", i + 1, i + 2),
            );
        }

        // Insertion of a copy (a replayed record) after record i.
        let mut lines = original.clone();
        lines.insert(i + 1, original[i].clone());
        write_lines(&ramp, &lines);
        assert_rejected(&ramp, i + 2, &format!("duplicate record {}", i + 1));

        // Truncation inside record i (a torn line), and at its start.
        let mut text: String = original[..i].iter().map(|l| format!("{l}\n")).collect();
        text.push_str(&original[i][..original[i].len() / 2]);
        std::fs::write(ramp.audit_path(), &text).unwrap();
        assert_rejected(&ramp, i + 1, &format!("truncate inside record {}", i + 1));
        write_lines(&ramp, &original[..i]);
        assert_rejected(&ramp, i + 1, &format!("truncate before record {}", i + 1));
    }
    // The whole log deleted.
    std::fs::remove_file(ramp.audit_path()).unwrap();
    assert_rejected(&ramp, 1, "delete the log");
    // A changing command refuses a tampered log rather than extend it.
    let mut lines = original.clone();
    lines.remove(2);
    write_lines(&ramp, &lines);
    let out = ramp.run(&["ramp", "pause"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing"), "{}", stderr(&out));
    write_lines(&ramp, &original);
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
}

/// The record hash as `audit verify` computes it: SHA-256 of the JCS form.
fn rampart_hash(record: &Value) -> String {
    digest(&record.to_string())
}

#[test]
fn a_torn_or_missing_last_record_is_reported_then_repaired_from_the_state() {
    let ramp = ramp_with_records("repair");
    let original = lines_of(&ramp);
    // A crash inside the last append: a cut-off line.
    let mut text: String = original[..5].iter().map(|l| format!("{l}\n")).collect();
    text.push_str(&original[5][..40]);
    std::fs::write(ramp.audit_path(), &text).unwrap();
    let (code, report) = ramp.verify();
    assert_eq!(code, 1);
    assert_eq!(report["first_bad"]["kind"], "torn");
    assert_eq!(report["first_bad"]["repairable"], true);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(
        status["audit"]["ok"], false,
        "status reports, does not repair"
    );
    let out = ramp.run(&["ramp", "pause"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("repaired"), "{}", stderr(&out));
    let repaired = lines_of(&ramp);
    assert_eq!(repaired[..6], original[..]);
    assert_eq!(ramp.verify().0, 0);
    // A crash before the append: the record is missing, the state holds it.
    let original = lines_of(&ramp);
    write_lines(&ramp, &original[..6]);
    let (code, report) = ramp.verify();
    assert_eq!(
        (code, report["first_bad"]["kind"].as_str()),
        (1, Some("behind"))
    );
    // A crash before the publish: the ECDS file still has the old step.
    let published = std::fs::read(ramp.dir.join("ecds/rampart.ecds.json")).unwrap();
    ramp.ok(&["ramp", "resume"]);
    ramp.ok(&["ramp", "advance"]);
    std::fs::write(ramp.dir.join("ecds/rampart.ecds.json"), &published).unwrap();
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["published"], false);
    // The earlier missing record made the resume repair it first; now the publish.
    let out = ramp.run(&["ramp", "pause"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("repaired: published"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ramp.published()["ramp"]["percent"], 100.0);
    assert_eq!(ramp.verify().0, 0);
    assert_eq!(ramp.records().len(), 10);
}

/// A small deterministic generator for kill delays (no crate needed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_9_at_random_points_leaves_a_valid_state_and_a_repairable_chain() {
    let steps: Vec<f64> = (1..=100).map(f64::from).collect();
    let ramp = Ramp::new("kill9", |p| p["steps"] = json!(steps));
    ramp.ok(&["ramp", "start"]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Lcg(seed);
    let plan = ramp.plan();
    // Kill delays spread over a whole command's run time, measured here.
    let begun = std::time::Instant::now();
    ramp.ok(&["ramp", "pause"]);
    ramp.ok(&["ramp", "resume"]);
    let span_us = (begun.elapsed().as_micros() as u64 / 2).max(1000) * 6 / 5;
    let (mut killed, mut residue) = (0, 0);
    for round in 0..80 {
        // Alternate commands so kills land in every kind of change.
        let command = match ramp.state()["status"].as_str().unwrap() {
            "running" if round % 5 == 4 => "pause",
            "running" => "advance",
            "paused" => "resume",
            "completed" => "revert",
            _ => "start",
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["ramp", command, "--plan", &plan])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span_us)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        assert!(
            matches!(status.code(), None | Some(0) | Some(3)),
            "round {round}: {status:?}"
        );
        // The state always parses, whatever the kill interrupted.
        let state = ramp.state();
        assert!(state["status"].is_string(), "round {round}: {state}");
        // The chain is intact, or shows only the crash residue the next command repairs.
        let (code, report) = ramp.verify();
        if code != 0 {
            residue += 1;
            assert_eq!(
                report["first_bad"]["repairable"], true,
                "round {round}: {report}"
            );
            assert!(
                matches!(
                    report["first_bad"]["kind"].as_str(),
                    Some("torn" | "behind")
                ),
                "round {round}: {report}"
            );
        }
    }
    eprintln!(
        "kill -9 test: {killed} of 80 commands killed (delays up to {span_us} us), {residue} left a torn or missing last record"
    );
    assert!(killed > 0, "no command was interrupted");
    // Any changing command repairs; then everything verifies and the publish matches.
    let out = ramp.run(&["ramp", "revert"]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    if out.status.code() == Some(3) {
        ramp.ok(&["ramp", "start"]);
    }
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    assert_eq!(ramp.ok(&["ramp", "status"])["published"], true);
    // Temporary and pid files of killed commands were cleaned up by the repairing one.
    for dir in [ramp.dir.clone(), ramp.dir.join("ecds")] {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || n.contains(".lock"))
            .collect();
        names.sort();
        assert!(
            names.is_empty(),
            "left over in {}: {names:?}",
            dir.display()
        );
    }
    let state = ramp.state();
    assert_eq!(report["head"]["seq"], state["audit"]["seq"]);
    assert_eq!(
        ramp.records().len() as u64,
        state["audit"]["seq"].as_u64().unwrap()
    );
}

#[test]
fn one_command_at_a_time_changes_a_ramp() {
    let ramp = Ramp::new("change-lock", |_| {});
    ramp.ok(&["ramp", "start"]);
    let lock = ramp.dir.join("plan.json.state.json.lock");
    // Held by a live process (this test): refused, nothing written.
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("another rampart command"),
        "{out}"
    );
    assert_eq!(ramp.records().len(), 1);
    // status only reads, so it does not wait for the lock.
    ramp.ok(&["ramp", "status"]);
    // Left by a command that no longer runs (killed): taken over.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, format!("{dead}\n")).unwrap();
    ramp.ok(&["ramp", "advance"]);
    assert!(!lock.exists(), "released after the command");
}

#[test]
fn the_plans_drift_pause_is_published_with_every_step() {
    let drift_pause = json!({ "max_ratio": 0.2, "min_requests": 50, "window_seconds": 10 });
    let block = drift_pause.clone();
    let ramp = Ramp::new("drift-pause", move |p| p["drift_pause"] = block);
    ramp.ok(&["ramp", "start"]);
    assert_eq!(ramp.published()["drift_pause"], drift_pause);
    ramp.ok(&["ramp", "advance"]);
    assert_eq!(ramp.published()["drift_pause"], drift_pause);
    assert_eq!(ramp.published()["ramp"]["percent"], 5.0);
}

// ---------------------------------------------------------------------------
// The durable drift pause
// ---------------------------------------------------------------------------

/// A ramp whose drift gate reads `body` as Envoy's `/stats`.
fn ramp_reading(name: &str, body: &Arc<Mutex<String>>) -> Ramp {
    let url = serve(body.clone(), Arc::new(Mutex::new(Vec::new())));
    Ramp::new(name, |p| p["metrics"] = json!({ "envoy_admin": url }))
}

#[test]
fn status_makes_the_data_planes_drift_pause_durable_until_resume_or_approval() {
    let body = Arc::new(Mutex::new(admin_stats(100, 0, 0, 0)));
    let ramp = ramp_reading("durable", &body);
    ramp.ok(&["ramp", "start"]);
    ramp.ok(&["ramp", "advance"]);
    assert!(!ramp.paused());

    // The data plane trips its pause: status records it once and publishes it paused.
    *body.lock().unwrap() = admin_stats(300, 150, 0, 1);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["durable_pause_seq"], 3, "{status}");
    assert_eq!(status["state"]["status"], "blocked");
    assert_eq!(status["state"]["durable_pause"], true);
    assert_eq!(status["state"]["blocked"]["reason"], "drift");
    assert!(ramp.paused());
    assert_eq!(ramp.published()["ramp"]["percent"], 5.0, "the step stays");
    let record = ramp.records().last().unwrap().clone();
    assert_eq!(record["action"], "drift_pause");
    assert_eq!(record["details"]["drift_paused"], true);
    assert_eq!(record["details"]["requests"], 200);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["durable_pause_seq"], Value::Null, "recorded once");
    assert_eq!(ramp.records().len(), 3);

    // Envoy restarted and forgot its pause: the published contract still holds it.
    *body.lock().unwrap() = admin_stats(20, 0, 0, 0);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["metrics"]["drift_paused"], false);
    assert_eq!(status["state"]["durable_pause"], true);
    assert!(ramp.paused());
    let text = stdout(&ramp.run(&["ramp", "status"]));
    assert!(text.contains("drift pause: durable"), "{text}");
    assert_eq!(ramp.json(&["ramp", "advance"]).0, 3, "blocked");

    // resume lifts it.
    let resumed = ramp.ok(&["ramp", "resume", "--reason", "drift reviewed"]);
    assert_eq!(resumed["state"]["durable_pause"], false);
    assert_eq!(resumed["state"]["status"], "running");
    assert!(!ramp.paused());
    assert_eq!(
        ramp.records().last().unwrap()["details"]["durable_pause"],
        "lifted"
    );

    // A paused ramp keeps its status while the pause is held; an approval lifts it.
    ramp.ok(&["ramp", "pause"]);
    *body.lock().unwrap() = admin_stats(60, 30, 0, 1);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["state"]["status"], "paused");
    assert_eq!(status["state"]["durable_pause"], true);
    assert!(ramp.paused());
    ramp.set_live(DRIFTED_LIVE);
    *body.lock().unwrap() = admin_stats(60, 30, 0, 0);
    let approved = ramp.ok(&["ramp", "approve", "--by", "alice", "--reason", "USD"]);
    assert_eq!(approved["state"]["durable_pause"], false);
    assert!(!ramp.paused());
    assert_eq!(ramp.published()["lock"]["digest"], digest(DRIFTED_LIVE));
    assert_eq!(
        ramp.records().last().unwrap()["details"]["durable_pause"],
        "lifted"
    );

    // An ended ramp is not held: nothing continues it.
    ramp.ok(&["ramp", "revert"]);
    *body.lock().unwrap() = admin_stats(90, 60, 0, 1);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["durable_pause_seq"], Value::Null);
    assert!(!ramp.paused());
    assert_eq!(
        ramp.actions(),
        [
            "start",
            "advance",
            "drift_pause",
            "resume",
            "pause",
            "drift_pause",
            "approve",
            "revert"
        ]
    );
    assert_eq!(ramp.verify().0, 0);
}

#[test]
fn a_config_block_while_the_drift_pause_is_on_makes_the_pause_durable_too() {
    let body = Arc::new(Mutex::new(admin_stats(100, 0, 0, 0)));
    let ramp = ramp_reading("durable-config", &body);
    ramp.ok(&["ramp", "start"]);
    ramp.set_live(DRIFTED_LIVE);
    *body.lock().unwrap() = admin_stats(200, 100, 0, 1);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["gate"], "config");
    assert_eq!(out["state"]["durable_pause"], true);
    assert!(ramp.paused());
    let record = ramp.records().last().unwrap().clone();
    assert_eq!(record["details"]["durable_pause"], true);
    // The config block still needs the locked config back (or an approval) to resume.
    assert_eq!(ramp.json(&["ramp", "resume"]).0, 1);
    assert!(ramp.paused());
    ramp.set_live(LOCKED_LIVE);
    ramp.ok(&["ramp", "resume"]);
    assert!(!ramp.paused());
    // With the metrics source unreachable, the config block is still recorded.
    let ramp = ramp_reading("durable-config-unreachable", &body);
    *body.lock().unwrap() = admin_stats(100, 0, 0, 0);
    ramp.ok(&["ramp", "start"]);
    let plan = std::fs::read_to_string(ramp.dir.join("plan.json")).unwrap();
    let mut plan: Value = serde_json::from_str(&plan).unwrap();
    plan["metrics"] = json!({ "envoy_admin": closed_url() });
    std::fs::write(ramp.dir.join("plan.json"), plan.to_string()).unwrap();
    ramp.set_live(DRIFTED_LIVE);
    let (code, out) = ramp.json(&["ramp", "advance"]);
    assert_eq!((code, out["gate"].as_str()), (1, Some("config")), "{out}");
    assert_eq!(out["state"]["durable_pause"], false);
    assert!(!ramp.paused());
}

// ---------------------------------------------------------------------------
// Signed approvals, with keys and signatures made by the real ssh-keygen
// ---------------------------------------------------------------------------

/// `ssh-keygen`: `RAMPART_SSH_KEYGEN` (set by `cargo xtask test`), else Debian's.
fn ssh_keygen() -> PathBuf {
    let path = std::env::var_os("RAMPART_SSH_KEYGEN")
        .map_or_else(|| PathBuf::from("/usr/bin/ssh-keygen"), PathBuf::from);
    assert!(
        path.is_file(),
        "ssh-keygen not found at {} (set RAMPART_SSH_KEYGEN, or install the Debian package \
         `openssh-client`; `cargo xtask test` does both)",
        path.display()
    );
    path
}

fn run_keygen(args: &[&str]) -> Output {
    let out = Command::new(ssh_keygen())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        stderr(&out)
    );
    out
}

/// A key pair made by `ssh-keygen -t TYPE` in the ramp's directory.
struct Key {
    private: PathBuf,
    public: String,
}

impl Key {
    fn new(ramp: &Ramp, name: &str, kind: &[&str]) -> Key {
        let private = ramp.dir.join(name);
        let path = private.to_str().unwrap();
        let mut args = vec!["-q", "-N", "", "-C", name, "-f", path];
        args.extend(kind);
        run_keygen(&args);
        let public = std::fs::read_to_string(format!("{path}.pub")).unwrap();
        Key {
            private,
            public: public.trim().to_owned(),
        }
    }

    /// `ssh-keygen -Y sign -n NAMESPACE` of `file`; returns the signature's path (one
    /// per file, key and namespace).
    fn sign(&self, namespace: &str, file: &Path) -> PathBuf {
        let signature = PathBuf::from(format!("{}.sig", file.display()));
        let _ = std::fs::remove_file(&signature);
        run_keygen(&[
            "-Y",
            "sign",
            "-f",
            self.private.to_str().unwrap(),
            "-n",
            namespace,
            file.to_str().unwrap(),
        ]);
        let kept = PathBuf::from(format!(
            "{}.{}.{namespace}.sig",
            file.display(),
            self.private.file_name().unwrap().to_str().unwrap()
        ));
        std::fs::rename(&signature, &kept).unwrap();
        kept
    }

    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it.
    fn fingerprint(&self) -> String {
        let out = run_keygen(&[
            "-l",
            "-E",
            "sha256",
            "-f",
            &format!("{}.pub", self.private.display()),
        ]);
        stdout(&out).split_whitespace().nth(1).unwrap().to_owned()
    }
}

impl Ramp {
    /// A ramp whose plan requires approvals signed by a key in `allowed_signers`.
    fn signed(name: &str) -> Ramp {
        Ramp::new(name, |p| {
            p["approval"]["allowed_signers"] = json!("allowed_signers");
        })
    }

    fn allow(&self, lines: &[String]) {
        std::fs::write(self.dir.join("allowed_signers"), lines.join("\n") + "\n").unwrap();
    }

    /// `ramp statement --out FILE`; returns FILE.
    fn statement(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let out = self.ok(&["ramp", "statement", "--out", path.to_str().unwrap()]);
        assert_eq!(out["out"], path.to_str().unwrap());
        path
    }

    fn approve_signed(&self, statement: &Path, signature: &Path) -> (i32, Value) {
        self.json(&[
            "ramp",
            "approve",
            "--statement",
            statement.to_str().unwrap(),
            "--signature",
            signature.to_str().unwrap(),
            "--reason",
            "reviewed",
        ])
    }

    /// The state file, the audit log and the ECDS file, byte for byte.
    fn files(&self) -> [Vec<u8>; 3] {
        [
            "plan.json.state.json",
            "plan.json.audit.jsonl",
            "ecds/rampart.ecds.json",
        ]
        .map(|f| std::fs::read(self.dir.join(f)).unwrap())
    }
}

/// The live snapshot with `currency` as the checkout currency.
fn live_with(currency: &str) -> String {
    LOCKED_LIVE.replace("EUR", currency)
}

#[test]
fn signed_approvals_by_ed25519_ecdsa_and_rsa_keys_relock_and_audit_verify_rechecks_them() {
    let ramp = Ramp::signed("signed");
    let keys = [
        (
            "alice@example.com",
            Key::new(&ramp, "alice", &["-t", "ed25519"]),
        ),
        (
            "bob@example.com",
            Key::new(&ramp, "bob", &["-t", "ecdsa", "-b", "256"]),
        ),
        (
            "carol@example.com",
            Key::new(&ramp, "carol", &["-t", "rsa", "-b", "3072"]),
        ),
        (
            "dave@example.com",
            Key::new(&ramp, "dave", &["-t", "ecdsa", "-b", "384"]),
        ),
    ];
    ramp.allow(
        &keys
            .iter()
            .map(|(who, key)| format!("{who} namespaces=\"rampart-approval\" {}", key.public))
            .collect::<Vec<_>>(),
    );
    ramp.ok(&["ramp", "start"]);
    for (round, (currency, (principal, key))) in
        ["USD", "GBP", "JPY", "CHF"].iter().zip(&keys).enumerate()
    {
        let live = live_with(currency);
        ramp.set_live(&live);
        let head = ramp.state()["audit"].clone();
        let statement = ramp.statement(&format!("approval-{round}.json"));
        let text = std::fs::read_to_string(&statement).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["extends"], head, "{text}");
        assert_eq!(parsed["new"], digest(&live));
        assert_eq!(parsed["contract"], "checkout-v2");
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text:?}"
        );
        // Printed to stdout, the statement is the same apart from its time.
        let printed = stdout(&ramp.run(&["ramp", "statement"]));
        let mut printed: Value = serde_json::from_str(&printed).unwrap();
        printed["time"] = parsed["time"].clone();
        assert_eq!(printed, parsed);

        let signature = key.sign("rampart-approval", &statement);
        let (code, approved) = ramp.approve_signed(&statement, &signature);
        assert_eq!(code, 0, "{approved}");
        assert_eq!(approved["approved_by"], *principal);
        assert_eq!(approved["key"], key.fingerprint());
        assert_eq!(approved["state"]["lock"], digest(&live));
        assert_eq!(ramp.published()["lock"]["digest"], digest(&live));
        let record = ramp.records().last().unwrap().clone();
        assert_eq!(record["actor"], *principal);
        let signed = &record["details"]["signature"];
        assert_eq!(signed["principal"], *principal);
        assert_eq!(signed["key"], key.fingerprint());
        assert_eq!(signed["namespace"], "rampart-approval");
        assert_eq!(signed["statement"], text);
        assert_eq!(
            signed["armored"],
            std::fs::read_to_string(&signature).unwrap()
        );
        // The statement is spent: the head moved on.
        let (code, again) = ramp.approve_signed(&statement, &signature);
        assert_eq!(code, 3, "nothing left to approve: {again}");
    }
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["signatures_checked"], true);
    let signed: Vec<&str> = report["signed_approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["principal"].as_str().unwrap())
        .collect();
    assert_eq!(
        signed,
        [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com"
        ]
    );
    let text = stdout(&ramp.run(&["audit", "verify"]));
    assert!(text.contains("4 signed approval(s) verified"), "{text}");
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["approvals"]["signed"], true);
    assert_eq!(status["approvals"]["verified"], 4);
    assert_eq!(status["audit"]["ok"], true);
}

/// Rewrites `statement` (JSON text) with `time`, in the canonical form.
fn restamped(statement: &str, time: u64) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(statement).unwrap();
    value["time"] = json!(rampart_cli::time::rfc3339(time));
    let mut bytes = Json::parse(value.to_string().as_bytes(), 16)
        .unwrap()
        .to_canonical();
    bytes.push(b'\n');
    bytes
}

#[test]
fn forged_replayed_expired_misplaced_and_unlisted_signatures_are_refused_and_nothing_is_written() {
    let ramp = Ramp::signed("signed-refusals");
    let alice = Key::new(&ramp, "alice", &["-t", "ed25519"]);
    let bob = Key::new(&ramp, "bob", &["-t", "ecdsa", "-b", "256"]);
    let mallory = Key::new(&ramp, "mallory", &["-t", "ed25519"]);
    ramp.allow(&[
        format!(
            "alice@example.com namespaces=\"rampart-approval\" {}",
            alice.public
        ),
        format!("bob@example.com namespaces=\"git\" {}", bob.public),
    ]);
    ramp.ok(&["ramp", "start"]);
    ramp.set_live(DRIFTED_LIVE);
    let statement = ramp.statement("approval.json");
    let text = std::fs::read_to_string(&statement).unwrap();
    let good = alice.sign("rampart-approval", &statement);
    let before = ramp.files();
    let refused = |statement: &Path, signature: &Path, code: i32, needle: &str| {
        let (got, out) = ramp.approve_signed(statement, signature);
        assert_eq!(got, code, "{needle}: {out}");
        let message = out["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle}: {message}");
        assert_eq!(ramp.files(), before, "{needle}: nothing may be written");
    };
    // Forged: a valid signature by a key nobody listed.
    refused(
        &statement,
        &mallory.sign("rampart-approval", &statement),
        1,
        "is not listed in allowed_signers",
    );
    // A listed key, but only for git signatures.
    refused(
        &statement,
        &bob.sign("rampart-approval", &statement),
        1,
        "only for the namespaces \"git\"",
    );
    // A listed key signing in another namespace.
    refused(
        &statement,
        &alice.sign("git", &statement),
        1,
        "namespace `git`, not `rampart-approval`",
    );
    // The statement changed after it was signed (one second earlier: still fresh).
    let made: Value = serde_json::from_str(&text).unwrap();
    let made = rampart_cli::time::parse_rfc3339(made["time"].as_str().unwrap()).unwrap();
    let altered = ramp.dir.join("altered.json");
    std::fs::write(&altered, restamped(&text, made - 1)).unwrap();
    let now = rampart_cli::time::now_unix();
    refused(&altered, &good, 1, "does not verify over the statement");
    // Signed, but expired or from the future.
    let expired = ramp.dir.join("expired.json");
    std::fs::write(&expired, restamped(&text, now - 16 * 60)).unwrap();
    refused(
        &expired,
        &alice.sign("rampart-approval", &expired),
        1,
        "expired",
    );
    let ahead = ramp.dir.join("ahead.json");
    std::fs::write(&ahead, restamped(&text, now + 10 * 60)).unwrap();
    refused(
        &ahead,
        &alice.sign("rampart-approval", &ahead),
        1,
        "ahead of this machine's clock",
    );
    // Not a signature at all; a file that is not there.
    let junk = ramp.dir.join("junk.sig");
    std::fs::write(
        &junk,
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
    )
    .unwrap();
    refused(&statement, &junk, 1, "not an SSH signature");
    refused(&statement, &ramp.dir.join("missing.sig"), 2, "missing.sig");
    // A signed plan takes no name instead of a signature.
    let (code, out) = ramp.json(&[
        "ramp",
        "approve",
        "--by",
        "alice@example.com",
        "--reason",
        "r",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("requires signed approvals"),
        "{out}"
    );
    assert_eq!(ramp.files(), before);

    // Replayed for another delta: the live config moved on after the signature.
    ramp.set_live(&live_with("GBP"));
    refused(&statement, &good, 1, "has new");
    ramp.set_live(DRIFTED_LIVE);
    // Replayed after another record: the statement extends an older head.
    ramp.ok(&["ramp", "pause"]);
    ramp.ok(&["ramp", "resume"]);
    let (code, out) = ramp.approve_signed(&statement, &good);
    assert_eq!(code, 1, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("extends audit record seq 1"),
        "{out}"
    );
    assert_eq!(ramp.records().len(), 3);

    // A fresh statement signed by alice goes through.
    let fresh = ramp.statement("fresh.json");
    let (code, out) = ramp.approve_signed(&fresh, &alice.sign("rampart-approval", &fresh));
    assert_eq!(code, 0, "{out}");
    assert_eq!(ramp.verify().0, 0);
}

/// Recomputes the hash chain of `lines` from `from` on and points the state's head at
/// the new last record: what someone with write access to both files could do.
fn rechain(ramp: &Ramp, lines: &mut [String], from: usize) {
    let mut prev = match from {
        0 => format!("sha256:{}", "0".repeat(64)),
        i => serde_json::from_str::<Value>(&lines[i - 1]).unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let mut last = Value::Null;
    for line in lines.iter_mut().skip(from) {
        let mut record: Value = serde_json::from_str(line).unwrap();
        record["prev"] = json!(prev);
        record.as_object_mut().unwrap().remove("hash");
        prev = rampart_hash(&record);
        record["hash"] = json!(prev);
        *line = record.to_string();
        last = record;
    }
    write_lines(ramp, lines);
    let mut state = ramp.state();
    state["audit"]["hash"] = json!(prev);
    state["last_record"] = last;
    std::fs::write(ramp.dir.join("plan.json.state.json"), state.to_string()).unwrap();
}

#[test]
fn audit_verify_refuses_an_edited_signed_approval_even_with_the_chain_and_state_rewritten() {
    let ramp = Ramp::signed("signed-tamper");
    let alice = Key::new(&ramp, "alice", &["-t", "ed25519"]);
    let mallory = Key::new(&ramp, "mallory", &["-t", "ed25519"]);
    ramp.allow(&[format!("alice@example.com {}", alice.public)]);
    ramp.ok(&["ramp", "start"]);
    ramp.set_live(DRIFTED_LIVE);
    let statement = ramp.statement("approval.json");
    let (code, out) = ramp.approve_signed(&statement, &alice.sign("rampart-approval", &statement));
    assert_eq!(code, 0, "{out}");
    ramp.ok(&["ramp", "advance"]);
    let original = lines_of(&ramp);
    let state = std::fs::read(ramp.dir.join("plan.json.state.json")).unwrap();
    assert_eq!(ramp.verify().0, 0);
    let forged = std::fs::read_to_string(mallory.sign("rampart-approval", &statement)).unwrap();
    let edits: Vec<(&str, PlanEdit)> = vec![
        (
            "actor",
            Box::new(|r| r["actor"] = json!("mallory@example.com")),
        ),
        (
            "principal",
            Box::new(|r| r["details"]["signature"]["principal"] = json!("mallory@example.com")),
        ),
        (
            "new digest",
            Box::new(|r| r["details"]["new"] = json!(digest(&live_with("GBP")))),
        ),
        (
            "signature",
            Box::new(move |r| r["details"]["signature"]["armored"] = json!(forged)),
        ),
        (
            "unsigned",
            Box::new(|r| {
                r["details"].as_object_mut().unwrap().remove("signature");
            }),
        ),
    ];
    for (what, edit) in &edits {
        let mut lines = original.clone();
        let mut record: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(record["action"], "approve");
        edit(&mut record);
        lines[1] = record.to_string();
        rechain(&ramp, &mut lines, 1);
        // The chain alone (no plan, so no allowed_signers) cannot tell.
        let chain_only = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["audit", "verify", "--json", "--audit"])
            .arg(ramp.audit_path())
            .arg("--state")
            .arg(ramp.dir.join("plan.json.state.json"))
            .output()
            .unwrap();
        assert_eq!(
            chain_only.status.code(),
            Some(0),
            "{what}: {}",
            stdout(&chain_only)
        );
        // The plan's allowed_signers do.
        let (code, report) = ramp.verify();
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(report["first_bad"]["kind"], "signature", "{what}: {report}");
        assert_eq!(report["first_bad"]["line"], 2, "{what}: {report}");
        assert_eq!(ramp.ok(&["ramp", "status"])["audit"]["ok"], false, "{what}");
        write_lines(&ramp, &original);
        std::fs::write(ramp.dir.join("plan.json.state.json"), &state).unwrap();
    }
    assert_eq!(ramp.verify().0, 0);
    // Approvals are checked against the allowed_signers file as it is now.
    ramp.allow(&[format!("bob@example.com {}", mallory.public)]);
    let (code, report) = ramp.verify();
    assert_eq!(code, 1, "{report}");
    assert!(
        report["first_bad"]["message"]
            .as_str()
            .unwrap()
            .contains("is not listed"),
        "{report}"
    );
}

#[test]
fn without_allowed_signers_approvals_stay_by_name_and_status_says_unsigned() {
    let ramp = Ramp::new("unsigned", |_| {});
    ramp.ok(&["ramp", "start"]);
    let status = ramp.ok(&["ramp", "status"]);
    assert_eq!(status["approvals"], json!({ "signed": false }));
    let text = stdout(&ramp.run(&["ramp", "status"]));
    assert!(text.contains("approvals: UNSIGNED"), "{text}");
    ramp.set_live(DRIFTED_LIVE);
    let before = ramp.files();
    let statement = ramp.statement("approval.json");
    let (code, out) = ramp.approve_signed(&statement, &statement);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("names no approval.allowed_signers"),
        "{out}"
    );
    let (code, out) = ramp.json(&["ramp", "approve", "--reason", "r"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("--by NAME is required"),
        "{out}"
    );
    assert_eq!(ramp.files(), before);
    let approved = ramp.ok(&["ramp", "approve", "--by", "alice", "--reason", "r"]);
    assert_eq!(
        (
            approved["approved_by"].as_str(),
            approved["signed"].as_bool()
        ),
        (Some("alice"), Some(false))
    );
    let record = ramp.records().last().unwrap().clone();
    assert_eq!(record["actor"], "alice");
    assert_eq!(record["details"].get("signature"), None);
    let (code, report) = ramp.verify();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["signatures_checked"], false);
    // Nothing left to approve: no statement either.
    assert_eq!(ramp.json(&["ramp", "statement"]).0, 3);
}

#[test]
fn a_missing_or_malformed_allowed_signers_file_is_named_and_does_not_stop_a_revert() {
    let ramp = Ramp::signed("signers-file");
    let alice = Key::new(&ramp, "alice", &["-t", "ed25519"]);
    ramp.ok(&["ramp", "start"]);
    ramp.set_live(DRIFTED_LIVE);
    let statement = ramp.statement("approval.json");
    let signature = alice.sign("rampart-approval", &statement);
    let before = ramp.files();
    let (code, out) = ramp.approve_signed(&statement, &signature);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["message"].as_str().unwrap().contains("allowed_signers"),
        "{out}"
    );
    let status = ramp.ok(&["ramp", "status"]);
    assert!(
        status["approvals"]["error"]
            .as_str()
            .unwrap()
            .contains("allowed_signers"),
        "{status}"
    );
    ramp.allow(&[
        format!("alice@example.com {}", alice.public),
        "bob@example.com cert-authority ssh-ed25519 AAAA".into(),
    ]);
    let (code, out) = ramp.approve_signed(&statement, &signature);
    assert_eq!(code, 1, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("line 2: cert-authority"),
        "{out}"
    );
    assert_eq!(ramp.files(), before);
    ramp.ok(&["ramp", "revert", "--reason", "signers broken"]);
    let plan = std::fs::read_to_string(ramp.dir.join("plan.json")).unwrap();
    let mut plan: Value = serde_json::from_str(&plan).unwrap();
    plan["approval"]["allowed_signers"] = json!(42);
    std::fs::write(ramp.dir.join("plan.json"), plan.to_string()).unwrap();
    let out = ramp.run(&["ramp", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("approval.allowed_signers: must be a non-empty string"),
        "{}",
        stderr(&out)
    );
}
