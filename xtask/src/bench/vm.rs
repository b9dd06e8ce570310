//! Rampart's per-request path timed in V8 without Envoy (`cargo xtask bench --vm`, and
//! at the end of every full run).
//!
//! Envoy's CPU per request mixes Rampart's work with the proxy's and the kernel's, and
//! swings with the machine's load; `perf` sees the module only as one block of
//! generated code. Here the filter, built with the `vm-bench` feature (its symbols
//! kept), runs the very `on_request_headers` Envoy calls, over a host that answers from
//! memory with what Envoy would hand it for the benchmark's requests: the same header
//! maps (after `header_to_metadata`), metadata and node values. Node's V8 compiles the
//! module as Envoy's does (TurboFan), so the figure is the decision's own cost, and
//! its CPU profile names the functions it goes to.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::json::{self, Value};
use super::stats::Spread;
use super::write_file;
use crate::process::{self, cargo};
use crate::{install, tasks, Error, Result};

/// What `--vm` writes and the report shows.
pub const VM_FILE: &str = "bench/vm.txt";
/// The driver, run by Node.
const DRIVER: &str = include_str!("vm.cjs");
/// Rounds per scenario, interleaved.
const ROUNDS: u32 = 9;
/// Requests per round: long enough (a few hundred ms) for the clock to be exact.
const REQUESTS: u32 = 200_000;
/// Sampling interval of the CPU profile, µs.
const PROFILE_INTERVAL_US: u32 = 50;
/// Functions the report lists.
const TOP_FUNCTIONS: usize = 15;

/// One benchmark variant's requests as the module sees them.
pub struct Scenario {
    /// The variant's id (`A3`, …).
    pub id: &'static str,
    /// The contract, as the plugin configuration.
    pub contract: String,
    /// Property values the host answers with, by wire path.
    pub properties: Vec<(Vec<u8>, Vec<u8>)>,
    /// One serialized request header map per request, taken in turn.
    pub maps: Vec<Vec<u8>>,
    /// Whether every request drifts (none may go to the canary); else both sides occur.
    pub drifts: bool,
}

impl Scenario {
    /// The scenario file `crates/filter/src/vm_bench.rs` reads: an ABI map of
    /// `contract`, each property's wire path and value, and a `map` per request.
    fn to_bytes(&self) -> Vec<u8> {
        let mut pairs: Vec<(&[u8], &[u8])> = vec![(b"contract", self.contract.as_bytes())];
        pairs.extend(
            self.properties
                .iter()
                .map(|(p, v)| (p.as_slice(), v.as_slice())),
        );
        pairs.extend(self.maps.iter().map(|m| (&b"map"[..], m.as_slice())));
        rampart_abi::serialize_map(&pairs)
    }
}

/// Builds the filter with the `vm-bench` feature and its symbols, in its own target
/// directory so the shipped module is not touched, then `wasm-opt`s it as the shipped
/// one is (keeping the names).
pub fn build(root: &Path, work: &Path) -> Result<PathBuf> {
    println!("bench: building rampart-filter with the vm-bench feature (release, symbols kept)");
    let target = work.join("vm-target");
    process::run(
        cargo()
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .args([
                "-p",
                "rampart-filter",
                "--features",
                "vm-bench",
                "--target-dir",
            ])
            .arg(&target)
            .env("CARGO_PROFILE_RELEASE_STRIP", "false")
            .current_dir(root),
    )?;
    let built = target.join("wasm32-unknown-unknown/release/rampart_filter.wasm");
    let optimized = work.join("vm").join("rampart-vm-bench.wasm");
    tasks::wasm_opt(&built, &optimized, true)?;
    Ok(optimized)
}

