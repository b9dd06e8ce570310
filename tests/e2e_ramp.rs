//! A whole ramp against a real Envoy (`--concurrency 2`): the `rampart ramp` commands
//! publish each step by ECDS while a client keeps sending requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rampart::bucket::{bucket, is_canary, threshold_for_percent};
use serde_json::{json, Value};
use support::ecds::{eventually, rampart_cli, EcdsEnvoy};
use support::prometheus::Prometheus;
use support::tenant_metadata_filter;
use support::{get, repo_root, Bootstrap, Client, TempDir};

const CONTRACT: &str = "checkout-v2";
const STEPS: [f64; 5] = [1.0, 5.0, 25.0, 50.0, 100.0];
/// Sticky users the tests send; enough that every step has canary users.
const USERS: usize = 400;

fn example(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo_root().join("examples").join(name)).unwrap())
        .unwrap()
}

fn user(index: usize) -> String {
    format!("user-{index}")
}

/// Whether `user` is on the canary at `percent`: the core's sticky bucket function.
fn expected_canary(user: &str, percent: f64) -> bool {
    is_canary(
        bucket(CONTRACT, user.as_bytes()),
        threshold_for_percent(percent),
    )
}

/// The request headers of `user` carrying `flags` (JSON text) and tier gold.
fn headers<'a>(user: &'a str, flags: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-user-id", user),
        ("x-user-config", flags),
        ("x-tenant-tier", "gold"),
    ]
}

/// A ramp under test: an Envoy taking the filter by ECDS, and a plan whose
/// state, audit log and live snapshot live in a temp dir.
struct Ramp {
    // Declared first: Envoy stops before the directories go.
    ecds: EcdsEnvoy,
    dir: TempDir,
    plan: PathBuf,
    live: PathBuf,
}

/// What the plan's gates and metrics source are.
struct PlanOptions {
    min_requests: u64,
    max_drift_ratio: f64,
    metrics: Option<Value>,
    drift_pause: Option<Value>,
    steps: Vec<f64>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            min_requests: 20,
            max_drift_ratio: 0.01,
            metrics: None,
            drift_pause: None,
            steps: STEPS.to_vec(),
        }
    }
}

impl Ramp {
    fn start(options: PlanOptions) -> Self {
        let mut initial = example("contract.json");
        initial["ramp"]["percent"] = json!(0.0);
        let bootstrap = Bootstrap::new().pre_filter(tenant_metadata_filter());
        let ecds = EcdsEnvoy::start_with(
            &bootstrap,
            &initial.to_string(),
            &["--concurrency", "2", "--component-log-level", "wasm:info"],
            |value| {
                // Prometheus names as in the demo: rampart_<counter>{rampart_contract="…"}.
                value["stats_config"] = json!({ "stats_tags": support::rampart_stats_tags() });
            },
        );
        let dir = TempDir::new("ramp");
        let mut plan = support::ecds::example_ramp_plan(
            &dir,
            ecds.file.path(),
            options.max_drift_ratio,
            options.min_requests,
        );
        let live = dir.path().join("live.json");
        plan["steps"] = json!(options.steps);
        plan["metrics"] = options.metrics.unwrap_or_else(
            || json!({ "envoy_admin": format!("http://{}", ecds.envoy.admin_addr()) }),
        );
        if let Some(drift_pause) = options.drift_pause {
            plan["drift_pause"] = drift_pause;
        }
        let plan = dir.write("plan.json", &plan.to_string());
        Self {
            ecds,
            dir,
            plan,
            live,
        }
    }

    fn main(&self) -> SocketAddr {
        self.ecds.envoy.addr("main")
    }

    /// Runs `rampart ramp ARGS --plan PLAN --json`.
    fn ramp(&self, args: &[&str]) -> Output {
        Command::new(rampart_cli())
            .arg("ramp")
            .args(args)
            .arg("--plan")
            .arg(&self.plan)
            .arg("--json")
            .output()
            .unwrap()
    }

    /// Runs a ramp command that must succeed; returns its JSON output.
    fn ramp_ok(&self, args: &[&str]) -> Value {
        let output = self.ramp(args);
        assert_exit(&output, 0, &format!("rampart ramp {args:?}"));
        parse_json(&output)
    }

