//! HTTP/2 and gRPC through the real filter in a real Envoy 1.40, on the listener the
//! HTTP/1.1 suites use (codec `AUTO`: h2c with prior knowledge on the same port), with
//! the same contract and routes. Two clients: the `h2` crate for well-formed requests
//! and gRPC, and raw frames (`support::http2::raw`) for what a conforming client never
//! sends. As in `e2e_hostile.rs`, every request gets its documented side and counted
//! reason, and Envoy's wasm stats show no VM failure, reload or re-creation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::Value;
use support::grpc::{self, UnaryReply};
use support::hostile::Hostile;
use support::http2::frame::{error_code, field_offsets, header_block, header_frames, Frame};
use support::http2::raw::{self, get_fields, Outcome};
use support::http2::{reset_code, Client, Request};
use support::{carrying, example_contract, matching, tenant_metadata_filter, Bootstrap, FLAGS};

/// The example flags with one value changed: drift.
const DRIFTED_FLAGS: &str = r#"{"checkout_v2":false,"currency":"EUR","max_items":50}"#;

/// A unary method; the upstreams answer any path.
const GRPC_METHOD: &str = "/rampart.test.Checkout/Place";

/// The side the example contract (30%) gives a matching `user`.
fn side_of(user: &str) -> &'static str {
    if rampart::bucket::bucket("checkout-v2", user.as_bytes()) < 3000 {
        "canary"
    } else {
        "stable"
    }
}

/// `fields` with one more `(name, value)`.
fn with<'a>(
    mut fields: Vec<(&'a str, &'a str)>,
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    fields.push((name, value));
    fields
}

/// A request (or call) and what the example contract decides for it.
struct Case {
    what: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    side: &'static str,
    reason: &'static str,
    /// Counters it moves besides `requests`, its side and its reason.
    extra: &'static [&'static str],
}

/// The example contract's rules, a request for each: decided alike over HTTP/1.1,
/// HTTP/2 and gRPC.
fn rules() -> Vec<Case> {
    let case = |what, headers, side, reason, extra| Case {
        what,
        headers,
        side,
        reason,
        extra,
    };
    let reordered = r#"{ "max_items": 50, "currency": "EUR", "checkout_v2": true }"#;
    vec![
        case(
            "match, canary user",
            matching("alice"),
            "canary",
            "match",
            &[],
        ),
        case(
            "match, stable user",
            matching("bob"),
            "stable",
            "match",
            &[],
        ),
        case(
            "other key order",
            carrying("alice", reordered, "gold"),
            "canary",
            "match",
            &[],
        ),
        case(
            "drifted flags",
            carrying("alice", DRIFTED_FLAGS, "gold"),
            "stable",
            "drift",
            &["field.flags.drift"],
        ),
        case(
            "drifted tier",
            carrying("alice", FLAGS, "silver"),
            "stable",
            "drift",
            &["field.tier.drift"],
        ),
        case(
            "tier missing",
            vec![("x-user-id", "alice"), ("x-user-config", FLAGS)],
            "stable",
            "missing",
            &["field.tier.missing"],
        ),
        case(
            "no sticky key",
            vec![("x-user-config", FLAGS), ("x-tenant-tier", "gold")],
            "stable",
            "unkeyed",
            &[],
        ),
        case(
            "forged canary route, stable user",
            with(matching("bob"), "x-rampart-route", "canary"),
            "stable",
            "match",
            &[],
        ),
        case(
            "forged stable route, canary user",
            with(matching("alice"), "x-rampart-route", "stable"),
            "canary",
            "match",
            &[],
        ),
        case(
            "config twice",
            with(matching("alice"), "x-user-config", FLAGS),
            "stable",
            "drift",
            &["invalid_input", "field.flags.invalid"],
        ),
    ]
}

#[test]
fn shared_decision_vectors_hold_over_http2() {
    // One connection per Envoy: the cases go as streams of it, HPACK's dynamic table in use.
    let mut clients: BTreeMap<SocketAddr, Client> = BTreeMap::new();
    support::decisions::assert_vectors_hold(|addr, headers| {
        clients
            .entry(addr)
            .or_insert_with(|| Client::new(addr))
            .get("/", headers)
    });
}

