//! Soak: mixed matching, drifting and hostile traffic through a real Envoy with two
//! worker threads while the contract is re-published by ECDS every few seconds. It
//! checks that every answer is one the contract allows, that Rampart's counters add up
//! exactly to the requests sent, and that Envoy's memory stays flat.
//!
//! `cargo xtask test` runs it for 20 seconds; `cargo xtask soak [--minutes N]` runs it
//! longer and writes its figures into RELIABILITY.md. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;
use rampart_test_support::rng;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rng::Rng;
use support::ecds::EcdsEnvoy;
use support::{example_contract, tenant_metadata_filter};
use support::{try_get_raw, Bootstrap, Client, Envoy, Response};

const FLAGS: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#;
const PREFIX: &str = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart";
const CLIENTS: usize = 4;
const RELOAD_EVERY: Duration = Duration::from_secs(3);
const RSS_EVERY: Duration = Duration::from_secs(1);
/// The percents the contract cycles through; a canary answer is allowed only for users
/// whose bucket is below the largest (a request may race a publish).
const PERCENTS: [u16; 2] = [30, 50];
/// Allowed growth of Envoy's resident memory from the end of the warm-up (the first
/// quarter of the run) to the end.
const RSS_TOLERANCE_KIB: u64 = 16 * 1024;

/// The n-th contract version: the example at each percent in turn, and every third
/// version an invalid one (safe mode).
fn version(n: usize) -> String {
    let mut contract = example_contract();
    if n % 3 == 2 {
        contract["ramp"]["percent"] = 250.into();
    } else {
        contract["ramp"]["percent"] = PERCENTS[n % 2].into();
    }
    contract.to_string()
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Requests that reached the filter (everything but the codec-refused class).
    decided: u64,
    /// Requests Envoy's codec refused before any filter ran.
    refused: u64,
    canary: u64,
    stable: u64,
    by_class: BTreeMap<&'static str, u64>,
    statuses: BTreeMap<u16, u64>,
    unexpected: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.decided += other.decided;
        self.refused += other.refused;
        self.canary += other.canary;
        self.stable += other.stable;
        for (k, v) in other.by_class {
            *self.by_class.entry(k).or_default() += v;
        }
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.unexpected.extend(other.unexpected);
    }

    fn total(&self) -> u64 {
        self.decided + self.refused
    }
}

/// A raw GET with `headers` given as raw lines (bytes, no CRLF), closing after it.
fn raw(headers: &[&[u8]]) -> Vec<u8> {
    support::raw_request("soak", headers)
}