/// Runs the scenarios in Node (installed from Debian's `nodejs` when missing), then
/// profiles the first one; returns the text of [`VM_FILE`].
pub fn measure(
    root: &Path,
    work: &Path,
    scenarios: &[Scenario],
    cpu: Option<usize>,
    header: &str,
) -> Result<String> {
    let node = install::program("RAMPART_NODE", "node", "nodejs")?;
    let dir = work.join("vm");
    std::fs::create_dir_all(&dir)
        .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
    let wasm = build(root, work)?;
    let driver = dir.join("vm.cjs");
    write_file(&driver, DRIVER)?;
    let mut args = Vec::new();
    for scenario in scenarios {
        let file = dir.join(format!("{}.bin", scenario.id));
        std::fs::write(&file, scenario.to_bytes())
            .map_err(|err| Error::new(format!("cannot write {}: {err}", file.display())))?;
        args.push(format!("{}={}", scenario.id, file.display()));
    }
    let node_cmd = |extra: &[String], rounds: u32, args: &[String]| {
        let mut cmd = super::pinned(&node, cpu);
        cmd.args(extra)
            .arg(&driver)
            .arg(&wasm)
            .arg(rounds.to_string())
            .arg(REQUESTS.to_string())
            .args(args);
        cmd
    };
    println!(
        "bench: timing the per-request path in V8 without Envoy ({} scenarios × {ROUNDS} rounds)",
        scenarios.len()
    );
    let output = process::capture_success(&mut node_cmd(&[], ROUNDS, &args))?;
    let result = json::parse(String::from_utf8_lossy(&output.stdout).trim())
        .map_err(|err| Error::new(format!("the V8 driver's output: {err}")))?;
    let mut rows = Vec::new();
    for scenario in scenarios {
        let entry = result
            .at(&["scenarios", scenario.id])
            .ok_or_else(|| Error::new(format!("the V8 driver gave nothing for {}", scenario.id)))?;
        let ns: Vec<f64> = entry
            .get("ns_per_request")
            .map(|v| v.elements().iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let canary = entry.get("canary").and_then(Value::as_f64).unwrap_or(-1.0);
        check_routes(scenario, canary)?;
        let spread =
            Spread::of(&ns).ok_or_else(|| Error::new(format!("no timing for {}", scenario.id)))?;
        rows.push((scenario.id, spread, canary));
    }

    // The profile: the first scenario alone, sampled by V8's own profiler, which names
    // the module's functions from its name section.
    let profile_dir = dir.join("cpuprofile");
    let _ = std::fs::remove_dir_all(&profile_dir);
    let first = args.first().cloned().unwrap_or_default();
    process::capture_success(&mut node_cmd(
        &[
            "--cpu-prof".to_owned(),
            format!("--cpu-prof-dir={}", profile_dir.display()),
            format!("--cpu-prof-interval={PROFILE_INTERVAL_US}"),
        ],
        3,
        &[first],
    ))?;
    let functions = self_time(&profile_dir)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {header}; Node {} (V8 {}), one instance of the module per scenario, {ROUNDS} interleaved rounds of \
         {REQUESTS} requests after as many to warm up.",
        result.get("node").and_then(Value::as_str).unwrap_or("?"),
        result.get("v8").and_then(Value::as_str).unwrap_or("?"),
    );
    let _ = writeln!(
        out,
        "# The module built with `--features vm-bench` and `wasm-opt`ed as shipped (names kept): its\n\
         # per-request path over an in-memory host answering with the benchmark's header maps,\n\
         # metadata and node values. The host's own work (a copy per answer) is counted too.\n"
    );
    let _ = writeln!(
        out,
        "scenario   ns/request (median, min–max)   canary routes"
    );
    for (id, spread, canary) in &rows {
        let _ = writeln!(
            out,
            "{id:<10} {:>6.0} ({:.0}–{:.0}){:>18}",
            spread.median,
            spread.min,
            spread.max,
            format!("{canary:.0} of {REQUESTS}")
        );
    }
    let first_id = scenarios.first().map_or("?", |s| s.id);
    let median = rows.first().map_or(0.0, |(_, s, _)| s.median);
    let total: f64 = functions.iter().map(|(_, hits)| *hits).sum();
    let _ = writeln!(
        out,
        "\n# {first_id}: self time by function (V8's sampling profiler every {PROFILE_INTERVAL_US} µs), \
         as a share and as ns of the median request:\n"
    );
    for (name, hits) in functions.iter().take(TOP_FUNCTIONS) {
        let share = if total > 0.0 { hits / total } else { 0.0 };
        let _ = writeln!(
            out,
            "{:>5.1}% {:>5.0} ns  {name}",
            share * 100.0,
            share * median
        );
    }
    let rest: f64 = functions.iter().skip(TOP_FUNCTIONS).map(|(_, h)| *h).sum();
    if rest > 0.0 && total > 0.0 {
        let _ = writeln!(
            out,
            "{:>5.1}% {:>5.0} ns  ({} more functions)",
            rest / total * 100.0,
            rest / total * median,
            functions.len() - TOP_FUNCTIONS
        );
    }
    Ok(out)
}

