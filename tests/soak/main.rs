//! Soak: mixed matching, drifting and hostile traffic over HTTP/1.1 and HTTP/2 (h2c,
//! several streams in flight per connection) through a real Envoy with two worker
//! threads, while the contract is re-published by ECDS every few seconds. It checks
//! that every answer is one the contract allows, that Rampart's counters add up exactly
//! to the requests sent, that Envoy's counts per protocol (requests, connections, codec
//! refusals) equal what each kind of client sent, and that Envoy's memory stays flat.
//!
//! `cargo xtask test` runs it for 20 seconds; `cargo xtask soak [--minutes N]` runs it
//! longer and writes its figures into RELIABILITY.md. Loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod memory;
mod traffic;

use rampart_test_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use memory::Memory;
use serde_json::Value;
use support::ecds::EcdsEnvoy;
use support::{example_contract, tenant_metadata_filter, Bootstrap};
use traffic::{Protocol, Tally, PERCENTS, STREAMS};

const PREFIX: &str = "wasmcustom.rampart_contract=.=checkout-v2;.;rampart";
/// Envoy's worker threads (`--concurrency`).
const WORKERS: u64 = 2;
/// The client threads, by protocol.
const CLIENTS: [Protocol; 4] = [
    Protocol::Http1,
    Protocol::Http2,
    Protocol::Http1,
    Protocol::Http2,
];
const RELOAD_EVERY: Duration = Duration::from_secs(3);
const RSS_EVERY: Duration = Duration::from_secs(1);
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

