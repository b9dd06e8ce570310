//! A real Prometheus scraping Envoys' `/stats/prometheus` every second, one job each.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::ecds::eventually;
use super::{get, TempDir};

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP API.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts `RAMPART_PROMETHEUS` (else `prometheus` on PATH) scraping each
    /// `(job, Envoy admin address)`, and waits until it is ready.
    pub fn start(jobs: &[(&str, SocketAddr)]) -> Self {
        let binary = std::env::var_os("RAMPART_PROMETHEUS")
            .map_or_else(|| PathBuf::from("prometheus"), PathBuf::from);
        let dir = TempDir::new("prometheus");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, admin) in jobs {
            config.push_str(&format!(
                "- job_name: {job}\n  metrics_path: /stats/prometheus\n  \
                 static_configs:\n  - targets: ['{admin}']\n"
            ));
        }
        let config = dir.write("prometheus.yml", &config);
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): `cargo xtask test` installs it (Debian package prometheus)",
                    binary.display()
                )
            });
        let prometheus = Self {
            child,
            addr,
            _dir: dir,
        };
        eventually("Prometheus ready", || {
            TcpStream::connect(addr).is_ok() && get(addr, "/-/ready", &[]).status == 200
        });
        prometheus
    }

    /// The result vector of an instant PromQL query.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let response = get(self.addr, &format!("/api/v1/query?query={encoded}"), &[]);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"].as_array().unwrap().clone()
    }

    /// The value of a single-series query, 0 if it has no result.
    pub fn value(&self, promql: &str) -> f64 {
        let result = self.query(promql);
        assert!(result.len() <= 1, "{promql}: {result:?}");
        result.first().map_or(0.0, |r| {
            r["value"][1].as_str().unwrap().parse::<f64>().unwrap()
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
