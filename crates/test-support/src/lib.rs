//! End-to-end harness: runs a real Envoy and talks HTTP/1.1 ([`get`], [`Client`]),
//! HTTP/2 ([`http2`]) and gRPC ([`grpc`]) to it.
//!
//! Tests run in parallel, so every [`Envoy`] gets its own temporary directory,
//! binds port 0 everywhere and reports the ports it got through its admin API,
//! and runs with `--disable-hot-restart` (hot restart shares memory by base id).
//!
//! Helpers report failures by panicking with a message that says what to look at:
//! in a test, that is the assertion.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod decisions;
pub mod ecds;
pub mod grpc;
pub mod hostile;
pub mod http2;
pub mod prometheus;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------

/// Placeholder in bootstrap text that [`Envoy::start`] replaces with its temp dir.
pub const TMPDIR_PLACEHOLDER: &str = "@TMPDIR@";

/// How long Envoy may take to bind its listeners and report LIVE.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long `wait_for_*` helpers wait for asynchronous effects (log flushes, counters).
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the filter hands its counts to Envoy (its tick).
const FILTER_FLUSH: Duration = Duration::from_secs(1);

/// Read, write and connect timeout of the HTTP client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Lines of a log file quoted when Envoy fails to start.
const TAIL_LINES: usize = 40;

/// The repository root (two levels above this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The Envoy binary: `RAMPART_ENVOY`, else the one `cargo xtask setup` installs.
pub fn envoy_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RAMPART_ENVOY") {
        return PathBuf::from(path);
    }
    let root = repo_root();
    ["target/envoy-venv/bin/envoy", "target/envoy-pkg/envoy/_bin/envoy"]
        .iter()
        .map(|relative| root.join(relative))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("no Envoy: RAMPART_ENVOY is unset and none is installed under target/; run `cargo xtask test`")
        })
}

