//! The drift gate's PromQL, run by `promtool test rules` on synthetic series: the ramp's
//! own gate queries and the Argo Rollouts / Flagger analysis queries, all taken from
//! the one definition in the CLI (`rampart_cli::drift_ratio_query` and friends). Cases:
//! a normal drift ratio, no traffic, no series at all, a counter reset (Envoy restart),
//! two Envoys summed, and the data-plane drift pause.
//!
//! The test file is generated here and committed as `tests/promql/gates_test.yaml` for
//! reading; `RAMPART_BLESS=1` rewrites it. promtool comes from `RAMPART_PROMTOOL` or
//! `/usr/bin/promtool` (`cargo xtask test` provides it); without it the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::path::PathBuf;
use std::process::Command;

use rampart::metrics::Counter;
use rampart_cli::{
    drift_pause_query, drift_ratio_query, gate_counter_query, gate_drift_paused_query,
};
use serde_json::{json, Value};
use support::{repo_root, TempDir};

/// The analysis window the cases use; samples every minute, evaluated at 10m, so the
/// window's samples are 5m..10m and `increase` needs no extrapolation.
const WINDOW: &str = "5m";
const EVAL_AT: &str = "10m";
const COMMITTED: &str = "tests/promql/gates_test.yaml";

/// One series: metric, contract, Envoy instance, promtool's expanding notation.
fn series(metric: &str, contract: &str, envoy: &str, values: &str) -> Value {
    json!({
        "series": format!(
            "rampart_{metric}{{rampart_contract=\"{contract}\",instance=\"{envoy}\"}}"
        ),
        "values": values,
    })
}

/// An expression and the one sample (no labels) it must give.
fn expect(expr: String, value: f64) -> Value {
    json!({
        "expr": expr,
        "eval_time": EVAL_AT,
        "exp_samples": [{ "labels": "{}", "value": value }],
    })
}

/// An expression that must give no sample (the ramp gate reads that as "not exported").
fn expect_empty(expr: String) -> Value {
    json!({ "expr": expr, "eval_time": EVAL_AT, "exp_samples": [] })
}

/// The analysis queries of `contract`: ratio and pause.
fn analysis(contract: &str, ratio: f64, paused: f64) -> Vec<Value> {
    vec![
        expect(drift_ratio_query(contract, WINDOW), ratio),
        expect(drift_pause_query(contract), paused),
    ]
}

/// A test group: the series of `contract` as `metric@envoy=values; ...`, and the tests.
fn group(contract: &str, input: &str, tests: Vec<Value>) -> Value {
    let input: Vec<Value> = input
        .split("; ")
        .map(|one| {
            let (metric, rest) = one.split_once('@').unwrap();
            let (envoy, values) = rest.split_once('=').unwrap();
            series(metric, contract, envoy, values)
        })
        .collect();
    json!({ "interval": "1m", "input_series": input, "promql_expr_test": tests })
}

/// The promtool test file.
fn test_file() -> Value {
    let mut normal = analysis("normal", 0.02, 0.0);
    normal.push(expect(
        gate_counter_query(Counter::Requests, "normal"),
        1000.0,
    ));
    normal.push(expect(gate_counter_query(Counter::Drift, "normal"), 10.0));
    normal.push(expect(gate_counter_query(Counter::Missing, "normal"), 10.0));
    let mut idle = analysis("idle", 0.0, 0.0);
    idle.push(expect(gate_counter_query(Counter::Requests, "idle"), 5.0));
    // No series at all (a contract nobody serves, or a scrape not set up): 0, and
    // the gate's pause query is empty.
    let mut absent = analysis("absent", 0.0, 0.0);
    absent.push(expect_empty(gate_drift_paused_query("absent")));
    absent.push(expect_empty(gate_counter_query(
        Counter::Requests,
        "absent",
    )));
    // Restarted at 7m: 500 600 | 0 100 200 300 in the window is 100 + 0 + 300 = 400
    // requests and 8 drift. The gate's instant sum shows the restarted value (300); the
    // gate itself counts it whole (`Counters::since`).
    let mut reset = analysis("reset", 0.02, 0.0);
    reset.push(expect(
        gate_counter_query(Counter::Requests, "reset"),
        300.0,
    ));
    // Two Envoys: (10 + 0) / (500 + 1500).
    let mut two = analysis("two", 0.005, 0.0);
    two.push(expect(gate_counter_query(Counter::Requests, "two"), 4000.0));
    // One of two Envoys holds the pause since 5m: everyone goes to stable and counts
    // `paused`, the ratio reads a healthy 0, the pause query says 1.
    let mut paused = analysis("paused", 0.0, 1.0);
    paused.push(expect(gate_drift_paused_query("paused"), 1.0));
    json!({
        "evaluation_interval": "1m",
        "tests": [
            group(
                "normal",
                "requests@a=0+100x10; drift@a=0+1x10; missing@a=0+1x10; drift_paused@a=0x10",
                normal,
            ),
            group("idle", "requests@a=5x10; drift@a=0x10; missing@a=0x10", idle),
            group("other", "requests@a=0+100x10", absent),
            group(
                "reset",
                "requests@a=0+100x6 0+100x3; drift@a=0+2x6 0+2x3; missing@a=0x10",
                reset,
            ),
            group(
                "two",
                "requests@a=0+100x10; drift@a=0+2x10; requests@b=0+300x10; drift@b=0x10",
                two,
            ),
            group(
                "paused",
                "requests@a=0+100x10; drift@a=0x10; drift_paused@a=0x10; \
                 drift_paused@b=0 0 0 0 0 1 1 1 1 1 1",
                paused,
            ),
        ],
    })
}

fn render() -> String {
    format!(
        "# Generated by tests/promql.rs from the CLI's query definitions (RAMPART_BLESS=1\n\
         # cargo test --test promql rewrites it). Run: promtool test rules {COMMITTED}\n{}",
        serde_yaml::to_string(&test_file()).unwrap()
    )
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("RAMPART_PROMTOOL")
        .map_or_else(|| PathBuf::from("/usr/bin/promtool"), PathBuf::from);
    assert!(
        path.is_file(),
        "promtool not found at {} (set RAMPART_PROMTOOL, or install the Debian package \
         `prometheus`; `cargo xtask test` does both)",
        path.display()
    );
    path
}

#[test]
fn committed_promtool_test_is_what_the_queries_give() {
    let text = render();
    let committed = repo_root().join(COMMITTED);
    if std::env::var_os("RAMPART_BLESS").is_some() {
        std::fs::create_dir_all(committed.parent().unwrap()).unwrap();
        std::fs::write(&committed, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        on_disk == text,
        "{COMMITTED} is stale; regenerate it with: RAMPART_BLESS=1 cargo test --test promql"
    );
}

#[test]
fn gate_queries_pass_promtool_on_synthetic_series() {
    let promtool = promtool();
    let dir = TempDir::new("promql");
    let path = dir.write("gates_test.yaml", &render());
    let output = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_wrong_expectation_fails_promtool() {
    // The harness really compares: a ratio off by a little fails.
    let promtool = promtool();
    let dir = TempDir::new("promql-wrong");
    let mut file = test_file();
    file["tests"][0]["promql_expr_test"][0]["exp_samples"][0]["value"] = json!(0.021);
    let path = dir.write("wrong_test.yaml", &serde_yaml::to_string(&file).unwrap());
    let output = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "promtool accepted a wrong value");
}