#[test]
fn h2c_requests_are_decided_counted_and_multiplexed_on_one_connection() {
    assert!(side_of("alice") == "canary" && side_of("bob") == "stable");
    let mut h = Hostile::start(&example_contract());
    let mut client = Client::new(h.envoy.addr("main"));
    for c in rules() {
        let r = client.get("/", &c.headers);
        h.record(c.what, &r, c.side, c.reason, c.extra);
    }
    // 200 streams in flight together on the same connection, every other one drifted:
    // each stream gets its own decision.
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let headers: Vec<Vec<(&str, &str)>> = users
        .iter()
        .enumerate()
        .map(|(i, user)| carrying(user, FLAGS, if i % 2 == 0 { "gold" } else { "silver" }))
        .collect();
    let requests: Vec<Request> = headers.iter().map(|h| Request::get("/", h)).collect();
    let replies = client.send_all(&requests);
    for (i, (user, reply)) in users.iter().zip(replies).enumerate() {
        let r = reply
            .unwrap_or_else(|e| panic!("{user}: {e}"))
            .into_response();
        if i % 2 == 0 {
            h.record(user, &r, side_of(user), "match", &[]);
        } else {
            h.record(user, &r, "stable", "drift", &["field.tier.drift"]);
        }
    }
    h.finish();
    // All of it was HTTP/2, on one connection.
    let stats = h.envoy.stats();
    assert_eq!(stats["http.main.downstream_cx_http2_total"], 1);
    assert_eq!(stats["http.main.downstream_rq_http2_total"], h.requests());
    assert_eq!(stats["http.main.downstream_cx_http1_total"], 0);
}

#[test]
fn repeated_config_headers_drift_in_one_block_and_across_continuation() {
    let mut h = Hostile::start(&example_contract());
    let main = h.envoy.addr("main");
    let invalid: &[&str] = &["invalid_input", "field.flags.invalid"];
    // Two copies in one HEADERS block (the h2 crate sends both): joined with `,`, the
    // value is no JSON document, whichever copy matches.
    let mut client = Client::new(main);
    for (first, second) in [
        (FLAGS, FLAGS),
        (FLAGS, DRIFTED_FLAGS),
        (DRIFTED_FLAGS, FLAGS),
    ] {
        let headers = with(carrying("alice", first, "gold"), "x-user-config", second);
        let r = client.get("/", &headers);
        h.record("two copies in one block", &r, "stable", "drift", invalid);
    }

    // The same two copies written as raw frames, the block cut into HEADERS and
    // CONTINUATION: between the copies, inside the second copy's name and value, and
    // every field in a frame of its own. Envoy joins the fragments, then the copies.
    let authority = main.to_string();
    let repeated = get_fields(&authority, &with(matching("alice"), "x-user-config", FLAGS));
    let block = header_block(&repeated);
    let offsets = field_offsets(&repeated);
    let second = *offsets.last().unwrap();
    let splits: Vec<(&str, Vec<usize>)> = vec![
        ("cut between the copies", vec![second]),
        ("cut inside the second copy", vec![second + 3, second + 20]),
        ("every field in its own frame", offsets.clone()),
        (
            "one byte per frame",
            (1..block.len()).collect::<Vec<usize>>(),
        ),
    ];
    for (what, cuts) in &splits {
        let r = raw::get_block(main, &block, cuts).response(what);
        h.record(what, &r, "stable", "drift", invalid);
    }

    // One copy, its name and value cut across frames: one header, a match.
    let single = get_fields(&authority, &matching("alice"));
    let block = header_block(&single);
    let config_at = field_offsets(&single)[4];
    for cuts in [vec![config_at + 4], vec![config_at + 20, config_at + 40]] {
        let r = raw::get_block(main, &block, &cuts).response("one copy, cut");
        h.record("one copy cut across frames", &r, "canary", "match", &[]);
    }

    // A repeated sticky key across frames is the joined key, as over HTTP/1.1; a
    // repeated forged route header is overwritten.
    let keys = get_fields(&authority, &with(matching("alice"), "x-user-id", "bob"));
    let block = header_block(&keys);
    let r = raw::get_block(main, &block, &[*field_offsets(&keys).last().unwrap()])
        .response("two sticky keys");
    let joined = rampart::bucket::bucket("checkout-v2", b"alice,bob");
    assert!(r
        .header("x-rampart-decision")
        .unwrap()
        .contains(&format!("bucket={joined}")));
    h.record("two sticky keys", &r, side_of("alice,bob"), "match", &[]);
    let forged = get_fields(
        &authority,
        &with(
            with(matching("bob"), "x-rampart-route", "canary"),
            "x-rampart-route",
            "canary",
        ),
    );
    let block = header_block(&forged);
    let r = raw::get_block(main, &block, &field_offsets(&forged)).response("forged twice");
    h.record("forged route header twice", &r, "stable", "match", &[]);
    h.finish();
}

