//! The xtask commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::component;
use crate::envoy;
use crate::install;
use crate::oci;
use crate::process::{self, cargo};
use crate::prometheus;
use crate::{Error, Result};

/// The target the Envoy filter is compiled for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The filter's package and the file cargo produces for it.
const FILTER_PACKAGE: &str = "rampart-filter";
const FILTER_ARTIFACT: &str = "rampart_filter.wasm";

/// The module as shipped (after `wasm-opt`), in cargo's target directory: what the
/// demo, the tests, the benchmark and `rampart render` load.
pub const SHIPPED_WASM: &str = "rampart.wasm";

/// Size budget for the filter: it is loaded into every Envoy worker's VM, so size is a feature.
const WASM_MAX_BYTES: u64 = 100 * 1024;

/// The wasm features the modules use, as `wasm-opt` names them: what rustc's wasm32
/// target emits by default plus SIMD (`.cargo/config.toml`); binaryen 108 refuses
/// unnamed ones. V8 in Envoy runs them all.
const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-simd",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Envoy bootstrap for `demo`, relative to the repository root.
const DEMO_CONFIG: &str = "envoy/demo.yaml";

/// The demo's working directory (see examples/ramp.json): the watched ECDS file the
/// demo's Envoy reads and `rampart ramp` publishes to, the live config snapshot, and
/// the ramp's state and audit log.
const DEMO_DIR: &str = "target/rampart-demo";

/// What each demo run starts from: `(source, file in DEMO_DIR)`. The first ECDS
/// resource is examples/contract.json; the live config is the tested snapshot.
const DEMO_START: &[(&str, &str)] = &[
    ("envoy/demo.ecds.json", "rampart.ecds.json"),
    ("examples/snapshot.json", "live-snapshot.json"),
];

/// Left by an earlier ramp; removed so `rampart ramp start` begins afresh.
const DEMO_LEFTOVERS: &[&str] = &["ramp.state.json", "ramp.audit.jsonl"];

/// Tools and artifacts ready for running the tests or the demo.
struct Prepared {
    envoy: PathBuf,
    wasm: PathBuf,
}

/// Installs what is missing; returns the Envoy binary to use.
pub fn setup(root: &Path) -> Result<PathBuf> {
    ensure_wasm_target()?;
    envoy::ensure(root)
}

/// Builds the filter in release mode and checks its size; returns the artifact's path.
pub fn wasm(root: &Path) -> Result<PathBuf> {
    ensure_wasm_target()?;
    build_wasm(root)
}

fn build_wasm(root: &Path) -> Result<PathBuf> {
    println!("wasm: building {FILTER_PACKAGE} for {WASM_TARGET} (release)");
    process::run(
        cargo()
            .args(["build", "--release", "--target", WASM_TARGET])
            .args(["-p", FILTER_PACKAGE])
            .current_dir(root),
    )?;
    let built = target_dir(root)
        .join(WASM_TARGET)
        .join("release")
        .join(FILTER_ARTIFACT);
    let shipped = target_dir(root).join(SHIPPED_WASM);
    optimize(&built, &shipped)?;
    check_wasm_size(root, &shipped)?;
    Ok(shipped)
}

/// `wasm-opt -Oz` of cargo's module into the shipped one; skipped when the shipped
/// module is newer than cargo's.
fn optimize(built: &Path, shipped: &Path) -> Result<()> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let (Some(from), Some(to)) = (modified(built), modified(shipped)) {
        if to >= from {
            println!("wasm: wasm-opt: {} is up to date", shipped.display());
            return Ok(());
        }
    }
    wasm_opt(built, shipped, false)
}

/// `wasm-opt -Oz` as the shipped module gets it (Debian's binaryen, installed if
/// missing), written to `out` atomically; `keep_names` keeps the name section (for a
/// profile) where the shipped module strips it.
pub fn wasm_opt(input: &Path, out: &Path, keep_names: bool) -> Result<()> {
    install::debian("binaryen (wasm-opt)", &["binaryen"], || {
        install::answers("wasm-opt")
    })?;
    let partial = out.with_extension("wasm.partial");
    let mut cmd = Command::new("wasm-opt");
    cmd.arg("-Oz").args(WASM_OPT_FEATURES);
    if keep_names {
        cmd.arg("-g");
    } else {
        cmd.args(["--strip-debug", "--strip-producers"]);
    }
    process::run(cmd.arg(input).arg("-o").arg(&partial))?;
    // Renamed into place so a reader never sees a half-written module.
    std::fs::rename(&partial, out).map_err(|err| Error::new(format!("{}: {err}", out.display())))
}

