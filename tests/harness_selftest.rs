//! The end-to-end harness checked against a real Envoy, without the Rampart filter:
//! routing by the route header, stats, logs, the HTTP client and parallel startup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;

use serde_json::{json, Value};
use support::{get, get_raw, validate, Bootstrap, Client, Envoy, TempDir, TMPDIR_PLACEHOLDER};

const CANARY: (&str, &str) = ("x-rampart-route", "canary");

fn start_default() -> Envoy {
    Envoy::start(&Bootstrap::new().build())
}

/// An HTTP filter that answers every request with 418 before routing.
fn teapot_filter() -> Value {
    json!({
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": { "http_status": 418, "percentage": { "numerator": 100, "denominator": "HUNDRED" } },
        },
    })
}

fn node_metadata(envoy: &Envoy) -> Value {
    let info: Value = serde_json::from_str(&envoy.get_admin("/server_info")).unwrap();
    info["node"]["metadata"].clone()
}

#[test]
fn requests_without_route_header_reach_stable() {
    let envoy = start_default();

    let response = get(envoy.addr("main"), "/", &[]);

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "stable\n");
    assert_eq!(response.header("x-served-by"), Some("stable"));
    assert_eq!(response.header("X-Seen-Route"), None);
}

#[test]
fn canary_route_header_reaches_canary() {
    let envoy = start_default();

    let response = get(envoy.addr("main"), "/some/path?q=1", &[CANARY]);

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "canary\n");
    assert_eq!(response.header("X-Served-By"), Some("canary"));
    assert_eq!(response.header("x-seen-route"), Some("canary"));
}

#[test]
fn route_header_must_match_exactly_to_reach_canary() {
    let envoy = start_default();

    for value in ["Canary", "canary2", "xcanary", "stable"] {
        let response = get(envoy.addr("main"), "/", &[("x-rampart-route", value)]);
        assert_eq!(response.body, "stable\n", "route value {value:?}");
        assert_eq!(response.header("x-seen-route"), Some(value));
    }
}

#[test]
fn route_header_name_and_canary_value_are_configurable() {
    let envoy = Envoy::start(&Bootstrap::new().route_header("x-lane", "blue").build());
    let main = envoy.addr("main");

    let blue = get(main, "/", &[("x-lane", "blue")]);
    let default_header = get(main, "/", &[CANARY]);

    assert_eq!(blue.body, "canary\n");
    assert_eq!(blue.header("x-seen-route"), Some("blue"));
    assert_eq!(default_header.body, "stable\n");
}

#[test]
fn upstream_counters_equal_requests_sent() {
    let envoy = start_default();
    let mut client = Client::new(envoy.addr("main"));

    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).body, "stable\n");
    }
    for _ in 0..2 {
        assert_eq!(client.get("/", &[CANARY]).body, "canary\n");
    }

    assert_eq!(envoy.counter("cluster.stable.upstream_rq_total"), 3);
    assert_eq!(envoy.counter("cluster.canary.upstream_rq_total"), 2);
    envoy.wait_for_counter("http.main.downstream_rq_completed", 5);
    assert_eq!(envoy.stats().get("http.main.downstream_rq_2xx"), Some(&5));
    assert_eq!(envoy.counter("no.such.counter"), 0);
}

#[test]
fn admin_post_resets_counters() {
    let envoy = start_default();
    get(envoy.addr("main"), "/", &[]);
    assert_eq!(envoy.counter("cluster.stable.upstream_rq_total"), 1);

    envoy.post_admin("/reset_counters");

    assert_eq!(envoy.counter("cluster.stable.upstream_rq_total"), 0);
}

#[test]
fn keep_alive_client_reuses_its_connection_until_the_server_closes_it() {
    let envoy = start_default();
    let mut client = Client::new(envoy.addr("main"));

    client.get("/", &[]);
    client.get("/", &[]);
    assert_eq!(envoy.counter("http.main.downstream_cx_total"), 1);

    let closing = client.get("/", &[("connection", "close")]);
    assert_eq!(closing.header("connection"), Some("close"));
    assert_eq!(client.get("/", &[]).body, "stable\n");
    assert_eq!(envoy.counter("http.main.downstream_cx_total"), 2);
}

#[test]
fn access_log_records_code_and_cluster_of_each_request() {
    let envoy = start_default();

    get(envoy.addr("main"), "/", &[]);
    get(envoy.addr("main"), "/", &[CANARY]);

    // Without the filter there is no decision in filter state: `-`.
    assert_eq!(
        envoy.wait_for_access_log(2),
        ["200 stable -", "200 canary -"]
    );
}

