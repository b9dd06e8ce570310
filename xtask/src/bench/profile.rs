//! Where Envoy's time goes while it serves Rampart: `perf` samples of the whole process
//! under load, reduced to the few frames worth reading.
//!
//! Two kinds of frame cannot be named and are grouped instead of listed address by
//! address: code V8 generated at run time (the compiled wasm module and V8's stubs) lives
//! in anonymous memory that perf knows no object for, and the official Envoy binary is
//! stripped, so its own functions show as bare addresses too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{command_output, on_path};
use crate::{install, process};
use crate::{Error, Result};

/// Sampling frequency: off the 1000 Hz of common timers, so samples do not lock step
/// with periodic work.
pub const FREQUENCY: u32 = 999;
/// Frames the report keeps.
pub const TOP_FRAMES: usize = 25;
/// The label of every sample in code V8 generated.
pub const JIT_LABEL: &str = "JIT code (wasm/V8)";

/// `perf`, installed from Debian (`linux-perf`) when missing, checked to run.
pub fn ensure_perf() -> Result<PathBuf> {
    install::debian("perf", &["linux-perf"], || on_path("perf").is_some())?;
    let perf = on_path("perf")
        .ok_or_else(|| Error::new("perf is still missing after installing linux-perf"))?;
    // Debian's `perf` can be present yet unable to run (a wrapper without the tools
    // for this kernel); say so plainly rather than fail in the middle of a recording.
    let works = Command::new(&perf)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !works {
        return Err(Error::new(format!(
            "`{} --version` fails: {}",
            perf.display(),
            command_output(Command::new(&perf).arg("--version"))
                .unwrap_or_default()
                .trim()
        )));
    }
    Ok(perf)
}

/// Samples process `pid` with call graphs for `seconds` into `data`.
pub fn record(perf: &Path, pid: u32, seconds: u32, data: &Path) -> Result<()> {
    let mut cmd = Command::new(perf);
    cmd.args(["record", "-F", &FREQUENCY.to_string(), "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()]);
    process::capture_success(&mut cmd)?;
    Ok(())
}

/// Self time per (object, symbol) of `data`, as `perf report` prints it with tabs
/// between the fields.
pub fn report(perf: &Path, data: &Path) -> Result<String> {
    let mut cmd = Command::new(perf);
    cmd.arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "--no-children", "--sort", "dso,symbol"])
        .args(["-g", "none", "--percent-limit", "0", "-t", "\t"]);
    let output = process::capture_success(&mut cmd)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One line of the reduced profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Share of all samples, in percent.
    pub percent: f64,
    /// Object (binary, library, kernel) or the JIT label.
    pub object: String,
    /// Symbol, or a note on the addresses grouped in this line.
    pub symbol: String,
}

/// True for a symbol perf could not name: a bare hexadecimal address.
fn unresolved(symbol: &str) -> bool {
    symbol
        .strip_prefix("0x")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// True for an object perf knows no file for: anonymous memory, where V8 puts the code
/// it generates (perf-<pid>.map would name it, but V8 in Envoy cannot be asked to write one).
fn anonymous(object: &str) -> bool {
    object == "[unknown]"
        || object.starts_with("[JIT]")
        || object.starts_with("perf-")
        || object.starts_with("//anon")
        || object.starts_with("[anon")
}

/// Reduces `perf report`'s tab-separated rows to frames, unresolved addresses grouped:
/// anonymous memory under [`JIT_LABEL`], a stripped object's addresses as one line for
/// that object. Sorted by share, largest first.
pub fn frames(raw: &str) -> Vec<Frame> {
    // (object, symbol) -> (percent, addresses grouped)
    let mut grouped: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for line in raw.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(percent), Some(object), Some(symbol)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(percent) = percent.trim().trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        let object = object.trim();
        // perf marks user space `[.]` and the kernel `[k]` before the name.
        let symbol = symbol.trim();
        let bare = symbol
            .strip_prefix("[.] ")
            .or_else(|| symbol.strip_prefix("[k] "))
            .unwrap_or(symbol)
            .trim();
        let key = if anonymous(object) {
            (JIT_LABEL.to_owned(), String::new())
        } else if unresolved(bare) {
            (object.to_owned(), String::new())
        } else {
            (object.to_owned(), symbol.to_owned())
        };
        let entry = grouped.entry(key).or_insert((0.0, 0));
        entry.0 += percent;
        entry.1 += 1;
    }
    let mut frames: Vec<Frame> = grouped
        .into_iter()
        .map(|((object, symbol), (percent, addresses))| {
            let symbol = if !symbol.is_empty() {
                symbol
            } else if object == JIT_LABEL {
                format!("({addresses} addresses in generated code)")
            } else {
                format!("({addresses} unresolved addresses: no symbols)")
            };
            Frame {
                percent,
                object,
                symbol,
            }
        })
        .collect();
    frames.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    frames
}