/// The decisions must be real: a drifted scenario never reaches the canary, a matching
/// one reaches both sides.
fn check_routes(scenario: &Scenario, canary: f64) -> Result<()> {
    let ok = if scenario.drifts {
        canary == 0.0
    } else {
        canary > 0.0 && canary < f64::from(REQUESTS)
    };
    if ok {
        return Ok(());
    }
    Err(Error::new(format!(
        "{}: {canary} of {REQUESTS} requests went to the canary; expected {}",
        scenario.id,
        if scenario.drifts {
            "none (every request drifts)"
        } else {
            "some but not all (the sticky keys split)"
        }
    )))
}

/// Self time per function over every `.cpuprofile` in `dir` (hit counts), most first,
/// the module's functions demangled; the profiler's own entries left out.
fn self_time(dir: &Path) -> Result<Vec<(String, f64)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|err| Error::new(format!("no CPU profile in {}: {err}", dir.display())))?;
    let mut hits: BTreeMap<String, f64> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension() != Some(std::ffi::OsStr::new("cpuprofile")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|err| Error::new(format!("cannot read {}: {err}", path.display())))?;
        let profile =
            json::parse(&text).map_err(|err| Error::new(format!("{}: {err}", path.display())))?;
        for node in profile
            .get("nodes")
            .map(Value::elements)
            .unwrap_or_default()
        {
            let count = node.get("hitCount").and_then(Value::as_f64).unwrap_or(0.0);
            let name = node
                .at(&["callFrame", "functionName"])
                .and_then(Value::as_str)
                .unwrap_or("");
            let url = node
                .at(&["callFrame", "url"])
                .and_then(Value::as_str)
                .unwrap_or("");
            if count == 0.0 || name.starts_with('(') {
                continue;
            }
            let label = if name.is_empty() {
                format!("(JavaScript {url})")
            } else if url.ends_with("vm.cjs") {
                format!("{name} (driver)")
            } else {
                demangle(name)
            };
            *hits.entry(label).or_default() += count;
        }
    }
    let mut functions: Vec<(String, f64)> = hits.into_iter().collect();
    functions.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if functions.is_empty() {
        return Err(Error::new(format!(
            "the CPU profile in {} has no samples",
            dir.display()
        )));
    }
    Ok(functions)
}

/// A Rust symbol made readable: legacy (`_ZN…E`) symbols in full without their hash;
/// v0 (`_R…`) symbols as the names they contain; anything else as it is.
pub fn demangle(symbol: &str) -> String {
    if let Some(body) = symbol.strip_prefix("_ZN") {
        let mut parts = identifiers(body.strip_suffix('E').unwrap_or(body));
        if parts
            .last()
            .is_some_and(|p| p.len() == 17 && p.starts_with('h'))
        {
            parts.pop();
        }
        return unescape(&parts.join("::"));
    }
    if let Some(body) = symbol.strip_prefix("_R") {
        let mut parts = identifiers_anywhere(body);
        parts.dedup();
        if !parts.is_empty() {
            return parts.join("::");
        }
    }
    symbol.to_owned()
}

/// `<len><ident>` runs from the start of `s`.
fn identifiers(mut s: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = s[..digits].parse::<usize>() else {
            return out;
        };
        let Some(ident) = s.get(digits..digits + len) else {
            return out;
        };
        // An identifier starting with `$` is written with a `_` in front.
        let ident = ident
            .strip_prefix("_$")
            .map_or(ident.to_owned(), |rest| format!("${rest}"));
        out.push(ident);
        s = &s[digits + len..];
    }
}

