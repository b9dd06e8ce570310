//! `cargo xtask bench`: Rampart's cost in Envoy, side by side with no filter, native
//! routing, empty wasm filters, the proxy-wasm floor of Rampart's host calls, and Lua.
//!
//! One Envoy process (one worker, pinned to one core) serves one listener per variant;
//! the load generators run on the other core. Variants are measured in interleaved
//! rounds; every run is checked (statuses, routing, drift) before it counts, and the
//! medians with their min–max spread go to `bench/results.json`, from which
//! `BENCHMARKS.md` is generated. `--builds` compares opt-levels the same way.
//! `perf` profiles of Envoy serving A3floor and A3 close a full run (`--profile` takes
//! them alone), with the CPU per request by object of each and the difference: where
//! Rampart's own work over the floor goes.

mod bootstrap;
mod instructions;
mod json;
mod load;
mod profile;
mod proxy;
mod report;
mod stats;
mod vm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bootstrap::{Kind, Listener, Tier};
use json::Value;
use load::{Generators, Headers, OhaRun, WrkRun};
use proxy::Envoy;
use stats::Spread;

use crate::process::{self, cargo};
use crate::{envoy, install, tasks, Error, Result};

/// The benchmark contract (its `contract` name is set per listener).
const CONTRACT_FILE: &str = "envoy/bench/contract.json";
/// The Lua filter of variant A4.
const LUA_FILE: &str = "envoy/bench/a4.lua";
/// The host calls of variant A3floor (the floor module's op list), kept in one file so
/// the list Rampart is compared with is stated once, with why each call is there.
const FLOOR_FILE: &str = "envoy/bench/floor.txt";
/// The host calls of variant A3hfloor: Rampart's for the contract of A3h, whose `tier`
/// input is the tier header rather than dynamic metadata.
const FLOOR_HEADER_FILE: &str = "envoy/bench/floor-header.txt";
/// The line of the Lua filter that A4h sets to `true`.
const LUA_TIER_SWITCH: &str = "local TIER_FROM_HEADER = false";
/// The floor module's counter as Envoy names it: `increment` lines add to it.
const FLOOR_COUNTER: &str = "wasmcustom.rampart_floor.increments";
/// Results of the variant comparison.
pub const RESULTS_FILE: &str = "bench/results.json";
/// Results of `--builds`.
pub const BUILDS_FILE: &str = "bench/builds.json";
/// What `--focus` writes: the targets' variants alone, over many rounds.
pub const FOCUS_FILE: &str = "bench/focus.json";
/// The variants the targets compare, which `--focus` measures.
const FOCUSED: [&str; 8] = ["A0", "A3floor", "A3", "A3d", "A4", "A3hfloor", "A3h", "A4h"];
/// The generated report.
pub const REPORT_FILE: &str = "BENCHMARKS.md";
/// The trimmed `perf` profiles of Envoy serving A3floor and A3, which the report shows.
pub const PROFILE_FILE: &str = "bench/profile.txt";

/// The variants profiled, in this order: the floor first, then Rampart on it.
const PROFILED: [&str; 2] = ["A3floor", "A3"];
/// Scratch directory: bootstrap, scripts, logs, built variants.
const WORK_DIR: &str = "target/bench";

/// The config header every request carries: the tested configuration, 329 bytes, its
/// keys in an order that is not canonical, so the filter canonicalises for real.
pub const CONFIG: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50,"locale":"de-DE","experiments":{"search_ranker":"bm25-v3","reco_model":"2026-11-a","price_display":"gross"},"limits":{"cart_ttl_s":3600,"max_coupons":3,"rate_per_min":120},"features":["one_click","apple_pay","gift_wrap","saved_carts"],"tenant_region":"eu-central-1","schema":7}"#;
/// The same with one value changed: what A3d's requests carry.
const DRIFTED_CONFIG: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":51,"locale":"de-DE","experiments":{"search_ranker":"bm25-v3","reco_model":"2026-11-a","price_display":"gross"},"limits":{"cart_ttl_s":3600,"max_coupons":3,"rate_per_min":120},"features":["one_click","apple_pay","gift_wrap","saved_carts"],"tenant_region":"eu-central-1","schema":7}"#;
/// Sticky keys the saturation runs rotate through, so both sides of the ramp are used.
const USERS: usize = 16;

/// `oha` from crates.io, pinned. Built with `native-tls` (the system OpenSSL) instead of
/// the default rustls + aws-lc, which compiles a large C library; oha 1.16 does not build
/// without a TLS feature at all.
const OHA_VERSION: &str = "1.16.0";

/// Target rate of the latency runs, as a share of A0's saturation throughput.
const LATENCY_LOAD: f64 = 0.5;

/// The command line of `cargo xtask bench`.
#[derive(Clone, Debug, PartialEq)]
struct Options {
    rounds: u32,
    seconds: u32,
    warmup_seconds: u32,
    builds: bool,
    report_only: bool,
    pin: bool,
    /// Only the profiles of A3floor and A3 (`--profile`).
    profile_only: bool,
    /// Profile A3floor and A3 at the end of a variant comparison (off with `--no-profile`).
    profile: bool,
    /// Only the per-request path in V8 without Envoy (`--vm`).
    vm_only: bool,
    /// Only every variant's instructions per request under callgrind (`--instructions`).
    instructions_only: bool,
    /// Only the variants the targets compare, saturation only, many rounds (`--focus`).
    focus: bool,
}

impl Options {
    const USAGE: &'static str =
        "usage: cargo xtask bench [--quick] [--rounds N] [--seconds S] [--builds] [--report] [--profile] [--no-profile] [--vm] [--instructions] [--focus] [--no-pin]";

    fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            rounds: 5,
            // 5 rounds × 9 variants × (1 s warm-up + 3 s wrk + 3 s oha + ~1 s of checks)
            // ≈ 6 minutes of load; with the memory pass (one Envoy per variant, ~1 minute)
            // and the profile (~15 s) the whole command stays under 10 minutes on a busy
            // 2-core machine. Five rounds rather than longer runs: the medians and ranges
            // need rounds more than each run needs seconds.
            seconds: 3,
            warmup_seconds: 1,
            builds: false,
            report_only: false,
            pin: true,
            profile_only: false,
            profile: true,
            vm_only: false,
            instructions_only: false,
            focus: false,
        };
        let mut rounds_given = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u32> {
                args.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        Error::new(format!(
                            "{name} needs a positive whole number; {}",
                            Self::USAGE
                        ))
                    })
            };
            match arg.as_str() {
                "--quick" => {
                    options.rounds = 1;
                    options.seconds = 1;
                    rounds_given = true;
                }
                "--rounds" => {
                    options.rounds = number("--rounds")?;
                    rounds_given = true;
                }
                "--seconds" => options.seconds = number("--seconds")?,
                "--builds" => options.builds = true,
                "--report" => options.report_only = true,
                "--no-pin" => options.pin = false,
                "--profile" => options.profile_only = true,
                "--no-profile" => options.profile = false,
                "--vm" => options.vm_only = true,
                "--instructions" => options.instructions_only = true,
                "--focus" => options.focus = true,
                other => {
                    return Err(Error::new(format!(
                        "unknown argument `{other}`; {}",
                        Self::USAGE
                    )))
                }
            }
        }
        if options.builds && !rounds_given {
            options.rounds = 3;
        }
        if options.focus && !rounds_given {
            // 15 rounds × 8 variants × (1 s warm-up + 3 s + checks) ≈ 9 minutes: the
            // paired medians settle where five rounds leave them to the host's noise.
            options.rounds = 15;
        }
        Ok(options)
    }
}

