//! Hostile requests against the real filter in a real Envoy 1.40: each one gets the
//! documented side (stable unless the contract says otherwise), a counted reason, and
//! leaves the VM alive — Envoy's wasm stats show no VM failure, reload or re-creation.
//!
//! Complements `e2e_filter.rs` (huge and 5000-deep JSON, lone surrogates, invalid UTF-8
//! in a string input and in the sticky key, forged and repeated route headers,
//! repeated config headers), which is not repeated here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;
use support::FLAGS;

use serde_json::json;
use support::hostile::Hostile;
use support::{example_contract, stat_name, tenant_metadata_filter};
use support::{get, get_raw, try_get_raw, Bootstrap, Envoy};

/// A raw GET with `headers` given as raw lines (bytes, no CRLF), closing after it.
fn raw(headers: &[&[u8]]) -> Vec<u8> {
    support::raw_request("x", headers)
}

fn line(name: &str, value: &str) -> Vec<u8> {
    format!("{name}: {value}").into_bytes()
}

/// A request from `user` with the example tier and revision and this flags header.
fn with_flags(user: &str, flags: &[u8]) -> Vec<u8> {
    let mut flags_line = b"x-user-config: ".to_vec();
    flags_line.extend_from_slice(flags);
    raw(&[
        &line("x-user-id", user),
        &flags_line,
        b"x-tenant-tier: gold",
    ])
}

