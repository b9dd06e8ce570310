//! The drift gate's PromQL, run by `promtool test rules` on synthetic series: the ramp's
//! own gate queries, the Argo Rollouts / Flagger analysis queries and every panel query
//! of the Grafana dashboard, all taken from the one definition in the CLI
//! (`rampart_cli::drift_ratio_query` and friends). Cases:
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

use rampart::metrics::{Counter, FieldCounter};
use rampart_cli::{
    counter_rate_query, drift_pause_by_envoy_query, drift_pause_query, drift_ratio_query,
    field_rate_query, gate_counter_query, gate_drift_paused_query, invalid_config_query,
    safe_mode_rate_query, ENVOY_LABEL,
};
use serde_json::{json, Value};
use support::{repo_root, TempDir};

/// The analysis window the cases use; samples every minute, evaluated at 10m, so the
/// window's samples are 5m..10m and `increase` needs no extrapolation.
const WINDOW: &str = "5m";
const EVAL_AT: &str = "10m";
const COMMITTED: &str = "tests/promql/gates_test.yaml";

/// The counters without a contract label.
const UNTAGGED: [&str; 2] = ["safe_mode", "invalid_config"];

/// The Grafana dashboard as committed (tests/render.rs keeps it what `rampart render
/// grafana` writes); every panel query is evaluated in every group.
const DASHBOARD: &str = "examples/grafana/rampart.json";