/// Runs the benchmark (or only regenerates the report) as `args` ask.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    if options.report_only {
        return write_report(root);
    }
    let started = Instant::now();
    if options.vm_only {
        measure_vm(root, &root.join(WORK_DIR), &options)?;
        write_report(root)?;
        println!("bench: done in {:.0}s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let bench = Bench::prepare(root, &options)?;
    if options.profile_only || options.instructions_only {
        if options.profile_only {
            bench.profile_alone()?;
        }
        if options.instructions_only {
            bench.count_instructions()?;
        }
        write_report(root)?;
        println!("bench: done in {:.0}s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let (results, file) = if options.builds {
        (bench.compare_builds()?, BUILDS_FILE)
    } else if options.focus {
        (bench.compare_focused()?, FOCUS_FILE)
    } else {
        (bench.compare_variants()?, RESULTS_FILE)
    };
    let file = root.join(file);
    write_file(&file, &results.to_pretty())?;
    println!(
        "bench: wrote {}",
        file.strip_prefix(root).unwrap_or(&file).display()
    );
    write_report(root)?;
    println!("bench: done in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The variants in the order round `round` (from 1) runs them: interleaved, starting
/// one later each round, so no variant always follows the same neighbour or runs at the
/// same point of a round.
fn round_order(variants: &[Variant], round: u32) -> impl Iterator<Item = &Variant> {
    let n = variants.len();
    (0..n).map(move |k| &variants[(k + round as usize - 1) % n])
}

/// The CPUs Envoy and the load generators are pinned to: 0 and 1, unless `--no-pin` or
/// the machine has one core.
fn cpus(pin: bool) -> (Option<usize>, Option<usize>) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if !pin {
        println!("bench: --no-pin: Envoy and the load generators float over all cores");
        (None, None)
    } else if cores >= 2 {
        (Some(0), Some(1))
    } else {
        println!("bench: only one core: Envoy and the load generators are not pinned");
        (None, None)
    }
}

/// `program`, started pinned to `cpu` with `taskset` when one is given.
fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpu.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The end of a run's progress line: its problems, if any.
fn flagged(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!("  FLAGGED: {}", problems.join("; "))
    }
}

/// The benchmark contract (`CONTRACT_FILE`) named `name`.
fn bench_contract(root: &Path, name: &str) -> Result<String> {
    let path = root.join(CONTRACT_FILE);
    let template = std::fs::read_to_string(&path)
        .map_err(|err| Error::new(format!("cannot read {}: {err}", path.display())))?;
    name_contract(&template, name).ok_or_else(|| {
        Error::new(format!(
            "{CONTRACT_FILE}: expected `\"contract\": \"bench\"` once"
        ))
    })
}

/// The benchmark contract named `name`, with its `tier` input read from the tier
/// header instead of dynamic metadata (A3h). The lock stays: digests cover values,
/// not where they are read.
fn header_tier_contract(root: &Path, name: &str) -> Result<String> {
    header_tier(&bench_contract(root, name)?).ok_or_else(|| {
        Error::new(format!(
            "{CONTRACT_FILE}: expected an object with an `inputs.tier` member"
        ))
    })
}

/// The Rampart variants timed in V8 alone: id, where the tier is read, whether every
/// request drifts. Their contracts and requests are the variants' own.
const VM_VARIANTS: [(&str, Tier, bool); 3] = [
    ("A3", Tier::Metadata, false),
    ("A3d", Tier::Metadata, true),
    ("A3h", Tier::Header, false),
];

/// [`VM_VARIANTS`] as the module sees them in Envoy: the requests' header maps after
/// Envoy's codec and `header_to_metadata` (which moves the tier header into dynamic
/// metadata), the metadata and the node value the contract reads.
fn vm_scenarios(root: &Path) -> Result<Vec<vm::Scenario>> {
    let mut scenarios = Vec::new();
    for (id, tier, drifts) in VM_VARIANTS {
        let name = format!("bench-{}", id.to_lowercase());
        let contract = match tier {
            Tier::Metadata => bench_contract(root, &name)?,
            Tier::Header => header_tier_contract(root, &name)?,
        };
        let config = if drifts { DRIFTED_CONFIG } else { CONFIG };
        let mut properties = vec![(
            rampart_abi::property_path(&bootstrap::NODE_REV_PATH),
            bootstrap::CONFIG_REV.as_bytes().to_vec(),
        )];
        let maps = (1..=USERS)
            .map(|user| {
                let mut headers: Vec<(String, String)> = vec![
                    (":method".into(), "GET".into()),
                    (":path".into(), "/".into()),
                    (":scheme".into(), "http".into()),
                ];
                for (name, value) in request_headers(config, user) {
                    let name = name.to_ascii_lowercase();
                    match name.as_str() {
                        "host" => headers.insert(0, (":authority".into(), value)),
                        bootstrap::TIER_HEADER if tier == Tier::Metadata => {}
                        _ => headers.push((name, value)),
                    }
                }
                headers.push(("x-forwarded-proto".into(), "http".into()));
                headers.push((
                    "x-request-id".into(),
                    format!("5f0c2a8e-9b1d-4c55-8e1f-{user:012}"),
                ));
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                rampart_abi::serialize_map(&pairs)
            })
            .collect();
        if tier == Tier::Metadata {
            properties.push((
                rampart_abi::property_path(&bootstrap::TIER_METADATA_PATH),
                bootstrap::TIER.as_bytes().to_vec(),
            ));
        }
        scenarios.push(vm::Scenario {
            id,
            contract,
            properties,
            maps,
            drifts,
        });
    }
    Ok(scenarios)
}

/// Times Rampart's per-request path in V8 without Envoy and writes `vm::VM_FILE`.
fn measure_vm(root: &Path, work: &Path, options: &Options) -> Result<()> {
    let scenarios = vm_scenarios(root)?;
    // The V8 timing runs where Envoy runs.
    let (cpu, _) = cpus(options.pin);
    let text = vm::measure(root, work, &scenarios, cpu, &stamp(root))?;
    let file = root.join(vm::VM_FILE);
    write_file(&file, &text)?;
    println!(
        "bench: wrote {}",
        file.strip_prefix(root).unwrap_or(&file).display()
    );
    Ok(())
}

/// The current time, UTC, to the second (empty if `date` fails).
fn now_utc() -> String {
    command_output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// What a text result starts with: the commit measured and when.
fn stamp(root: &Path) -> String {
    format!("commit `{}`, {}", git_describe(root), now_utc())
}

/// Regenerates `BENCHMARKS.md` from the results files.
fn write_report(root: &Path) -> Result<()> {
    let read = |name: &str| -> Result<Option<Value>> {
        let path = root.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => json::parse(&text)
                .map(Some)
                .map_err(|err| Error::new(format!("{}: {err}", path.display()))),
            Err(_) => Ok(None),
        }
    };
    let variants = read(RESULTS_FILE)?;
    let builds = read(BUILDS_FILE)?;
    let focus = read(FOCUS_FILE)?;
    let profile = std::fs::read_to_string(root.join(PROFILE_FILE)).ok();
    let vm = std::fs::read_to_string(root.join(vm::VM_FILE)).ok();
    let counted = std::fs::read_to_string(root.join(instructions::INSTRUCTIONS_FILE)).ok();
    let texts = report::Texts {
        profile: profile.as_deref(),
        vm: vm.as_deref(),
        instructions: counted.as_deref(),
        focus: focus.as_ref(),
    };
    let text = report::render(variants.as_ref(), builds.as_ref(), texts);
    write_file(&root.join(REPORT_FILE), &text)?;
    println!("bench: wrote {REPORT_FILE}");
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|err| Error::new(format!("cannot write {}: {err}", path.display())))
}

/// Everything a measurement needs, installed and built.
struct Bench {
    root: PathBuf,
    options: Options,
    envoy: PathBuf,
    rampart_wasm: PathBuf,
    noop_wasm: PathBuf,
    floor_wasm: PathBuf,
    generators: Generators,
    envoy_cpu: Option<usize>,
    ticks_per_second: u64,
    work: PathBuf,
}

/// One variant as measured: its listener and the requests it is sent.
struct Variant {
    id: &'static str,
    description: &'static str,
    listener: Listener,
    /// Expected route per user (`None`: either side is fine, but both must occur).
    expect: Expect,
    /// Requests the saturation runs rotate through (one per user).
    requests: Vec<Headers>,
    /// Rampart's counter prefix, for the routing checks.
    counters: Option<String>,
    /// A3d: every request must drift.
    drifts: bool,
    /// Floor variants: the floor's counter must move this much per request.
    floor_increments: Option<u64>,
    wrk_script: PathBuf,
}

/// What the probe before measuring must see.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Every user on this side.
    All(&'static str),
    /// Users split, both sides present.
    Split,
}

/// One measured run of a variant in a round.
/// One saturating wrk run: its result, Envoy's stats before and after, and the Envoy CPU it
/// took in µs.
struct Saturated {
    wrk: WrkRun,
    before: BTreeMap<String, u64>,
    after: BTreeMap<String, u64>,
    cpu_micros: u64,
}

#[derive(Clone, Debug, Default)]
struct Run {
    round: u32,
    rps: f64,
    cpu_us: f64,
    /// Share of one core Envoy used during the saturation run (about 1 when Envoy,
    /// not the generator or the machine, is the bottleneck).
    envoy_busy: f64,
    rate_rps: f64,
    rate_cpu_us: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    canary_share: Option<f64>,
    problems: Vec<String>,
    /// Set when the variant cannot serve the latency rate at all.
    overload: Option<String>,
}

impl Run {
    fn to_json(&self) -> Value {
        let mut members = vec![
            ("round".to_owned(), num(f64::from(self.round))),
            ("rps".to_owned(), num(self.rps)),
            ("cpu_us_per_request".to_owned(), num(self.cpu_us)),
            ("envoy_busy_share".to_owned(), num(self.envoy_busy)),
            ("rate_rps".to_owned(), num(self.rate_rps)),
            (
                "cpu_us_per_request_at_rate".to_owned(),
                num(self.rate_cpu_us),
            ),
            ("p50_us".to_owned(), num(self.p50_us)),
            ("p99_us".to_owned(), num(self.p99_us)),
            ("p999_us".to_owned(), num(self.p999_us)),
        ];
        if let Some(share) = self.canary_share {
            members.push(("canary_share".to_owned(), num(share)));
        }
        if let Some(overload) = &self.overload {
            members.push(("overload".to_owned(), text(overload.clone())));
        }
        members.push((
            "problems".to_owned(),
            Value::Array(self.problems.iter().cloned().map(Value::String).collect()),
        ));
        Value::Object(members)
    }
}

fn num(n: f64) -> Value {
    Value::Number(n)
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn spread_json(spread: Option<Spread>) -> Value {
    match spread {
        None => Value::Null,
        Some(s) => Value::Object(vec![
            ("median".to_owned(), num(s.median)),
            ("min".to_owned(), num(s.min)),
            ("max".to_owned(), num(s.max)),
            ("n".to_owned(), num(s.n as f64)),
        ]),
    }
}

impl Bench {
    fn prepare(root: &Path, options: &Options) -> Result<Bench> {
        let envoy = envoy::ensure(root)?;
        // `RAMPART_WASM` (as the tests read it) benches a module already built, e.g. the
        // last good one while the filter is being changed; else build it as shipped.
        let rampart_wasm = match std::env::var_os("RAMPART_WASM") {
            Some(path) => {
                let path = PathBuf::from(path);
                println!("bench: Rampart module {} (RAMPART_WASM)", path.display());
                path
            }
            None => tasks::wasm(root)?,
        };
        let noop_wasm = build_noop(root)?;
        let floor_wasm = build_floor(root)?;
        let wrk = ensure_wrk()?;
        let oha = ensure_oha(root)?;
        let (envoy_cpu, load_cpu) = cpus(options.pin);
        let work = root.join(WORK_DIR);
        std::fs::create_dir_all(&work)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", work.display())))?;
        Ok(Bench {
            root: root.to_path_buf(),
            options: options.clone(),
            envoy,
            rampart_wasm,
            noop_wasm,
            floor_wasm,
            generators: Generators {
                wrk,
                oha,
                cpu: load_cpu,
                wrk_connections: 16,
                oha_connections: 16,
            },
            envoy_cpu,
            ticks_per_second: proxy::clock_ticks_per_second(),
            work,
        })
    }

    fn contract(&self, name: &str) -> Result<String> {
        bench_contract(&self.root, name)
    }

    fn header_tier_contract(&self, name: &str) -> Result<String> {
        header_tier_contract(&self.root, name)
    }

    /// A floor op list (`FLOOR_FILE` or `FLOOR_HEADER_FILE`).
    fn floor_ops(&self, file: &str) -> Result<String> {
        let path = self.root.join(file);
        std::fs::read_to_string(&path)
            .map_err(|err| Error::new(format!("cannot read {}: {err}", path.display())))
    }

    /// The twelve variants, each on its own port: the floor chain A0 → A0h → A2min → A2 →
    /// A3floor → A3, with A1, A3d and A4 beside it, and the header-tier alternative
    /// A3hfloor, A3h and A4h (no `header_to_metadata`).
    fn variants(&self) -> Result<Vec<Variant>> {
        let lua_path = self.root.join(LUA_FILE);
        let lua = std::fs::read_to_string(&lua_path)
            .map_err(|err| Error::new(format!("cannot read {}: {err}", lua_path.display())))?;
        let lua_header = (lua.matches(LUA_TIER_SWITCH).count() == 1)
            .then(|| lua.replace(LUA_TIER_SWITCH, "local TIER_FROM_HEADER = true"))
            .ok_or_else(|| Error::new(format!("{LUA_FILE}: expected `{LUA_TIER_SWITCH}` once")))?;
        let floor_ops = self.floor_ops(FLOOR_FILE)?;
        let floor_header_ops = self.floor_ops(FLOOR_HEADER_FILE)?;
        // One VM id per floor listener: each VM then holds a single root context, and the
        // module does no per-request bookkeeping to find a request's root.
        let floor = |vm_id: &str, ops: &str, tier: Tier| Kind::Floor {
            wasm: self.floor_wasm.clone(),
            vm_id: vm_id.to_owned(),
            ops: ops.to_owned(),
            tier,
        };
        let specs: Vec<(&'static str, &'static str, Kind, Expect, bool)> = vec![
            ("A0", "router only, no filter", Kind::RouterOnly, Expect::All("stable"), false),
            (
                "A0h",
                "router + header_to_metadata, the wasm variants' route table: what every wasm filter here sits on",
                Kind::HeaderToMetadata,
                Expect::All("stable"),
                false,
            ),
            (
                "A1",
                "native header-match routing (config and tier headers matched exactly) + route header set",
                Kind::NativeMatch { config: CONFIG.to_owned() },
                Expect::All("canary"),
                false,
            ),
            (
                "A2min",
                "floor module (our ABI crate, no SDK), empty op list: no host call + header_to_metadata",
                floor("floor-a2min", "", Tier::Metadata),
                Expect::All("stable"),
                false,
            ),
            (
                "A2",
                "empty proxy-wasm filter (same SDK and profile) + header_to_metadata",
                Kind::Noop { wasm: self.noop_wasm.clone() },
                Expect::All("stable"),
                false,
            ),
            (
                "A3floor",
                "floor module making Rampart's host calls for the bench contract (envoy/bench/floor.txt), no decision",
                floor("floor-a3floor", &floor_ops, Tier::Metadata),
                Expect::All("canary"),
                false,
            ),
            (
                "A3",
                "Rampart, realistic contract, config matches the lock",
                Kind::Rampart {
                    wasm: self.rampart_wasm.clone(),
                    vm_id: "rampart-a3".into(),
                    contract: self.contract("bench-a3")?,
                    tier: Tier::Metadata,
                },
                Expect::Split,
                false,
            ),
            (
                "A3d",
                "Rampart, same contract, every request drifted (drift path and its rate-limited log)",
                Kind::Rampart {
                    wasm: self.rampart_wasm.clone(),
                    vm_id: "rampart-a3d".into(),
                    contract: self.contract("bench-a3d")?,
                    tier: Tier::Metadata,
                },
                Expect::All("stable"),
                true,
            ),
            (
                "A4",
                "Lua filter: the same reads and header write, no hashing or canonical JSON",
                Kind::Lua { source: lua, tier: Tier::Metadata },
                Expect::Split,
                false,
            ),
            (
                "A3hfloor",
                "floor module making Rampart's host calls for A3h's contract (envoy/bench/floor-header.txt), no header_to_metadata",
                floor("floor-a3hfloor", &floor_header_ops, Tier::Header),
                Expect::All("canary"),
                false,
            ),
            (
                "A3h",
                "Rampart, the same contract with `tier` read from its header: no header_to_metadata, no metadata read",
                Kind::Rampart {
                    wasm: self.rampart_wasm.clone(),
                    vm_id: "rampart-a3h".into(),
                    contract: self.header_tier_contract("bench-a3h")?,
                    tier: Tier::Header,
                },
                Expect::Split,
                false,
            ),
            (
                "A4h",
                "Lua filter reading the tier header itself: no header_to_metadata",
                Kind::Lua { source: lua_header, tier: Tier::Header },
                Expect::Split,
                false,
            ),
        ];
        let ports = proxy::free_ports(specs.len())?;
        specs
            .into_iter()
            .zip(ports)
            .map(|((id, description, kind, expect, drifts), port)| {
                let name = id.to_lowercase();
                let counters = matches!(kind, Kind::Rampart { .. })
                    .then(|| format!("wasmcustom.rampart_contract=.=bench-{name};.;rampart"));
                let floor_increments = match &kind {
                    Kind::Floor { ops, .. } => Some(floor_increments(ops)).filter(|&n| n > 0),
                    _ => None,
                };
                let mut variant = self.variant(
                    id,
                    description,
                    Listener { name, port, kind },
                    expect,
                    counters,
                    drifts,
                )?;
                variant.floor_increments = floor_increments;
                Ok(variant)
            })
            .collect()
    }

    fn variant(
        &self,
        id: &'static str,
        description: &'static str,
        listener: Listener,
        expect: Expect,
        counters: Option<String>,
        drifts: bool,
    ) -> Result<Variant> {
        let config = if drifts { DRIFTED_CONFIG } else { CONFIG };
        let requests: Vec<Headers> = (1..=USERS).map(|u| request_headers(config, u)).collect();
        let wrk_script = self.work.join(format!("wrk-{}.lua", listener.name));
        write_file(&wrk_script, &load::wrk_script(&requests))?;
        Ok(Variant {
            id,
            description,
            listener,
            expect,
            requests,
            counters,
            drifts,
            floor_increments: None,
            wrk_script,
        })
    }

    fn start_envoy(&self, label: &str, listeners: &[Listener]) -> Result<Envoy> {
        let admin_port = proxy::free_ports(1)?[0];
        let config = self.work.join(format!("envoy-{label}.yaml"));
        write_file(&config, &bootstrap::render(admin_port, listeners))?;
        let log = self.work.join(format!("envoy-{label}.log"));
        Envoy::start(&self.envoy, &config, admin_port, self.envoy_cpu, &log)
    }

    /// The variant comparison: A0–A4 in one Envoy, interleaved rounds, then memory.
    fn compare_variants(&self) -> Result<Value> {
        let variants = self.variants()?;
        let listeners: Vec<Listener> = variants.iter().map(|v| v.listener.clone()).collect();
        let envoy = self.start_envoy("variants", &listeners)?;
        println!(
            "bench: Envoy {} serving {} listeners",
            envoy.pid(),
            listeners.len()
        );
        let mut canary_shares = BTreeMap::new();
        for variant in &variants {
            let share = probe(variant)?;
            println!(
                "bench: {} routes as expected (canary share of users {share:.2})",
                variant.id
            );
            canary_shares.insert(variant.id, share);
        }
        let rate = self.calibrate(&variants[0])?;
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for round in 1..=self.options.rounds {
            for variant in round_order(&variants, round) {
                let run = self.measure(&envoy, variant, round, rate, canary_shares[variant.id])?;
                println!(
                    "bench: round {round}/{} {:<3} {:>8.0} rps {:>6.1} µs/req | at {:.0} rps p50 {:.0} p99 {:.0} p99.9 {:.0} µs{}",
                    self.options.rounds,
                    variant.id,
                    run.rps,
                    run.cpu_us,
                    run.rate_rps,
                    run.p50_us,
                    run.p99_us,
                    run.p999_us,
                    flagged(&run.problems)
                );
                runs.entry(variant.id).or_default().push(run);
            }
        }
        let vm_stats = wasm_stats(&envoy.stats()?);
        let drift_log_lines = envoy
            .log()
            .matches("rampart[bench-a3d]: config drift")
            .count();
        if self.options.profile {
            // In the Envoy just measured, warm. A failed extra costs only itself.
            let profiled = self.profile(&envoy, &variants);
            self.extra(PROFILE_FILE, "no profile was taken", profiled)?;
        }
        drop(envoy);
        if self.options.profile {
            let timed = measure_vm(&self.root, &self.work, &self.options);
            self.extra(vm::VM_FILE, "no V8 timing was taken", timed)?;
            let counted = self.count_instructions();
            self.extra(
                instructions::INSTRUCTIONS_FILE,
                "no instructions were counted",
                counted,
            )?;
        }
        let mut memory = BTreeMap::new();
        for variant in &variants {
            memory.insert(variant.id, self.memory(variant)?);
        }

        let mut entries = Vec::new();
        for variant in &variants {
            let variant_runs = runs.remove(variant.id).unwrap_or_default();
            entries.push(variant_json(
                variant,
                &variant_runs,
                memory.remove(variant.id),
            ));
        }
        self.results(
            "cargo xtask bench",
            vec![
                (
                    "warmup_seconds".into(),
                    num(f64::from(self.options.warmup_seconds)),
                ),
                (
                    "wrk_connections".into(),
                    num(f64::from(self.generators.wrk_connections)),
                ),
                (
                    "oha_connections".into(),
                    num(f64::from(self.generators.oha_connections)),
                ),
                ("latency_rate_rps".into(), num(f64::from(rate))),
                ("latency_load_share_of_a0".into(), num(LATENCY_LOAD)),
                ("sticky_keys".into(), num(USERS as f64)),
                ("config_header_bytes".into(), num(CONFIG.len() as f64)),
                (
                    "envoy_cpu".into(),
                    self.envoy_cpu.map_or(Value::Null, |c| num(c as f64)),
                ),
                (
                    "load_cpu".into(),
                    self.generators.cpu.map_or(Value::Null, |c| num(c as f64)),
                ),
            ],
            vec![
                ("wasm_stats".into(), vm_stats),
                ("a3d_drift_log_lines".into(), num(drift_log_lines as f64)),
                ("variants".into(), Value::Array(entries)),
            ],
        )
    }

    /// A results file: what wrote it, the machine, the settings every run shares followed by
    /// `settings`, then `rest`.
    fn results(
        &self,
        generated_by: &str,
        settings: Vec<(String, Value)>,
        rest: Vec<(String, Value)>,
    ) -> Result<Value> {
        let mut all_settings = vec![
            ("rounds".into(), num(f64::from(self.options.rounds))),
            (
                "seconds_per_run".into(),
                num(f64::from(self.options.seconds)),
            ),
        ];
        all_settings.extend(settings);
        let mut members = vec![
            ("generated_by".into(), text(generated_by)),
            ("context".into(), self.context()?),
            ("settings".into(), Value::Object(all_settings)),
        ];
        members.extend(rest);
        Ok(Value::Object(members))
    }

    /// `--focus`: the variants the targets compare ([`FOCUSED`]), saturation runs only,
    /// interleaved over many rounds, so the paired medians rest on more pairs than a
    /// full run affords.
    fn compare_focused(&self) -> Result<Value> {
        let variants: Vec<Variant> = self
            .variants()?
            .into_iter()
            .filter(|v| FOCUSED.contains(&v.id))
            .collect();
        let listeners: Vec<Listener> = variants.iter().map(|v| v.listener.clone()).collect();
        let envoy = self.start_envoy("focus", &listeners)?;
        let mut shares = BTreeMap::new();
        for variant in &variants {
            shares.insert(variant.id, probe(variant)?);
        }
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for round in 1..=self.options.rounds {
            for variant in round_order(&variants, round) {
                let run = self.saturation_run(&envoy, variant, round, shares[variant.id])?;
                println!(
                    "bench: focus round {round}/{} {:<8} {:>8.0} rps {:>6.1} µs/req{}",
                    self.options.rounds,
                    variant.id,
                    run.rps,
                    run.cpu_us,
                    flagged(&run.problems)
                );
                runs.entry(variant.id).or_default().push(run);
            }
        }
        drop(envoy);
        let entries = variants
            .iter()
            .map(|v| variant_json(v, &runs.remove(v.id).unwrap_or_default(), None))
            .collect();
        self.results(
            "cargo xtask bench --focus",
            vec![
                (
                    "warmup_seconds".into(),
                    num(f64::from(self.options.warmup_seconds)),
                ),
                (
                    "wrk_connections".into(),
                    num(f64::from(self.generators.wrk_connections)),
                ),
            ],
            vec![("variants".into(), Value::Array(entries))],
        )
    }

    /// A0's saturation throughput, and from it the fixed rate of the latency runs.
    fn calibrate(&self, a0: &Variant) -> Result<u32> {
        let seconds = self.options.seconds.max(2);
        let url = url(a0.listener.port);
        self.generators.wrk(&url, &a0.wrk_script, 1)?;
        let run = self.generators.wrk(&url, &a0.wrk_script, seconds)?;
        if run.bad_status > 0 || run.socket_errors > 0 || run.requests == 0 {
            return Err(Error::new(format!("calibration on A0 failed: {run:?}")));
        }
        let rate = (run.rps() * LATENCY_LOAD).round().max(1.0) as u32;
        println!(
            "bench: A0 saturates at {:.0} rps; latency runs at {rate} rps ({:.0}% of it)",
            run.rps(),
            LATENCY_LOAD * 100.0
        );
        Ok(rate)
    }

    fn measure(
        &self,
        envoy: &Envoy,
        variant: &Variant,
        round: u32,
        rate: u32,
        probe_share: f64,
    ) -> Result<Run> {
        let url = url(variant.listener.port);
        let mut run = self.saturation_run(envoy, variant, round, probe_share)?;
        let cpu_before = envoy.cpu_micros(self.ticks_per_second)?;
        let oha = self
            .generators
            .oha(&url, &variant.requests[0], rate, self.options.seconds)?;
        let cpu_after = envoy.cpu_micros(self.ticks_per_second)?;
        run.overload = check_oha(&oha, rate, run.rps, &mut run.problems);
        run.rate_rps = oha.rps;
        run.rate_cpu_us = per_request(cpu_after - cpu_before, oha.responses);
        run.p50_us = oha.p50_us;
        run.p99_us = oha.p99_us;
        run.p999_us = oha.p999_us;
        Ok(run)
    }

    /// The saturation half of a run: throughput, CPU per request and the checks.
    fn saturation_run(
        &self,
        envoy: &Envoy,
        variant: &Variant,
        round: u32,
        probe_share: f64,
    ) -> Result<Run> {
        let mut run = Run {
            round,
            ..Run::default()
        };
        let Saturated {
            wrk,
            before,
            after,
            cpu_micros,
        } = self.saturate(envoy, variant)?;
        run.rps = wrk.rps();
        run.cpu_us = per_request(cpu_micros, wrk.requests);
        run.envoy_busy = cpu_micros as f64 / 1e6 / wrk.seconds.max(1e-9);
        check_wrk(&wrk, &mut run.problems);
        run.canary_share = check_counters(variant, &before, &after, probe_share, &mut run.problems);
        check_floor(variant, &before, &after, wrk.requests, &mut run.problems);
        Ok(run)
    }

    /// A warm-up, then one saturating wrk run against `variant` with Envoy's stats and CPU
    /// read on either side of it.
    fn saturate(&self, envoy: &Envoy, variant: &Variant) -> Result<Saturated> {
        let url = url(variant.listener.port);
        self.generators
            .wrk(&url, &variant.wrk_script, self.options.warmup_seconds)?;
        let before = envoy.stats()?;
        let cpu_before = envoy.cpu_micros(self.ticks_per_second)?;
        let wrk = self
            .generators
            .wrk(&url, &variant.wrk_script, self.options.seconds)?;
        let cpu_after = envoy.cpu_micros(self.ticks_per_second)?;
        let after = envoy.stats()?;
        Ok(Saturated {
            wrk,
            before,
            after,
            cpu_micros: cpu_after - cpu_before,
        })
    }

    /// RSS and Envoy's memory stats with only this variant's listener, after a short load.
    fn memory(&self, variant: &Variant) -> Result<Value> {
        let envoy = self.start_envoy(
            &format!("memory-{}", variant.listener.name),
            std::slice::from_ref(&variant.listener),
        )?;
        let url = url(variant.listener.port);
        self.generators.wrk(&url, &variant.wrk_script, 2)?;
        let rss_kib = envoy.rss_kib()?;
        let stats = envoy.stats()?;
        let mib = |name: &str| {
            stats
                .get(name)
                .map_or(Value::Null, |&b| num(b as f64 / 1048576.0))
        };
        println!(
            "bench: memory {:<3} RSS {:.1} MiB",
            variant.id,
            rss_kib as f64 / 1024.0
        );
        Ok(Value::Object(vec![
            ("rss_mib".into(), num(rss_kib as f64 / 1024.0)),
            (
                "memory_allocated_mib".into(),
                mib("server.memory_allocated"),
            ),
            (
                "memory_heap_size_mib".into(),
                mib("server.memory_heap_size"),
            ),
            ("wasm_stats".into(), wasm_stats(&stats)),
        ]))
    }

    /// Machine, versions and sizes the figures belong to.
    fn context(&self) -> Result<Value> {
        let size =
            |path: &Path| std::fs::metadata(path).map_or(Value::Null, |m| num(m.len() as f64));
        // `<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`: keep what follows `version:`.
        let envoy_version = command_output(Command::new(&self.envoy).arg("--version"))
            .unwrap_or_default()
            .split_once("version:")
            .map(|(_, version)| version.trim().to_owned())
            .unwrap_or_default();
        let wrk_version = command_output(Command::new(&self.generators.wrk).arg("--version"))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let oha_version = command_output(Command::new(&self.generators.oha).arg("--version"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(Value::Object(vec![
            ("date".into(), text(now_utc())),
            ("git".into(), text(git_describe(&self.root))),
            ("cpu_model".into(), text(cpu_model())),
            (
                "cores".into(),
                num(std::thread::available_parallelism().map_or(1, usize::from) as f64),
            ),
            (
                "kernel".into(),
                text(
                    command_output(Command::new("uname").arg("-r"))
                        .unwrap_or_default()
                        .trim(),
                ),
            ),
            (
                "load_average_at_start".into(),
                text(
                    std::fs::read_to_string("/proc/loadavg")
                        .unwrap_or_default()
                        .trim(),
                ),
            ),
            ("envoy".into(), text(envoy_version)),
            ("wrk".into(), text(wrk_version)),
            ("oha".into(), text(oha_version)),
            ("rampart_wasm_bytes".into(), size(&self.rampart_wasm)),
            ("noop_wasm_bytes".into(), size(&self.noop_wasm)),
            ("floor_wasm_bytes".into(), size(&self.floor_wasm)),
        ]))
    }

    /// `--profile`: an Envoy serving only A3floor and A3, profiled under load.
    fn profile_alone(&self) -> Result<()> {
        let variants: Vec<Variant> = self
            .variants()?
            .into_iter()
            .filter(|v| PROFILED.contains(&v.id))
            .collect();
        let listeners: Vec<_> = variants.iter().map(|v| v.listener.clone()).collect();
        let envoy = self.start_envoy("profile", &listeners)?;
        for variant in &variants {
            probe(variant)?;
            // Let V8 compile and the connection pools fill before sampling.
            self.generators
                .wrk(&url(variant.listener.port), &variant.wrk_script, 2)?;
        }
        self.profile(&envoy, &variants)
    }

    /// Profiles each of [`PROFILED`] in turn and writes `PROFILE_FILE`: the CPU per request
    /// by object of each, their difference, then each profile's top frames.
    fn profile(&self, envoy: &Envoy, variants: &[Variant]) -> Result<()> {
        let perf = profile::ensure_perf()?;
        let mut profiles = Vec::new();
        for id in PROFILED {
            let variant = variants
                .iter()
                .find(|v| v.id == id)
                .ok_or_else(|| Error::new(format!("no {id} variant to profile")))?;
            profiles.push(self.profile_one(&perf, envoy, variant)?);
        }
        let mut text = format!(
            "# Envoy (pid {}), commit `{}`, {}: each variant saturated by `wrk` in turn while\n\
             # `perf record -F {} -g -p <envoy>` samples it; `perf report --no-children --sort dso,symbol`.\n\n",
            envoy.pid(),
            git_describe(&self.root),
            now_utc(),
            profile::FREQUENCY,
        );
        text.push_str(&profile::compare(&profiles));
        for (profiled, top) in profiles
            .iter()
            .zip([profile::TOP_FRAMES / 2, profile::TOP_FRAMES])
        {
            text.push('\n');
            text.push_str(&profile::summarise(&profiled.raw, &profiled.header, top));
        }
        let file = self.root.join(PROFILE_FILE);
        write_file(&file, &text)?;
        println!(
            "bench: wrote {}",
            file.strip_prefix(&self.root).unwrap_or(&file).display()
        );
        Ok(())
    }

    /// Records Envoy with `perf` while `wrk` saturates `variant`, with Envoy's CPU per
    /// request over the load.
    fn profile_one(
        &self,
        perf: &Path,
        envoy: &Envoy,
        variant: &Variant,
    ) -> Result<profile::Profiled> {
        // Long enough for a few thousand samples of the worker; short enough to add well
        // under a minute to a full run.
        let seconds = (self.options.seconds + 2).min(5);
        let data = self.work.join(format!("perf-{}.data", variant.id));
        let url = url(variant.listener.port);
        println!(
            "bench: profiling Envoy {} for {seconds}s under wrk on {}",
            envoy.pid(),
            variant.id
        );
        let cpu_before = envoy.cpu_micros(self.ticks_per_second)?;
        let (recorded, load) = std::thread::scope(|scope| {
            // The load runs a second past the recording at each end, so every sample is
            // taken under it.
            let load = scope.spawn(|| self.generators.wrk(&url, &variant.wrk_script, seconds + 2));
            std::thread::sleep(std::time::Duration::from_millis(500));
            let recorded = profile::record(perf, envoy.pid(), seconds, &data);
            (recorded, load.join())
        });
        let cpu_after = envoy.cpu_micros(self.ticks_per_second)?;
        recorded?;
        let load = load.map_err(|_| Error::new("the wrk thread of the profile panicked"))??;
        let raw = profile::report(perf, &data)?;
        let cpu_us = per_request(cpu_after.saturating_sub(cpu_before), load.requests);
        let header = format!(
            "{}: {:.0} rps, Envoy CPU {cpu_us:.1} µs per request over the load; recorded {seconds} s.",
            variant.id,
            load.rps(),
        );
        Ok(profile::Profiled {
            id: variant.id.to_owned(),
            cpu_us,
            raw,
            header,
        })
    }

    /// An extra of a full run (profile, V8 timing, instruction counts) that failed
    /// leaves a line in its `file` saying so, and the run goes on.
    fn extra(&self, file: &str, missing: &str, outcome: Result<()>) -> Result<()> {
        let Err(err) = outcome else {
            return Ok(());
        };
        println!("bench: WARNING: {missing}: {err}");
        write_file(
            &self.root.join(file),
            &format!("# In the last run {missing}: {err}\n"),
        )
    }

    /// Every variant's instructions per request, counted in Envoys run by callgrind
    /// (`--instructions`, and the end of a full run); writes
    /// [`instructions::INSTRUCTIONS_FILE`].
    fn count_instructions(&self) -> Result<()> {
        let variants = self.variants()?;
        let counted = self.count_groups(&variants)?;
        let file = self.root.join(instructions::INSTRUCTIONS_FILE);
        write_file(&file, &instructions::render(&stamp(&self.root), &counted))?;
        println!(
            "bench: wrote {}",
            file.strip_prefix(&self.root).unwrap_or(&file).display()
        );
        Ok(())
    }

    /// Every one of `variants` counted, in as many Envoys under callgrind as
    /// [`instruction_groups`] needs.
    fn count_groups(&self, variants: &[Variant]) -> Result<Vec<instructions::Counted>> {
        let callgrind = instructions::Callgrind::ensure(&self.work.join("callgrind"))?;
        let binary = envoy::executable(&self.envoy)?;
        let mut counted = Vec::new();
        for (group, variants) in instruction_groups(variants).iter().enumerate() {
            let listeners: Vec<Listener> = variants.iter().map(|v| v.listener.clone()).collect();
            let admin_port = proxy::free_ports(1)?[0];
            let config = self.work.join(format!("envoy-instructions-{group}.yaml"));
            write_file(&config, &bootstrap::render(admin_port, &listeners))?;
            println!(
                "bench: starting Envoy under callgrind for {} (a minute or more to load)",
                variants.iter().map(|v| v.id).collect::<Vec<_>>().join(", ")
            );
            let envoy = Envoy::start_under(
                &callgrind.wrapper(),
                &binary,
                &config,
                admin_port,
                self.envoy_cpu,
                &self.work.join(format!("envoy-instructions-{group}.log")),
                instructions::STARTUP,
            )?;
            // What this Envoy runs with no request (timers, stats), per second: taken
            // out of every run, so a variant serving fewer requests in its seconds is
            // not charged more of it per request.
            callgrind.zero(envoy.pid())?;
            let idle_started = Instant::now();
            std::thread::sleep(std::time::Duration::from_secs(u64::from(
                instructions::IDLE_SECONDS,
            )));
            let idle = callgrind.dump(envoy.pid())?;
            let idle_seconds = idle_started.elapsed().as_secs_f64();
            let idle_per_second: BTreeMap<String, f64> = idle
                .into_iter()
                .map(|(class, n)| (class, n as f64 / idle_seconds))
                .collect();
            for variant in variants.iter() {
                counted.push(self.count_variant(&callgrind, &envoy, variant, &idle_per_second)?);
            }
        }
        Ok(counted)
    }

    /// One variant's counted runs in `envoy`, which runs under `callgrind`.
    fn count_variant(
        &self,
        callgrind: &instructions::Callgrind,
        envoy: &Envoy,
        variant: &Variant,
        idle_per_second: &BTreeMap<String, f64>,
    ) -> Result<instructions::Counted> {
        probe(variant)?;
        let url = url(variant.listener.port);
        // Few connections: their set-up is not spread over many requests under callgrind.
        let generators = Generators {
            wrk_connections: instructions::CONNECTIONS,
            ..self.generators.clone()
        };
        generators.wrk(&url, &variant.wrk_script, instructions::WARMUP_SECONDS)?;
        // One load of `seconds`: its requests and its instructions by class, less what
        // the idle Envoy runs in as long.
        let load = |seconds: u32| -> Result<(u64, BTreeMap<String, f64>)> {
            callgrind.zero(envoy.pid())?;
            let started = Instant::now();
            let wrk = generators.wrk(&url, &variant.wrk_script, seconds)?;
            let counts = callgrind.dump(envoy.pid())?;
            let elapsed = started.elapsed().as_secs_f64();
            let mut problems = Vec::new();
            check_wrk(&wrk, &mut problems);
            if !problems.is_empty() {
                return Err(Error::new(format!(
                    "{} under callgrind: {}",
                    variant.id,
                    problems.join("; ")
                )));
            }
            let busy = counts
                .into_iter()
                .map(|(class, n)| {
                    let idle = idle_per_second.get(&class).copied().unwrap_or(0.0) * elapsed;
                    (class, n as f64 - idle)
                })
                .collect();
            Ok((wrk.requests, busy))
        };
        let mut runs = Vec::new();
        for run in 1..=instructions::RUNS {
            // A short and a long load: the difference is the cost of the long one's extra
            // requests, without what every load costs once (connections, its start).
            let (short_requests, short) = load(instructions::SHORT_SECONDS)?;
            let (long_requests, long) = load(instructions::LONG_SECONDS)?;
            let extra = long_requests.saturating_sub(short_requests);
            if extra == 0 {
                return Err(Error::new(format!(
                    "{} under callgrind: the long load served no more requests than the short one",
                    variant.id
                )));
            }
            let per_request: BTreeMap<String, f64> = long
                .iter()
                .map(|(class, n)| {
                    let before = short.get(class).copied().unwrap_or(0.0);
                    (class.clone(), ((n - before) / extra as f64).max(0.0))
                })
                .collect();
            println!(
                "bench: instructions {run}/{} {:<8} {:>6} more requests {:>9.0} per request",
                instructions::RUNS,
                variant.id,
                extra,
                per_request.values().sum::<f64>()
            );
            runs.push((extra, per_request));
        }
        Ok(instructions::Counted {
            id: variant.id,
            runs,
        })
    }

    /// `--builds`: the filter at opt-levels z, s and 3, each through `wasm-opt -Oz` as
    /// shipped, as A3 listeners of one Envoy next to A0; then each counted under
    /// callgrind.
    fn compare_builds(&self) -> Result<Value> {
        let dir = self.work.join("builds");
        std::fs::create_dir_all(&dir)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
        let mut builds: Vec<(String, PathBuf)> = Vec::new();
        for (level, profile) in [("z", "release"), ("s", "release-s"), ("3", "release-o3")] {
            let built = build_filter_profile(&self.root, profile)?;
            // As `cargo xtask wasm` ships it: through `wasm-opt -Oz`, stripped.
            let shipped = dir.join(format!("rampart-o{level}.wasm"));
            tasks::wasm_opt(&built, &shipped, false)?;
            builds.push((format!("opt-level {level} + wasm-opt -Oz"), shipped));
        }
        let ports = proxy::free_ports(builds.len() + 1)?;
        let a0 = self.variant(
            "A0",
            "router only, no filter",
            Listener {
                name: "a0".into(),
                port: ports[0],
                kind: Kind::RouterOnly,
            },
            Expect::All("stable"),
            None,
            false,
        )?;
        let mut variants = vec![a0];
        let mut labels = vec!["router only (A0)".to_owned()];
        for (i, (label, wasm)) in builds.iter().enumerate() {
            let name = format!("b{i}");
            let contract = self.contract(&format!("bench-{name}"))?;
            let listener = Listener {
                name: name.clone(),
                port: ports[i + 1],
                kind: Kind::Rampart {
                    wasm: wasm.clone(),
                    vm_id: name.clone(),
                    contract,
                    tier: Tier::Metadata,
                },
            };
            let counters = Some(format!(
                "wasmcustom.rampart_contract=.=bench-{name};.;rampart"
            ));
            variants.push(self.variant(
                "A3",
                "Rampart build",
                listener,
                Expect::Split,
                counters,
                false,
            )?);
            labels.push(label.clone());
        }
        let listeners: Vec<Listener> = variants.iter().map(|v| v.listener.clone()).collect();
        let envoy = self.start_envoy("builds", &listeners)?;
        let mut shares = Vec::new();
        for variant in &variants {
            shares.push(probe(variant)?);
        }
        let mut runs: Vec<Vec<(f64, f64, Vec<String>)>> = vec![Vec::new(); variants.len()];
        for round in 1..=self.options.rounds {
            let n = variants.len();
            for k in 0..n {
                let i = (k + round as usize - 1) % n;
                let variant = &variants[i];
                let Saturated {
                    wrk,
                    before,
                    after,
                    cpu_micros,
                } = self.saturate(&envoy, variant)?;
                let mut problems = Vec::new();
                check_wrk(&wrk, &mut problems);
                check_counters(variant, &before, &after, shares[i], &mut problems);
                let cpu = per_request(cpu_micros, wrk.requests);
                println!(
                    "bench: round {round}/{} {:<32} {:>8.0} rps {:>6.1} µs/req{}",
                    self.options.rounds,
                    labels[i],
                    wrk.rps(),
                    cpu,
                    flagged(&problems)
                );
                runs[i].push((wrk.rps(), cpu, problems));
            }
        }
        drop(envoy);
        // The same builds counted: instruction differences the CPU ranges may hide.
        let counted = match self.count_groups(&variants) {
            Ok(counted) => counted,
            Err(err) => {
                println!("bench: WARNING: no instruction counts: {err}");
                Vec::new()
            }
        };
        let mut entries = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            let good: Vec<&(f64, f64, Vec<String>)> =
                runs[i].iter().filter(|r| r.2.is_empty()).collect();
            let rps: Vec<f64> = good.iter().map(|r| r.0).collect();
            let cpu: Vec<f64> = good.iter().map(|r| r.1).collect();
            let bytes = if i == 0 {
                Value::Null
            } else {
                std::fs::metadata(&builds[i - 1].1).map_or(Value::Null, |m| num(m.len() as f64))
            };
            let flagged: Vec<Value> = runs[i]
                .iter()
                .filter(|r| !r.2.is_empty())
                .map(|r| text(r.2.join("; ")))
                .collect();
            entries.push(Value::Object(vec![
                ("build".into(), text(label.clone())),
                ("wasm_bytes".into(), bytes),
                ("rps".into(), spread_json(Spread::of(&rps))),
                ("cpu_us_per_request".into(), spread_json(Spread::of(&cpu))),
                (
                    "instructions_per_request".into(),
                    counted
                        .get(i)
                        .map_or(Value::Null, |c| num(c.per_request(None))),
                ),
                (
                    "generated_code_instructions_per_request".into(),
                    counted.get(i).map_or(Value::Null, |c| {
                        num(c.per_request(Some(instructions::GENERATED)))
                    }),
                ),
                ("flagged_runs".into(), Value::Array(flagged)),
            ]));
        }
        self.results(
            "cargo xtask bench --builds",
            vec![(
                "wasm_opt".into(),
                text(
                    // Installed by the builds above (`tasks::wasm_opt`).
                    command_output(Command::new("wasm-opt").arg("--version"))
                        .unwrap_or_default()
                        .trim(),
                ),
            )],
            vec![("builds".into(), Value::Array(entries))],
        )
    }
}

/// The variants in groups of consecutive ones, each group served by its own Envoy under
/// callgrind: V8 reserves address space per wasm VM (guard regions of its linear
/// memory), more than valgrind can map for every wasm variant at once.
fn instruction_groups(variants: &[Variant]) -> Vec<&[Variant]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut wasm = 0;
    for (i, variant) in variants.iter().enumerate() {
        let is_wasm = matches!(
            variant.listener.kind,
            Kind::Floor { .. } | Kind::Noop { .. } | Kind::Rampart { .. }
        );
        if is_wasm && wasm == instructions::WASM_VMS_PER_ENVOY {
            groups.push(&variants[start..i]);
            start = i;
            wasm = 0;
        }
        wasm += usize::from(is_wasm);
    }
    if start < variants.len() {
        groups.push(&variants[start..]);
    }
    groups
}

/// The contract template with its name set to `name`.
/// `contract` with its `inputs.tier` replaced by a read of the tier header.
fn header_tier(contract: &str) -> Option<String> {
    let mut value = json::parse(contract).ok()?;
    let Value::Object(members) = &mut value else {
        return None;
    };
    let (_, inputs) = members.iter_mut().find(|(key, _)| key == "inputs")?;
    let Value::Object(inputs) = inputs else {
        return None;
    };
    let (_, tier) = inputs.iter_mut().find(|(key, _)| key == "tier")?;
    *tier = Value::Object(vec![
        (
            "header".to_owned(),
            Value::String(bootstrap::TIER_HEADER.to_owned()),
        ),
        ("format".to_owned(), Value::String("string".to_owned())),
    ]);
    Some(value.to_pretty())
}

fn name_contract(template: &str, name: &str) -> Option<String> {
    const PLACEHOLDER: &str = "\"contract\": \"bench\"";
    (template.matches(PLACEHOLDER).count() == 1)
        .then(|| template.replace(PLACEHOLDER, &format!("\"contract\": \"{name}\"")))
}

/// The headers of a request from user number `user`.
fn request_headers(config: &str, user: usize) -> Headers {
    vec![
        ("Host".to_owned(), "127.0.0.1".to_owned()),
        (bootstrap::USER_HEADER.to_owned(), format!("user-{user:02}")),
        (
            bootstrap::TIER_HEADER.to_owned(),
            bootstrap::TIER.to_owned(),
        ),
        (bootstrap::CONFIG_HEADER.to_owned(), config.to_owned()),
    ]
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/")
}

fn per_request(cpu_micros: u64, requests: u64) -> f64 {
    if requests == 0 {
        f64::NAN
    } else {
        cpu_micros as f64 / requests as f64
    }
}

/// Sends one request per user and checks every answer and route; returns the share
/// of users routed to the canary.
fn probe(variant: &Variant) -> Result<f64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], variant.listener.port));
    let mut sides = Vec::new();
    for headers in &variant.requests {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(name, _)| name != "Host")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let (status, body) = proxy::http_get(addr, "/", &pairs)
            .map_err(|err| Error::new(format!("{}: probe request failed: {err}", variant.id)))?;
        if status != 200 {
            return Err(Error::new(format!(
                "{}: probe answered {status}: {body}",
                variant.id
            )));
        }
        sides.push(body.trim().to_owned());
    }
    let canary = sides.iter().filter(|s| *s == "canary").count();
    let ok = match variant.expect {
        Expect::All(side) => sides.iter().all(|s| s == side),
        Expect::Split => {
            canary > 0
                && canary < sides.len()
                && sides.iter().all(|s| s == "canary" || s == "stable")
        }
    };
    if !ok {
        return Err(Error::new(format!(
            "{}: routed {sides:?}, expected {:?}; the variant is misconfigured",
            variant.id, variant.expect
        )));
    }
    Ok(canary as f64 / sides.len() as f64)
}

