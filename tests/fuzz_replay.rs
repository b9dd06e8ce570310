//! The fuzz targets' checks on stable Rust, in the normal test run: every committed seed
//! and every regression input (a crash libFuzzer once found) is replayed, then each seed
//! is mutated a few thousand times with a fixed-seed generator. libFuzzer itself runs
//! with `cargo xtask fuzz`; this keeps the targets compiling and their findings fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../fuzz/src/lib.rs"]
mod checks;
use rampart_test_support::rng;

use std::path::{Path, PathBuf};

use rng::Rng;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files directly in `dir` (none when it does not exist), sorted for a stable order.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn run(target: &str, check: checks::Check, name: &str, data: &[u8]) {
    if let Err(panic) = std::panic::catch_unwind(|| check(data)) {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!(
            "fuzz target `{target}` fails on {name} ({} bytes: {:?}): {message}",
            data.len(),
            String::from_utf8_lossy(&data[..data.len().min(200)])
        );
    }
}

#[test]
fn every_target_has_seeds() {
    for (target, _) in checks::TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds").join(target));
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{target} has {} seeds",
            seeds.len()
        );
    }
}

#[test]
fn seeds_and_regressions_pass_every_check() {
    let mut replayed = 0;
    for (target, check) in checks::TARGETS {
        for kind in ["seeds", "regressions"] {
            for (name, data) in inputs(&fuzz_dir().join(kind).join(target)) {
                run(target, *check, &name, &data);
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 30, "only {replayed} inputs replayed");
}

/// Bytes that matter to the decoders: JSON structure, escapes, chunk separators.
const INTERESTING: &[u8] = b"{}[]\",:\\u0e-+.9 \x00\x01\xfe\xff\xc3\xed";

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, donor: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < data.len() => {
                data.remove(at);
            }
            3 => data.truncate(at),
            4 if !donor.is_empty() => {
                let from = rng.below(donor.len());
                let len = rng.below(donor.len() - from + 1);
                data.splice(at..at, donor[from..from + len].iter().copied());
            }
            _ if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] = rng.next() as u8;
            }
            _ => data.push(rng.next() as u8),
        }
    }
}

#[test]
fn mutated_seeds_pass_every_check() {
    let mut rng = Rng(0x5eed_0f4a_117e_57ab);
    let mut executed = 0;
    for (target, check) in checks::TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds").join(target));
        for (name, seed) in &seeds {
            for round in 0..400 {
                let donor = &seeds[rng.below(seeds.len())].1;
                let mut data = seed.clone();
                mutate(&mut rng, &mut data, donor);
                run(target, *check, &format!("{name} mutation {round}"), &data);
                executed += 1;
            }
        }
    }
    assert!(executed > 10_000, "{executed} mutations");
}
