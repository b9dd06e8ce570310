//! The shipped filter module itself: what it exports (Envoy calls every exported
//! `proxy_on_*` callback on every request) and what it imports from the host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::collections::BTreeSet;

/// A module's (exports, imports) by name, read from its export and import sections.
fn exports_and_imports(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    fn leb(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    fn name(bytes: &[u8], at: &mut usize) -> String {
        let len = leb(bytes, at) as usize;
        let text = String::from_utf8(bytes[*at..*at + len].to_vec()).unwrap();
        *at += len;
        text
    }
    assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0", "a wasm module, version 1");
    let (mut exports, mut imports) = (BTreeSet::new(), BTreeSet::new());
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(bytes, &mut at) as usize;
        let end = at + size;
        let mut p = at;
        match id {
            // Import section: module, name, kind and its description.
            2 => {
                for _ in 0..leb(bytes, &mut p) {
                    let module = name(bytes, &mut p);
                    let field = name(bytes, &mut p);
                    let kind = bytes[p];
                    p += 1;
                    match kind {
                        0 => {
                            leb(bytes, &mut p);
                        }
                        1 => {
                            p += 1;
                            let flags = leb(bytes, &mut p);
                            leb(bytes, &mut p);
                            if flags & 1 == 1 {
                                leb(bytes, &mut p);
                            }
                        }
                        2 => {
                            let flags = leb(bytes, &mut p);
                            leb(bytes, &mut p);
                            if flags & 1 == 1 {
                                leb(bytes, &mut p);
                            }
                        }
                        _ => p += 2,
                    }
                    imports.insert(format!("{module}.{field}"));
                }
            }
            // Export section: name, kind, index.
            7 => {
                for _ in 0..leb(bytes, &mut p) {
                    let field = name(bytes, &mut p);
                    p += 1;
                    leb(bytes, &mut p);
                    exports.insert(field);
                }
            }
            _ => {}
        }
        at = end;
    }
    (exports, imports)
}

#[test]
fn the_module_exports_only_the_callbacks_its_contracts_need() {
    let bytes = std::fs::read(support::wasm_path()).unwrap();
    let (exports, _) = exports_and_imports(&bytes);
    let callbacks: BTreeSet<&str> = exports
        .iter()
        .map(String::as_str)
        .filter(|e| e.starts_with("proxy_on_"))
        .collect();
    // Per request: context creation, the request headers, deletion. Per VM or
    // configuration: start, configure, tick. Nothing on responses, bodies, trailers,
    // logs or stream completion: Envoy would call each of those on every request.
    assert_eq!(
        callbacks,
        BTreeSet::from([
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_delete",
            "proxy_on_request_headers",
            "proxy_on_tick",
            "proxy_on_vm_start",
        ])
    );
    assert!(exports.contains("proxy_abi_version_0_2_1"), "{exports:?}");
    assert!(
        exports.contains("malloc"),
        "the host's allocator: {exports:?}"
    );
}

#[test]
fn the_module_imports_nothing_but_the_proxy_wasm_host() {
    let bytes = std::fs::read(support::wasm_path()).unwrap();
    let (_, imports) = exports_and_imports(&bytes);
    assert!(!imports.is_empty());
    for import in &imports {
        assert!(
            import.starts_with("env.proxy_"),
            "{import}: only proxy-wasm host functions (no WASI, no other module)"
        );
    }
    // Property reads by header name are gone: one header-map read serves them all.
    assert!(imports.contains("env.proxy_get_header_map_pairs"));
}