fn seconds_from_env() -> u64 {
    std::env::var("RAMPART_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

#[test]
fn soak_http1_and_http2_traffic_with_contract_reloads() {
    let seconds = seconds_from_env();
    let duration = Duration::from_secs(seconds);
    let bootstrap = Bootstrap::new().pre_filter(tenant_metadata_filter());
    let concurrency = WORKERS.to_string();
    let ecds = EcdsEnvoy::start(&bootstrap, &version(0), &["--concurrency", &concurrency]);
    let envoy = &ecds.envoy;
    let main = envoy.addr("main");
    let info: Value = serde_json::from_str(&envoy.get_admin("/server_info")).unwrap();
    let workers = info["command_line_options"]["concurrency"].as_u64();
    assert_eq!(workers, Some(WORKERS), "Envoy's workers per /server_info");
    let health_before = envoy.stats();
    let mut memory = Memory::of(envoy);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = CLIENTS
        .iter()
        .enumerate()
        .map(|(i, &protocol)| {
            let stop = Arc::clone(&stop);
            let seed = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1);
            let run = match protocol {
                Protocol::Http1 => traffic::http1,
                Protocol::Http2 => traffic::http2,
            };
            (protocol, thread::spawn(move || run(main, seed, &stop)))
        })
        .collect();
    let mut published = 1usize;
    let mut next_reload = started + RELOAD_EVERY;
    while started.elapsed() < duration {
        thread::sleep(RSS_EVERY.min(duration.saturating_sub(started.elapsed())));
        memory.sample(started.elapsed().as_secs_f64());
        if Instant::now() >= next_reload {
            ecds.publish(&version(published));
            published += 1;
            next_reload += RELOAD_EVERY;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut tallies: BTreeMap<Protocol, Tally> = BTreeMap::new();
    for (protocol, client) in clients {
        tallies
            .entry(protocol)
            .or_default()
            .merge(&client.join().unwrap());
    }
    let mut all = Tally::default();
    for tally in tallies.values() {
        all.merge(tally);
    }
    let (http1, http2) = (&tallies[&Protocol::Http1], &tallies[&Protocol::Http2]);
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
        all.decided,
    );
    let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
    let contract = |name: &str| stat(&format!("{PREFIX}.{name}"));
    let envoy_rq = |p: Protocol| stat(&format!("http.main.downstream_rq_{}_total", p.stat()));
    let envoy_cx = |p: Protocol| stat(&format!("http.main.downstream_cx_{}_total", p.stat()));
    let by_worker: Vec<u64> = (0..WORKERS)
        .map(|w| stat(&worker_connections_stat(w)))
        .collect();
    let safe_mode = stat("wasmcustom.rampart.safe_mode");
    let reasons: u64 = ["match", "drift", "missing", "unkeyed", "paused"]
        .iter()
        .map(|r| contract(r))
        .sum();
    let rss = memory.summary(elapsed);
    let per_protocol = |value: &dyn Fn(Protocol) -> String| {
        Protocol::ALL
            .iter()
            .map(|&p| format!("{} {}", p.name(), value(p)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let clients_of = |p: Protocol| CLIENTS.iter().filter(|&&c| c == p).count();

    let mut rows: Vec<(String, String)> = vec![
        (
            "duration".into(),
            format!("{elapsed:.0} s, Envoy `--concurrency {WORKERS}` (its /server_info: {WORKERS} workers)"),
        ),
        (
            "clients".into(),
            format!(
                "{} HTTP/1.1 (keep-alive), {} HTTP/2 (h2c, {STREAMS} concurrent streams per connection)",
                clients_of(Protocol::Http1),
                clients_of(Protocol::Http2)
            ),
        ),
        (
            "requests sent".into(),
            format!(
                "{} ({:.0}/s): {}",
                all.sent(),
                all.sent() as f64 / elapsed,
                per_protocol(&|p| tallies[&p].sent().to_string())
            ),
        ),
        (
            "requests by protocol as counted by Envoy".into(),
            per_protocol(&|p| envoy_rq(p).to_string()),
        ),
    ];
    for (protocol, tally) in &tallies {
        rows.push((
            format!("by class, {}", protocol.name()),
            list(&tally.by_class, |k, v| format!("{k} {v}")),
        ));
    }
    rows.extend([
        (
            "refused before the filter".into(),
            format!(
                "HTTP/1.1 {} (400); HTTP/2 {} connections closed (http2.rx_messaging_error {}), \
                 {} streams reset (http2.header_list_size_too_large {})",
                http1.refused,
                http2.refused,
                stat("http2.rx_messaging_error"),
                http2.too_large,
                stat("http2.header_list_size_too_large")
            ),
        ),
        (
            "connections opened by the clients / counted by Envoy".into(),
            format!(
                "{}; by worker {}",
                per_protocol(&|p| format!("{} / {}", tallies[&p].connections, envoy_cx(p))),
                list_values(&by_worker, " / ")
            ),
        ),
        (
            "HTTP statuses".into(),
            list(&all.statuses, |k, v| format!("{k}: {v}")),
        ),
        (
            "unexpected answers".into(),
            all.unexpected.len().to_string(),
        ),
        (
            "contract versions applied by ECDS".into(),
            format!(
                "{published} (every {} s; every third one invalid → safe mode)",
                RELOAD_EVERY.as_secs()
            ),
        ),
        (
            "decided by the contract / in safe mode".into(),
            format!(
                "{} / {safe_mode} (sum {}, requests that reached the filter {})",
                contract("requests"),
                contract("requests") + safe_mode,
                all.decided
            ),
        ),
        (
            "canary / stable as counted by Rampart".into(),
            format!(
                "{} / {} (+ {safe_mode} safe mode)",
                contract("canary"),
                contract("stable")
            ),
        ),
        (
            "canary / stable as seen by the clients".into(),
            format!(
                "{} / {} ({})",
                all.canary,
                all.stable,
                per_protocol(&|p| format!("{} / {}", tallies[&p].canary, tallies[&p].stable))
            ),
        ),
        (
            "upstream requests canary / stable cluster".into(),
            format!(
                "{} / {}",
                stat("cluster.canary.upstream_rq_total"),
                stat("cluster.stable.upstream_rq_total")
            ),
        ),
        (
            "Envoy RSS: start / after warm-up / end / max".into(),
            format!(
                "{} / {} / {} / {} MiB",
                mib(rss.start),
                mib(rss.after_warmup),
                mib(rss.end),
                mib(rss.max)
            ),
        ),
        (
            "RSS slope after warm-up".into(),
            format!("{:+.0} KiB/min", rss.slope),
        ),
        (
            "wasm VMs created / reloads".into(),
            format!(
                "{} / {}",
                stat("wasm.envoy.wasm.runtime.v8.created"),
                stat("wasm.rampart.vm_reload")
            ),
        ),
    ]);
    let figures = table(&rows);
    println!("\nsoak figures:\n{figures}");
    if let Some(path) = std::env::var_os("RAMPART_SOAK_REPORT") {
        write_report(Path::new(&path), &figures);
    }

    assert!(
        all.unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        all.unexpected.len(),
        &all.unexpected[..all.unexpected.len().min(5)]
    );
    for protocol in Protocol::ALL {
        let tally = &tallies[&protocol];
        assert!(
            tally.sent() > seconds * 10,
            "too little {} traffic: {}",
            protocol.name(),
            tally.sent()
        );
        // Every request and connection of each kind of client, as Envoy's codec saw it.
        assert_eq!(envoy_rq(protocol), tally.sent(), "{}", protocol.name());
        assert_eq!(envoy_cx(protocol), tally.connections, "{}", protocol.name());
    }
    // Refused before any filter: a codec error each (the HTTP/1.1 ones answered 400),
    // HTTP/2's oversized header lists a stream reset each.
    assert_eq!(
        stat("http.main.downstream_cx_protocol_error"),
        http1.refused + http2.refused
    );
    assert_eq!(stat("http.main.downstream_rq_4xx"), http1.refused);
    assert_eq!(stat("http2.rx_messaging_error"), http2.refused);
    assert_eq!(stat("http2.header_list_size_too_large"), http2.too_large);
    assert!(http1.refused > 0 && http2.refused > 0 && http2.too_large > 0);
    assert_eq!(stat("http.main.downstream_rq_2xx"), all.decided);
    // Both workers took connections, and nothing else did.
    assert!(by_worker.iter().all(|&n| n > 0), "by worker {by_worker:?}");
    assert_eq!(
        by_worker.iter().sum::<u64>(),
        envoy_cx(Protocol::Http1) + envoy_cx(Protocol::Http2)
    );
    assert_eq!(contract("requests") + safe_mode, all.decided);
    assert_eq!(reasons, contract("requests"));
    assert_eq!(
        contract("canary") + contract("stable") + contract("rejected"),
        contract("requests")
    );
    assert_eq!(contract("canary"), all.canary);
    assert_eq!(contract("stable") + safe_mode, all.stable);
    assert_eq!(stat("cluster.canary.upstream_rq_total"), all.canary);
    assert_eq!(stat("cluster.stable.upstream_rq_total"), all.stable);
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
        rss.end <= rss.after_warmup + RSS_TOLERANCE_KIB,
        "Envoy RSS grew from {} KiB after warm-up to {} KiB",
        rss.after_warmup,
        rss.end
    );
}

/// The counter of connections worker `w` accepted on the `main` listener. Envoy names a
/// listener's stats by its configured address: the harness's is 127.0.0.1, port 0.
fn worker_connections_stat(w: u64) -> String {
    format!("listener.127.0.0.1_0.worker_{w}.downstream_cx_total")
}

/// `| figure | value |` rows as a Markdown table.
fn table(rows: &[(String, String)]) -> String {
    let mut out = String::from("| figure | value |\n|---|---|\n");
    for (figure, value) in rows {
        out.push_str(&format!("| {figure} | {value} |\n"));
    }
    out
}

/// A map's entries, each as `entry` writes it, comma-separated.
fn list<K, V>(map: &BTreeMap<K, V>, entry: impl Fn(&K, &V) -> String) -> String {
    map.iter()
        .map(|(k, v)| entry(k, v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_values(values: &[u64], separator: &str) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(separator)
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