fn check_wrk(wrk: &WrkRun, problems: &mut Vec<String>) {
    if wrk.requests == 0 {
        problems.push("wrk completed no request".into());
    }
    if wrk.bad_status > 0 {
        problems.push(format!("wrk: {} responses not 2xx/3xx", wrk.bad_status));
    }
    if wrk.socket_errors > 0 {
        problems.push(format!("wrk: {} socket errors", wrk.socket_errors));
    }
}

/// Checks a fixed-rate run. Falling short of the rate is a problem of the run when the
/// variant could serve more (`saturation_rps` above the rate): then the generator or the
/// machine failed. When the variant saturates below the rate, the shortfall is the result
/// (its latency at that load is queueing) and is returned as a note instead.
fn check_oha(
    oha: &OhaRun,
    rate: u32,
    saturation_rps: f64,
    problems: &mut Vec<String>,
) -> Option<String> {
    if oha.bad_status > 0 {
        problems.push(format!("oha: {} responses not 2xx", oha.bad_status));
    }
    if oha.errors > 0 {
        problems.push(format!("oha: {} requests failed", oha.errors));
    }
    let rate = f64::from(rate);
    if oha.rps >= rate * 0.9 {
        return None;
    }
    let shortfall = format!("oha reached {:.0} rps of the {rate:.0} asked", oha.rps);
    if saturation_rps < rate {
        return Some(format!(
            "overloaded: saturates at {saturation_rps:.0} rps, below the latency rate; {shortfall}"
        ));
    }
    problems.push(shortfall);
    None
}

