//! Instructions per request: Envoy run by valgrind's callgrind, which counts every
//! instruction the process executes in user space (`cargo xtask bench --instructions`,
//! and at the end of every full run).
//!
//! Envoy's CPU time per request moves with whatever else the machine runs; on a shared
//! host a difference of a microsecond can drown in it. An instruction count does not: the
//! same requests through the same binaries execute the same instructions, whatever the
//! load around them, so two runs agree to a few parts in a thousand and a difference of a
//! few hundred instructions is real. What it cannot see is the kernel (syscalls, the
//! loopback network) and what an instruction costs (cache misses, branches): it says where
//! the work is, the CPU figures say what it costs.
//!
//! Callgrind knows the objects code comes from: the Envoy binary (stripped, so its
//! functions are addresses), the C library, and code generated at run time (V8's compiled
//! wasm modules and the wrappers it makes for their calls; LuaJIT's traces), which lives
//! in anonymous memory and is counted as one class. Part of Envoy's text also comes out
//! without an object; the process's mappings put it back where it belongs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::stats::Spread;
use crate::{install, process};
use crate::{Error, Result};

/// What `--instructions` writes and the report shows.
pub const INSTRUCTIONS_FILE: &str = "bench/instructions.txt";
/// How long Envoy may take to start under callgrind (tens of times slower than bare).
pub const STARTUP: Duration = Duration::from_secs(600);
/// Seconds of load before counting: V8 compiles the modules (the first runs after a
/// shorter warm-up still count some of its compiling), pools fill.
pub const WARMUP_SECONDS: u32 = 10;
/// Seconds each Envoy is counted with no load, for what it runs idle per second.
pub const IDLE_SECONDS: u32 = 5;
/// `wrk` connections: under callgrind Envoy is the bottleneck with two already, and
/// each connection's set-up would be spread over the run's few thousand requests.
pub const CONNECTIONS: u32 = 2;
/// Seconds of the short and the long load of a counted run; under callgrind Envoy
/// serves a few hundred requests a second, so the long one serves a few thousand more.
pub const SHORT_SECONDS: u32 = 3;
/// See [`SHORT_SECONDS`].
pub const LONG_SECONDS: u32 = 10;
/// Wasm VMs one Envoy under callgrind holds: V8 reserves several GiB of address space
/// per instance (two per VM: main thread and worker), and valgrind maps far less than
/// the host would; three load where a dozen fail to instantiate.
pub const WASM_VMS_PER_ENVOY: usize = 3;
/// Counted runs per variant: two, to show the count repeats.
pub const RUNS: usize = 2;

/// The class of code generated at run time.
pub const GENERATED: &str = "generated code";
/// The object classes a count is split into, in the order the report lists them.
pub const CLASSES: [&str; 4] = ["Envoy", "C library", GENERATED, "other"];

/// valgrind and its `callgrind_control`, and where the counts go.
pub struct Callgrind {
    valgrind: PathBuf,
    control: PathBuf,
    dir: PathBuf,
}