/// A module of `tests/fixtures/` (one dependency-free file) built for wasm32 into `dir`.
pub fn fixture_module(dir: &TempDir, name: &str) -> PathBuf {
    let out = dir.path().join(format!("{name}.wasm"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = std::process::Command::new(rustc)
        .args(["--edition", "2021", "--target", "wasm32-unknown-unknown"])
        .args(["--crate-type", "cdylib", "-O", "-C", "panic=abort", "-o"])
        .arg(&out)
        .arg(repo_root().join(format!("tests/fixtures/{name}.rs")))
        .status()
        .unwrap();
    assert!(status.success(), "building tests/fixtures/{name}.rs");
    out
}

/// The filter module: `RAMPART_WASM`, else the release build under `target/`.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("RAMPART_WASM")
        .map_or_else(|| repo_root().join("target/rampart.wasm"), PathBuf::from);
    assert!(
        path.is_file(),
        "no filter module at {}; run `cargo xtask test`",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop unless
/// `RAMPART_KEEP_TMP` is set (then its path is printed for inspection).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `rampart-<label>-<pid>-<counter>-<nanos>`: unique across the
    /// threads of one test binary and across concurrently running binaries.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!("rampart-{label}-{}-{counter}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns the file's path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RAMPART_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            // Best effort: a leftover temp dir must not fail a test.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

/// A running Envoy with its own temp dir; killed and cleaned up on drop.
pub struct Envoy {
    // Held only to be dropped: declared before `dir` so the process is gone before its
    // files are removed.
    _process: KillOnDrop,
    dir: TempDir,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
}

/// Flags the harness sets unless the caller passes them: `(flag, aliases, default)`.
const DEFAULT_FLAGS: &[(&str, &[&str], &str)] = &[
    ("--concurrency", &[], "1"),
    ("--log-level", &["-l"], "warn"),
    // Envoy flushes log files every 10 s by default; tests read them right away.
    ("--file-flush-interval-msec", &[], "20"),
];

impl Envoy {
    /// Starts Envoy with `bootstrap` (YAML or JSON text) and waits until it serves.
    pub fn start(bootstrap: &str) -> Self {
        Self::start_with(bootstrap, &[], None)
    }

    /// Starts Envoy with extra command-line flags and a working directory
    /// (default: the repository root, where relative paths in `envoy/` configs resolve).
    ///
    /// Defaults `--concurrency 1`, `--log-level warn` and
    /// `--file-flush-interval-msec 20` apply unless `extra_args` names the flag:
    /// Envoy rejects a flag given twice.
    pub fn start_with(bootstrap: &str, extra_args: &[&str], cwd: Option<&Path>) -> Self {
        let dir = TempDir::new("envoy");
        // `.yaml` parses JSON too, as JSON is YAML.
        let config = dir.write(
            "bootstrap.yaml",
            &bootstrap.replace(TMPDIR_PLACEHOLDER, utf8(dir.path())),
        );
        let mut command = envoy_command(&config, dir.path(), extra_args);
        command.current_dir(cwd.map_or_else(repo_root, Path::to_path_buf));
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", envoy_bin().display()));
        let mut process = KillOnDrop(child);
        match wait_until_serving(&mut process.0, dir.path()) {
            Ok(Serving { admin, listeners }) => Self {
                _process: process,
                dir,
                admin,
                listeners,
            },
            Err(reason) => panic!("{}", startup_report(&reason, dir.path())),
        }
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The port the listener named `listener` is bound to.
    pub fn port(&self, listener: &str) -> u16 {
        self.addr(listener).port()
    }

    /// Where to connect to the listener named `listener`.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        match self.listeners.get(listener) {
            Some(addr) => *addr,
            None => panic!(
                "Envoy has no listener named `{listener}` with a socket address; it has {:?}",
                self.listeners.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// This Envoy's temp dir (bootstrap, logs, and any files a test adds).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Envoy's own log (`--log-path`), as flushed so far.
    pub fn log(&self) -> String {
        read_or_empty(&self.dir.path().join(LOG_FILE))
    }

    /// The access log the [`Bootstrap`] configures, as flushed so far.
    pub fn access_log(&self) -> String {
        read_or_empty(&self.dir.path().join(ACCESS_LOG_FILE))
    }

    /// Waits until Envoy's log contains `needle`; returns the whole log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        poll(&format!("Envoy's log to contain {needle:?}"), || {
            let log = self.log();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(tail(&log, TAIL_LINES))
            }
        })
    }

    /// Waits until the access log has at least `count` lines; returns them.
    ///
    /// Envoy writes an entry when a stream ends, which can be after the client
    /// has read the response, and flushes the file asynchronously.
    pub fn wait_for_access_log(&self, count: usize) -> Vec<String> {
        poll(&format!("{count} access log lines"), || {
            let lines: Vec<String> = self.access_log().lines().map(str::to_owned).collect();
            if lines.len() >= count {
                Ok(lines)
            } else {
                Err(format!("{lines:?}"))
            }
        })
    }

    /// Counters and gauges from the admin API (histograms and text readouts are skipped).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let text = self.get_admin("/stats?format=json");
        parse_stats(&text).unwrap_or_else(|err| panic!("unexpected /stats JSON ({err}): {text}"))
    }

    /// The value of the counter or gauge `name`, 0 if Envoy has not created it.
    pub fn counter(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Waits until the counter or gauge `name` equals `expected`.
    ///
    /// Some stats (e.g. `downstream_rq_completed`) move after the response is sent.
    pub fn wait_for_counter(&self, name: &str, expected: u64) {
        poll(&format!("{name} == {expected}"), || {
            let value = self.counter(name);
            if value == expected {
                Ok(())
            } else {
                Err(format!("{name} is {value}"))
            }
        });
    }

    /// Waits until the counters named add up to `expected` (the filter hands its counts
    /// to Envoy once a second per worker) and returns the stats read then.
    pub fn wait_for_sum(&self, names: &[&str], expected: u64) -> BTreeMap<String, u64> {
        poll(&format!("{} == {expected}", names.join(" + ")), || {
            let stats = self.stats();
            let sum: u64 = names
                .iter()
                .map(|n| stats.get(*n).copied().unwrap_or(0))
                .sum();
            if sum == expected {
                Ok(stats)
            } else {
                Err(format!("the sum is {sum}"))
            }
        })
    }

    /// The stats once the filter's counts have settled: with no traffic, every worker
    /// hands its last counts to Envoy on its next tick (a second at most), so two reads
    /// more than a tick apart that agree are final.
    pub fn settled_stats(&self) -> BTreeMap<String, u64> {
        let mut last = self.stats();
        poll("the filter's counts to settle", || {
            thread::sleep(FILTER_FLUSH + Duration::from_millis(200));
            let now = self.stats();
            let rampart = |s: &BTreeMap<String, u64>| {
                s.iter()
                    .filter(|(k, _)| is_rampart_stat(k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>()
            };
            let settled = rampart(&now) == rampart(&last);
            last = now.clone();
            if settled {
                Ok(now)
            } else {
                Err("still moving".to_owned())
            }
        })
    }

    /// `GET` an admin path (e.g. `/server_info`); panics unless the status is 2xx.
    pub fn get_admin(&self, path: &str) -> String {
        admin_request(self.admin, "GET", path)
    }

    /// `POST` to an admin path (e.g. `/reset_counters`); panics unless the status is 2xx.
    pub fn post_admin(&self, path: &str) -> String {
        admin_request(self.admin, "POST", path)
    }
}

/// Checks a bootstrap with `envoy --mode validate`, run from the repository root.
/// The error is Envoy's output.
pub fn validate(config_path: &Path) -> Result<(), String> {
    let output = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(config_path)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", envoy_bin().display()));
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

const ADMIN_ADDRESS_FILE: &str = "admin.txt";
const LOG_FILE: &str = "envoy.log";
const ACCESS_LOG_FILE: &str = "access.log";
const STDOUT_FILE: &str = "stdout.txt";
const STDERR_FILE: &str = "stderr.txt";

/// Kills the child on drop so a failing test never leaves an Envoy behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Errors mean the process is already gone, which is the goal.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a started Envoy reported through its admin API.
struct Serving {
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
}

fn envoy_command(config: &Path, dir: &Path, extra_args: &[&str]) -> Command {
    let mut command = Command::new(envoy_bin());
    command
        .arg("-c")
        .arg(config)
        .arg("--disable-hot-restart")
        .arg("--admin-address-path")
        .arg(dir.join(ADMIN_ADDRESS_FILE))
        .arg("--log-path")
        .arg(dir.join(LOG_FILE));
    for (flag, aliases, default) in DEFAULT_FLAGS {
        if !extra_args.iter().any(|arg| names_flag(arg, flag, aliases)) {
            command.args([flag, default]);
        }
    }
    command
        .args(extra_args)
        .stdin(Stdio::null())
        // Files, not pipes: nobody drains a pipe while the test runs, and a full
        // pipe would block Envoy.
        .stdout(create_file(&dir.join(STDOUT_FILE)))
        .stderr(create_file(&dir.join(STDERR_FILE)));
    command
}

fn names_flag(arg: &str, flag: &str, aliases: &[&str]) -> bool {
    std::iter::once(flag)
        .chain(aliases.iter().copied())
        .any(|name| arg == name || arg.starts_with(&format!("{name}=")))
}

fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()))
}

/// Polls until Envoy has written its admin address, bound every listener and is LIVE.
fn wait_until_serving(child: &mut Child, dir: &Path) -> Result<Serving, String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|err| err.to_string())? {
            return Err(format!("Envoy exited during startup ({status})"));
        }
        let pending = match probe_serving(dir) {
            Ok(serving) => return Ok(serving),
            Err(pending) => pending,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "Envoy not ready after {STARTUP_TIMEOUT:?}: {pending}"
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// One readiness check; the error says what is still missing.
fn probe_serving(dir: &Path) -> Result<Serving, String> {
    let admin_text = fs::read_to_string(dir.join(ADMIN_ADDRESS_FILE))
        .map_err(|_| "admin address file not written yet".to_owned())?;
    // The file may be observed half-written; a parse failure just means "not yet".
    let admin: SocketAddr = admin_text
        .trim()
        .parse()
        .map_err(|_| format!("admin address file holds {admin_text:?}"))?;
    // LIVE first: by then initial listeners (static or from LDS) are all known.
    let ready = try_admin_get(admin, "/ready")?;
    if ready.trim() != "LIVE" {
        return Err(format!("/ready says {:?}", ready.trim()));
    }
    let listeners = bound_listeners(&try_admin_get(admin, "/listeners?format=json")?)?;
    Ok(Serving { admin, listeners })
}

fn try_admin_get(admin: SocketAddr, path: &str) -> Result<String, String> {
    let response =
        try_request(admin, "GET", path, &[]).map_err(|err| format!("GET {path}: {err}"))?;
    if response.status == 200 {
        Ok(response.body)
    } else {
        Err(format!("GET {path}: status {}", response.status))
    }
}

/// Addresses of the listeners that have a socket, from admin `/listeners?format=json`.
///
/// A listener bound to port 0 reports its real port once bound, so a zero port
/// means "not yet". Internal listeners report an `envoy_internal_address`
/// instead and have nothing to connect to: they are skipped.
fn bound_listeners(listeners_json: &str) -> Result<BTreeMap<String, SocketAddr>, String> {
    let parsed: Value = serde_json::from_str(listeners_json)
        .map_err(|err| format!("/listeners is not JSON ({err})"))?;
    let statuses = parsed["listener_statuses"]
        .as_array()
        .ok_or_else(|| format!("/listeners has no `listener_statuses`: {listeners_json}"))?;
    let mut bound = BTreeMap::new();
    for status in statuses {
        let name = status["name"].as_str().unwrap_or_default();
        let socket = &status["local_address"]["socket_address"];
        if socket.is_null() {
            continue;
        }
        let port = socket["port_value"].as_u64().unwrap_or(0);
        let port = u16::try_from(port).ok().filter(|&port| port != 0);
        let Some(port) = port else {
            return Err(format!("listener `{name}` is not bound yet"));
        };
        let ip: IpAddr = socket["address"]
            .as_str()
            .and_then(|address| address.parse().ok())
            .ok_or_else(|| format!("listener `{name}` has address {}", socket["address"]))?;
        bound.insert(name.to_owned(), SocketAddr::new(connectable(ip), port));
    }
    Ok(bound)
}

/// A wildcard bind address is reachable on loopback.
fn connectable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn startup_report(reason: &str, dir: &Path) -> String {
    format!(
        "{reason}\n--- envoy.log (last {TAIL_LINES} lines) ---\n{}\n--- stderr (last {TAIL_LINES} lines) ---\n{}\n--- files in {} (set RAMPART_KEEP_TMP=1 to keep them)",
        tail(&read_or_empty(&dir.join(LOG_FILE)), TAIL_LINES),
        tail(&read_or_empty(&dir.join(STDERR_FILE)), TAIL_LINES),
        dir.display()
    )
}

fn admin_request(admin: SocketAddr, method: &str, path: &str) -> String {
    let response = try_request(admin, method, path, &[])
        .unwrap_or_else(|err| panic!("admin {method} {path} on {admin} failed: {err}"));
    assert!(
        (200..300).contains(&response.status),
        "admin {method} {path} answered {}: {}",
        response.status,
        response.body
    );
    response.body
}

/// Parses admin `/stats?format=json`: `{"stats": [{"name", "value"}, …, {"histograms": …}]}`.
fn parse_stats(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let parsed: Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let entries = parsed["stats"]
        .as_array()
        .ok_or_else(|| "no `stats` array".to_owned())?;
    Ok(entries
        .iter()
        .filter_map(|entry| Some((entry["name"].as_str()?.to_owned(), entry["value"].as_u64()?)))
        .collect())
}

/// `path` as text for a config file; Envoy configs are UTF-8.
fn utf8(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("path {} is not UTF-8", path.display()))
}