    /// `advance`, retried while a gate says "not yet" (exit 4); returns the final output.
    fn advance_when_ready(&self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.ramp(&["advance"]);
            if output.status.code() != Some(4) || Instant::now() > deadline {
                return output;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn set_live(&self, snapshot: &Value) {
        std::fs::write(&self.live, snapshot.to_string()).unwrap();
    }

    /// Rewrites the plan file with `edit` applied.
    fn edit_plan(&mut self, edit: impl FnOnce(&mut Value)) {
        let mut plan: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.plan).unwrap()).unwrap();
        edit(&mut plan);
        self.plan = self.dir.write("plan.json", &plan.to_string());
    }

    /// Restarts Envoy (same bootstrap and ECDS file, new ports) and points the plan's
    /// metrics at the new admin endpoint.
    fn restart_envoy(&mut self) {
        self.ecds.restart();
        let admin = format!("http://{}", self.ecds.envoy.admin_addr());
        self.edit_plan(|plan| plan["metrics"] = json!({ "envoy_admin": admin }));
    }

    /// The side `user` is routed to with `flags`, and the decision header saying why.
    fn decision(&self, user: &str, flags: &str) -> (String, String) {
        let response = get(self.main(), "/", &headers(user, flags));
        assert_eq!(response.status, 200);
        let side = response.header("x-served-by").unwrap().to_owned();
        let why = response.header("x-rampart-decision").unwrap().to_owned();
        (side, why)
    }

    /// The side `user` is routed to with `flags`.
    fn side(&self, user: &str, flags: &str) -> String {
        let response = get(self.main(), "/", &headers(user, flags));
        assert_eq!(response.status, 200);
        response.header("x-served-by").unwrap().to_owned()
    }

    /// Waits until every user's side is what `percent` says (workers apply an
    /// ECDS update shortly after Envoy counts it).
    fn wait_for_percent(&self, percent: f64, flags: &str) {
        let mut client = Client::new(self.main());
        eventually(&format!("every user routed as at {percent}%"), || {
            (0..USERS).all(|i| {
                let name = user(i);
                let response = client.get("/", &headers(&name, flags));
                let canary = response.header("x-served-by") == Some("canary");
                canary == expected_canary(&name, percent)
            })
        });
    }
}

/// Asserts `rampart` exited with `code`, else fails quoting `what` and its output.
fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn parse_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn flags_text() -> String {
    example("snapshot.json")["flags"].to_string()
}

/// One response the background client saw: which user, which side, and the range
/// of steps that may have been in force while it was in flight.
struct Observation {
    user: usize,
    canary: bool,
    steps: (usize, usize),
}

/// A background client sending sticky users' requests until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(Vec<Observation>, Vec<String>)>>,
}

/// The steps the test has published: `settled` is fully in force, `published` may
/// be reaching the workers. Indexes into `percents` (0 = before the ramp).
#[derive(Clone)]
struct StepWindow {
    settled: Arc<AtomicUsize>,
    published: Arc<AtomicUsize>,
    /// Requests the background client has completed so far.
    completed: Arc<AtomicUsize>,
}

impl StepWindow {
    /// Waits until the background client has sent every user once more (plus the
    /// request that may have been in flight when this was called).
    fn wait_for_a_full_round(&self) {
        let start = self.completed.load(Ordering::SeqCst);
        eventually("a full round of background requests", || {
            self.completed.load(Ordering::SeqCst) > start + USERS
        });
    }
}