impl Callgrind {
    /// valgrind (Debian package `valgrind`, installed when missing) writing into `dir`.
    pub fn ensure(dir: &Path) -> Result<Callgrind> {
        let valgrind = install::program("RAMPART_VALGRIND", "valgrind", "valgrind")?;
        let control = valgrind.with_file_name("callgrind_control");
        if !control.is_file() {
            return Err(Error::new(format!(
                "{} has no callgrind_control beside it",
                valgrind.display()
            )));
        }
        // Counts of an earlier run must not be taken for this one's.
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)
            .map_err(|err| Error::new(format!("cannot create {}: {err}", dir.display())))?;
        Ok(Callgrind {
            valgrind,
            control,
            dir: dir.to_path_buf(),
        })
    }

    /// The command that runs Envoy under callgrind: self-modifying code checked outside
    /// files (V8 and LuaJIT write the code they run), one count file per dump.
    pub fn wrapper(&self) -> Vec<OsString> {
        let mut out = self.dir.join("callgrind.out.%p").into_os_string();
        out = [OsString::from("--callgrind-out-file="), out]
            .into_iter()
            .collect();
        vec![
            self.valgrind.clone().into_os_string(),
            "--tool=callgrind".into(),
            "--smc-check=all-non-file".into(),
            out,
        ]
    }

    /// Sets the counts of process `pid` to zero.
    pub fn zero(&self, pid: u32) -> Result<()> {
        process::capture_success(Command::new(&self.control).arg("-z").arg(pid.to_string()))?;
        Ok(())
    }

    /// Dumps the counts of process `pid` since the last zero and reads them by object.
    pub fn dump(&self, pid: u32) -> Result<BTreeMap<String, u64>> {
        let before = self.dumps(pid);
        process::capture_success(Command::new(&self.control).arg("-d").arg(pid.to_string()))?;
        // The dump is written by the process itself, after the command returns; it is
        // complete once its `totals:` line is there.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let fresh: Vec<PathBuf> = self
                .dumps(pid)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            if let [file] = fresh.as_slice() {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                if text.lines().any(|line| line.starts_with("totals:")) {
                    let maps =
                        std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                    return parse(&text, &mappings(&maps))
                        .map_err(|err| Error::new(format!("{}: {err}", file.display())));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::new(format!(
                    "callgrind wrote no complete dump of process {pid} into {} within 60 s",
                    self.dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The dump files of `pid` so far (`callgrind.out.<pid>.<n>`).
    fn dumps(&self, pid: u32) -> Vec<PathBuf> {
        let prefix = format!("callgrind.out.{pid}.");
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok())
                    .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|entry| entry.path())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An executable mapping of a file in the counted process, and the class of its code.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    start: u64,
    end: u64,
    class: &'static str,
}

/// The executable file mappings in the text of `/proc/<pid>/maps`.
///
/// Callgrind names the object of most code, but not of all: part of the Envoy binary's
/// text comes out as `???`, like code generated at run time. Its addresses tell them
/// apart: those inside a mapping of a file are that file's code.
pub fn mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                class: class(path),
            })
        })
        .collect()
}

/// Instructions by object class ([`CLASSES`]) in a callgrind dump: the self cost of
/// every function, summed by the object (`ob=`) it belongs to; a function of no known
/// object (`???`, named by its address) counts for the file mapped at that address in
/// `maps`, if any, and as generated code otherwise.
///
/// The format: `ob=`/`fn=` set the current object and function (a name may be given
/// once as `(id) name` and referred to as `(id)` after); a line starting with a
/// position holds the cost of that position in the current function; `calls=` is
/// followed by one such line that is the cost of the call (inclusive), not the
/// function's own, and is skipped; `cob=`/`cfn=`/`cfi=` name the callee of that call.
pub fn parse(text: &str, maps: &[Mapping]) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut objects: BTreeMap<String, String> = BTreeMap::new();
    let mut functions: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::from("???");
    let mut current_class = class(&current);
    let mut skip_next = false;
    let mut saw_totals = false;
    let mut by_class: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        if skip_next {
            skip_next = false;
            continue;
        }
        if let Some(name) = line.strip_prefix("ob=") {
            current = compressed(&mut objects, name);
            current_class = class(&current);
            continue;
        }
        if let Some(name) = line.strip_prefix("fn=") {
            let function = compressed(&mut functions, name);
            current_class = class(&current);
            if current_class == GENERATED {
                let address = function
                    .strip_prefix("0x")
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                if let Some(mapped) = address.and_then(|a| {
                    maps.iter()
                        .find(|m| (m.start..m.end).contains(&a))
                        .map(|m| m.class)
                }) {
                    current_class = mapped;
                }
            }
            continue;
        }
        // Each defines a name id for later lines; the current function does not change.
        if let Some(name) = line.strip_prefix("cob=") {
            compressed(&mut objects, name);
            continue;
        }
        if let Some(name) = line.strip_prefix("cfn=") {
            compressed(&mut functions, name);
            continue;
        }
        if line.starts_with("calls=") {
            skip_next = true;
            continue;
        }
        if line.starts_with("totals:") || line.starts_with("summary:") {
            saw_totals = true;
            continue;
        }
        let Some(first) = line.chars().next() else {
            continue;
        };
        if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '*')) {
            continue;
        }
        let mut fields = line.split_whitespace();
        let _position = fields.next();
        let Some(cost) = fields.next() else {
            continue;
        };
        let cost: u64 = cost
            .parse()
            .map_err(|_| format!("a cost line that is not a count: `{line}`"))?;
        *by_class.entry(current_class.to_owned()).or_default() += cost;
    }
    if !saw_totals {
        return Err("no `totals:` line: not a complete callgrind dump".into());
    }
    Ok(by_class)
}