fn read_or_empty(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Calls `check` until it returns `Ok` or [`WAIT_TIMEOUT`] passes; the error of
/// the last attempt explains the timeout.
fn poll<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {WAIT_TIMEOUT:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

/// An HTTP response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order; names as sent, values decoded lossily from bytes.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunked or sized), as text (lossy).
    pub body: String,
}

impl Response {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether the server will close the connection after this response.
    fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// `GET path` on a new connection (`Connection: close`) with extra `headers`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    try_request(addr, "GET", path, headers)
        .unwrap_or_else(|err| panic!("GET {path} on {addr} failed: {err}"))
}

/// The wasm VM never trapped: nothing in the log says a callback failed, nor any of
/// `more_needles`.
pub fn assert_no_vm_failure(envoy: &Envoy, more_needles: &[&str]) {
    let log = envoy.log();
    let needles = [
        "Function: proxy_on",
        "wasm trap",
        "RuntimeError",
        "panicked",
    ];
    for needle in needles.iter().chain(more_needles) {
        assert!(
            !log.contains(needle),
            "VM failure ({needle}) in log:\n{log}"
        );
    }
}

/// A raw GET / to `host` with `headers` given as raw lines (bytes, no CRLF), closing the
/// connection after it.
pub fn raw_request(host: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("GET / HTTP/1.1\r\nhost: {host}\r\n").into_bytes();
    for h in headers {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// Sends `raw_request` bytes verbatim on a new connection and reads one response:
/// for requests a well-behaved client would not send (non-UTF-8 values, odd framing).
pub fn get_raw(addr: SocketAddr, raw_request: &[u8]) -> Response {
    try_get_raw(addr, raw_request)
        .unwrap_or_else(|err| panic!("raw request to {addr} failed: {err}"))
}

/// Like [`get_raw`], but returns I/O errors, e.g. to assert that Envoy closed
/// the connection without answering.
pub fn try_get_raw(addr: SocketAddr, raw_request: &[u8]) -> io::Result<Response> {
    let mut connection = connect(addr)?;
    connection.get_mut().write_all(raw_request)?;
    read_response(&mut connection)
}

/// A keep-alive client: reuses one connection and reconnects when the server closed it.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
    connections: u64,
}

impl Client {
    /// A client for `addr`; it connects on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connection: None,
            connections: 0,
        }
    }

    /// How many connections the client has opened (reconnections included).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// `GET path` with extra `headers` on the kept-alive connection.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_get(path, headers)
            .unwrap_or_else(|err| panic!("GET {path} on {} failed: {err}", self.addr))
    }

    /// Like [`Client::get`], but returns I/O errors.
    pub fn try_get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
        let request = encode_request("GET", path, self.addr, headers, true);
        if let Some(mut connection) = self.connection.take() {
            match exchange(&mut connection, &request) {
                Ok(response) => return Ok(self.keep(connection, response)),
                // The server may close an idle connection at any time; a GET is
                // safe to resend on a fresh one.
                Err(err) if is_stale_connection(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let mut connection = connect(self.addr)?;
        self.connections += 1;
        let response = exchange(&mut connection, &request)?;
        Ok(self.keep(connection, response))
    }

    fn keep(&mut self, connection: BufReader<TcpStream>, response: Response) -> Response {
        if !response.closes_connection() {
            self.connection = Some(connection);
        }
        response
    }
}

fn is_stale_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut connection = connect(addr)?;
    exchange(
        &mut connection,
        &encode_request(method, path, addr, headers, false),
    )
}