/// One series: metric (`field_<counter>:<input>` for a per-input counter), contract,
/// Envoy instance, promtool's expanding notation.
fn series(metric: &str, contract: &str, envoy: &str, values: &str) -> Value {
    let (metric, input) = metric.split_once(':').unwrap_or((metric, ""));
    let mut labels = Vec::new();
    if !UNTAGGED.contains(&metric) {
        labels.push(format!("rampart_contract=\"{contract}\""));
    }
    if !input.is_empty() {
        labels.push(format!("rampart_input=\"{input}\""));
    }
    labels.push(format!("instance=\"{envoy}\""));
    json!({
        "series": format!("rampart_{metric}{{{}}}", labels.join(",")),
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

/// An expression and its samples, each `(labels, value)`.
fn expect_samples(expr: String, samples: &[(String, f64)]) -> Value {
    let samples: Vec<Value> = samples
        .iter()
        .map(|(labels, value)| json!({ "labels": labels, "value": value }))
        .collect();
    json!({ "expr": expr, "eval_time": EVAL_AT, "exp_samples": samples })
}

/// What the dashboard's panels must show for one contract at [`EVAL_AT`] (rates per
/// second over [`WINDOW`]); the drift ratio is the analysis query, checked by
/// [`analysis`]. The default is a contract without traffic.
#[derive(Default)]
struct Dashboard {
    canary: f64,
    stable: f64,
    rejected: f64,
    /// Per input counter (drift, missing, invalid): `(input, rate)`.
    fields: [Vec<(&'static str, f64)>; 3],
    /// Per Envoy: `(instance, pause)`.
    pause: Vec<(&'static str, f64)>,
    safe_mode: f64,
    invalid_configs: f64,
}

/// The dashboard's queries of `contract`, from the CLI's definitions, and their values.
fn dashboard(contract: &str, d: Dashboard) -> Vec<Value> {
    let labelled = |label: &str, samples: &[(&str, f64)]| -> Vec<(String, f64)> {
        samples
            .iter()
            .map(|(value, v)| (format!("{{{label}=\"{value}\"}}"), *v))
            .collect()
    };
    let mut tests = vec![
        expect(
            counter_rate_query(Counter::Canary, contract, WINDOW),
            d.canary,
        ),
        expect(
            counter_rate_query(Counter::Stable, contract, WINDOW),
            d.stable,
        ),
        expect(
            counter_rate_query(Counter::Rejected, contract, WINDOW),
            d.rejected,
        ),
        expect_samples(
            drift_pause_by_envoy_query(contract),
            &labelled(ENVOY_LABEL, &d.pause),
        ),
        expect(safe_mode_rate_query(WINDOW), d.safe_mode),
        expect(invalid_config_query(WINDOW), d.invalid_configs),
    ];
    for (counter, samples) in FieldCounter::ALL.into_iter().zip(&d.fields) {
        tests.push(expect_samples(
            field_rate_query(counter, contract, WINDOW),
            &labelled("rampart_input", samples),
        ));
    }
    tests
}

/// Every panel query of the committed dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = repo_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(queries.len() >= 10, "{DASHBOARD}: {queries:?}");
    queries
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

/// A test group: the series of `contract` as `metric@envoy=values; ...`, and the tests
/// of `contract`.
fn group(contract: &str, input: &str, tests: Vec<Value>) -> Value {
    group_about(contract, contract, input, tests)
}

/// A test group whose tests ask about `tested` (another contract than the series').
/// Every dashboard panel query, with `tested` for `$contract` and [`WINDOW`] for
/// `$__rate_interval`, must be among the tests.
fn group_about(contract: &str, tested: &str, input: &str, tests: Vec<Value>) -> Value {
    for query in dashboard_queries() {
        let query = query
            .replace("$contract", tested)
            .replace("$__rate_interval", WINDOW);
        assert!(
            tests.iter().any(|test| test["expr"] == query.as_str()),
            "group {tested}: no expectation for the dashboard query {query}"
        );
    }
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
    normal.extend(dashboard(
        "normal",
        Dashboard {
            canary: 0.5,
            stable: 64.0 / 60.0,
            rejected: 0.1,
            fields: [
                vec![("tier", 1.0 / 60.0)],
                vec![("flags", 1.0 / 60.0)],
                vec![],
            ],
            pause: vec![("a", 0.0)],
            safe_mode: 0.1,
            // 0 until 7m, then 2: the window 5m..10m sees 2 rejected.
            invalid_configs: 2.0,
        },
    ));
    normal.push(expect(
        gate_counter_query(Counter::Requests, "normal"),
        1000.0,
    ));
    normal.push(expect(gate_counter_query(Counter::Drift, "normal"), 10.0));
    normal.push(expect(gate_counter_query(Counter::Missing, "normal"), 10.0));
    // No traffic: flat counters rate 0, and absent ones read 0 (per input: nothing).
    let mut idle = analysis("idle", 0.0, 0.0);
    idle.extend(dashboard("idle", Dashboard::default()));
    idle.push(expect(gate_counter_query(Counter::Requests, "idle"), 5.0));
    // No series at all (a contract nobody serves, or a scrape not set up): 0, and
    // the gate's pause query is empty.
    let mut absent = analysis("absent", 0.0, 0.0);
    absent.extend(dashboard("absent", Dashboard::default()));
    absent.push(expect_empty(gate_drift_paused_query("absent")));
    absent.push(expect_empty(gate_counter_query(
        Counter::Requests,
        "absent",
    )));
    // Restarted at 7m: 500 600 | 0 100 200 300 in the window is 100 + 0 + 300 = 400
    // requests and 8 drift. The gate's instant sum shows the restarted value (300); the
    // gate itself counts it whole (`Counters::since`).
    let mut reset = analysis("reset", 0.02, 0.0);
    // The canary: 300 360 | 0 60 120 180 is 240 in 5m, no negative rate.
    reset.extend(dashboard(
        "reset",
        Dashboard {
            canary: 0.8,
            fields: [vec![("tier", 8.0 / 300.0)], vec![], vec![]],
            ..Dashboard::default()
        },
    ));
    reset.push(expect(
        gate_counter_query(Counter::Requests, "reset"),
        300.0,
    ));
    // Two Envoys: (10 + 0) / (500 + 1500).
    let mut two = analysis("two", 0.005, 0.0);
    two.extend(dashboard(
        "two",
        Dashboard {
            canary: 1.0 + 2.0,
            stable: 1.0 + 4.0,
            fields: [vec![("tier", (2.0 + 4.0) / 60.0)], vec![], vec![]],
            safe_mode: 0.1 + 0.2,
            invalid_configs: 1.0 + 2.0,
            ..Dashboard::default()
        },
    ));
    two.push(expect(gate_counter_query(Counter::Requests, "two"), 4000.0));
    // One of two Envoys holds the pause since 5m: everyone goes to stable and counts
    // `paused`, the ratio reads a healthy 0, the pause query says 1.
    let mut paused = analysis("paused", 0.0, 1.0);
    paused.extend(dashboard(
        "paused",
        Dashboard {
            pause: vec![("a", 0.0), ("b", 1.0)],
            ..Dashboard::default()
        },
    ));
    paused.push(expect(gate_drift_paused_query("paused"), 1.0));
    json!({
        "evaluation_interval": "1m",
        "tests": [
            group(
                "normal",
                "requests@a=0+100x10; drift@a=0+1x10; missing@a=0+1x10; drift_paused@a=0x10; \
                 canary@a=0+30x10; stable@a=0+64x10; rejected@a=0+6x10; \
                 field_drift:tier@a=0+1x10; field_missing:flags@a=0+1x10; \
                 safe_mode@a=0+6x10; invalid_config@a=0x6 2x3",
                normal,
            ),
            group(
                "idle",
                "requests@a=5x10; drift@a=0x10; missing@a=0x10; canary@a=5x10; \
                 safe_mode@a=0x10; invalid_config@a=1x10",
                idle,
            ),
            group_about("other", "absent", "requests@a=0+100x10", absent),
            group(
                "reset",
                "requests@a=0+100x6 0+100x3; drift@a=0+2x6 0+2x3; missing@a=0x10; \
                 canary@a=0+60x6 0+60x3; field_drift:tier@a=0+2x6 0+2x3",
                reset,
            ),
            group(
                "two",
                "requests@a=0+100x10; drift@a=0+2x10; requests@b=0+300x10; drift@b=0x10; \
                 canary@a=0+60x10; canary@b=0+120x10; stable@a=0+60x10; stable@b=0+240x10; \
                 field_drift:tier@a=0+2x10; field_drift:tier@b=0+4x10; \
                 safe_mode@a=0+6x10; safe_mode@b=0+12x10; \
                 invalid_config@a=0x6 1x3; invalid_config@b=0x6 2x3",
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