fn client_loop(main: SocketAddr, seed: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut rng = Rng(seed);
    let mut client = Client::new(main);
    let mut tally = Tally::default();
    let oversized = format!(r#"{{"pad":"{}"}}"#, "x".repeat(9000));
    while !stop.load(Ordering::Relaxed) {
        let n = rng.next();
        let user = format!("soak-{}", n % 100_000);
        let bucket = rampart::bucket::bucket("checkout-v2", user.as_bytes());
        let roll = n >> 32;
        // 50% matching, 25% drifting or missing, 24% hostile, 1% refused by the codec.
        let (class, response): (&'static str, std::io::Result<Response>) = match roll % 100 {
            0..=49 => ("matching", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", FLAGS), ("x-tenant-tier", "gold")]))),
            50..=59 => ("drift", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", FLAGS), ("x-tenant-tier", "silver")]))),
            60..=67 => ("drift", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", r#"{"checkout_v2":false}"#), ("x-tenant-tier", "gold")]))),
            68..=74 => ("missing", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", FLAGS)]))),
            75..=79 => ("hostile", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", "{}"), ("x-tenant-tier", "gold"), ("x-rampart-route", "canary")]))),
            80..=84 => ("hostile", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", r#"{"checkout_v2":true,"checkout_v2":true,"currency":"EUR","max_items":50}"#), ("x-tenant-tier", "gold")]))),
            85..=88 => ("hostile", Ok(client.get("/", &[("x-user-id", &user), ("x-user-config", &oversized), ("x-tenant-tier", "gold")]))),
            89..=92 => ("hostile", try_get_raw(main, &raw(&[b"x-user-id: \xff\xfe", b"x-user-config: {\"a\":\"\xc3\x28\"}", b"x-tenant-tier: gold"]))),
            93..=98 => ("unkeyed", Ok(client.get("/", &[("x-user-config", FLAGS), ("x-tenant-tier", "gold"), ("x-rampart-route", "canary")]))),
            _ => ("refused", try_get_raw(main, &raw(&[b"x-user-id: a\0b", b"x-rampart-route: canary"]))),
        };
        *tally.by_class.entry(class).or_default() += 1;
        let r = match response {
            Ok(r) => r,
            Err(e) => {
                tally.unexpected.push(format!("{class} {user}: {e}"));
                continue;
            }
        };
        *tally.statuses.entry(r.status).or_default() += 1;
        if class == "refused" {
            tally.refused += 1;
            if r.status != 400 || r.header("x-served-by").is_some() {
                tally.unexpected.push(format!(
                    "refused: {} {:?}",
                    r.status,
                    r.header("x-served-by")
                ));
            }
            continue;
        }
        tally.decided += 1;
        let side = r.header("x-served-by").unwrap_or("none");
        match side {
            "canary" => tally.canary += 1,
            "stable" => tally.stable += 1,
            _ => {}
        }
        let allowed_canary = class == "matching" && bucket < PERCENTS[1] * 100;
        let ok = r.status == 200
            && (side == "stable" || (side == "canary" && allowed_canary))
            && r.header("x-seen-route") == Some(side);
        if !ok {
            tally.unexpected.push(format!(
                "{class} {user} (bucket {bucket}): {} {side} seen={:?} {:?}",
                r.status,
                r.header("x-seen-route"),
                r.header("x-rampart-decision")
            ));
        }
    }
    tally
}

/// Envoy's process id: the process whose command line names this Envoy's log file.
fn envoy_pid(envoy: &Envoy) -> u32 {
    let needle = envoy.dir().join("envoy.log");
    let needle = needle.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .expect("Envoy's process in /proc")
}

/// Resident set size in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Least-squares slope of `samples` (seconds, KiB), in KiB per minute.
fn slope_kib_per_minute(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let cov: f64 = samples
        .iter()
        .map(|s| (s.0 - mean_t) * (s.1 as f64 - mean_r))
        .sum();
    let var: f64 = samples.iter().map(|s| (s.0 - mean_t).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

fn seconds_from_env() -> u64 {
    std::env::var("RAMPART_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn soak_mixed_traffic_with_contract_reloads() {
    let seconds = seconds_from_env();
    let duration = Duration::from_secs(seconds);
    let bootstrap = Bootstrap::new().pre_filter(tenant_metadata_filter());
    let ecds = EcdsEnvoy::start(&bootstrap, &version(0), &["--concurrency", "2"]);
    let envoy = &ecds.envoy;
    let main = envoy.addr("main");
    let pid = envoy_pid(envoy);
    let health_before = envoy.stats();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || client_loop(main, 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1), stop))
        })
        .collect();
    let mut rss = vec![(0.0, rss_kib(pid))];
    let mut published = 1usize;
    let mut next_reload = started + RELOAD_EVERY;
    while started.elapsed() < duration {
        thread::sleep(RSS_EVERY.min(duration.saturating_sub(started.elapsed())));
        rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
        if Instant::now() >= next_reload {
            ecds.publish(&version(published));
            published += 1;
            next_reload += RELOAD_EVERY;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for c in clients {
        tally.merge(c.join().unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    ecds.wait_for_update(published as u64);

    // Counters: the contract's plus safe mode's add up to every request that reached
    // the filter (once every worker, and every replaced configuration, has handed its
    // last counts to Envoy); sides match what the clients saw and what the clusters served.
    let stats = envoy.wait_for_sum(
        &[
            &format!("{PREFIX}.requests"),
            "wasmcustom.rampart.safe_mode",
        ],
        tally.decided,
    );
    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    let contract = |name: &str| stat(&format!("{PREFIX}.{name}"));
    let safe_mode = stat("wasmcustom.rampart.safe_mode");
    let reasons: u64 = ["match", "drift", "missing", "unkeyed", "paused"]
        .iter()
        .map(|r| contract(r))
        .sum();
    let rss_after_warmup = rss
        .iter()
        .find(|(t, _)| *t >= elapsed / 4.0)
        .map_or(rss[0].1, |s| s.1);
    let rss_end = rss.last().unwrap().1;
    let rss_max = rss.iter().map(|s| s.1).max().unwrap();
    let steady: Vec<(f64, u64)> = rss
        .iter()
        .copied()
        .filter(|(t, _)| *t >= elapsed / 4.0)
        .collect();
    let slope = slope_kib_per_minute(&steady);

    let figures = format!(
        "| figure | value |\n|---|---|\n\
         | duration | {elapsed:.0} s, {CLIENTS} clients, Envoy `--concurrency 2` |\n\
         | requests sent | {} ({:.0}/s) |\n\
         | by class | {} |\n\
         | HTTP statuses | {} |\n\
         | unexpected answers | {} |\n\
         | contract versions applied by ECDS | {published} (every {} s; every third one invalid → safe mode) |\n\
         | decided by the contract / in safe mode | {} / {safe_mode} (sum {}, requests that reached the filter {}) |\n\
         | canary / stable as counted by Rampart | {} / {} (+ {safe_mode} safe mode) |\n\
         | canary / stable as seen by the clients | {} / {} |\n\
         | upstream requests canary / stable cluster | {} / {} |\n\
         | Envoy RSS: start / after warm-up / end / max | {} / {} / {} / {} MiB |\n\
         | RSS slope after warm-up | {slope:+.0} KiB/min |\n\
         | wasm VMs created / reloads | {} / {} |\n",
        tally.total(),
        tally.total() as f64 / elapsed,
        tally.by_class.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        tally.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
        tally.unexpected.len(),
        RELOAD_EVERY.as_secs(),
        contract("requests"),
        contract("requests") + safe_mode,
        tally.decided,
        contract("canary"),
        contract("stable"),
        tally.canary,
        tally.stable,
        stat("cluster.canary.upstream_rq_total"),
        stat("cluster.stable.upstream_rq_total"),
        mib(rss[0].1),
        mib(rss_after_warmup),
        mib(rss_end),
        mib(rss_max),
        stat("wasm.envoy.wasm.runtime.v8.created"),
        stat("wasm.rampart.vm_reload"),
    );
    println!("\nsoak figures:\n{figures}");
    if let Some(path) = std::env::var_os("RAMPART_SOAK_REPORT") {
        write_report(Path::new(&path), &figures);
    }

    assert!(
        tally.unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        tally.unexpected.len(),
        &tally.unexpected[..tally.unexpected.len().min(5)]
    );
    assert!(
        tally.total() > seconds * 20,
        "too little traffic: {}",
        tally.total()
    );
    assert_eq!(contract("requests") + safe_mode, tally.decided);
    assert_eq!(reasons, contract("requests"));
    assert_eq!(
        contract("canary") + contract("stable") + contract("rejected"),
        contract("requests")
    );
    assert_eq!(contract("canary"), tally.canary);
    assert_eq!(contract("stable") + safe_mode, tally.stable);
    assert_eq!(stat("cluster.canary.upstream_rq_total"), tally.canary);
    assert_eq!(stat("cluster.stable.upstream_rq_total"), tally.stable);
    assert!(published >= 3 || seconds < 9, "{published} versions");
    assert!(
        safe_mode > 0 || published < 3,
        "an invalid version was live"
    );
    assert_eq!(stat("wasm.rampart.vm_reload"), 0);
    assert_eq!(
        stat("wasm.rampart.vm_reload_backoff"),
        health_before
            .get("wasm.rampart.vm_reload_backoff")
            .copied()
            .unwrap_or(0)
    );
    assert!(
        rss_end <= rss_after_warmup + RSS_TOLERANCE_KIB,
        "Envoy RSS grew from {rss_after_warmup} KiB after warm-up to {rss_end} KiB"
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn write_report(path: &Path, figures: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let stamp = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let text = format!(
        "Run {stamp} on this machine ({} CPUs):\n\n{figures}",
        cpus()
    );
    std::fs::write(PathBuf::from(path), text).unwrap();
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}