fn connect(addr: SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

fn exchange(connection: &mut BufReader<TcpStream>, request: &[u8]) -> io::Result<Response> {
    connection.get_mut().write_all(request)?;
    read_response(connection)
}

fn encode_request(
    method: &str,
    path: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    keep_alive: bool,
) -> Vec<u8> {
    // `write!` to a String cannot fail, hence the ignored results.
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        let _ = write!(head, "host: {addr}\r\n");
    }
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !keep_alive {
        head.push_str("connection: close\r\n");
    }
    if method != "GET" {
        // Admin POSTs carry no body; HTTP/1.1 needs that said explicitly.
        head.push_str("content-length: 0\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Reads one response, skipping interim 1xx responses.
fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    loop {
        let status = parse_status_line(&read_line(reader)?)?;
        let headers = read_headers(reader)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = read_body(reader, status, &headers)?;
        return Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
}

/// One line without its CRLF; EOF before any byte is an error (no response).
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    while line
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse()
            .map_err(|_| invalid(format!("bad status line {line:?}"))),
        _ => Err(invalid(format!("bad status line {line:?}"))),
    }
}

fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

fn read_body(
    reader: &mut impl BufRead,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<Vec<u8>> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    if status == 204 || status == 304 {
        return Ok(Vec::new());
    }
    if find("transfer-encoding").is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
    {
        return read_chunked(reader);
    }
    let mut body = Vec::new();
    match find("content-length") {
        Some(length) => {
            let length: u64 = length
                .parse()
                .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
            reader.take(length).read_to_end(&mut body)?;
            if body.len() as u64 != length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of {length} bytes", body.len()),
                ));
            }
        }
        // No framing: the body runs until the server closes the connection.
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailer fields, if any, end with an empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF".to_owned()));
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// ---------------------------------------------------------------------------
// Bootstrap builder
// ---------------------------------------------------------------------------