/// Every `<len><ident>` in a v0 symbol whose ident is a plain name. A length is looked
/// for only where one can start without being part of a base-62 number (crate
/// disambiguators, back-references): after a `_` that ends such a number, after an `E`
/// that ends a list, or right after another identifier.
fn identifiers_anywhere(s: &str) -> Vec<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut after_ident = false;
    while i < bytes.len() {
        let can_start = after_ident || i == 0 || matches!(bytes[i - 1], b'_' | b'E');
        after_ident = false;
        if bytes[i].is_ascii_digit() && can_start {
            let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let len: usize = s[i..i + digits].parse().unwrap_or(0);
            let start = i + digits;
            if let Some(ident) = s.get(start..start + len) {
                let plain = len > 0
                    && ident
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !ident.as_bytes()[0].is_ascii_digit();
                if plain {
                    out.push(ident.to_owned());
                    i = start + len;
                    after_ident = true;
                    continue;
                }
            }
            i += digits;
        } else {
            i += 1;
        }
    }
    out
}

/// The escapes of legacy symbols.
fn unescape(s: &str) -> String {
    const ESCAPES: [(&str, &str); 12] = [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$SP$", "@"),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
    ];
    let mut out = s.replace("..", "::");
    for (from, to) in ESCAPES {
        out = out.replace(from, to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_symbols_lose_their_hash_and_escapes() {
        assert_eq!(
            demangle("_ZN4sha26sha25611compress25617hb20c24c981b07eadE"),
            "sha2::sha256::compress256"
        );
        assert_eq!(
            demangle("_ZN87_$LT$rampart_filter..filter..HostRequest$LT$H$GT$$u20$as$u20$rampart..host..Request$GT$4read17h3a9fe27c0b3b7bf5E"),
            "<rampart_filter::filter::HostRequest<H> as rampart::host::Request>::read"
        );
    }

    #[test]
    fn v0_symbols_show_their_names_and_others_stay() {
        assert_eq!(
            demangle("_RNvMs0_NtCsjqx8TIyZbP9_8dlmalloc8dlmallocINtB5_8DlmallocNtNtB7_3sys6SystemE6mallocCsebHcaeoSrxy_3std"),
            "dlmalloc::Dlmalloc::sys::System::malloc::std"
        );
        assert_eq!(demangle("memcmp"), "memcmp");
        assert_eq!(demangle("rampart_vm_bench_run"), "rampart_vm_bench_run");
    }

    #[test]
    fn scenarios_serialize_as_the_module_reads_them() {
        let scenario = Scenario {
            id: "A3",
            contract: "{}".into(),
            properties: vec![(b"a\0b".to_vec(), b"v".to_vec())],
            maps: vec![b"m1".to_vec(), Vec::new()],
            drifts: false,
        };
        let bytes = scenario.to_bytes();
        let map = rampart_abi::HeaderMap::parse(&bytes).expect("an ABI map");
        let entries: Vec<(&[u8], &[u8])> = map.iter().collect();
        assert_eq!(
            entries,
            vec![
                (&b"contract"[..], &b"{}"[..]),
                (&b"a\0b"[..], &b"v"[..]),
                (&b"map"[..], &b"m1"[..]),
                (&b"map"[..], &b""[..]),
            ]
        );
    }

    #[test]
    fn routes_are_checked_both_ways() {
        let mut scenario = Scenario {
            id: "A3",
            contract: String::new(),
            properties: Vec::new(),
            maps: Vec::new(),
            drifts: false,
        };
        assert!(check_routes(&scenario, 0.0).is_err());
        assert!(check_routes(&scenario, f64::from(REQUESTS)).is_err());
        assert!(check_routes(&scenario, 100.0).is_ok());
        scenario.drifts = true;
        assert!(check_routes(&scenario, 0.0).is_ok());
        assert!(check_routes(&scenario, 1.0).is_err());
    }
}