#[test]
fn hostile_config_values_are_drift_with_a_counted_reason() {
    let mut h = Hostile::start(&example_contract());
    let invalid = ["invalid_input", "field.flags.invalid"];
    // Limits: max_input_bytes 8192 and max_json_depth 16 in the example contract.
    // `{"pad":"…"}` of 8193 bytes: one over the limit.
    let over_limit = format!(r#"{{"pad":"{}"}}"#, "x".repeat(8193 - 10));
    assert_eq!(over_limit.len(), 8193);
    let too_deep = format!("{}1{}", "[".repeat(17), "]".repeat(17));
    let at_depth = format!("{}1{}", "[".repeat(16), "]".repeat(16));
    let brackets_in_string = format!(r#"{{"s":"{}"}}"#, "[".repeat(100));
    let many_keys = format!(
        "{{{}}}",
        (0..700)
            .map(|i| format!(r#""k{i}":{i}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let big_integer = format!(r#"{{"max_items":1{}}}"#, "0".repeat(400));
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "one byte over max_input_bytes",
            over_limit.into_bytes(),
            &invalid,
        ),
        ("nested one level too deep", too_deep.into_bytes(), &invalid),
        // Within the limits: decodes, differs from the lock.
        (
            "nested exactly at the limit",
            at_depth.into_bytes(),
            &["field.flags.drift"],
        ),
        (
            "brackets inside a string",
            brackets_in_string.into_bytes(),
            &["field.flags.drift"],
        ),
        ("700 keys", many_keys.into_bytes(), &["field.flags.drift"]),
        // Duplicate keys, even with the same value, and spelled with an escape.
        (
            "duplicate key, same value",
            br#"{"checkout_v2":true,"checkout_v2":true,"currency":"EUR","max_items":50}"#.to_vec(),
            &invalid,
        ),
        (
            "duplicate key through an escape",
            br#"{"checkout_v2":true,"checkout\u005fv2":true,"currency":"EUR","max_items":50}"#
                .to_vec(),
            &invalid,
        ),
        // Numbers beyond a double.
        (
            "1e309",
            br#"{"checkout_v2":true,"currency":"EUR","max_items":1e309}"#.to_vec(),
            &invalid,
        ),
        (
            "-1e309",
            br#"{"checkout_v2":true,"currency":"EUR","max_items":-1e309}"#.to_vec(),
            &invalid,
        ),
        ("401-digit integer", big_integer.into_bytes(), &invalid),
        ("NaN literal", br#"{"max_items":NaN}"#.to_vec(), &invalid),
        // Bytes that are not UTF-8 inside a JSON string: lone continuation, overlong
        // encoding of '/', an encoded surrogate.
        (
            "invalid UTF-8 in JSON",
            b"{\"currency\":\"\xff\"}".to_vec(),
            &invalid,
        ),
        (
            "overlong UTF-8",
            b"{\"currency\":\"\xc0\xaf\"}".to_vec(),
            &invalid,
        ),
        (
            "UTF-8 surrogate",
            b"{\"currency\":\"\xed\xa0\x80\"}".to_vec(),
            &invalid,
        ),
        (
            "trailing garbage",
            format!("{FLAGS}x").into_bytes(),
            &invalid,
        ),
        (
            "two documents",
            format!("{FLAGS} {FLAGS}").into_bytes(),
            &invalid,
        ),
        ("comment", format!("/*c*/{FLAGS}").into_bytes(), &invalid),
    ];
    for (what, flags, extra) in &cases {
        h.expect(what, &with_flags("alice", flags), "stable", "drift", extra);
    }
    // The same double however it is written is the same config (RFC 8785): alice,
    // whose bucket is on the canary, stays there.
    for spelled in ["50.0", "5e1", "50.000000000000001", "0.5E+2"] {
        let flags = format!(r#"{{"checkout_v2":true,"currency":"EUR","max_items":{spelled}}}"#);
        h.expect(
            spelled,
            &with_flags("alice", flags.as_bytes()),
            "canary",
            "match",
            &[],
        );
    }
    h.finish();
}

#[test]
fn repeated_and_oversized_headers() {
    let mut h = Hostile::start(&example_contract());
    // Fifty copies of the matching config header: joined, never a match.
    let flags_line = line("x-user-config", FLAGS);
    let mut lines: Vec<&[u8]> = vec![b"x-user-id: alice", b"x-tenant-tier: gold"];
    lines.extend(std::iter::repeat(flags_line.as_slice()).take(50));
    h.expect(
        "50 copies of the config header",
        &raw(&lines),
        "stable",
        "drift",
        &["invalid_input", "field.flags.invalid"],
    );

    // Two sticky keys: the joined value is the key, as for any repeated header.
    let joined = rampart::bucket::bucket("checkout-v2", b"alice,bob");
    let side = if joined < 3000 { "canary" } else { "stable" };
    let r = get_raw(
        h.envoy.addr("main"),
        &raw(&[
            b"x-user-id: alice",
            b"x-user-id: bob",
            &flags_line,
            b"x-tenant-tier: gold",
        ]),
    );
    h.check("two sticky keys", &r, side, "match");
    assert!(r
        .header("x-rampart-decision")
        .unwrap()
        .contains(&format!("bucket={joined}")));
    h.count(&["requests", side, "match"]);

    // A sticky key longer than max_input_bytes is drift, named as the contract field.
    let long_key = "k".repeat(8193);
    let long_key_request = raw(&[
        &line("x-user-id", &long_key),
        &flags_line,
        b"x-tenant-tier: gold",
    ]);
    h.expect(
        "8193-byte sticky key",
        &long_key_request,
        "stable",
        "drift",
        &["invalid_input"],
    );
    let r = get_raw(h.envoy.addr("main"), &long_key_request);
    h.check("8193-byte sticky key, again", &r, "stable", "drift");
    let decision = r.header("x-rampart-decision").unwrap_or_default();
    assert!(
        decision.starts_with("route=stable reason=drift fields=ramp.sticky "),
        "{decision}"
    );
    h.count(&["requests", "stable", "drift", "invalid_input"]);
    // A key at the limit is a key.
    let at_limit = "k".repeat(8192);
    let bucket = rampart::bucket::bucket("checkout-v2", at_limit.as_bytes());
    let side = if bucket < 3000 { "canary" } else { "stable" };
    h.expect(
        "8192-byte sticky key",
        &raw(&[
            &line("x-user-id", &at_limit),
            &flags_line,
            b"x-tenant-tier: gold",
        ]),
        side,
        "match",
        &[],
    );
    // Absent and empty sticky keys.
    h.expect(
        "no sticky key",
        &raw(&[&flags_line, b"x-tenant-tier: gold"]),
        "stable",
        "unkeyed",
        &[],
    );
    h.expect(
        "empty sticky key",
        &raw(&[b"x-user-id:", &flags_line, b"x-tenant-tier: gold"]),
        "stable",
        "unkeyed",
        &[],
    );
    // A header larger than Envoy accepts (60 KiB by default) is answered by Envoy's
    // codec (431) before any filter runs: nothing is counted, nothing reaches a cluster.
    let huge = "x".repeat(70 * 1024);
    let r = try_get_raw(h.envoy.addr("main"), &with_flags("alice", huge.as_bytes()));
    let r = r.unwrap_or_else(|e| panic!("70 KiB header: {e}"));
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (431, None),
        "{}",
        r.body
    );
    // Many distinct headers around the inputs change nothing.
    let noise: Vec<Vec<u8>> = (0..90)
        .map(|i| line(&format!("x-noise-{i}"), "canary"))
        .collect();
    let mut lines: Vec<&[u8]> = noise.iter().map(Vec::as_slice).collect();
    lines.extend([
        b"x-user-id: alice".as_slice(),
        &flags_line,
        b"x-tenant-tier: gold",
    ]);
    h.expect("90 unrelated headers", &raw(&lines), "canary", "match", &[]);
    h.finish();
    h.assert_every_request_reached_a_cluster();
}

#[test]
fn header_injection_never_reaches_the_canary() {
    // At 0% every request belongs on stable, whatever key a smuggled byte produces, so
    // any canary response would be a forged route header that survived.
    let mut contract = example_contract();
    contract["ramp"]["percent"] = 0.into();
    let mut h = Hostile::start(&contract);
    let main = h.envoy.addr("main");
    let flags_line = line("x-user-config", FLAGS);
    // What Envoy 1.40's HTTP/1 codec does with each attempt: `Some(400)` when it refuses
    // the request (no filter runs, nothing reaches a cluster), `None` when it accepts it
    // (a bare CR or LF ends the line, a folded line joins the value before it).
    let attempts: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "bare LF in a value",
            raw(&[
                b"x-user-id: bob\nx-rampart-route: canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            None,
        ),
        (
            "bare CR in a value",
            raw(&[
                b"x-user-id: bob\rx-rampart-route: canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            None,
        ),
        (
            "obs-fold continuation",
            raw(&[
                b"x-user-id: bob",
                b" x-rampart-route: canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            None,
        ),
        (
            "NUL in a value",
            raw(&[
                b"x-user-id: bob\0x-rampart-route: canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            Some(400),
        ),
        (
            "space before colon",
            raw(&[
                b"x-user-id: bob",
                b"x-rampart-route : canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            Some(400),
        ),
        (
            "NUL in a name",
            raw(&[
                b"x-user-id: bob",
                b"x-rampart-route\0: canary",
                &flags_line,
                b"x-tenant-tier: gold",
            ]),
            Some(400),
        ),
    ];
    for (what, request, refused) in &attempts {
        let r = try_get_raw(main, request).unwrap_or_else(|e| panic!("{what}: {e}"));
        match refused {
            Some(status) => {
                assert_eq!(
                    (r.status, r.header("x-served-by")),
                    (*status, None),
                    "{what}"
                );
            }
            None => {
                h.check(what, &r, "stable", "match");
                h.count(&["requests", "stable", "match"]);
            }
        }
    }
    // Case and whitespace variants of a forged header are the same header to Envoy, and
    // the filter overwrites it.
    for forged in [
        "X-Rampart-Route: canary",
        "x-rampart-route:canary",
        "X-RAMPART-ROUTE:   canary   ",
    ] {
        h.expect(
            forged,
            &raw(&[
                b"x-user-id: bob",
                &flags_line,
                b"x-tenant-tier: gold",
                forged.as_bytes(),
            ]),
            "stable",
            "match",
            &[],
        );
    }
    // Forged on requests the filter sends to stable for each reason.
    h.expect(
        "forged + drift",
        &raw(&[
            b"x-user-id: alice",
            b"x-user-config: {}",
            b"x-tenant-tier: gold",
            b"x-rampart-route: canary",
        ]),
        "stable",
        "drift",
        &[],
    );
    h.expect(
        "forged + missing",
        &raw(&[b"x-user-id: alice", &flags_line, b"x-rampart-route: canary"]),
        "stable",
        "missing",
        &[],
    );
    h.expect(
        "forged + unkeyed",
        &raw(&[
            &flags_line,
            b"x-tenant-tier: gold",
            b"x-rampart-route: canary",
        ]),
        "stable",
        "unkeyed",
        &[],
    );
    // The debug response header carries names and digests, never the key a client sent.
    let r = get(
        main,
        "/",
        &[
            ("x-user-id", "alice"),
            ("x-user-config", FLAGS),
            ("x-tenant-tier", "gold"),
        ],
    );
    assert!(!r.header("x-rampart-decision").unwrap().contains("alice"));
    h.count(&["requests", "stable", "match"]);
    h.finish();
}

#[test]
fn forged_headers_go_to_stable_when_paused_rejected_or_in_safe_mode() {
    // Paused.
    let mut paused = example_contract();
    paused["paused"] = true.into();
    let mut h = Hostile::start(&paused);
    h.expect(
        "paused",
        &raw(&[
            b"x-user-id: alice",
            &line("x-user-config", FLAGS),
            b"x-tenant-tier: gold",
            b"x-rampart-route: canary",
        ]),
        "stable",
        "paused",
        &[],
    );
    h.finish();

    // Reject: a local reply, never an upstream, whatever the client forged.
    let mut reject = example_contract();
    reject["on_drift"] = "reject".into();
    let h = Hostile::start(&reject);
    let r = get_raw(
        h.envoy.addr("main"),
        &raw(&[
            b"x-user-id: alice",
            b"x-user-config: []",
            b"x-tenant-tier: gold",
            b"x-rampart-route: canary",
        ]),
    );
    assert_eq!((r.status, r.header("x-served-by")), (412, None));
    h.envoy.wait_for_counter(&h.stat("rejected"), 1);
    assert_eq!(h.envoy.counter("cluster.canary.upstream_rq_total"), 0);
    assert_eq!(h.envoy.counter("cluster.stable.upstream_rq_total"), 0);
    h.assert_healthy();

    // Safe mode with the route header spelled in capitals in the (invalid) contract:
    // Envoy lowercases header names, so the client's copy is still overwritten.
    let mut invalid = example_contract();
    invalid["route"]["header"] = "X-Rampart-Route".into();
    invalid["ramp"]["percent"] = (-1).into();
    let h = Hostile::start(&invalid);
    for forged in ["canary", "CANARY", "stable"] {
        let r = get_raw(
            h.envoy.addr("main"),
            &raw(&[b"x-user-id: alice", &line("x-rampart-route", forged)]),
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-served-by"),
            Some("stable"),
            "safe mode, forged {forged}"
        );
        assert_eq!(r.header("x-seen-route"), Some("stable"));
    }
    h.envoy.wait_for_counter("wasmcustom.rampart.safe_mode", 3);
    assert_eq!(h.envoy.counter("cluster.canary.upstream_rq_total"), 0);
    h.assert_healthy();
}

#[test]
fn an_oversized_sticky_key_never_escapes_reject_nor_takes_the_unkeyed_side() {
    let long_key = line("x-user-id", &"k".repeat(8193));
    let flags_line = line("x-user-config", FLAGS);
    let request = raw(&[&long_key, &flags_line, b"x-tenant-tier: gold"]);

    // `on_drift: reject`: the oversized key is drift, so the request is refused.
    let mut reject = example_contract();
    reject["on_drift"] = "reject".into();
    let h = Hostile::start(&reject);
    let r = get_raw(h.envoy.addr("main"), &request);
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (412, None),
        "{}",
        r.body
    );
    h.envoy.wait_for_counter(&h.stat("rejected"), 1);
    for (name, value) in [("drift", 1), ("invalid_input", 1), ("unkeyed", 0)] {
        assert_eq!(h.envoy.counter(&h.stat(name)), value, "{name}");
    }
    assert_eq!(h.envoy.counter("cluster.canary.upstream_rq_total"), 0);
    assert_eq!(h.envoy.counter("cluster.stable.upstream_rq_total"), 0);
    h.assert_healthy();

    // `ramp.unkeyed: canary` at 100%: keyless requests go to the canary, an oversized
    // key does not.
    let mut unkeyed = example_contract();
    unkeyed["ramp"]["unkeyed"] = "canary".into();
    unkeyed["ramp"]["percent"] = 100.into();
    let mut h = Hostile::start(&unkeyed);
    h.expect(
        "no sticky key, unkeyed canary",
        &raw(&[&flags_line, b"x-tenant-tier: gold"]),
        "canary",
        "unkeyed",
        &[],
    );
    h.expect(
        "8193-byte sticky key, unkeyed canary",
        &request,
        "stable",
        "drift",
        &["invalid_input"],
    );
    h.finish();
}

#[test]
fn other_methods_and_protocol_versions_are_decided_alike() {
    let mut h = Hostile::start(&example_contract());
    let flags_line = String::from_utf8(line("x-user-config", FLAGS)).unwrap();
    // (HEAD is left out: its response has a length but no body.)
    for start in [
        "OPTIONS / HTTP/1.1",
        "DELETE /a/../b?x=%00 HTTP/1.1",
        "GET /?x-rampart-route=canary HTTP/1.1",
    ] {
        let request = format!(
            "{start}\r\nhost: x\r\nx-user-id: alice\r\n{flags_line}\r\nx-tenant-tier: gold\r\nx-rampart-route: stable\r\nconnection: close\r\n\r\n"
        );
        let r = get_raw(h.envoy.addr("main"), request.as_bytes());
        h.check(start, &r, "canary", "match");
        h.count(&["requests", "canary", "match"]);
    }
    // HTTP/1.0 is refused by Envoy's codec by default (426): no filter, no upstream.
    let old = format!("GET / HTTP/1.0\r\nx-user-id: alice\r\n{flags_line}\r\nx-tenant-tier: gold\r\nx-rampart-route: canary\r\n\r\n");
    match try_get_raw(h.envoy.addr("main"), old.as_bytes()) {
        Ok(r) => assert_eq!((r.status, r.header("x-served-by")), (426, None)),
        Err(e) => panic!("HTTP/1.0: {e}"),
    }
    // A body on a drifted POST does not change the decision.
    let post = "POST / HTTP/1.1\r\nhost: x\r\nx-user-id: alice\r\nx-user-config: {}\r\nx-tenant-tier: gold\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
    let r = get_raw(h.envoy.addr("main"), post.as_bytes());
    h.check("POST with a body", &r, "stable", "drift");
    h.count(&["requests", "stable", "drift"]);
    h.finish();
}

#[test]
fn client_copies_stripped_at_the_edge_never_reach_the_filter() {
    // As the security notes (docs/security.md) advise: the first filter removes the
    // client's copy of a header that only a trusted source may fill, so a client stating
    // the locked config itself gets `missing`, not a match.
    let strip = json!({
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": { "request_mutations": [{ "remove": "x-user-config" }] },
        },
    });
    let envoy = Envoy::start(
        &Bootstrap::new()
            .pre_filter(strip)
            .pre_filter(tenant_metadata_filter())
            .plugin_config(&example_contract().to_string())
            .build(),
    );
    let r = get(
        envoy.addr("main"),
        "/",
        &[
            ("x-user-id", "alice"),
            ("x-user-config", FLAGS),
            ("x-tenant-tier", "gold"),
            ("x-rampart-route", "canary"),
        ],
    );
    assert_eq!(r.header("x-served-by"), Some("stable"));
    assert_eq!(
        r.header("x-rampart-decision")
            .unwrap()
            .split(" contract")
            .next(),
        Some("route=stable reason=missing fields=flags")
    );
    envoy.wait_for_counter(&stat_name("checkout-v2", "field.flags.missing"), 1);
}