/// Builds an Envoy 1.40 bootstrap for tests: a `main` listener whose routes send
/// the canary route-header value to cluster `canary` and everything else to
/// `stable`; both clusters end in internal listeners that answer directly, so a
/// test needs no upstream server and no extra port.
///
/// Responses carry `x-served-by: canary|stable` and echo the route header the
/// upstream saw in `x-seen-route`. The access log (`Envoy::access_log`) has one
/// line per request: `%RESPONSE_CODE% %UPSTREAM_CLUSTER% <rampart decision>`.
///
/// The `main` listener takes HTTP/1.1 and HTTP/2 (h2c) alike (codec `AUTO`).
#[derive(Clone, Debug)]
pub struct Bootstrap {
    plugin_config: Option<String>,
    node_metadata: Value,
    pre_filters: Vec<Value>,
    route_header: String,
    canary_value: String,
    http2_upstreams: Option<(SocketAddr, SocketAddr)>,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Self {
            plugin_config: None,
            node_metadata: json!({ "CONFIG_REV": "r42" }),
            pre_filters: Vec::new(),
            route_header: "x-rampart-route".to_owned(),
            canary_value: "canary".to_owned(),
            http2_upstreams: None,
        }
    }
}

impl Bootstrap {
    /// No filter before the router, node metadata `{"CONFIG_REV": "r42"}`,
    /// route header `x-rampart-route: canary`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the Rampart wasm filter with this plugin configuration (a contract as JSON text).
    pub fn plugin_config(mut self, config: &str) -> Self {
        self.plugin_config = Some(config.to_owned());
        self
    }