/// The name a compressed `(id) name` or `(id)` stands for, remembering new ids.
fn compressed(names: &mut BTreeMap<String, String>, field: &str) -> String {
    let field = field.trim();
    let Some(rest) = field.strip_prefix('(') else {
        return field.to_owned();
    };
    let Some((id, name)) = rest.split_once(')') else {
        return field.to_owned();
    };
    let name = name.trim();
    if name.is_empty() {
        names.get(id).cloned().unwrap_or_else(|| field.to_owned())
    } else {
        names.insert(id.to_owned(), name.to_owned());
        name.to_owned()
    }
}

/// The class of an object path, one of [`CLASSES`].
fn class(object: &str) -> &'static str {
    let file = object.rsplit('/').next().unwrap_or(object);
    if object == "???" || object.is_empty() {
        GENERATED
    } else if file == "envoy" {
        "Envoy"
    } else if file.starts_with("libc.so")
        || file.starts_with("libm.so")
        || file.starts_with("ld-linux")
        || file.starts_with("libpthread")
    {
        "C library"
    } else {
        "other"
    }
}

/// One variant's counted runs: instructions per request by class, per run.
pub struct Counted {
    /// The variant's id.
    pub id: &'static str,
    /// Per run: (requests counted, instructions per request by class).
    pub runs: Vec<(u64, BTreeMap<String, f64>)>,
}

impl Counted {
    /// Instructions per request in `class` (all classes for `None`), median over the runs.
    pub fn per_request(&self, class: Option<&str>) -> f64 {
        let values: Vec<f64> = self
            .runs
            .iter()
            .map(|(_, by_class)| match class {
                Some(class) => by_class.get(class).copied().unwrap_or(0.0),
                None => by_class.values().sum(),
            })
            .collect();
        Spread::of(&values).map_or(0.0, |spread| spread.median)
    }
}

/// The comparisons the report draws from the counts: (label, left, right), each a
/// difference of two variants' instructions per request.
pub const DIFFERENCES: &[(&str, &str, &str)] = &[
    ("Rampart's own work: A3 − A3floor", "A3", "A3floor"),
    ("the drift path: A3d − A3", "A3d", "A3"),
    ("Rampart over Lua: A3 − A4", "A3", "A4"),
    ("the floor over Lua: A3floor − A4", "A3floor", "A4"),
    ("header tier, own work: A3h − A3hfloor", "A3h", "A3hfloor"),
    ("header tier, over Lua: A3h − A4h", "A3h", "A4h"),
];