#[test]
fn malformed_header_blocks_close_the_connection_before_the_filter() {
    // Every field list is one a lenient server could have routed to the canary: alice's
    // bucket is on it, and each carries the locked config in some form.
    let mut h = Hostile::start(&example_contract());
    let main = h.envoy.addr("main");
    let authority = main.to_string();
    let pseudo = |path: &'static str| -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority.as_str()),
            (":path", path),
        ]
    };
    let alice = matching("alice");
    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "uppercase config header name",
            carrying("alice", FLAGS, "gold")
                .into_iter()
                .map(|(n, v)| {
                    if n == "x-user-config" {
                        ("X-User-Config", v)
                    } else {
                        (n, v)
                    }
                })
                .collect(),
        ),
        (
            "uppercase forged route header",
            with(matching("bob"), "X-Rampart-Route", "canary"),
        ),
        (
            "config as a pseudo-header",
            vec![
                ("x-user-id", "alice"),
                (":x-user-config", FLAGS),
                ("x-tenant-tier", "gold"),
            ],
        ),
        (
            "route as a pseudo-header",
            with(matching("bob"), ":x-rampart-route", "canary"),
        ),
        (
            "connection-specific header",
            with(alice.clone(), "connection", "keep-alive"),
        ),
    ];
    for (_, fields) in &mut cases {
        let mut all = pseudo("/");
        all.append(fields);
        *fields = all;
    }
    let mut twice = pseudo("/");
    twice.push((":path", "/canary"));
    twice.extend(alice.iter().copied());
    cases.push(("duplicate :path", twice));
    let mut late = pseudo("/");
    let path = late.pop().unwrap();
    late.extend(alice.iter().copied());
    late.push(path);
    cases.push(("pseudo-header after regular ones", late));
    for (what, fields) in &cases {
        let outcome = raw::get_block(main, &header_block(fields), &[]);
        assert_eq!(outcome, Outcome::Closed, "{what}: {}", outcome.summary());
    }
    // The uppercase letter in a CONTINUATION: the joined block is checked.
    let mut split = pseudo("/");
    split.extend(with(alice.clone(), "x-rampart-Route", "canary"));
    let block = header_block(&split);
    let at = *field_offsets(&split).last().unwrap() + 10;
    assert_eq!(raw::get_block(main, &block, &[at]), Outcome::Closed);

    // Envoy closes the connection (no GOAWAY, no response) and counts a messaging error
    // for each; no request reached a cluster.
    let malformed = cases.len() as u64 + 1;
    assert_eq!(h.envoy.counter("http2.rx_messaging_error"), malformed);
    assert_eq!(h.envoy.counter("cluster.canary.upstream_rq_total"), 0);
    assert_eq!(h.envoy.counter("cluster.stable.upstream_rq_total"), 0);
    // And it still serves: the same request, well-formed, is alice's match. The filter
    // counted that one request only (`finish` compares every counter with the tally).
    let r = raw::get(main, &alice).response("well-formed");
    h.record(
        "well-formed after the malformed ones",
        &r,
        "canary",
        "match",
        &[],
    );
    h.finish();
}