    /// Replaces the node metadata (what `["xds","node","metadata",KEY]` reads).
    pub fn node_metadata(mut self, metadata: Value) -> Self {
        self.node_metadata = metadata;
        self
    }

    /// Appends an HTTP filter (`{"name", "typed_config"}`) that runs before the
    /// wasm filter, e.g. `header_to_metadata` feeding dynamic metadata.
    pub fn pre_filter(mut self, filter: Value) -> Self {
        self.pre_filters.push(filter);
        self
    }

    /// Sets the header the routes match and the value that selects the canary.
    pub fn route_header(mut self, name: &str, canary_value: &str) -> Self {
        self.route_header = name.to_owned();
        self.canary_value = canary_value.to_owned();
        self
    }

    /// Sends the `canary` and `stable` clusters to these HTTP/2 servers (e.g.
    /// [`grpc::Upstream`]s) instead of the internal listeners that answer directly.
    pub fn http2_upstreams(mut self, canary: SocketAddr, stable: SocketAddr) -> Self {
        self.http2_upstreams = Some((canary, stable));
        self
    }

    /// The bootstrap as JSON text, for [`Envoy::start`].
    pub fn build(&self) -> String {
        self.to_value().to_string()
    }

    /// The bootstrap as a JSON value, for tests that adjust it before starting.
    pub fn to_value(&self) -> Value {
        json!({
            "node": {
                "id": "rampart-test",
                "cluster": "rampart-test",
                "metadata": self.node_metadata,
            },
            "admin": { "address": loopback_any_port() },
            "stats_config": { "stats_tags": rampart_stats_tags() },
            "bootstrap_extensions": [{
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": typed("envoy.extensions.bootstrap.internal_listener.v3.InternalListener", json!({})),
            }],
            "static_resources": self.static_resources(),
        })
    }

