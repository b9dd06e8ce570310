//! `rampart package` against a real registry: the OCI image layout it writes is
//! pushed with skopeo to a `docker-registry` on loopback and pulled back, and the
//! module that comes out is the module that went in, under the manifest digest the
//! command printed (the digest Istio compares `WasmPlugin.sha256` with).
//!
//! Needs `skopeo` and `docker-registry` (Debian packages of those names): `cargo xtask
//! test` installs them and passes their paths as RAMPART_SKOPEO and RAMPART_REGISTRY.
//! Without them the test fails and says so; it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::ecds::rampart_cli;
use support::{wasm_path, TempDir};

const TAG: &str = "0.1.0-test";

/// A tool from its environment variable, else on PATH or in /usr/bin; missing is a
/// failure that says how to get it.
fn tool(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={}: no such file", path.display());
        return path;
    }
    let dirs = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: this test needs it. Run `cargo xtask test` (it installs \
                 the Debian package `{package}`), or `apt-get install {package}`, or set {env}"
            )
        })
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A `docker-registry` serving plain HTTP on a loopback port, storing in a temp dir.
struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        let binary = tool("RAMPART_REGISTRY", "docker-registry", "docker-registry");
        let dir = TempDir::new("oci-registry");
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let storage = dir.path().join("storage");
        let config = dir.write(
            "config.yml",
            &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        );
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let mut registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}); see its log in {config:?}'s dir");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {addr} within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry.addr = addr;
        registry
    }

    fn reference(&self) -> String {
        format!("docker://{}/rampart:{TAG}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rampart package` into `out`; returns the digest it printed (its last line).
fn package(wasm: &Path, out: &Path) -> String {
    let output = run(Command::new(rampart_cli())
        .args(["package", "--wasm"])
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .args(["--tag", TAG]));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let digest = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        rampart::Digest::parse_bytes(digest.as_bytes()).is_ok(),
        "rampart package printed no digest: {stdout}"
    );
    digest
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn the_packaged_module_survives_a_registry_round_trip_under_the_printed_digest() {
    let skopeo = tool("RAMPART_SKOPEO", "skopeo", "skopeo");
    let module_path = wasm_path();
    let module = std::fs::read(&module_path).unwrap();
    let dir = TempDir::new("oci");
    let (pushed, pulled) = (dir.path().join("pushed"), dir.path().join("pulled"));
    let digest = package(&module_path, &pushed);
    // Rebuilt into another directory: the same bytes.
    let again = dir.path().join("again");
    assert_eq!(package(&module_path, &again), digest);
    for name in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(pushed.join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap()
        );
    }

    let registry = Registry::start();
    let remote = registry.reference();
    // --insecure-policy: no signature policy is needed for a loopback registry.
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{TAG}", pushed.display()))
        .arg(&remote));
    let raw = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&remote))
    .stdout;
    assert_eq!(
        rampart::Digest::of_bytes(&raw).to_string(),
        digest,
        "the registry's manifest is not the one rampart package wrote"
    );
    run(Command::new(&skopeo)
        .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
        .arg(&remote)
        .arg(format!("oci:{}:{TAG}", pulled.display())));

    // What a puller sees: the compat variant, one layer holding plugin.wasm only.
    let index = read_json(&pulled.join("index.json"));
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest.as_str(), "{index}");
    let manifest = read_json(&blob(&pulled, &digest));
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&pulled, layers[0]["digest"].as_str().unwrap());
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer)).stdout;
    assert_eq!(String::from_utf8_lossy(&listing), "plugin.wasm\n");
    let extracted = dir.path().join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&extracted));
    let out = std::fs::read(extracted.join("plugin.wasm")).unwrap();
    assert!(
        out == module,
        "the module pulled back differs from {}",
        module_path.display()
    );

    // `render istio --image-layout` pins the same digest, as Istio compares it.
    let url = format!("oci://{}/rampart:{TAG}", registry.addr);
    let rendered = run(Command::new(rampart_cli())
        .args(["render", "istio", "--contract"])
        .arg(support::repo_root().join("examples/contract.json"))
        .args(["--wasm", &url, "--image-layout"])
        .arg(&pushed))
    .stdout;
    let rendered = String::from_utf8(rendered).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let pins: Vec<&str> = rendered
        .lines()
        .filter_map(|line| line.trim().strip_prefix("sha256: "))
        .map(|value| value.trim_matches('"'))
        .collect();
    assert_eq!(pins, [hex], "the pinned sha256 in:\n{rendered}");
}