/// The text of [`INSTRUCTIONS_FILE`].
pub fn render(header: &str, counted: &[Counted]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {header}: Envoy run by valgrind's callgrind, each variant warmed {WARMUP_SECONDS} s,\n\
         # then {RUNS} runs, each a load of {SHORT_SECONDS} s and one of {LONG_SECONDS} s with `wrk` ({CONNECTIONS} connections):\n\
         # the instructions of the long less the short's (less what the idle Envoy runs in\n\
         # as long) over the requests the long one served more, so what every load costs\n\
         # once (connections, its start) drops out. User-space instructions only (no\n\
         # kernel); thousands per request; a run's figure follows its extra requests.\n"
    );
    let _ = write!(out, "{:<10} {:>16}", "variant", "per request");
    for class in CLASSES {
        let _ = write!(out, " {class:>15}");
    }
    let _ = writeln!(out, " {:>9}  runs (extra requests: k instr)", "over A0");
    let a0 = counted
        .iter()
        .find(|c| c.id == "A0")
        .map(|c| c.per_request(None));
    for c in counted {
        let total = c.per_request(None);
        let _ = write!(out, "{:<10} {:>16.1}", c.id, total / 1000.0);
        for class in CLASSES {
            let _ = write!(out, " {:>15.1}", c.per_request(Some(class)) / 1000.0);
        }
        let over = a0.map_or(String::from("–"), |a0| {
            format!("{:+.1}", (total - a0) / 1000.0)
        });
        let runs: Vec<String> = c
            .runs
            .iter()
            .map(|(requests, by_class)| {
                format!("{requests}: {:.2}", by_class.values().sum::<f64>() / 1000.0)
            })
            .collect();
        let _ = writeln!(out, " {over:>9}  {}", runs.join(", "));
    }
    let _ = writeln!(
        out,
        "\n# Differences, instructions per request (all code, and the part in generated code):\n"
    );
    let find = |id: &str| counted.iter().find(|c| c.id == id);
    for (label, left, right) in DIFFERENCES {
        let (Some(l), Some(r)) = (find(left), find(right)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{label:<40} {:>+8.0}   generated code {:>+8.0}",
            l.per_request(None) - r.per_request(None),
            l.per_request(Some(GENERATED)) - r.per_request(Some(GENERATED)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/x86_64-linux-gnu/libc.so.6
fl=(1) ???
fn=(1) memcpy
0x10 40
+2 2
ob=(2) /opt/envoy/_bin/envoy
fn=(2) 0x0000000000123
0x20 100
cob=(3) ???
cfn=(3) 0x00000b287c4772c8
calls=5 0x30
0x30 7000
ob=(3)
fn=(3)
0x30 700
fn=(4) 0x0000000000628d840
0x40 9000
ob=(1)
fn=(1)
0x10 8
totals: 9850
";

    #[test]
    fn a_dump_is_summed_by_object_class_without_the_cost_of_calls() {
        // Nothing mapped: every unnamed function is generated code.
        let counts = parse(DUMP, &[]).unwrap();
        assert_eq!(counts.get("C library"), Some(&50));
        assert_eq!(counts.get("Envoy"), Some(&100));
        assert_eq!(counts.get("generated code"), Some(&9700));
        assert_eq!(counts.values().sum::<u64>(), 9850);
    }

    #[test]
    fn unnamed_code_inside_a_mapped_file_counts_for_that_file() {
        let maps = mappings(
            "00108000-02185000 r--p 00000000 fe:00 53 /opt/envoy/_bin/envoy\n\
             02186000-062ec000 r-xp 0207d000 fe:00 53 /opt/envoy/_bin/envoy\n\
             0b08c80000-0b08d00000 rwxp 00000000 00:00 0 \n\
             7f0000000000-7f0000100000 r-xp 00000000 fe:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6\n",
        );
        assert_eq!(maps.len(), 2, "only executable file mappings: {maps:?}");
        let counts = parse(DUMP, &maps).unwrap();
        assert_eq!(counts.get("Envoy"), Some(&9100));
        assert_eq!(counts.get("generated code"), Some(&700));
    }

    #[test]
    fn an_unfinished_dump_is_refused() {
        let cut = DUMP.replace("totals: 9850\n", "");
        assert!(parse(&cut, &[]).unwrap_err().contains("totals"));
        assert!(parse("ob=x\n0x1 ten\ntotals: 1\n", &[]).is_err());
    }

    #[test]
    fn objects_fall_into_their_classes() {
        assert_eq!(class("/usr/lib/x86_64-linux-gnu/libc.so.6"), "C library");
        assert_eq!(class("/lib64/ld-linux-x86-64.so.2"), "C library");
        assert_eq!(
            class("/x/envoy-venv/lib/python3.11/site-packages/envoy/_bin/envoy"),
            "Envoy"
        );
        assert_eq!(class("???"), "generated code");
        assert_eq!(class("/usr/lib/x86_64-linux-gnu/libz.so.1"), "other");
    }

    #[test]
    fn the_report_lists_variants_and_their_differences() {
        let run = |envoy: f64, generated: f64| {
            let mut m = BTreeMap::new();
            m.insert("Envoy".to_owned(), envoy);
            m.insert("generated code".to_owned(), generated);
            (1000, m)
        };
        let counted = vec![
            Counted {
                id: "A0",
                runs: vec![run(100_000.0, 0.0)],
            },
            Counted {
                id: "A3floor",
                runs: vec![run(140_000.0, 30_000.0), run(140_000.0, 30_200.0)],
            },
            Counted {
                id: "A3",
                runs: vec![run(140_000.0, 36_800.0), run(140_000.0, 36_800.0)],
            },
        ];
        assert_eq!(counted[1].per_request(Some("generated code")), 30_100.0);
        let text = render("commit `x`", &counted);
        assert!(text.contains("A3floor"), "{text}");
        assert!(text.contains("+76.8"), "A3 over A0 in thousands: {text}");
        let own = text
            .lines()
            .find(|l| l.starts_with("Rampart's own work"))
            .unwrap();
        assert!(own.contains("+6700"), "{own}");
        assert!(!text.contains("A3d − A3"), "no A3d counted: {text}");
    }
}