/// Checks Rampart's counters over a run: every request decided, matched (or drifted for
/// A3d), and the canary share close to the probe's. Returns the canary share.
fn check_counters(
    variant: &Variant,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    probe_share: f64,
    problems: &mut Vec<String>,
) -> Option<f64> {
    let prefix = variant.counters.as_ref()?;
    let delta = |name: &str| {
        let key = format!("{prefix}.{name}");
        after
            .get(&key)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(&key).copied().unwrap_or(0))
    };
    let requests = delta("requests");
    if requests == 0 {
        problems.push(format!("{prefix}.requests did not move"));
        return None;
    }
    let canary = delta("canary");
    let share = canary as f64 / requests as f64;
    if variant.drifts {
        if delta("drift") != requests || delta("stable") != requests {
            problems.push(format!(
                "not every request drifted to stable: requests {requests}, drift {}, stable {}",
                delta("drift"),
                delta("stable")
            ));
        }
    } else {
        if delta("match") != requests {
            problems.push(format!("requests {requests} but match {}", delta("match")));
        }
        // Round robin over the users: the share follows the users' sides closely, up to
        // the requests in flight and the last partial cycle.
        let tolerance = (32.0 / requests as f64).max(0.05);
        if (share - probe_share).abs() > tolerance {
            problems.push(format!(
                "canary share {share:.3}, users' share {probe_share:.3}"
            ));
        }
    }
    Some(share)
}