/// Runs the workspace tests against the installed Envoy, the freshly built filter and
/// the freshly built component; a full run (no arguments) also runs the Node tests.
pub fn test(root: &Path, cargo_test_args: &[String]) -> Result<()> {
    let prepared = prepare(root)?;
    let component = component::build(root)?;
    println!("test: RAMPART_ENVOY={}", prepared.envoy.display());
    println!("test: RAMPART_WASM={}", prepared.wasm.display());
    // End-to-end tests of the root package drive the `rampart` command itself.
    let cli = build_cli(root)?;
    println!("test: RAMPART_CLI={}", cli.display());
    let prometheus = prometheus::ensure()?;
    // tests/oci.rs pushes `rampart package`'s image to a registry and pulls it back.
    let oci = oci::ensure()?;
    let promtool = prometheus::promtool()?;
    println!("test: RAMPART_PROMTOOL={}", promtool.display());
    // The signed-approval tests make keys and signatures with the real ssh-keygen.
    let ssh_keygen = install::program("RAMPART_SSH_KEYGEN", "ssh-keygen", "openssh-client")?;
    println!("test: RAMPART_SSH_KEYGEN={}", ssh_keygen.display());
    println!("test: {}={}", component::ENV, component.display());
    process::run(
        cargo()
            .args(["test", "--workspace"])
            // The filter's logic runs natively against a fake host (its unit tests); the
            // SDK's empty filter has nothing to test. The component is a wasm32-wasip2
            // cdylib, tested by rampart-component-tests.
            .args([
                "--exclude",
                "rampart-noop-filter",
                "--exclude",
                "rampart-component",
            ])
            .args(cargo_test_args)
            .env("RAMPART_ENVOY", &prepared.envoy)
            .env("RAMPART_WASM", &prepared.wasm)
            .env("RAMPART_CLI", &cli)
            .env("RAMPART_PROMETHEUS", &prometheus)
            .env("RAMPART_SKOPEO", &oci.skopeo)
            .env("RAMPART_REGISTRY", &oci.registry)
            .env("RAMPART_PROMTOOL", &promtool)
            .env("RAMPART_SSH_KEYGEN", &ssh_keygen)
            .env(component::ENV, &component)
            .current_dir(root),
    )?;
    // A subset run (`cargo xtask test -- FILTER`) is about Rust tests; the full run
    // also runs the component from Node.
    if cargo_test_args.is_empty() {
        component::node_test(root, &component)?;
    }
    Ok(())
}

/// Builds the `rampart` command (debug, as `cargo test` does); returns its path.
fn build_cli(root: &Path) -> Result<PathBuf> {
    process::run(
        cargo()
            .args(["build", "-p", "rampart-cli"])
            .current_dir(root),
    )?;
    Ok(target_dir(root)
        .join("debug")
        .join(format!("rampart{}", std::env::consts::EXE_SUFFIX)))
}