/// Share per object: where the time goes at the coarsest level.
pub fn by_object(frames: &[Frame]) -> Vec<(String, f64)> {
    let mut objects: BTreeMap<&str, f64> = BTreeMap::new();
    for frame in frames {
        *objects.entry(&frame.object).or_default() += frame.percent;
    }
    let mut objects: Vec<(String, f64)> = objects
        .into_iter()
        .map(|(object, percent)| (object.to_owned(), percent))
        .collect();
    objects.sort_by(|a, b| b.1.total_cmp(&a.1));
    objects
}

/// One variant's recording.
#[derive(Clone, Debug)]
pub struct Profiled {
    /// Variant id.
    pub id: String,
    /// Envoy's CPU per request over the load, in µs.
    pub cpu_us: f64,
    /// `perf report`'s output.
    pub raw: String,
    /// What, when and how fast, for the summary.
    pub header: String,
}

/// Envoy's CPU per request by object for each profile (its share of the samples times
/// the CPU per request), the last profile minus the first, and a total row: where the
/// extra microseconds of the last variant go.
pub fn compare(profiles: &[Profiled]) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (profiles.first(), profiles.last()) else {
        return out;
    };
    let per_object: Vec<BTreeMap<String, f64>> = profiles
        .iter()
        .map(|p| {
            by_object(&frames(&p.raw))
                .into_iter()
                .map(|(object, percent)| (object, percent / 100.0 * p.cpu_us))
                .collect()
        })
        .collect();
    // Objects in the order of the last profile's share, then any only the others have.
    let mut objects: Vec<String> = by_object(&frames(&last.raw))
        .into_iter()
        .map(|(object, _)| object)
        .collect();
    for map in &per_object {
        for object in map.keys() {
            if !objects.contains(object) {
                objects.push(object.clone());
            }
        }
    }
    let _ = writeln!(
        out,
        "# Envoy CPU per request by object, µs (share of the samples × CPU per request):"
    );
    let width = objects
        .iter()
        .map(|o| o.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let diff_label = format!("{} − {}", last.id, first.id);
    let mut line = format!("{:<width$}", "object");
    for p in profiles {
        let _ = write!(line, "  {:>9}", p.id);
    }
    let _ = write!(line, "  {diff_label:>14}");
    let _ = writeln!(out, "{}", line.trim_end());
    let mut row = |name: &str, values: Vec<f64>| {
        let mut line = format!("{name:<width$}");
        for v in &values {
            let _ = write!(line, "  {v:>9.2}");
        }
        let delta = values.last().copied().unwrap_or(0.0) - values.first().copied().unwrap_or(0.0);
        let _ = write!(line, "  {delta:>+14.2}");
        let _ = writeln!(out, "{line}");
    };
    for object in &objects {
        let values = per_object
            .iter()
            .map(|m| m.get(object).copied().unwrap_or(0.0))
            .collect();
        row(object, values);
    }
    row("total", profiles.iter().map(|p| p.cpu_us).collect());
    out
}

