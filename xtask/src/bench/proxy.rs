//! The Envoy under test: started pinned to one core, read through its admin API and `/proc`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long Envoy may take to load the wasm modules and report LIVE.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `n` ports that were free a moment ago on 127.0.0.1 (held together so they differ).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let sockets = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|err| Error::new(format!("cannot pick a free port: {err}")))?;
    sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|err| Error::new(format!("cannot pick a free port: {err}")))
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Envoy {
    /// Starts `binary` with `config`, one worker thread, pinned to `cpu` when given.
    pub fn start(
        binary: &Path,
        config: &Path,
        admin_port: u16,
        cpu: Option<usize>,
        log: &Path,
    ) -> Result<Envoy> {
        Self::spawn(
            super::pinned(binary, cpu),
            config,
            admin_port,
            log,
            STARTUP_TIMEOUT,
        )
    }

    /// As [`Envoy::start`], but run by `wrapper` (a program and its arguments, e.g. a
    /// profiler that takes the command line to run after its own), which may slow the
    /// start-up down: it gets `startup` to report LIVE.
    pub fn start_under(
        wrapper: &[OsString],
        binary: &Path,
        config: &Path,
        admin_port: u16,
        cpu: Option<usize>,
        log: &Path,
        startup: Duration,
    ) -> Result<Envoy> {
        let (program, args) = wrapper
            .split_first()
            .ok_or_else(|| Error::new("an empty wrapper command for Envoy"))?;
        let mut cmd = super::pinned(Path::new(program), cpu);
        cmd.args(args).arg(binary);
        Self::spawn(cmd, config, admin_port, log, startup)
    }

    fn spawn(
        mut cmd: Command,
        config: &Path,
        admin_port: u16,
        log: &Path,
        startup: Duration,
    ) -> Result<Envoy> {
        let log_file = File::create(log)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", log.display())))?;
        let log_err = log_file
            .try_clone()
            .map_err(|err| Error::new(format!("cannot reopen {}: {err}", log.display())))?;
        cmd.arg("-c")
            .arg(config)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            // Warnings, plus the filter's own lines (start, contract, rate-limited drift).
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|err| Error::new(format!("cannot start Envoy: {err}")))?;
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            log: log.to_path_buf(),
        };
        envoy.wait_live(startup)?;
        Ok(envoy)
    }

    fn wait_live(&mut self, startup: Duration) -> Result<()> {
        let deadline = Instant::now() + startup;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::new(format!(
                    "Envoy exited during start-up ({status}); its log:\n{}",
                    tail(&self.log(), 30)
                )));
            }
            if let Ok((200, body)) = http_get(self.admin, "/ready", &[]) {
                if body.trim() == "LIVE" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::new(format!(
                    "Envoy was not LIVE after {}s; its log:\n{}",
                    startup.as_secs(),
                    tail(&self.log(), 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Envoy's process id (taskset execs Envoy in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An admin endpoint's body.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        match http_get(self.admin, path, &[]) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(Error::new(format!(
                "admin {path} answered {status}: {}",
                body.trim()
            ))),
            Err(err) => Err(Error::new(format!("admin {path}: {err}"))),
        }
    }

    /// Every counter and gauge in `/stats` (histograms are left out).
    pub fn stats(&self) -> Result<BTreeMap<String, u64>> {
        Ok(parse_stats(&self.admin_get("/stats")?))
    }

    /// CPU time Envoy has used so far (user + system, every thread), in microseconds.
    pub fn cpu_micros(&self, ticks_per_second: u64) -> Result<u64> {
        let path = format!("/proc/{}/stat", self.pid());
        let text = std::fs::read_to_string(&path)
            .map_err(|err| Error::new(format!("cannot read {path}: {err}")))?;
        let ticks = parse_cpu_ticks(&text)
            .ok_or_else(|| Error::new(format!("{path}: unexpected format")))?;
        Ok(ticks * 1_000_000 / ticks_per_second.max(1))
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path)
            .map_err(|err| Error::new(format!("cannot read {path}: {err}")))?;
        parse_rss_kib(&text).ok_or_else(|| Error::new(format!("{path}: no VmRSS line")))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may contain spaces; fields are counted after its closing `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `state` (field 3) is index 0 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `name: value` lines of Envoy's `/stats` whose value is an integer.
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The clock ticks per second `/proc` counts in (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// One HTTP/1.1 GET on a new connection; returns the status and the body.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| std::io::Error::other("malformed chunked body"))?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The payload of an HTTP/1.1 chunked body (Envoy's admin answers that way).
pub fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size_text = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (envoy (main)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_from_vmrss() {
        let status = "Name:\tenvoy\nVmPeak:\t 999 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_kib(status), Some(51234));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nLIVE\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n").as_deref(),
            Some("LIVE\nabc")
        );
        assert_eq!(dechunk("5\r\nLIV"), None);
        assert_eq!(dechunk("zz\r\n"), None);
    }

    #[test]
    fn stats_keep_integer_values_only() {
        let text = "a.b: 12\nwasmcustom.rampart_contract=.=x;.;rampart.requests: 7\ncluster.h: P0(nan,1)\n";
        let stats = parse_stats(text);
        assert_eq!(stats.get("a.b"), Some(&12));
        assert_eq!(
            stats.get("wasmcustom.rampart_contract=.=x;.;rampart.requests"),
            Some(&7)
        );
        assert!(!stats.contains_key("cluster.h"));
    }
}