impl Traffic {
    fn start(addr: SocketAddr, flags: String, window: StepWindow) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut observations = Vec::new();
            let mut failures = Vec::new();
            let mut client = Client::new(addr);
            let mut next = 0usize;
            while !stopping.load(Ordering::SeqCst) {
                let index = next % USERS;
                next += 1;
                let name = user(index);
                let low = window.settled.load(Ordering::SeqCst);
                let result = catch_unwind(AssertUnwindSafe(|| {
                    client.get("/", &headers(&name, &flags))
                }));
                let high = window.published.load(Ordering::SeqCst);
                window.completed.fetch_add(1, Ordering::SeqCst);
                match result {
                    Ok(response) if response.status == 200 => observations.push(Observation {
                        user: index,
                        canary: response.header("x-served-by") == Some("canary"),
                        steps: (low, high),
                    }),
                    Ok(response) => failures.push(format!(
                        "{name}: status {} {}",
                        response.status, response.body
                    )),
                    Err(_) => {
                        failures.push(format!("{name}: request failed"));
                        client = Client::new(addr);
                    }
                }
            }
            (observations, failures)
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (Vec<Observation>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn advance_through_every_step_under_load_without_a_failed_request() {
    let ramp = Ramp::start(PlanOptions::default());
    let flags = flags_text();
    // percents[i]: the canary share while step i is in force (0: before the ramp).
    let percents: Vec<f64> = std::iter::once(0.0).chain(STEPS).collect();
    let window = StepWindow {
        settled: Arc::new(AtomicUsize::new(0)),
        published: Arc::new(AtomicUsize::new(0)),
        completed: Arc::new(AtomicUsize::new(0)),
    };
    let traffic = Traffic::start(ramp.main(), flags.clone(), window.clone());
    window.wait_for_a_full_round();

    let mut updates = ramp.ecds.updates();
    for (index, percent) in STEPS.iter().enumerate() {
        let step = index + 1;
        window.published.store(step, Ordering::SeqCst);
        let out = if step == 1 {
            ramp.ramp_ok(&["start"])
        } else {
            let output = ramp.advance_when_ready();
            assert_exit(&output, 0, &format!("advance to step {step}"));
            parse_json(&output)
        };
        assert_eq!(out["state"]["step"], json!(step), "{out}");
        assert_eq!(out["state"]["percent"].as_f64(), Some(*percent), "{out}");
        // One publish per step, applied live.
        updates += 1;
        ramp.ecds.wait_for_update(updates);
        ramp.wait_for_percent(*percent, &flags);
        window.settled.store(step, Ordering::SeqCst);
        // Every user once more while the step is settled: the measured share below.
        window.wait_for_a_full_round();
        let expected = (0..USERS)
            .filter(|&i| expected_canary(&user(i), *percent))
            .count();
        println!("step {step}: {percent}% -> {expected} of {USERS} users on the canary");
    }
    // The last step passed its gates: the ramp is complete, nothing more is published.
    let output = ramp.advance_when_ready();
    assert_eq!(output.status.code(), Some(0));
    let out = parse_json(&output);
    assert_eq!(out["state"]["status"], "completed", "{out}");
    assert_eq!(ramp.ecds.updates(), updates);

    let (observations, failures) = traffic.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        observations.len() > USERS,
        "too little traffic: {}",
        observations.len()
    );
    // Every response matches a step that was in force while it was in flight, and
    // the measured canary share of each settled step is the bucket function's.
    for observation in &observations {
        let name = user(observation.user);
        let (low, high) = observation.steps;
        assert!(
            (low..=high).any(|s| expected_canary(&name, percents[s]) == observation.canary),
            "{name} on {} while steps {low}..={high} were in force",
            if observation.canary {
                "canary"
            } else {
                "stable"
            },
        );
    }
    for (step, percent) in percents.iter().enumerate() {
        let settled: Vec<&Observation> = observations
            .iter()
            .filter(|o| o.steps == (step, step))
            .collect();
        if settled.is_empty() {
            continue;
        }
        let canary = settled.iter().filter(|o| o.canary).count();
        let expected = settled
            .iter()
            .filter(|o| expected_canary(&user(o.user), *percent))
            .count();
        let share = canary as f64 / settled.len() as f64;
        // Buckets are uniform over 0..10000, so with n users the canary share has a
        // standard deviation of sqrt(p(1-p)/n) around the step's percent p.
        let p = percent / 100.0;
        let tolerance = 4.0 * (p * (1.0 - p) / USERS as f64).sqrt() + 1e-9;
        println!(
            "step {step} ({percent}%): {canary} of {} requests on the canary ({:.2}%, tolerance ±{:.2}%)",
            settled.len(),
            100.0 * share,
            100.0 * tolerance
        );
        assert!(
            settled.len() >= USERS,
            "step {step}: only {} requests",
            settled.len()
        );
        assert_eq!(canary, expected, "step {step}: the sticky buckets decide");
        assert!(
            (share - p).abs() <= tolerance,
            "step {step}: share {share} vs {p}"
        );
    }
}

#[test]
fn changed_live_config_blocks_advance_and_approval_relocks() {
    // Requests still on the old config after the approval count as drift in the new
    // step's window; the limit leaves room for the few this test sends on purpose.
    let ramp = Ramp::start(PlanOptions {
        max_drift_ratio: 0.2,
        ..PlanOptions::default()
    });
    let flags = flags_text();
    ramp.ramp_ok(&["start"]);
    ramp.ecds.wait_for_update(2);
    ramp.wait_for_percent(1.0, &flags);

    // The live config moves: currency EUR -> USD.
    let mut live = example("snapshot.json");
    live["flags"]["currency"] = json!("USD");
    ramp.set_live(&live);
    let new_flags = live["flags"].to_string();
    let canary_user = (0..USERS)
        .map(user)
        .find(|u| expected_canary(u, 1.0))
        .unwrap();
    // Users with the new config drift to stable until the lock moves.
    assert_eq!(ramp.side(&canary_user, &new_flags), "stable");

    let output = ramp.ramp(&["advance"]);
    assert_eq!(output.status.code(), Some(1), "advance must block");
    let out = parse_json(&output);
    assert_eq!(out["gate"], "config", "{out}");
    assert_eq!(out["state"]["status"], "blocked", "{out}");
    let delta = out["delta"].to_string();
    assert!(
        delta.contains("/flags"),
        "the delta names the field: {delta}"
    );
    // Nothing was published by a blocked advance.
    assert_eq!(ramp.ecds.updates(), 2);

    let approved = ramp.ramp_ok(&[
        "approve",
        "--by",
        "alice",
        "--reason",
        "USD checkout reviewed",
    ]);
    assert_eq!(approved["state"]["status"], "running", "{approved}");
    ramp.ecds.wait_for_update(3);
    // The new lock is in force: the new config reaches the canary, the old one drifts.
    eventually("the new config reaches the canary", || {
        ramp.side(&canary_user, &new_flags) == "canary"
    });
    assert_eq!(ramp.side(&canary_user, &flags), "stable");
    // And the ramp moves on with it.
    for _ in 0..25 {
        ramp.side(&canary_user, &new_flags);
    }
    let output = ramp.advance_when_ready();
    assert_exit(&output, 0, "advance");
    ramp.ecds.wait_for_update(4);
}

#[test]
fn revert_sends_everyone_to_stable_within_one_reload() {
    let ramp = Ramp::start(PlanOptions::default());
    let flags = flags_text();
    ramp.ramp_ok(&["start"]);
    for _ in 0..2 {
        for i in 0..25 {
            ramp.side(&user(i), &flags);
        }
        let output = ramp.advance_when_ready();
        assert_eq!(output.status.code(), Some(0));
    }
    let before = ramp.ecds.updates();
    ramp.wait_for_percent(25.0, &flags);

    let out = ramp.ramp_ok(&["revert", "--reason", "error rate"]);
    assert_eq!(out["state"]["status"], "reverted", "{out}");
    ramp.ecds.wait_for_update(before + 1);
    ramp.wait_for_percent(0.0, &flags);
    // One reload did it.
    assert_eq!(ramp.ecds.updates(), before + 1);
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

#[test]
fn prometheus_gate_reads_a_real_prometheus_scraping_envoy() {
    // Start the ramp first, then point the plan at a Prometheus scraping its Envoy.
    let mut ramp = Ramp::start(PlanOptions::default());
    let prometheus = Prometheus::start(&[("envoy", ramp.ecds.envoy.admin_addr())]);
    ramp.edit_plan(|plan| {
        plan["metrics"] = json!({ "prometheus": format!("http://{}", prometheus.addr) });
        plan["gates"]["max_drift_ratio"] = json!(0.2);
    });
    let flags = flags_text();

    ramp.ramp_ok(&["start"]);
    ramp.ecds.wait_for_update(2);
    // Too few requests seen by Prometheus: "not yet" (exit 4), nothing published.
    let output = ramp.ramp(&["advance"]);
    assert_exit(&output, 4, "advance");
    assert_eq!(ramp.ecds.updates(), 2);

    // 40 requests with `flags`, then until Prometheus has scraped them into `metric`.
    let send_and_scrape = |ramp: &Ramp, flags: &str, metric: &str| {
        for i in 0..40 {
            ramp.side(&user(i), flags);
        }
        let query = format!("sum({metric}{{rampart_contract=\"{CONTRACT}\"}})");
        eventually(&format!("Prometheus scraped {query}"), || {
            prometheus.value(&query) >= 40.0
        });
    };

    // Matching traffic, scraped: the gate opens.
    send_and_scrape(&ramp, &flags, "rampart_requests");
    let output = ramp.advance_when_ready();
    assert_exit(&output, 0, "advance");
    ramp.ecds.wait_for_update(3);

    // Drifted traffic, scraped: the gate blocks on the drift ratio Prometheus reports.
    send_and_scrape(&ramp, r#"{"checkout_v2":false}"#, "rampart_drift");
    let output = ramp.advance_when_ready();
    assert_exit(&output, 1, "advance");
    let out = parse_json(&output);
    assert_eq!(out["gate"], "drift", "{out}");
    assert!(out["drift_ratio"].as_f64().unwrap() > 0.2, "{out}");
    assert_eq!(ramp.ecds.updates(), 3);
}

#[test]
fn the_drift_pause_made_durable_holds_through_an_envoy_restart_until_the_approval() {
    let mut ramp = Ramp::start(PlanOptions {
        // A 10 s window: workers merge counts and learn of a pause every second.
        drift_pause: Some(json!({ "max_ratio": 0.05, "min_requests": 20, "window_seconds": 10 })),
        ..PlanOptions::default()
    });
    let paused_gauge = support::stat_name(CONTRACT, "drift_paused");
    let flags = flags_text();
    ramp.ramp_ok(&["start"]);
    ramp.ecds.wait_for_update(2);
    // The users on the canary at step 1 whose config matches the lock.
    let canary_users: Vec<String> = (0..USERS)
        .map(user)
        .filter(|u| expected_canary(u, 1.0))
        .collect();
    assert!(!canary_users.is_empty());
    eventually("step 1 in force", || {
        canary_users
            .iter()
            .all(|u| ramp.side(u, &flags) == "canary")
    });

    // The live config moves under the ramp and clients start sending it: drift.
    let mut live = example("snapshot.json");
    live["flags"]["currency"] = json!("USD");
    ramp.set_live(&live);
    let new_flags = live["flags"].to_string();
    for i in 0..40 {
        assert_eq!(ramp.side(&user(i), &new_flags), "stable");
    }
    // The data plane pauses the canary for everyone, on both workers (each learns of
    // it on its next tick): waited for, however loaded the machine.
    let envoy = &ramp.ecds.envoy;
    eventually("the drift_paused gauge", || {
        envoy.counter(&paused_gauge) == 1
    });
    eventually("the trip in Envoy's log", || {
        envoy.log().contains("drift pause TRIPPED")
    });
    eventually(
        "every matching canary user on stable, on both workers",
        || {
            (0..4).all(|_| {
                canary_users.iter().all(|u| {
                    let (side, why) = ramp.decision(u, &flags);
                    side == "stable" && why.contains("reason=drift_paused")
                })
            })
        },
    );

    // status sees it and makes it durable: recorded, and published paused.
    let status = ramp.ramp_ok(&["status"]);
    assert_eq!(status["metrics"]["drift_paused"], true, "{status}");
    assert_eq!(status["durable_pause_seq"], 2, "{status}");
    assert_eq!(status["state"]["status"], "blocked", "{status}");
    assert_eq!(status["state"]["durable_pause"], true, "{status}");
    ramp.ecds.wait_for_update(3);
    let output = ramp.ramp(&["advance"]);
    assert_exit(&output, 3, "advance on a ramp held by the durable pause");
    assert_eq!(ramp.ecds.updates(), 3, "nothing more published");

    // Envoy restarts: its own pause is forgotten, the published one is not.
    ramp.restart_envoy();
    assert_eq!(ramp.ecds.envoy.counter(&paused_gauge), 0);
    for u in &canary_users {
        for _ in 0..3 {
            let (side, why) = ramp.decision(u, &flags);
            assert_eq!(side, "stable", "{u}: {why}");
            assert!(why.starts_with("route=stable reason=paused"), "{u}: {why}");
        }
    }
    let status = ramp.ramp_ok(&["status"]);
    assert_eq!(status["metrics"]["drift_paused"], false, "{status}");
    assert_eq!(status["state"]["durable_pause"], true, "{status}");
    assert_eq!(
        status["durable_pause_seq"],
        Value::Null,
        "recorded once: {status}"
    );

    // The approval re-locks to the new config and unpauses: the canary reopens.
    let approved = ramp.ramp_ok(&["approve", "--by", "alice", "--reason", "USD reviewed"]);
    assert_eq!(approved["state"]["durable_pause"], false, "{approved}");
    ramp.ecds.wait_for_update(2);
    let canary_user = &canary_users[0];
    eventually("the approved config reaches the canary", || {
        ramp.side(canary_user, &new_flags) == "canary"
    });
    let (side, why) = ramp.decision(canary_user, &flags);
    assert_eq!(side, "stable", "the old config is drift now: {why}");
    assert!(why.contains("reason=drift "), "{why}");
    let shown = Command::new(rampart_cli())
        .args(["audit", "show", "--json", "--plan"])
        .arg(&ramp.plan)
        .output()
        .unwrap();
    assert_exit(&shown, 0, "audit show");
    let actions: Vec<String> = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["start", "drift_pause", "approve"]);
}

/// A small deterministic generator for kill delays; the seed is printed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }
}

#[test]
fn advance_killed_at_random_points_under_load_leaves_envoy_serving_and_the_ramp_recoverable() {
    // More steps than rounds, so the kills land in a running ramp.
    let steps: Vec<f64> = (1..=40).map(|s| f64::from(s) * 2.5).collect();
    let ramp = Ramp::start(PlanOptions {
        min_requests: 1,
        steps: steps.clone(),
        ..PlanOptions::default()
    });
    let flags = flags_text();
    let window = StepWindow {
        settled: Arc::new(AtomicUsize::new(0)),
        published: Arc::new(AtomicUsize::new(0)),
        completed: Arc::new(AtomicUsize::new(0)),
    };
    let traffic = Traffic::start(ramp.main(), flags.clone(), window.clone());
    ramp.ramp_ok(&["start"]);
    // Kill delays spread over one command's run time, measured here.
    let begun = Instant::now();
    let output = ramp.advance_when_ready();
    assert_eq!(output.status.code(), Some(0));
    let span_us = u64::try_from(begun.elapsed().as_micros())
        .unwrap()
        .max(1000)
        * 6
        / 5;
    let seed = u64::from(std::process::id()) ^ u64::try_from(begun.elapsed().as_nanos()).unwrap();
    println!("kill delays below {span_us} µs, seed {seed}");
    let mut rng = Lcg(seed);
    let mut killed = 0;
    for round in 0..25 {
        let mut child = Command::new(rampart_cli())
            .args(["ramp", "advance", "--plan"])
            .arg(&ramp.plan)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_micros(rng.below(span_us)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        // Killed, advanced, completed, or waiting for requests.
        assert!(
            matches!(status.code(), None | Some(0) | Some(3) | Some(4)),
            "round {round}: {status:?}"
        );
        // Whatever the kill interrupted, `status` reads a valid state.
        let out = ramp.ramp_ok(&["status"]);
        assert!(out["state"]["status"].is_string(), "round {round}: {out}");
    }
    println!("killed {killed} of 25 advances");
    // The next commands repair any residue and finish the ramp.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ramp.ramp_ok(&["status"])["state"]["status"] != "completed" {
        let output = ramp.advance_when_ready();
        assert_eq!(output.status.code(), Some(0), "{}", parse_json(&output));
        assert!(Instant::now() < deadline, "the ramp does not complete");
    }
    let verify = Command::new(rampart_cli())
        .args(["audit", "verify", "--plan"])
        .arg(&ramp.plan)
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // Envoy never saw a torn or invalid resource and serves the last step.
    let envoy = &ramp.ecds.envoy;
    assert_eq!(envoy.counter(&support::ecds::update_rejected_stat()), 0);
    assert_eq!(
        envoy.counter(&format!(
            "extension_config_discovery.http_filter.{}.update_failure",
            support::ecds::FILTER_NAME
        )),
        0
    );
    ramp.wait_for_percent(100.0, &flags);
    let (observations, failures) = traffic.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(!observations.is_empty());
}