/// Envoy's wasm VM counts: `wasm.wasm_vm_count` and the V8 runtime's active/created VMs.
fn wasm_stats(stats: &BTreeMap<String, u64>) -> Value {
    Value::Object(
        stats
            .iter()
            .filter(|(name, _)| {
                name.as_str() == "wasm.wasm_vm_count"
                    || (name.starts_with("wasm.envoy.wasm.runtime.")
                        && (name.ends_with(".active") || name.ends_with(".created")))
            })
            .map(|(name, &value)| (name.clone(), num(value as f64)))
            .collect(),
    )
}

/// A variant's entry in the results: medians and spreads over its unflagged runs.
fn variant_json(variant: &Variant, runs: &[Run], memory: Option<Value>) -> Value {
    let good: Vec<&Run> = runs.iter().filter(|r| r.problems.is_empty()).collect();
    let spread = |f: fn(&Run) -> f64| {
        spread_json(Spread::of(&good.iter().map(|r| f(r)).collect::<Vec<_>>()))
    };
    let mut members = vec![
        ("id".to_owned(), text(variant.id)),
        ("description".to_owned(), text(variant.description)),
        ("runs_used".to_owned(), num(good.len() as f64)),
        (
            "runs_flagged".to_owned(),
            num((runs.len() - good.len()) as f64),
        ),
        ("rps".to_owned(), spread(|r| r.rps)),
        ("cpu_us_per_request".to_owned(), spread(|r| r.cpu_us)),
        (
            "cpu_us_per_request_at_rate".to_owned(),
            spread(|r| r.rate_cpu_us),
        ),
        ("envoy_busy_share".to_owned(), spread(|r| r.envoy_busy)),
        ("p50_us".to_owned(), spread(|r| r.p50_us)),
        ("p99_us".to_owned(), spread(|r| r.p99_us)),
        ("p999_us".to_owned(), spread(|r| r.p999_us)),
    ];
    if let Some(memory) = memory {
        members.extend(memory.members().iter().cloned());
    }
    members.push((
        "runs".to_owned(),
        Value::Array(runs.iter().map(Run::to_json).collect()),
    ));
    Value::Object(members)
}

