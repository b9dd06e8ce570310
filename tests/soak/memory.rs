//! Envoy's resident memory over the soak, sampled from /proc.

use rampart_test_support::Envoy;

/// Resident set sizes of one Envoy process: `(seconds since the start, KiB)`.
pub struct Memory {
    pid: u32,
    samples: Vec<(f64, u64)>,
}

/// What the samples show, in KiB (the slope in KiB per minute).
pub struct Summary {
    /// At the start.
    pub start: u64,
    /// At the end of the warm-up (the first quarter of the run).
    pub after_warmup: u64,
    /// At the end.
    pub end: u64,
    /// The largest sample.
    pub max: u64,
    /// The least-squares slope after the warm-up.
    pub slope: f64,
}

impl Memory {
    /// Starts sampling `envoy`'s process: a first sample at time 0.
    pub fn of(envoy: &Envoy) -> Memory {
        let pid = envoy_pid(envoy);
        Memory {
            pid,
            samples: vec![(0.0, rss_kib(pid))],
        }
    }

    /// Takes a sample `at` seconds since the start.
    pub fn sample(&mut self, at: f64) {
        self.samples.push((at, rss_kib(self.pid)));
    }

    /// The samples of a run that lasted `elapsed` seconds, summed up.
    pub fn summary(&self, elapsed: f64) -> Summary {
        let steady: Vec<(f64, u64)> = self
            .samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= elapsed / 4.0)
            .collect();
        let start = self.samples[0].1;
        Summary {
            start,
            after_warmup: steady.first().map_or(start, |s| s.1),
            end: self.samples.last().map_or(start, |s| s.1),
            max: self.samples.iter().map(|s| s.1).max().unwrap_or(start),
            slope: slope_kib_per_minute(&steady),
        }
    }
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