/// The profile file: `header`, perf's sample count, the share per object and the top
/// `top` frames, as plain text.
pub fn summarise(raw: &str, header: &str, top: usize) -> String {
    let frames = frames(raw);
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if let Some(samples) = raw
        .lines()
        .find_map(|l| l.strip_prefix("# Samples:").map(str::trim))
    {
        let _ = writeln!(out, "# Samples: {samples}");
    }
    if frames.is_empty() {
        out.push_str("# perf reported no samples.\n");
        return out;
    }
    let objects: Vec<String> = by_object(&frames)
        .iter()
        .take(6)
        .map(|(object, percent)| format!("{object} {percent:.1}%"))
        .collect();
    let _ = writeln!(out, "# By object: {}.", objects.join(", "));
    let width = frames
        .iter()
        .take(top)
        .map(|f| f.object.chars().count())
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "\n{:>6}  {:<width$}  symbol", "self", "object");
    for frame in frames.iter().take(top) {
        let _ = writeln!(
            out,
            "{:>5.1}%  {:<width$}  {}",
            frame.percent, frame.object, frame.symbol
        );
    }
    let rest = frames.len().saturating_sub(top);
    if rest > 0 {
        let share: f64 = frames.iter().skip(top).map(|f| f.percent).sum();
        let _ = writeln!(out, "{share:>5.1}%  ({rest} more frames)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str =
        "# To display the perf.data header info, please use --header/--header-only options.\n\
        #\n\
        # Samples: 4K of event 'cpu-clock:pppH'\n\
        # Event count (approx.): 1000000000\n\
        #\n\
        # Overhead\tShared Object\tSymbol\n\
        #\n\
        20.00%\t[unknown]\t[.] 0x00003e5a1c0041a2\n\
        15.00%\tenvoy\t[.] 0x0000000001f2a3b4\n\
        10.00%\t[unknown]\t[.] 0x00003e5a1c0042ff\n\
        8.00%\t[kernel.kallsyms]\t[k] _raw_spin_unlock_irqrestore\n\
        5.00%\tenvoy\t[.] 0x0000000001f00000\n\
        2.50%\tlibc.so.6\t[.] __memmove_avx_unaligned_erms\n\
        1.00%\t[JIT] tid 42\t[.] 0x00007f0000001000\n";

    #[test]
    fn unresolved_addresses_are_grouped_per_object_and_jit_code_is_labelled() {
        let frames = frames(RAW);
        assert_eq!(frames[0].object, JIT_LABEL);
        assert!((frames[0].percent - 31.0).abs() < 1e-9);
        assert_eq!(frames[0].symbol, "(3 addresses in generated code)");
        assert_eq!(frames[1].object, "envoy");
        assert!((frames[1].percent - 20.0).abs() < 1e-9);
        assert_eq!(frames[1].symbol, "(2 unresolved addresses: no symbols)");
        assert_eq!(frames[2].symbol, "[k] _raw_spin_unlock_irqrestore");
        assert_eq!(frames.len(), 4);
    }

    #[test]
    fn the_summary_keeps_the_top_frames_and_counts_the_rest() {
        let text = summarise(RAW, "Envoy under wrk on A3.", 2);
        assert!(text.starts_with("# Envoy under wrk on A3.\n"), "{text}");
        assert!(
            text.contains("# Samples: 4K of event 'cpu-clock:pppH'"),
            "{text}"
        );
        assert!(
            text.contains(
                "# By object: JIT code (wasm/V8) 31.0%, envoy 20.0%, [kernel.kallsyms] 8.0%"
            ),
            "{text}"
        );
        assert!(
            text.contains(" 31.0%  JIT code (wasm/V8)  (3 addresses"),
            "{text}"
        );
        assert!(text.contains(" 10.5%  (2 more frames)"), "{text}");
        assert!(!text.contains("0x0000"), "{text}");
        assert!(summarise("", "h", 5).contains("no samples"));
    }

    #[test]
    fn the_comparison_spreads_each_variants_cpu_over_its_objects() {
        let floor = Profiled {
            id: "A3floor".into(),
            cpu_us: 40.0,
            raw: "50.00%\tenvoy\t[.] 0x1\n25.00%\t[kernel.kallsyms]\t[k] tcp\n25.00%\t[unknown]\t[.] 0x2\n"
                .into(),
            header: String::new(),
        };
        let a3 = Profiled {
            id: "A3".into(),
            cpu_us: 50.0,
            raw: RAW.into(),
            header: String::new(),
        };
        let text = compare(&[floor, a3]);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in {text}"))
                .split_whitespace()
                .rev()
                .take(3)
                .map(|v| v.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        };
        // Columns reversed: difference, A3, A3floor.
        // JIT: 31 % of 50 µs against 25 % of 40 µs.
        assert_eq!(line("JIT code"), vec![5.5, 15.5, 10.0]);
        assert_eq!(line("envoy"), vec![-10.0, 10.0, 20.0]);
        assert_eq!(line("libc.so.6"), vec![1.25, 1.25, 0.0]);
        assert_eq!(line("total"), vec![10.0, 50.0, 40.0]);
        assert!(
            text.lines().nth(1).unwrap().ends_with("A3 − A3floor"),
            "{text}"
        );
        assert!(compare(&[]).is_empty());
    }

    #[test]
    fn only_bare_hex_is_unresolved() {
        assert!(unresolved("0x1f2a"));
        assert!(!unresolved("0x"));
        assert!(!unresolved("0xnothex"));
        assert!(!unresolved("memcpy"));
    }
}