#[test]
fn pre_filters_run_before_the_router() {
    let envoy = Envoy::start(&Bootstrap::new().pre_filter(teapot_filter()).build());

    let response = get(envoy.addr("main"), "/", &[]);

    assert_eq!(response.status, 418);
    assert_eq!(envoy.counter("cluster.stable.upstream_rq_total"), 0);
}

#[test]
fn node_metadata_defaults_to_config_rev_and_can_be_replaced() {
    let default = start_default();
    let custom = Envoy::start(
        &Bootstrap::new()
            .node_metadata(json!({ "CONFIG_REV": "r7", "region": "eu" }))
            .build(),
    );

    assert_eq!(node_metadata(&default), json!({ "CONFIG_REV": "r42" }));
    assert_eq!(
        node_metadata(&custom),
        json!({ "CONFIG_REV": "r7", "region": "eu" })
    );
}

#[test]
fn raw_requests_can_carry_non_utf8_header_values() {
    let envoy = start_default();

    let response = get_raw(
        envoy.addr("main"),
        b"GET / HTTP/1.1\r\nhost: test\r\nx-rampart-route: \xff\xfe\r\nconnection: close\r\n\r\n",
    );

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "stable\n");
    assert_eq!(response.header("x-seen-route"), Some("\u{fffd}\u{fffd}"));
}

#[test]
fn envoys_start_in_parallel_on_distinct_ports() {
    let starting: Vec<_> = (0..2).map(|_| thread::spawn(start_default)).collect();
    let envoys: Vec<Envoy> = starting
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();

    assert_ne!(envoys[0].admin_addr(), envoys[1].admin_addr());
    assert_ne!(envoys[0].port("main"), envoys[1].port("main"));
    for envoy in &envoys {
        assert_eq!(get(envoy.addr("main"), "/", &[]).body, "stable\n");
    }
    assert_ne!(envoys[0].dir(), envoys[1].dir());
}

#[test]
fn extra_args_replace_defaults_and_the_log_is_readable() {
    let envoy = Envoy::start_with(
        &Bootstrap::new().build(),
        &["--concurrency", "2", "--log-level", "info"],
        None,
    );

    let info: Value = serde_json::from_str(&envoy.get_admin("/server_info")).unwrap();
    assert_eq!(info["command_line_options"]["concurrency"], 2);
    envoy.wait_for_log("starting main dispatch loop");
}

#[test]
fn broken_bootstrap_panics_with_envoy_output() {
    let failure = std::panic::catch_unwind(|| {
        Envoy::start("static_resources: {clusters: [{name: x, type: NOPE}]}")
    })
    .err()
    .expect("Envoy started with a broken bootstrap");
    let message = failure
        .downcast_ref::<String>()
        .expect("panic message is a String");

    assert!(message.contains("Envoy exited during startup"), "{message}");
    assert!(message.contains("NOPE"), "{message}");
}

#[test]
fn built_bootstrap_passes_envoy_validation_and_broken_one_does_not() {
    let dir = TempDir::new("validate");
    let dir_text = dir.path().to_str().unwrap();
    let text = Bootstrap::new()
        .pre_filter(teapot_filter())
        .route_header("x-lane", "blue")
        .build()
        .replace(TMPDIR_PLACEHOLDER, dir_text);
    let good = dir.write("bootstrap.json", &text);
    let broken = dir.write(
        "broken.yaml",
        "static_resources: {clusters: [{name: x, type: NOPE}]}",
    );

    assert_eq!(validate(&good), Ok(()));
    let error = validate(&broken).unwrap_err();
    assert!(error.contains("NOPE"), "{error}");
}

/// Serves `responses` in order, one per connection, closing each connection
/// after writing without saying so; returns the request lines it received.
fn serve_and_close(responses: Vec<&'static [u8]>) -> (SocketAddr, thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let mut request_lines = Vec::new();
        for response in responses {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim_end().is_empty() {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            request_lines.push(head[0].clone());
            reader.get_mut().write_all(response).unwrap();
        }
        request_lines
    });
    (addr, server)
}

#[test]
fn client_decodes_chunked_bodies_skips_interim_responses_and_reconnects() {
    let (addr, server) = serve_and_close(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nstab\r\n3;ext=1\r\nle\n\r\n0\r\nx-trailer: t\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
    ]);
    let mut client = Client::new(addr);

    let chunked = client.get("/first", &[]);
    // The server dropped the first connection silently: the client must reconnect.
    let sized = client.get("/second", &[]);

    assert_eq!((chunked.status, chunked.body.as_str()), (200, "stable\n"));
    assert_eq!((sized.status, sized.body.as_str()), (201, "ok"));
    assert_eq!(
        server.join().unwrap(),
        ["GET /first HTTP/1.1", "GET /second HTTP/1.1"]
    );
}
