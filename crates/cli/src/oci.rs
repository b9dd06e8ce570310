//! `rampart package`: the filter module as an OCI image layout that Istio
//! (`WasmPlugin.url: oci://...`) and Envoy Gateway (wasm code type `Image`) pull.
//!
//! The image is the "compat" variant of the Wasm image specification
//! (github.com/solo-io/wasm, spec/spec-compat.md), the one Istio's image fetcher reads
//! for OCI manifests: exactly one layer of media type
//! `application/vnd.oci.image.layer.v1.tar+gzip` holding the file `plugin.wasm`, and the
//! manifest annotated `module.wasm.image/variant: compat`.
//!
//! The same module always gives the same bytes, so the manifest digest (what Istio
//! compares `WasmPlugin.sha256` with for an `oci://` url) is reproducible: the tar
//! header has fixed fields (mtime 0, uid/gid 0, mode 0644, no owner names), the gzip
//! header has mtime 0, no file name and OS byte 255, and the JSON has a fixed key order
//! and no timestamps.

use std::io::Write as _;
use std::path::Path;

use rampart::Digest;
use serde_json::{json, Value};

use crate::args::PackageArgs;
use crate::files::write_atomically;
use crate::{Failure, Outcome};

/// The layer's media type (gzip-compressed tar).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The manifest annotation that names the compat variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The annotation of `index.json` that names the tag (`oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The file the layer holds; Istio looks for this name.
pub const MODULE_FILE: &str = "plugin.wasm";

/// One blob of the layout: its bytes and their `sha256:` digest.
pub struct Blob {
    /// The content.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let digest = Digest::of_bytes(&bytes).to_string();
        Blob { bytes, digest }
    }

    /// The OCI descriptor of this blob.
    fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// The files of an OCI image layout of one module.
pub struct Image {
    /// The gzip-compressed tar holding `plugin.wasm`.
    pub layer: Blob,
    /// The image configuration.
    pub config: Blob,
    /// The manifest; its digest is the image's digest.
    pub manifest: Blob,
    /// `index.json`: the manifest under the tag.
    pub index: Vec<u8>,
}

/// `oci-layout`: the layout version.
const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";

/// Builds the image of `module` under `tag`, deterministically.
pub fn image(module: &[u8], tag: &str) -> Result<Image, Failure> {
    let tar = tar_one(MODULE_FILE, module)?;
    let diff_id = Digest::of_bytes(&tar).to_string();
    let layer = Blob::new(gzip(&tar)?);
    // Wasm, not a platform binary: the os/architecture pair runtimes use for wasm images.
    let config = Blob::new(to_bytes(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })));
    let manifest = Blob::new(to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(CONFIG_MEDIA_TYPE),
        "layers": [layer.descriptor(LAYER_MEDIA_TYPE)],
        "annotations": { VARIANT_ANNOTATION: "compat" },
    })));
    let mut entry = manifest.descriptor(MANIFEST_MEDIA_TYPE);
    entry["annotations"] = json!({ REF_NAME: tag });
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [entry],
    }));
    Ok(Image {
        layer,
        config,
        manifest,
        index,
    })
}

/// Compact JSON; serde_json writes object keys in a fixed order.
fn to_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A ustar archive of one regular file `name` with `content`: fixed header fields so
/// the bytes depend on the content alone.
pub fn tar_one(name: &str, content: &[u8]) -> Result<Vec<u8>, Failure> {
    if name.len() > 100 || content.len() as u64 >= 0o77777777777 {
        return Err(Failure::Invalid(format!(
            "{name}: too large for a tar header"
        )));
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let mut field = |at: usize, width: usize, value: u64| {
        // Octal, zero-padded, NUL-terminated.
        let text = format!("{value:0w$o}\0", w = width - 1);
        header[at..at + width].copy_from_slice(text.as_bytes());
    };
    field(100, 8, 0o644); // mode
    field(108, 8, 0); // uid
    field(116, 8, 0); // gid
    field(124, 12, content.len() as u64); // size
    field(136, 12, 0); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let padding = (512 - content.len() % 512) % 512;
    let mut tar = Vec::with_capacity(512 + content.len() + padding + 1024);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(content);
    tar.resize(tar.len() + padding + 1024, 0); // padding, then two zero blocks
    Ok(tar)
}

/// gzip with a fixed header: mtime 0, no file name, OS byte 255 (unknown).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| Failure::Io(format!("gzip: {e}")))
}

/// Runs `rampart package`.
pub fn package(args: &PackageArgs) -> Outcome {
    let module = std::fs::read(&args.wasm)
        .map_err(|e| Failure::Usage(format!("{}: {e}", args.wasm.display())))?;
    if !module.starts_with(b"\0asm") {
        return Err(Failure::Invalid(format!(
            "{}: not a wasm module (no \\0asm magic)",
            args.wasm.display()
        )));
    }
    let image = image(&module, &args.tag)?;
    write_layout(&args.out, &image)?;
    println!(
        "wrote {} (OCI image layout, tag {})",
        args.out.display(),
        args.tag
    );
    println!("{}", image.manifest.digest);
    Ok(())
}

/// Writes `image` as an OCI image layout in `dir`; `index.json` lists this image only.
fn write_layout(dir: &Path, image: &Image) -> Outcome {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| Failure::Usage(format!("{}: {e}", blobs.display())))?;
    let write = |path: &Path, bytes: &[u8]| {
        write_atomically(path, bytes)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
    };
    // Blobs first, index last: a reader never finds a manifest whose blobs are missing.
    for blob in [&image.layer, &image.config, &image.manifest] {
        let hex = blob.digest.trim_start_matches(rampart::digest::PREFIX);
        write(&blobs.join(hex), &blob.bytes)?;
    }
    write(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write(&dir.join("index.json"), &image.index)
}