    fn static_resources(&self) -> Value {
        match self.http2_upstreams {
            Some((canary, stable)) => json!({
                "listeners": [self.main_listener()],
                "clusters": [http2_cluster("canary", canary), http2_cluster("stable", stable)],
            }),
            None => json!({
                "listeners": [
                    self.main_listener(),
                    self.upstream_listener("canary"),
                    self.upstream_listener("stable"),
                ],
                "clusters": [internal_cluster("canary"), internal_cluster("stable")],
            }),
        }
    }

    /// The contract's `explain.response_header`, or the examples' `x-rampart-decision`.
    fn debug_header(&self) -> String {
        self.plugin_config
            .as_deref()
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|c| c["explain"]["response_header"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "x-rampart-decision".to_owned())
    }

    fn main_listener(&self) -> Value {
        let mut http_filters = self.pre_filters.clone();
        if let Some(config) = &self.plugin_config {
            http_filters.push(wasm_filter(config));
        }
        http_filters.push(router_filter());
        // The debug header comes from Envoy, as `rampart render` configures it: the
        // filter records its decision in filter state and never touches responses.
        let debug_header = json!([{ "header": {
            "key": self.debug_header(),
            "value": rampart::decide::DECISION_FORMAT,
        }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }]);
        let routes = json!([
            {
                "match": {
                    "prefix": "/",
                    "headers": [{
                        "name": self.route_header,
                        "string_match": { "exact": self.canary_value },
                    }],
                },
                "route": { "cluster": "canary" },
                "response_headers_to_add": debug_header,
            },
            {
                "match": { "prefix": "/" },
                "route": { "cluster": "stable" },
                "response_headers_to_add": debug_header,
            },
        ]);
        let access_log = json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": typed("envoy.extensions.access_loggers.file.v3.FileAccessLog", json!({
                "path": format!("{TMPDIR_PLACEHOLDER}/{ACCESS_LOG_FILE}"),
                "log_format": { "text_format_source": { "inline_string":
                    "%RESPONSE_CODE% %UPSTREAM_CLUSTER% %FILTER_STATE(wasm.rampart.decision:PLAIN)%\n" } },
            })),
        }]);
        let mut manager = http_connection_manager("main", routes, http_filters);
        manager["access_log"] = access_log;
        json!({
            "name": "main",
            "address": loopback_any_port(),
            "filter_chains": [{ "filters": [network_filter(manager)] }],
        })
    }

    /// An internal listener standing in for the `side` upstream: it answers
    /// `200 <side>\n` itself and says which route value reached it.
    fn upstream_listener(&self, side: &str) -> Value {
        let routes = json!([{
            "match": { "prefix": "/" },
            "direct_response": { "status": 200, "body": { "inline_string": format!("{side}\n") } },
            "response_headers_to_add": [
                { "header": { "key": "x-served-by", "value": side } },
                // Envoy omits the header when the request had none.
                { "header": { "key": "x-seen-route", "value": format!("%REQ({})%", self.route_header) } },
            ],
        }]);
        let manager =
            http_connection_manager(&format!("{side}_upstream"), routes, vec![router_filter()]);
        json!({
            "name": format!("{side}_upstream"),
            "internal_listener": {},
            "filter_chains": [{ "filters": [network_filter(manager)] }],
        })
    }
}

/// The `stats_tags` rules Rampart's bootstraps carry: the contract and input tags in
/// the filter's metric names become labels (`rampart::metrics::stats_tags`).
pub fn rampart_stats_tags() -> Value {
    rampart::metrics::stats_tags()
        .into_iter()
        .map(|(tag, regex)| json!({ "tag_name": tag, "regex": regex }))
        .collect()
}

