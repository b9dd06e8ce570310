//! Stamps the commit into the module so the start-up log says what runs.
use std::process::Command;

fn main() {
    // HEAD names the branch; the branch's ref (or packed-refs) moves on every commit.
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/packed-refs");
    if let Ok(head) = std::fs::read_to_string("../../.git/HEAD") {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=../../.git/{reference}");
        }
    }
    println!("cargo:rerun-if-env-changed=RAMPART_GIT_SHA");
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
    {
        if out.status.success() {
            let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !sha.is_empty() {
                println!("cargo:rustc-env=RAMPART_GIT_SHA={sha}");
            }
        }
    }
}