/// The manifest digest (`sha256:<hex>`) in the layout `dir` for `tag`: the manifest
/// whose ref name is `tag`, or with no tag the layout's only manifest.
pub fn layout_digest(dir: &Path, tag: Option<&str>) -> Result<String, Failure> {
    let path = dir.join("index.json");
    let bytes =
        std::fs::read(&path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let index: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Invalid(format!("{}: not JSON: {e}", path.display())))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let chosen: Vec<&Value> = match tag {
        Some(tag) => manifests
            .iter()
            .filter(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
            .collect(),
        None => manifests.iter().collect(),
    };
    let [manifest] = chosen.as_slice() else {
        let wanted = tag.map_or("exactly one image".to_owned(), |t| format!("tag {t}"));
        return Err(Failure::Invalid(format!(
            "{}: {} image(s) match, want one ({wanted})",
            path.display(),
            chosen.len()
        )));
    };
    manifest["digest"]
        .as_str()
        .filter(|d| Digest::parse_bytes(d.as_bytes()).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| Failure::Invalid(format!("{}: no sha256 manifest digest", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::io::Read as _;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 not really a module, but bytes to carry";

    /// The files of a tar archive: (name, header, content).
    fn untar(tar: &[u8]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let mut files = Vec::new();
        let mut at = 0;
        while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
            let header = tar[at..at + 512].to_vec();
            let name = String::from_utf8(
                header[..100]
                    .iter()
                    .copied()
                    .take_while(|&b| b != 0)
                    .collect(),
            )
            .unwrap();
            let size_text = std::str::from_utf8(&header[124..135]).unwrap();
            let size = usize::from_str_radix(size_text, 8).unwrap();
            let content = tar[at + 512..at + 512 + size].to_vec();
            files.push((name, header, content));
            at += 512 + size.div_ceil(512) * 512;
        }
        files
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn two_builds_are_byte_identical() {
        let (a, b) = (image(MODULE, "1").unwrap(), image(MODULE, "1").unwrap());
        for (x, y) in [(&a.layer, &b.layer), (&a.config, &b.config)] {
            assert_eq!(x.bytes, y.bytes);
        }
        assert_eq!(a.manifest.bytes, b.manifest.bytes);
        assert_eq!(a.index, b.index);
        // A different module is a different image.
        let other = image(b"\0asm\x01\0\0\0other", "1").unwrap();
        assert_ne!(other.manifest.digest, a.manifest.digest);
    }

    #[test]
    fn the_layer_is_a_tar_of_plugin_wasm_alone_with_fixed_fields() {
        let image = image(MODULE, "1").unwrap();
        // gzip header: magic, deflate, no flags (no name), mtime 0, OS 255.
        assert_eq!(&image.layer.bytes[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&image.layer.bytes[4..8], &[0, 0, 0, 0]);
        assert_eq!(image.layer.bytes[9], 255);
        let tar = gunzip(&image.layer.bytes);
        assert_eq!(tar.len() % 512, 0);
        let files = untar(&tar);
        assert_eq!(files.len(), 1);
        let (name, header, content) = &files[0];
        assert_eq!(name, MODULE_FILE);
        assert_eq!(content, MODULE);
        assert_eq!(&header[100..108], b"0000644\0");
        assert_eq!(&header[108..116], b"0000000\0"); // uid
        assert_eq!(&header[116..124], b"0000000\0"); // gid
        assert_eq!(&header[136..148], b"00000000000\0");
        assert_eq!(header[156], b'0');
        assert!(header[265..329].iter().all(|&b| b == 0), "no owner names");
        // The header checksum as a tar reader checks it.
        let mut blanked = header.clone();
        blanked[148..156].copy_from_slice(b"        ");
        let sum: u32 = blanked.iter().map(|&b| u32::from(b)).sum();
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn the_manifest_is_the_compat_variant_and_the_index_names_the_tag() {
        let image = image(MODULE, "0.1.0").unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["annotations"][VARIANT_ANNOTATION], "compat");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(layers[0]["digest"], image.layer.digest.as_str());
        assert_eq!(layers[0]["size"], image.layer.bytes.len());
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        let diff_id = Digest::of_bytes(&gunzip(&image.layer.bytes)).to_string();
        assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.as_str());
        let index: Value = serde_json::from_slice(&image.index).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.manifest.digest.as_str());
        assert_eq!(entry["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(entry["annotations"][REF_NAME], "0.1.0");
    }

    #[test]
    fn the_layout_on_disk_and_its_digest() {
        let dir = std::env::temp_dir().join(format!("rampart-oci-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let image = image(MODULE, "t1").unwrap();
        write_layout(&dir, &image).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = [&image.layer, &image.config, &image.manifest]
            .iter()
            .map(|b| b.digest["sha256:".len()..].to_owned())
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        for blob in [&image.layer, &image.config, &image.manifest] {
            let path = dir
                .join("blobs/sha256")
                .join(&blob.digest["sha256:".len()..]);
            assert_eq!(std::fs::read(path).unwrap(), blob.bytes);
        }
        let layout: Value =
            serde_json::from_slice(&std::fs::read(dir.join("oci-layout")).unwrap()).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        assert_eq!(
            layout_digest(&dir, Some("t1")).unwrap(),
            image.manifest.digest
        );
        assert_eq!(layout_digest(&dir, None).unwrap(), image.manifest.digest);
        assert!(layout_digest(&dir, Some("other")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