/// Checks formatting and runs clippy on every target that is built, denying warnings.
pub fn lint(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let steps: [&[&str]; 4] = [
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        // The wasm build has its own cfgs and dependency features; lint it as it ships.
        &[
            "clippy",
            "-p",
            "rampart",
            "-p",
            "rampart-abi",
            "-p",
            FILTER_PACKAGE,
            "-p",
            "rampart-floor-filter",
            "-p",
            "rampart-noop-filter",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ],
        // The filter with the entry points `cargo xtask bench --vm` times.
        &[
            "clippy",
            "-p",
            FILTER_PACKAGE,
            "--features",
            "vm-bench",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    ];
    for args in steps {
        println!("lint: cargo {}", args.join(" "));
        process::run(cargo().args(args).current_dir(root))?;
    }
    component::lint(root)?;
    println!("lint: clean");
    Ok(())
}

/// Runs Envoy in the foreground with the demo bootstrap.
pub fn demo(root: &Path) -> Result<()> {
    let config = root.join(DEMO_CONFIG);
    if !config.is_file() {
        return Err(Error::new(format!(
            "{} is missing; the demo needs it",
            config.display()
        )));
    }
    let prepared = prepare(root)?;
    reset_demo_ecds(root)?;
    print_demo_usage();
    let mut envoy = Command::new(&prepared.envoy);
    envoy
        .args(["-c", DEMO_CONFIG, "--disable-hot-restart"])
        // Warnings from Envoy, and Rampart's own log lines (start, contract, drift).
        .args(["--concurrency", "2", "--log-level", "warn"])
        .args(["--component-log-level", "wasm:info"])
        // The bootstrap names the filter by a path relative to the repository root.
        .current_dir(root);
    run_in_foreground(&mut envoy)
}

/// Starts every demo run from the example contract with no ramp: a ramp left over
/// from an earlier run would otherwise be out of step with the restarted Envoy.
fn reset_demo_ecds(root: &Path) -> Result<()> {
    let dir = root.join(DEMO_DIR);
    let reset = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        for (source, name) in DEMO_START {
            std::fs::copy(root.join(source), dir.join(name))?;
        }
        for name in DEMO_LEFTOVERS {
            match std::fs::remove_file(dir.join(name)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    };
    reset().map_err(|err| Error::new(format!("{}: {err}", dir.display())))?;
    println!("demo: {DEMO_DIR}: filter configuration by ECDS (examples/contract.json), live config = examples/snapshot.json, no ramp yet");
    Ok(())
}

/// Lints, then tests: what CI runs.
pub fn ci(root: &Path) -> Result<()> {
    lint(root)?;
    test(root, &[])
}

fn prepare(root: &Path) -> Result<Prepared> {
    let envoy = setup(root)?;
    let wasm = build_wasm(root)?;
    Ok(Prepared { envoy, wasm })
}

fn ensure_wasm_target() -> Result<()> {
    install::rust_target(WASM_TARGET)
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn check_wasm_size(root: &Path, artifact: &Path) -> Result<()> {
    let bytes = std::fs::metadata(artifact)
        .map_err(|err| Error::new(format!("{} was not produced: {err}", artifact.display())))?
        .len();
    let shown = artifact.strip_prefix(root).unwrap_or(artifact);
    let kib = bytes as f64 / 1024.0;
    println!("wasm: {}: {bytes} bytes ({kib:.1} KiB)", shown.display());
    if bytes > WASM_MAX_BYTES {
        return Err(Error::new(format!(
            "{} is {kib:.1} KiB, over the {} KiB budget",
            shown.display(),
            WASM_MAX_BYTES / 1024
        )));
    }
    Ok(())
}

fn print_demo_usage() {
    println!(
        "\
demo: Envoy listens on http://127.0.0.1:10000, admin on http://127.0.0.1:9901
demo: the contract is examples/contract.json; in another terminal try:
  CFG='{{\"checkout_v2\":true,\"currency\":\"EUR\",\"max_items\":50}}'
  curl -s  localhost:10000/ -H 'x-user-id: alice' -H 'x-tenant-tier: gold' -H \"x-user-config: $CFG\"   # canary
  curl -s  localhost:10000/ -H 'x-user-id: bob'   -H 'x-tenant-tier: gold' -H \"x-user-config: $CFG\"   # stable
  curl -si localhost:10000/ -H 'x-user-id: alice' -H 'x-tenant-tier: silver' -H \"x-user-config: $CFG\" # drift: stable
  curl -s  localhost:9901/stats | grep wasmcustom.rampart
demo: stop with Ctrl-C"
    );
}

/// Hands the terminal to `cmd` so Ctrl-C and signals reach it directly.
#[cfg(unix)]
fn run_in_foreground(cmd: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // `exec` only returns when the program could not be started.
    let err = cmd.exec();
    Err(Error::new(format!(
        "cannot run `{}`: {err}",
        process::describe(cmd)
    )))
}

/// Hands the terminal to `cmd` and waits for it.
#[cfg(not(unix))]
fn run_in_foreground(cmd: &mut Command) -> Result<()> {
    process::run(cmd)
}