#[test]
fn oversized_header_lists_are_refused_by_envoy_and_the_filters_limits_hold() {
    let mut h = Hostile::start(&example_contract());
    let main = h.envoy.addr("main");
    let mut client = Client::new(main);

    // Beyond Envoy's max_request_headers_kb (60 KiB): eight 8 KiB headers beside a
    // matching request. Envoy resets the stream (INTERNAL_ERROR) before any filter.
    let pad = "p".repeat(8 * 1024);
    let pad_names: Vec<String> = (0..8).map(|i| format!("x-pad-{i}")).collect();
    let mut too_large: Vec<(&str, &str)> = pad_names
        .iter()
        .map(|n| (n.as_str(), pad.as_str()))
        .collect();
    too_large.extend(matching("alice"));
    assert_eq!(
        raw::get(main, &too_large),
        Outcome::Reset(error_code::INTERNAL_ERROR)
    );
    let err = client.send(&Request::get("/", &too_large)).unwrap_err();
    assert_eq!(reset_code(&err), Some(error_code::INTERNAL_ERROR), "{err}");
    assert_eq!(h.envoy.counter("http2.header_list_size_too_large"), 2);

    // Beyond max_request_headers_count (100): the same reset.
    let names: Vec<String> = (0..101).map(|i| format!("x-noise-{i}")).collect();
    let mut too_many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "canary")).collect();
    too_many.extend(matching("alice"));
    assert_eq!(
        raw::get(main, &too_many),
        Outcome::Reset(error_code::INTERNAL_ERROR)
    );
    assert_eq!(h.envoy.counter("http2.header_overflow"), 1);

    // One literal field over 64 KiB: Envoy's HPACK decoder (nghttp2) gives up on the
    // connection.
    let huge = "x".repeat(70 * 1024);
    assert_eq!(
        raw::get(main, &carrying("alice", &huge, "gold")),
        Outcome::GoAway(error_code::COMPRESSION_ERROR, String::new())
    );
    // None of these reached the filter: `finish` finds only the requests below counted.

    // Within Envoy's limits, the filter's own: max_input_bytes 8192 in the example.
    let noise: Vec<(&str, &str)> = names[..90].iter().map(|n| (n.as_str(), "canary")).collect();
    let r = client.get("/", &[noise, matching("alice")].concat());
    h.record("90 unrelated headers", &r, "canary", "match", &[]);
    let over_limit = format!(r#"{{"pad":"{}"}}"#, "x".repeat(8193 - 10));
    assert_eq!(over_limit.len(), 8193);
    let r = client.get("/", &carrying("alice", &over_limit, "gold"));
    h.record(
        "config one byte over max_input_bytes",
        &r,
        "stable",
        "drift",
        &["invalid_input", "field.flags.invalid"],
    );
    // The same value spread over 1 KiB CONTINUATION frames.
    let authority = main.to_string();
    let block = header_block(&get_fields(
        &authority,
        &carrying("alice", &over_limit, "gold"),
    ));
    let cuts: Vec<usize> = (1024..block.len()).step_by(1024).collect();
    let r = raw::get_block(main, &block, &cuts).response("over the limit, split");
    h.record(
        "config over the limit across CONTINUATION",
        &r,
        "stable",
        "drift",
        &["invalid_input", "field.flags.invalid"],
    );
    let long_key = "k".repeat(8193);
    let r = client.get("/", &matching(&long_key));
    h.record(
        "8193-byte sticky key",
        &r,
        "stable",
        "drift",
        &["invalid_input"],
    );
    let key = "k".repeat(8192);
    let r = client.get("/", &matching(&key));
    h.record("8192-byte sticky key", &r, side_of(&key), "match", &[]);
    h.finish();
}

#[test]
fn request_trailers_do_not_change_the_decision() {
    let mut h = Hostile::start(&example_contract());
    let mut client = Client::new(h.envoy.addr("main"));
    // The trailers restate the inputs and the route header the other way; the decision
    // is made on the headers.
    let mut post = |headers: &[(&str, &str)], body: &[u8], trailers: &[(&str, &str)]| {
        client
            .send(&Request {
                method: "POST",
                path: "/",
                headers,
                body,
                trailers,
            })
            .unwrap_or_else(|e| panic!("POST with trailers: {e}"))
            .into_response()
    };
    let r = post(
        &matching("alice"),
        b"order",
        &[
            ("x-user-config", "{}"),
            ("x-user-id", "bob"),
            ("x-rampart-route", "stable"),
        ],
    );
    h.record(
        "matching, drifted config in trailers",
        &r,
        "canary",
        "match",
        &[],
    );
    let r = post(
        &carrying("alice", FLAGS, "silver"),
        b"order",
        &[
            ("x-tenant-tier", "gold"),
            ("x-user-config", FLAGS),
            ("x-rampart-route", "canary"),
        ],
    );
    h.record(
        "drifted, matching config in trailers",
        &r,
        "stable",
        "drift",
        &["field.tier.drift"],
    );
    let r = post(&matching("bob"), b"", &[("x-rampart-route", "canary")]);
    h.record(
        "no body, forged route in trailers",
        &r,
        "stable",
        "match",
        &[],
    );
    // Written as frames: HEADERS, DATA, then the trailers' block cut across HEADERS
    // and CONTINUATION.
    let main = h.envoy.addr("main");
    let authority = main.to_string();
    let mut post = get_fields(&authority, &matching("alice"));
    post[0] = (":method", "POST");
    let trailers = [("x-user-config", "{}"), ("x-rampart-route", "stable")];
    let mut frames = header_frames(1, &header_block(&post), &[], false);
    frames.push(Frame::data(1, b"order", false));
    frames.extend(header_frames(1, &header_block(&trailers), &[7], true));
    let r = raw::exchange(main, &frames, 1).response("raw trailers");
    h.record("trailers across CONTINUATION", &r, "canary", "match", &[]);
    assert_eq!(h.envoy.counter("http2.trailers"), 4);
    h.finish();
}