fn build_noop(root: &Path) -> Result<PathBuf> {
    println!("bench: building rampart-noop-filter for wasm32-unknown-unknown (release)");
    process::run(
        cargo()
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .args(["-p", "rampart-noop-filter"])
            .current_dir(root),
    )?;
    Ok(target_dir(root).join("wasm32-unknown-unknown/release/rampart_noop_filter.wasm"))
}

fn build_floor(root: &Path) -> Result<PathBuf> {
    println!("bench: building rampart-floor-filter for wasm32-unknown-unknown (release)");
    process::run(
        cargo()
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .args(["-p", "rampart-floor-filter"])
            .current_dir(root),
    )?;
    Ok(target_dir(root).join("wasm32-unknown-unknown/release/rampart_floor_filter.wasm"))
}

/// Calls of `proxy_increment_metric` an op list makes per request (its `increment N`
/// lines), so the harness can check the floor made them.
fn floor_increments(ops: &str) -> u64 {
    ops.lines()
        .filter_map(|line| line.trim().strip_prefix("increment "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// Checks that a floor variant made its calls: its counter moved by the op list's
/// increments for every request wrk completed (requests cut off at the end of the run
/// may add a few more, never fewer).
fn check_floor(
    variant: &Variant,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    requests: u64,
    problems: &mut Vec<String>,
) {
    let Some(per_request) = variant.floor_increments else {
        return;
    };
    let delta = after
        .get(FLOOR_COUNTER)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(FLOOR_COUNTER).copied().unwrap_or(0));
    if delta < per_request * requests {
        problems.push(format!(
            "{FLOOR_COUNTER} moved by {delta}, expected at least {per_request} × {requests} requests"
        ));
    }
}

fn build_filter_profile(root: &Path, profile: &str) -> Result<PathBuf> {
    println!("bench: building rampart-filter with profile {profile}");
    process::run(
        cargo()
            .args([
                "build",
                "--profile",
                profile,
                "--target",
                "wasm32-unknown-unknown",
            ])
            .args(["-p", "rampart-filter"])
            .current_dir(root),
    )?;
    Ok(target_dir(root)
        .join("wasm32-unknown-unknown")
        .join(profile)
        .join("rampart_filter.wasm"))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// The program `name` on PATH, if any.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn ensure_wrk() -> Result<PathBuf> {
    if let Some(wrk) = on_path("wrk") {
        println!("bench: wrk: {}", wrk.display());
        return Ok(wrk);
    }
    install::debian("wrk", &["wrk"], || on_path("wrk").is_some())?;
    on_path("wrk").ok_or_else(|| Error::new("wrk is still missing after installing it"))
}

fn ensure_oha(root: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAMPART_OHA") {
        println!(
            "bench: oha: {} (RAMPART_OHA)",
            PathBuf::from(&path).display()
        );
        return Ok(PathBuf::from(path));
    }
    // native-tls links the system OpenSSL, found through pkg-config.
    let openssl_found = Command::new("pkg-config")
        .args(["--exists", "openssl"])
        .status()
        .is_ok_and(|status| status.success());
    install::debian(
        "OpenSSL headers (for oha)",
        &["pkg-config", "libssl-dev"],
        || openssl_found,
    )?;
    install::crate_tool(
        root,
        "oha",
        "oha",
        OHA_VERSION,
        &["--no-default-features", "--features", "native-tls"],
    )
}

fn command_output(cmd: &mut Command) -> Option<String> {
    let output = cmd.output().ok()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Some(text)
}

fn git_describe(root: &Path) -> String {
    let sha = command_output(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(root),
    )
    .unwrap_or_default()
    .trim()
    .to_owned();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .is_ok_and(|out| !out.stdout.is_empty());
    if dirty {
        format!("{sha}-dirty")
    } else {
        sha
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_quick_and_builds() {
        let defaults = Options::parse(&[]).unwrap();
        assert_eq!(
            (defaults.rounds, defaults.seconds, defaults.builds),
            (5, 3, false)
        );
        assert!(defaults.profile && !defaults.profile_only);
        let profile = Options::parse(&["--profile".into()]).unwrap();
        assert!(profile.profile_only);
        assert!(!Options::parse(&["--no-profile".into()]).unwrap().profile);
        let quick = Options::parse(&["--quick".into()]).unwrap();
        assert_eq!((quick.rounds, quick.seconds), (1, 1));
        assert!(defaults.pin);
        assert!(!Options::parse(&["--no-pin".into()]).unwrap().pin);
        let builds = Options::parse(&["--builds".into()]).unwrap();
        assert_eq!((builds.rounds, builds.builds), (3, true));
        let explicit = Options::parse(&["--builds".into(), "--rounds".into(), "2".into()]).unwrap();
        assert_eq!(explicit.rounds, 2);
        let focus = Options::parse(&["--focus".into()]).unwrap();
        assert_eq!((focus.rounds, focus.focus), (15, true));
        let focus = Options::parse(&["--rounds".into(), "4".into(), "--focus".into()]).unwrap();
        assert_eq!(focus.rounds, 4);
        assert!(Options::parse(&["--vm".into()]).unwrap().vm_only);
        assert!(
            Options::parse(&["--instructions".into()])
                .unwrap()
                .instructions_only
        );
        assert!(Options::parse(&["--rounds".into(), "0".into()]).is_err());
        assert!(Options::parse(&["--fast".into()]).is_err());
    }

    #[test]
    fn the_drifted_config_differs_from_the_tested_one_in_one_value() {
        assert_eq!(CONFIG.len(), DRIFTED_CONFIG.len());
        let differing = CONFIG
            .bytes()
            .zip(DRIFTED_CONFIG.bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 1);
    }

    #[test]
    fn the_lua_variant_compares_with_the_same_config() {
        let lua = std::fs::read_to_string(crate::repo_root().join(LUA_FILE)).unwrap();
        assert!(lua.contains(&format!("[[{CONFIG}]]")));
    }

    #[test]
    fn the_contract_template_is_named_per_listener() {
        let template = std::fs::read_to_string(crate::repo_root().join(CONTRACT_FILE)).unwrap();
        let named = name_contract(&template, "bench-a3").unwrap();
        assert!(named.contains("\"contract\": \"bench-a3\""));
        assert!(name_contract("{}", "x").is_none());
    }

    #[test]
    fn snapshot_flags_are_the_config_header() {
        let snapshot = json::parse(
            &std::fs::read_to_string(crate::repo_root().join("envoy/bench/snapshot.json")).unwrap(),
        )
        .unwrap();
        let header = json::parse(CONFIG).unwrap();
        let flags = snapshot.get("flags").unwrap();
        // Same members, whatever their order.
        assert_eq!(flags.members().len(), header.members().len());
        for (key, value) in header.members() {
            assert_eq!(flags.get(key), Some(value), "{key}");
        }
    }

    #[test]
    fn the_header_tier_contract_reads_the_tier_header_and_keeps_everything_else() {
        let template = std::fs::read_to_string(crate::repo_root().join(CONTRACT_FILE)).unwrap();
        let original = json::parse(&name_contract(&template, "bench-a3h").unwrap()).unwrap();
        let changed =
            json::parse(&header_tier(&name_contract(&template, "bench-a3h").unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            changed
                .at(&["inputs", "tier", "header"])
                .and_then(Value::as_str),
            Some(bootstrap::TIER_HEADER)
        );
        assert_eq!(changed.at(&["inputs", "tier", "property"]), None);
        for key in [
            "contract",
            "route",
            "ramp",
            "lock",
            "on_drift",
            "on_missing",
            "explain",
        ] {
            assert_eq!(changed.get(key), original.get(key), "{key}");
        }
        for input in ["flags", "rev"] {
            assert_eq!(
                changed.at(&["inputs", input]),
                original.at(&["inputs", input]),
                "{input}"
            );
        }
        assert_eq!(header_tier("[1]"), None);
        assert_eq!(header_tier(r#"{"inputs": {}}"#), None);
    }

    #[test]
    fn the_floor_list_makes_rampart_s_calls_and_its_increments_are_counted() {
        let ops = std::fs::read_to_string(crate::repo_root().join(FLOOR_FILE)).unwrap();
        let calls: Vec<&str> = ops
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        // One read of every header (flags, sticky key), then the tier property, then the
        // route header; node metadata is read once per VM, never per request.
        assert_eq!(calls[0], "pairs");
        assert_eq!(calls[1], "property metadata.filter_metadata.tenant.tier");
        assert!(calls[2].starts_with("replace x-rampart-route "));
        assert!(!ops.contains("property xds.node"));
        // A3h's contract reads every input but rev from headers: one read of every header,
        // then the route header.
        let header_ops =
            std::fs::read_to_string(crate::repo_root().join(FLOOR_HEADER_FILE)).unwrap();
        let header_calls: Vec<&str> = header_ops
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(header_calls.len(), 2, "{header_calls:?}");
        assert_eq!(header_calls[0], "pairs");
        assert!(header_calls[1].starts_with("replace x-rampart-route "));
        assert_eq!(floor_increments("pairs\nincrement 3\n  increment 2\n"), 5);
        assert_eq!(floor_increments(""), 0);
    }

    #[test]
    fn floor_check_flags_runs_whose_counter_did_not_move_enough() {
        let variant = Variant {
            id: "A3floor",
            description: "",
            listener: Listener {
                name: "a3floor".into(),
                port: 1,
                kind: Kind::RouterOnly,
            },
            expect: Expect::All("canary"),
            requests: vec![],
            counters: None,
            drifts: false,
            floor_increments: Some(3),
            wrk_script: PathBuf::new(),
        };
        let stats = |n: u64| BTreeMap::from([(FLOOR_COUNTER.to_owned(), n)]);
        let mut problems = Vec::new();
        check_floor(&variant, &stats(10), &stats(3010), 1000, &mut problems);
        check_floor(&variant, &stats(10), &stats(3040), 1000, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        check_floor(&variant, &stats(10), &stats(1010), 1000, &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn a_missed_rate_is_a_problem_unless_the_variant_saturates_below_it() {
        let oha = OhaRun {
            responses: 8000,
            bad_status: 0,
            errors: 0,
            rps: 8000.0,
            p50_us: 1.0,
            p99_us: 2.0,
            p999_us: 3.0,
        };
        let mut problems = Vec::new();
        assert_eq!(check_oha(&oha, 8500, 20000.0, &mut problems), None);
        assert!(problems.is_empty());
        assert_eq!(check_oha(&oha, 10000, 20000.0, &mut problems), None);
        assert_eq!(
            problems.len(),
            1,
            "a variant able to serve 20000 rps missed 10000"
        );
        let note = check_oha(&oha, 10000, 8500.0, &mut problems).unwrap();
        assert!(
            note.starts_with("overloaded: saturates at 8500 rps"),
            "{note}"
        );
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn counters_check_flags_runs_that_did_not_match() {
        let variant = Variant {
            id: "A3",
            description: "",
            listener: Listener {
                name: "a3".into(),
                port: 1,
                kind: Kind::RouterOnly,
            },
            expect: Expect::Split,
            requests: vec![],
            counters: Some("p".into()),
            drifts: false,
            floor_increments: None,
            wrk_script: PathBuf::new(),
        };
        let stats = |(requests, matched, canary): (u64, u64, u64)| {
            BTreeMap::from([
                ("p.requests".to_owned(), requests),
                ("p.match".to_owned(), matched),
                ("p.canary".to_owned(), canary),
            ])
        };
        let mut problems = Vec::new();
        // The canary share it reads, and how many problems it has found so far.
        let mut check = |before, after| {
            let share =
                check_counters(&variant, &stats(before), &stats(after), 0.25, &mut problems);
            (share, problems.len())
        };
        assert_eq!(check((0, 0, 0), (1000, 1000, 250)), (Some(0.25), 0));
        assert_eq!(check((0, 0, 0), (1000, 990, 250)).1, 1);
        assert_eq!(check((0, 0, 0), (1000, 1000, 500)).1, 2);
        assert_eq!(check((5, 5, 0), (5, 5, 0)).1, 3);
    }
}

/// The generated bootstrap against the real Envoy: `envoy --mode validate` loads every
/// listener, the Lua script and the wasm modules, so a broken variant fails here rather
/// than ten minutes into a benchmark run.
#[cfg(test)]
mod envoy_tests {
    use super::*;

    /// `RAMPART_ENVOY` / `RAMPART_WASM` as `cargo xtask test` sets them, else the builds
    /// `cargo xtask setup` and `wasm` leave under `target/`.
    fn envoy_and_wasm(root: &Path) -> (PathBuf, PathBuf) {
        let envoy = std::env::var_os("RAMPART_ENVOY")
            .map(PathBuf::from)
            .or_else(|| {
                [
                    "target/envoy-venv/bin/envoy",
                    "target/envoy-pkg/envoy/_bin/envoy",
                ]
                .iter()
                .map(|relative| root.join(relative))
                .find(|path| path.is_file())
            })
            .expect(
                "no Envoy: RAMPART_ENVOY is unset and none is installed; run `cargo xtask test`",
            );
        let wasm = std::env::var_os("RAMPART_WASM").map_or_else(
            || root.join("target").join(tasks::SHIPPED_WASM),
            PathBuf::from,
        );
        assert!(
            wasm.is_file(),
            "no filter at {}; run `cargo xtask test`",
            wasm.display()
        );
        (envoy, wasm)
    }

    #[test]
    fn the_variants_bootstrap_is_valid_for_envoy() {
        let root = crate::repo_root();
        let (envoy, wasm) = envoy_and_wasm(&root);
        let floor_wasm = Some(
            target_dir(&root).join("wasm32-unknown-unknown/release/rampart_floor_filter.wasm"),
        )
        .filter(|path| path.is_file());
        let work = std::env::temp_dir().join(format!("rampart-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let bench = Bench {
            root: root.clone(),
            options: Options::parse(&[]).unwrap(),
            envoy: envoy.clone(),
            rampart_wasm: wasm.clone(),
            // Validation only loads the module; any proxy-wasm filter stands in for the noop.
            noop_wasm: wasm.clone(),
            // The floor module if it was built (`cargo xtask bench` builds it), else the
            // filter stands in for it too and only the floor's log lines go unchecked.
            floor_wasm: floor_wasm.clone().unwrap_or(wasm),
            generators: Generators {
                wrk: "wrk".into(),
                oha: "oha".into(),
                cpu: None,
                wrk_connections: 1,
                oha_connections: 1,
            },
            envoy_cpu: None,
            ticks_per_second: 100,
            work: work.clone(),
        };
        let variants = bench.variants().unwrap();
        assert_eq!(
            variants.iter().map(|v| v.id).collect::<Vec<_>>(),
            [
                "A0", "A0h", "A1", "A2min", "A2", "A3floor", "A3", "A3d", "A4", "A3hfloor", "A3h",
                "A4h"
            ]
        );
        let listeners: Vec<Listener> = variants.iter().map(|v| v.listener.clone()).collect();
        let config = work.join("envoy.yaml");
        std::fs::write(
            &config,
            bootstrap::render(proxy::free_ports(1).unwrap()[0], &listeners),
        )
        .unwrap();
        let output = Command::new(&envoy)
            .args(["--mode", "validate", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        let _ = std::fs::remove_dir_all(&work);
        assert!(
            output.status.success(),
            "Envoy rejected the bench bootstrap:\n{log}"
        );
        assert!(log.contains("rampart[bench-a3]: contract loaded"), "{log}");
        assert!(log.contains("rampart[bench-a3d]: contract loaded"), "{log}");
        assert!(log.contains("rampart[bench-a3h]: contract loaded"), "{log}");
        if floor_wasm.is_some() {
            // A2min's list is empty; A3floor's and A3hfloor's are one call per op line.
            assert!(log.contains("floor: 0 host call(s) per request"), "{log}");
            for file in [FLOOR_FILE, FLOOR_HEADER_FILE] {
                let calls = bench
                    .floor_ops(file)
                    .unwrap()
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .count();
                assert!(
                    log.contains(&format!("floor: {calls} host call(s) per request")),
                    "{file}: {log}"
                );
            }
        }
    }
}