/// Whether `/stats` name `name` is one of the filter's metrics.
pub fn is_rampart_stat(name: &str) -> bool {
    name.strip_prefix(rampart::metrics::ENVOY_PREFIX)
        .is_some_and(|rest| rest.starts_with("rampart.") || rest.starts_with("rampart_contract="))
}

/// The `/stats` name of one of `contract`'s metrics, written as before tags existed:
/// `requests`, `drift_paused`, `field.<input>.<counter>`.
pub fn stat_name(contract: &str, metric: &str) -> String {
    use rampart::metrics::{contract_metric, field_metric, FieldCounter, ENVOY_PREFIX};
    let name = metric
        .strip_prefix("field.")
        .and_then(|rest| rest.rsplit_once('.'))
        .and_then(|(input, counter)| {
            FieldCounter::ALL
                .iter()
                .find(|c| c.name() == counter)
                .map(|&c| field_metric(contract, input, c))
        })
        .unwrap_or_else(|| contract_metric(contract, metric));
    format!("{ENVOY_PREFIX}{name}")
}

/// The Rampart wasm HTTP filter with `plugin_config`, as `{"name", "typed_config"}`:
/// the shape of an HTTP filter entry and of an ECDS `TypedExtensionConfig`.
pub fn wasm_filter(plugin_config: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": rampart_cli::ecds::wasm_filter_config_text(utf8(&wasm_path()), plugin_config),
    })
}

/// `fields` with the `@type` of the protobuf message `type_name`.
fn typed(type_name: &str, mut fields: Value) -> Value {
    fields["@type"] = Value::String(format!("type.googleapis.com/{type_name}"));
    fields
}

fn loopback_any_port() -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } })
}

fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", json!({})),
    })
}

fn network_filter(http_connection_manager: Value) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": http_connection_manager,
    })
}

fn http_connection_manager(stat_prefix: &str, routes: Value, http_filters: Vec<Value>) -> Value {
    typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [{ "name": stat_prefix, "domains": ["*"], "routes": routes }],
            },
            "http_filters": http_filters,
        }),
    )
}

/// A cluster whose only endpoint is the internal listener `<side>_upstream`.
fn internal_cluster(side: &str) -> Value {
    json!({
        "name": side,
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": side,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "envoy_internal_address": { "server_listener_name": format!("{side}_upstream") },
            } } }] }],
        },
    })
}

/// A cluster speaking HTTP/2 (cleartext) to the server at `addr`.
fn http2_cluster(side: &str, addr: SocketAddr) -> Value {
    json!({
        "name": side,
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": side,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port(),
            } } } }] }],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                json!({ "explicit_http_config": { "http2_protocol_options": {} } }),
            ),
        },
    })
}

/// The config header the example contract is locked to (`examples/snapshot.json`'s
/// `flags`), as a client sends it.
pub const FLAGS: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#;

/// The headers (or gRPC metadata) of a request for the example contract: the sticky
/// key, the config header and the tenant tier (which `tenant_metadata_filter` turns
/// into dynamic metadata).
pub fn carrying<'a>(user: &'a str, flags: &'a str, tier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-user-id", user),
        ("x-user-config", flags),
        ("x-tenant-tier", tier),
    ]
}

/// A request from `user` whose config matches the example lock.
pub fn matching(user: &str) -> Vec<(&str, &str)> {
    carrying(user, FLAGS, "gold")
}

/// The example contract (`examples/contract.json`) as JSON, for tests to adapt.
pub fn example_contract() -> Value {
    serde_json::from_slice(&std::fs::read(repo_root().join("examples/contract.json")).unwrap())
        .unwrap()
}

/// `header_to_metadata`: `x-tenant-tier` → dynamic metadata `tenant.tier`, as the demo does.
pub fn tenant_metadata_filter() -> Value {
    json!({
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
            "request_rules": [{
                "header": "x-tenant-tier",
                "on_header_present": { "metadata_namespace": "tenant", "key": "tier", "type": "STRING" },
                "remove": true,
            }],
        },
    })
}