/// An Envoy with the example contract (adapted by `adapt`) routing to the two gRPC
/// upstreams.
fn grpc_envoy(
    canary: &grpc::Upstream,
    stable: &grpc::Upstream,
    adapt: impl FnOnce(&mut Value),
) -> Hostile {
    let mut contract = example_contract();
    adapt(&mut contract);
    Hostile::with(
        Bootstrap::new()
            .pre_filter(tenant_metadata_filter())
            .plugin_config(&contract.to_string())
            .http2_upstreams(canary.addr(), stable.addr()),
    )
}

fn call(client: &mut Client, metadata: &[(&str, &str)], message: &[u8]) -> UnaryReply {
    grpc::unary(client, GRPC_METHOD, metadata, message)
}

#[test]
fn grpc_unary_calls_are_routed_by_the_same_rules_with_trailers_intact() {
    let canary = grpc::Upstream::start("canary", "x-rampart-route");
    let stable = grpc::Upstream::start("stable", "x-rampart-route");
    let mut h = grpc_envoy(&canary, &stable, |_| {});
    let mut client = Client::new(h.envoy.addr("main"));
    // The same rules, the inputs sent as gRPC metadata.
    for (i, c) in rules().iter().enumerate() {
        let (what, side) = (c.what, c.side);
        let message = format!("order-{i}");
        let reply = call(&mut client, &c.headers, message.as_bytes());
        assert_eq!(reply.grpc_status(), Some(0), "{what}: {reply:?}");
        assert_eq!(
            reply.message.as_deref(),
            Some(format!("{side}:{message}").as_bytes()),
            "{what}: the answer comes from the {side} upstream"
        );
        assert_eq!(
            reply.reply.trailers,
            [
                ("grpc-status".to_owned(), "0".to_owned()),
                (grpc::SIDE_TRAILER.to_owned(), side.to_owned())
            ],
            "{what}: the upstream's trailers arrive intact"
        );
        assert_eq!(reply.reply.header("content-type"), Some(grpc::CONTENT_TYPE));
        h.record(what, &reply.reply.into_response(), side, c.reason, c.extra);
    }
    h.finish();
    h.assert_every_request_reached_a_cluster();
}

#[test]
fn rejected_grpc_calls_get_envoys_grpc_status_in_a_trailers_only_reply() {
    let canary = grpc::Upstream::start("canary", "x-rampart-route");
    let stable = grpc::Upstream::start("stable", "x-rampart-route");
    // (reject_status, the grpc-status Envoy maps it to)
    for (status, grpc_status) in [(412, 2), (429, 14), (403, 7)] {
        let mut h = grpc_envoy(&canary, &stable, |c| {
            c["on_drift"] = "reject".into();
            c["reject_status"] = status.into();
        });
        let mut client = Client::new(h.envoy.addr("main"));
        let reply = call(
            &mut client,
            &carrying("alice", DRIFTED_FLAGS, "gold"),
            b"order",
        );
        // Envoy turns the filter's local reply into gRPC: HTTP 200, trailers-only, the
        // status mapped from the HTTP one, the reject body as grpc-message.
        let r = &reply.reply;
        assert_eq!(r.status, 200, "{status}: {reply:?}");
        assert_eq!(
            reply.grpc_status(),
            Some(grpc_status),
            "{status}: {reply:?}"
        );
        assert_eq!(
            reply.grpc_message(),
            Some(
                r#"{"error":"config drift","contract":"checkout-v2","reason":"drift","fields":["flags"]}%0A"#
            ),
        );
        assert_eq!(r.header("content-type"), Some(grpc::CONTENT_TYPE));
        assert!(
            r.trailers.is_empty() && reply.message.is_none(),
            "{reply:?}"
        );
        assert_eq!(r.header("x-served-by"), None, "no upstream answered");
        assert!(r
            .header("x-rampart-decision")
            .unwrap()
            .starts_with("route=reject reason=drift fields=flags "));
        h.count(&["requests", "rejected", "drift", "field.flags.drift"]);
        // A matching call still reaches the canary, trailers intact.
        let reply = call(&mut client, &matching("alice"), b"order");
        assert_eq!(reply.reply.trailer(grpc::SIDE_TRAILER), Some("canary"));
        h.record(
            "match",
            &reply.reply.into_response(),
            "canary",
            "match",
            &[],
        );
        h.finish();
        assert_eq!(h.envoy.counter("cluster.stable.upstream_rq_total"), 0);
    }
}
