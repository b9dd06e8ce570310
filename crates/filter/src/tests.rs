//! The filter's per-request logic against a fake host that answers from memory and
//! records every call: what each path costs in crossings, and what it writes.

use std::borrow::Cow;
use std::collections::HashMap;

use rampart::bucket::bucket;
use rampart_abi::{serialize_map, LogLevel, MetricType};

use super::filter::{header_value, Action, State};
use super::host::Host;
use super::Vm;
use rampart::decide::FILTER_STATE_KEY;
use rampart::host::HostError;
use rampart::metrics::contract_metric;

const CONTRACT: &str = include_str!("../../../examples/contract.json");
const TIER_PATH: &[u8] = b"metadata\0filter_metadata\0tenant\0tier";
const REV_PATH: &[u8] = b"xds\0node\0metadata\0CONFIG_REV";
/// `examples/snapshot.json`'s flags, canonical.
const FLAGS: &str = r#"{"checkout_v2":true,"currency":"EUR","max_items":50}"#;
/// The per-input drift counter of input `flags`, with both tags in the name.
const FLAGS_DRIFT: &str =
    "rampart_contract=.=checkout-v2;.;rampart_input=.=flags;.;rampart.field.drift";

/// One host call, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Log(LogLevel),
    PluginConfiguration,
    RequestHeaders,
    Property(Vec<u8>),
    SetRequestHeader(String, String),
    RemoveRequestHeader(String),
    SetFilterState(String),
    DefineMetric(String),
    Increment(String, u64),
    Record(String, u64),
    Now,
    SetTickPeriod(u32),
    SendLocalResponse(u32),
    SharedData,
    SetSharedData,
}

/// A host that answers from memory.
#[derive(Default)]
struct Fake {
    config: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    properties: HashMap<Vec<u8>, Vec<u8>>,
    refuse_header_writes: bool,
    refuse_header_removal: bool,
    /// Seconds past 1 s on the host's clock.
    clock_s: u64,
    metrics: Vec<String>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    calls: Vec<Call>,
    local_reply_headers: Vec<(String, String)>,
    logs: Vec<String>,
}

impl Fake {
    fn new(contract: &str) -> Fake {
        let mut fake = Fake {
            config: contract.as_bytes().to_vec(),
            ..Fake::default()
        };
        fake.properties.insert(TIER_PATH.to_vec(), b"gold".to_vec());
        fake.properties.insert(REV_PATH.to_vec(), b"r42".to_vec());
        fake
    }

    fn request(&mut self, headers: &[(&str, &str)]) {
        self.headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        self.calls.clear();
    }

    /// What the calls so far added to counter `name`.
    fn count(&self, name: &str) -> u64 {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Increment(n, by) if n == name => Some(*by),
                _ => None,
            })
            .sum()
    }

    fn route(&self) -> Option<&str> {
        self.calls.iter().rev().find_map(|c| match c {
            Call::SetRequestHeader(_, v) => Some(v.as_str()),
            _ => None,
        })
    }

    fn filter_state(&self) -> Option<&str> {
        self.calls.iter().find_map(|c| match c {
            Call::SetFilterState(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

impl Host for Fake {
    fn log(&mut self, level: LogLevel, message: &str) {
        self.calls.push(Call::Log(level));
        self.logs.push(message.to_owned());
    }

    fn plugin_configuration(&mut self) -> Vec<u8> {
        self.calls.push(Call::PluginConfiguration);
        self.config.clone()
    }

    fn request_headers(&mut self) -> Result<Vec<u8>, HostError> {
        self.calls.push(Call::RequestHeaders);
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let texts: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        for (k, v) in &texts {
            pairs.push((k, v));
        }
        Ok(serialize_map(&pairs))
    }

    fn property(&mut self, wire_path: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        self.calls.push(Call::Property(wire_path.to_vec()));
        Ok(self.properties.get(wire_path).cloned())
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.calls
            .push(Call::SetRequestHeader(name.to_owned(), value.to_owned()));
        if self.refuse_header_writes {
            Err(HostError)
        } else {
            Ok(())
        }
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.calls.push(Call::RemoveRequestHeader(name.to_owned()));
        if self.refuse_header_removal {
            Err(HostError)
        } else {
            Ok(())
        }
    }

    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        assert_eq!(name, FILTER_STATE_KEY);
        self.calls.push(Call::SetFilterState(
            String::from_utf8_lossy(value).into_owned(),
        ));
        Ok(())
    }

    fn define_metric(&mut self, _kind: MetricType, name: &str) -> Option<u32> {
        self.calls.push(Call::DefineMetric(name.to_owned()));
        self.metrics.push(name.to_owned());
        u32::try_from(self.metrics.len() - 1).ok()
    }

    fn increment(&mut self, metric: u32, by: u64) {
        let name = self.metrics[metric as usize].clone();
        self.calls.push(Call::Increment(name, by));
    }

    fn record(&mut self, metric: u32, value: u64) {
        let name = self.metrics[metric as usize].clone();
        self.calls.push(Call::Record(name, value));
    }

    fn now_nanos(&mut self) -> u64 {
        self.calls.push(Call::Now);
        (1 + self.clock_s) * 1_000_000_000
    }

    fn set_tick_period(&mut self, period_ms: u32) -> Result<(), HostError> {
        self.calls.push(Call::SetTickPeriod(period_ms));
        Ok(())
    }

    fn send_local_response(
        &mut self,
        status: u32,
        _details: &str,
        _body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        self.calls.push(Call::SendLocalResponse(status));
        self.local_reply_headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ok(())
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.calls.push(Call::SharedData);
        Ok(self.shared.get(key).cloned())
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        self.calls.push(Call::SetSharedData);
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Ok(false);
        }
        self.shared
            .insert(key.to_owned(), (value.to_vec(), current + 1));
        Ok(true)
    }
}

/// A user key whose bucket for the example contract is on the `canary` side (30 %) or not.
fn user(canary: bool) -> String {
    (0..)
        .map(|n| format!("user-{n}"))
        .find(|k| (bucket("checkout-v2", k.as_bytes()) < 3000) == canary)
        .unwrap_or_default()
}

fn configured(contract: &str) -> (Fake, State) {
    let mut host = Fake::new(contract);
    let state = State::configure(&mut host);
    assert!(matches!(state, State::Active(_)), "{:?}", host.logs);
    (host, state)
}

fn contract_with(from: &str, to: &str) -> String {
    assert!(CONTRACT.contains(from), "{from}");
    CONTRACT.replacen(from, to, 1)
}

/// Host calls of a matching request of the example contract: one header-map read, one
/// dynamic-metadata read, the decision in filter state (its debug header asks for it),
/// the route header. Counting costs none.
const PER_REQUEST_MATCH: usize = 4;

#[test]
fn a_matching_request_costs_one_header_read_one_metadata_read_and_two_writes() {
    let (mut host, state) = configured(CONTRACT);
    let alice = user(true);
    // The first request also fetches the node property, once per VM.
    host.request(&[("x-user-config", FLAGS), ("x-user-id", &alice)]);
    assert_eq!(state.on_request_headers(&mut host), Action::Continue);
    assert!(host.calls.contains(&Call::Property(REV_PATH.to_vec())));
    host.request(&[("x-user-config", FLAGS), ("x-user-id", &alice)]);
    assert_eq!(state.on_request_headers(&mut host), Action::Continue);
    assert_eq!(
        host.calls,
        vec![
            Call::RequestHeaders,
            Call::Property(TIER_PATH.to_vec()),
            Call::SetFilterState(host.filter_state().unwrap_or_default().to_owned()),
            Call::SetRequestHeader("x-rampart-route".into(), "canary".into()),
        ]
    );
    assert_eq!(host.calls.len(), PER_REQUEST_MATCH);
    assert!(host
        .filter_state()
        .unwrap()
        .starts_with("route=canary reason=match bucket="));
}

#[test]
fn counts_reach_envoy_on_the_tick_one_call_per_counter_that_moved() {
    let (mut host, state) = configured(CONTRACT);
    let (alice, bob) = (user(true), user(false));
    for user in [&alice, &bob, &alice] {
        host.request(&[("x-user-config", FLAGS), ("x-user-id", user)]);
        state.on_request_headers(&mut host);
        assert_eq!(
            host.count(&contract_metric("checkout-v2", "requests")),
            0,
            "not per request"
        );
    }
    host.request(&[("x-user-config", "{}"), ("x-user-id", &alice)]);
    state.on_request_headers(&mut host);
    host.calls.clear();
    state.on_tick(&mut host);
    let c = |name: &str| host.count(&contract_metric("checkout-v2", name));
    assert_eq!(
        (
            c("requests"),
            c("canary"),
            c("stable"),
            c("match"),
            c("drift")
        ),
        (4, 2, 2, 3, 1)
    );
    assert_eq!(host.count(FLAGS_DRIFT), 1);
    // requests, canary, stable, match, drift, field.flags.drift: six calls for four
    // requests, plus the drift log's clock; on a tick with nothing to add, the clock only.
    assert_eq!(host.calls.len(), 7, "{:?}", host.calls);
    assert_eq!(host.calls.last(), Some(&Call::Now));
    host.calls.clear();
    state.on_tick(&mut host);
    assert_eq!(host.calls, vec![Call::Now]);
}

#[test]
fn a_deleted_configuration_hands_its_last_counts_to_envoy() {
    let mut vm = Vm::default();
    vm.create(1, 0);
    let (mut host, state) = configured(CONTRACT);
    assert!(
        vm.configure(1, state).is_some(),
        "replaces the unconfigured state"
    );
    vm.create(2, 1);
    host.request(&[("x-user-config", FLAGS), ("x-user-id", "u")]);
    vm.take_stream(2).unwrap().on_request_headers(&mut host);
    let deleted = vm.delete(1).expect("a configuration");
    deleted.flush(&mut host);
    assert_eq!(host.count(&contract_metric("checkout-v2", "requests")), 1);
}

#[test]
fn the_decision_is_recorded_only_when_the_contract_asks_for_it() {
    let quiet = contract_with(r#""response_header": "x-rampart-decision","#, "");
    let recorded = contract_with(
        r#""response_header": "x-rampart-decision","#,
        r#""filter_state": true,"#,
    );
    for (contract, calls) in [
        (quiet, PER_REQUEST_MATCH - 1),
        (recorded, PER_REQUEST_MATCH),
    ] {
        let (mut host, state) = configured(&contract);
        for _ in 0..2 {
            host.request(&[("x-user-config", FLAGS), ("x-user-id", "u")]);
            state.on_request_headers(&mut host);
        }
        assert_eq!(host.calls.len(), calls, "{:?}", host.calls);
    }
}

#[test]
fn every_path_makes_a_known_number_of_host_calls() {
    let bob = user(false);
    // (contract, headers, tier, expected route, calls on a second request)
    let drifted = r#"{"checkout_v2":true,"currency":"USD","max_items":50}"#;
    let reject = contract_with(r#""on_drift": "stable""#, r#""on_drift": "reject""#);
    let paused = contract_with(r#""paused": false"#, r#""paused": true"#);
    let unkeyed: &[(&str, &str)] = &[("x-user-config", FLAGS)];
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            "match (stable side)",
            CONTRACT.to_owned(),
            vec![("x-user-config", FLAGS), ("x-user-id", &bob)],
            Some("stable"),
            PER_REQUEST_MATCH,
        ),
        // Drift: no sticky key, and no clock (the rate-limited log keeps the tick's).
        (
            "drift",
            CONTRACT.to_owned(),
            vec![("x-user-config", drifted), ("x-user-id", &bob)],
            Some("stable"),
            PER_REQUEST_MATCH,
        ),
        // Reject: a local reply instead of the route header.
        (
            "reject",
            reject,
            vec![("x-user-config", drifted), ("x-user-id", &bob)],
            None,
            PER_REQUEST_MATCH,
        ),
        (
            "unkeyed",
            CONTRACT.to_owned(),
            unkeyed.to_vec(),
            Some("stable"),
            PER_REQUEST_MATCH,
        ),
        // Paused: decided before any input is read.
        (
            "paused",
            paused,
            vec![("x-user-config", FLAGS), ("x-user-id", &bob)],
            Some("stable"),
            PER_REQUEST_MATCH - 2,
        ),
    ];
    for (name, contract, headers, route, calls) in cases {
        let (mut host, state) = configured(&contract);
        for _ in 0..2 {
            host.request(&headers);
            state.on_request_headers(&mut host);
        }
        assert_eq!(host.calls.len(), calls, "{name}: {:#?}", host.calls);
        assert_eq!(host.route(), route, "{name}");
        assert_eq!(
            host.calls
                .iter()
                .filter(|c| matches!(c, Call::RequestHeaders))
                .count(),
            usize::from(name != "paused"),
            "{name}: the header map is read at most once"
        );
    }
}

#[test]
fn the_drift_log_is_rate_limited_per_interval() {
    let (mut host, state) = configured(CONTRACT);
    let drifted = r#"{"checkout_v2":false}"#;
    host.logs.clear();
    for _ in 0..3 {
        host.request(&[("x-user-config", drifted), ("x-user-id", "u")]);
        state.on_request_headers(&mut host);
    }
    // The fake clock stands still: one line, the other two suppressed.
    let lines = |host: &Fake| -> Vec<String> {
        host.logs
            .iter()
            .filter(|l| l.contains("drift"))
            .cloned()
            .collect()
    };
    assert_eq!(lines(&host).len(), 1, "{:?}", lines(&host));
    assert!(lines(&host)[0].contains("flags=drift(observed sha256:"));
    assert!(!lines(&host)[0].contains("USD") && !lines(&host)[0].contains("false"));
    assert!(
        !host.calls.contains(&Call::Now),
        "no request reads the clock"
    );
    state.on_tick(&mut host);
    assert_eq!(host.count(FLAGS_DRIFT), 3);
    // The log keeps the time of the last tick: past the interval (10 s) but before a
    // tick, still suppressed; a tick 9 s on is still within it; 10 s on, the next
    // drifted request is logged with the count of the ones that were not.
    host.clock_s = 10;
    host.request(&[("x-user-config", drifted), ("x-user-id", "u")]);
    state.on_request_headers(&mut host);
    host.clock_s = 9;
    state.on_tick(&mut host);
    host.request(&[("x-user-config", drifted), ("x-user-id", "u")]);
    state.on_request_headers(&mut host);
    assert_eq!(lines(&host).len(), 1, "{:?}", lines(&host));
    host.clock_s = 10;
    state.on_tick(&mut host);
    host.request(&[("x-user-config", drifted), ("x-user-id", "u")]);
    state.on_request_headers(&mut host);
    assert_eq!(lines(&host).len(), 2, "{:?}", lines(&host));
    assert!(
        lines(&host)[1].contains("(+4 similar requests not logged)"),
        "{:?}",
        lines(&host)
    );
}

#[test]
fn safe_mode_costs_a_state_write_and_the_route_header() {
    let mut host = Fake::new(r#"{"contract": "x", "ramp": {"percent": 500}}"#);
    let state = State::configure(&mut host);
    assert!(matches!(state, State::SafeMode(_)));
    assert!(host.logs.iter().any(|l| l.contains("SAFE MODE")));
    assert_eq!(host.count("rampart.invalid_config"), 1);
    assert!(
        host.calls.contains(&Call::SetTickPeriod(1000)),
        "ticks flush the count"
    );
    for _ in 0..2 {
        host.request(&[("x-rampart-route", "canary")]);
        state.on_request_headers(&mut host);
    }
    assert_eq!(
        host.calls,
        vec![
            Call::SetFilterState("route=stable reason=invalid_contract".into()),
            Call::SetRequestHeader("x-rampart-route".into(), "stable".into()),
        ]
    );
    state.on_tick(&mut host);
    assert_eq!(
        host.count("rampart.safe_mode"),
        2,
        "both requests, in one call"
    );
}

#[test]
fn a_contract_without_header_inputs_never_reads_the_header_map() {
    let contract = r#"{"contract": "meta", "ramp": {"percent": 100, "sticky": {"property": ["metadata","filter_metadata","tenant","tier"]}},
        "inputs": {"tier": {"property": ["metadata","filter_metadata","tenant","tier"]}},
        "lock": {"fields": {"tier": "sha256:8dd7871b52fd5765059f398c5b5ffcece805508f9643d6f4fd23dd33f20c2816"}}}"#;
    let (mut host, state) = configured(contract);
    host.request(&[("x-user-config", FLAGS)]);
    state.on_request_headers(&mut host);
    assert!(
        !host.calls.contains(&Call::RequestHeaders),
        "{:?}",
        host.calls
    );
    assert_eq!(host.route(), Some("canary"));
}

#[test]
fn repeated_config_headers_are_joined_and_drift() {
    let (mut host, state) = configured(CONTRACT);
    let alice = user(true);
    host.request(&[
        ("x-user-config", FLAGS),
        ("x-user-id", &alice),
        ("x-user-config", FLAGS),
    ]);
    state.on_request_headers(&mut host);
    assert_eq!(host.route(), Some("stable"));
    assert!(host
        .filter_state()
        .unwrap()
        .contains("reason=drift fields=flags"));
}

#[test]
fn header_values_join_like_envoys_request_headers_attribute() {
    let map = serialize_map(&[("a", "1"), ("b", "x"), ("a", ""), ("A", "3")]);
    let owned = |name: &[u8]| header_value(&map, name).map(|v| v.map(Cow::into_owned));
    assert_eq!(owned(b"a"), Ok(Some(b"1,,3".to_vec())));
    assert_eq!(owned(b"b"), Ok(Some(b"x".to_vec())));
    // A header sent once is lent out of the map; only a repeated one is copied to join.
    assert!(matches!(
        header_value(&map, b"b"),
        Ok(Some(Cow::Borrowed(b"x")))
    ));
    assert!(matches!(header_value(&map, b"a"), Ok(Some(Cow::Owned(_)))));
    assert_eq!(header_value(&map, b"c"), Ok(None));
    assert_eq!(header_value(&map[..map.len() - 1], b"a"), Err(HostError));
}

#[test]
fn a_header_both_an_input_and_the_sticky_key_serves_both() {
    // The config header is also the sticky key: both reads see its value, from one
    // read of the map.
    let contract = contract_with(r#""header": "x-user-id""#, r#""header": "x-user-config""#);
    let (mut host, state) = configured(&contract);
    let key = bucket("checkout-v2", FLAGS.as_bytes());
    host.request(&[("x-user-config", FLAGS)]);
    state.on_request_headers(&mut host);
    let summary = host.filter_state().unwrap_or_default().to_owned();
    assert!(
        summary.contains("reason=match") && summary.contains(&format!("bucket={key} ")),
        "{summary}"
    );
    assert_eq!(
        host.calls
            .iter()
            .filter(|c| matches!(c, Call::RequestHeaders))
            .count(),
        1
    );
}

#[test]
fn reject_answers_locally_after_recording_the_decision_and_sets_no_route_header() {
    let reject = contract_with(r#""on_drift": "stable""#, r#""on_drift": "reject""#);
    let (mut host, state) = configured(&reject);
    host.request(&[("x-user-config", "{}"), ("x-user-id", "u")]);
    assert_eq!(state.on_request_headers(&mut host), Action::Pause);
    assert_eq!(host.route(), None);
    let state_at = host
        .calls
        .iter()
        .position(|c| matches!(c, Call::SetFilterState(_)));
    let reply_at = host
        .calls
        .iter()
        .position(|c| *c == Call::SendLocalResponse(412));
    assert!(
        state_at < reply_at && reply_at.is_some(),
        "{:?}",
        host.calls
    );
    assert!(host
        .filter_state()
        .is_some_and(|d| d.starts_with("route=reject reason=drift")));
    // The debug header is Envoy's (response_headers_to_add from filter state).
    assert_eq!(
        host.local_reply_headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
}

#[test]
fn a_refused_route_header_is_removed_and_then_answered_with_503() {
    let (mut host, state) = configured(CONTRACT);
    host.refuse_header_writes = true;
    host.request(&[("x-user-config", FLAGS), ("x-user-id", "u")]);
    assert_eq!(state.on_request_headers(&mut host), Action::Continue);
    assert!(host
        .calls
        .contains(&Call::RemoveRequestHeader("x-rampart-route".into())));
    host.refuse_header_removal = true;
    host.request(&[("x-user-config", FLAGS), ("x-user-id", "u")]);
    assert_eq!(state.on_request_headers(&mut host), Action::Pause);
    assert!(host.calls.contains(&Call::SendLocalResponse(503)));
}

#[test]
fn the_drift_pause_costs_no_host_call_per_request_only_per_tick() {
    let contract = contract_with(
        r#""on_drift": "stable""#,
        r#""on_drift": "stable", "drift_pause": {"max_ratio": 0.5, "min_requests": 2, "window_seconds": 10}"#,
    );
    let (mut host, state) = configured(&contract);
    assert!(host
        .calls
        .iter()
        .any(|c| matches!(c, Call::SetTickPeriod(p) if *p > 0)));
    for _ in 0..4 {
        host.request(&[("x-user-config", "{}"), ("x-user-id", "u")]);
        state.on_request_headers(&mut host);
        assert!(!host
            .calls
            .iter()
            .any(|c| matches!(c, Call::SharedData | Call::SetSharedData)));
    }
    host.calls.clear();
    state.on_tick(&mut host);
    assert!(host.calls.contains(&Call::SetSharedData));
    assert!(host.calls.contains(&Call::Record(
        contract_metric("checkout-v2", "drift_paused"),
        1
    )));
    // Paused: everyone to stable, before any input is read.
    host.request(&[("x-user-config", FLAGS), ("x-user-id", &user(true))]);
    state.on_request_headers(&mut host);
    assert_eq!(host.route(), Some("stable"));
    assert!(host.filter_state().unwrap().contains("reason=drift_paused"));
    assert_eq!(host.calls.len(), PER_REQUEST_MATCH - 2);
}

#[test]
fn requests_decide_with_the_configuration_they_were_created_under() {
    let mut vm = Vm::default();
    vm.create(1, 0);
    vm.create(2, 0);
    let (mut host_a, a) = configured(CONTRACT);
    let (_, b) = configured(&contract_with(r#""paused": false"#, r#""paused": true"#));
    vm.configure(1, a);
    vm.configure(2, b);
    vm.create(10, 2);
    vm.create(11, 1);
    vm.create(12, 2);
    assert_eq!(vm.streams.len(), 3);
    let alice = user(true);
    host_a.request(&[("x-user-config", FLAGS), ("x-user-id", &alice)]);
    vm.take_stream(11).unwrap().on_request_headers(&mut host_a);
    assert_eq!(host_a.route(), Some("canary"));
    host_a.request(&[("x-user-config", FLAGS), ("x-user-id", &alice)]);
    vm.take_stream(12).unwrap().on_request_headers(&mut host_a);
    assert_eq!(host_a.route(), Some("stable"), "root 2 is paused");
    // A request that never reached its headers, and a finished configuration.
    vm.delete(10);
    vm.delete(1);
    assert!(vm.streams.is_empty());
    assert_eq!(vm.roots.len(), 1);
    assert!(vm.take_stream(10).is_none());
    assert!(vm.fallback().is_some(), "one configuration left");
    vm.delete(2);
    assert!(vm.fallback().is_none());
}

#[test]
fn out_of_order_context_ids_stay_findable() {
    let mut vm = Vm::default();
    vm.create(1, 0);
    for id in [5, 3, 9, 4] {
        vm.create(id, 1);
    }
    for id in [3, 4, 5, 9] {
        assert!(vm.take_stream(id).is_some(), "{id}");
    }
}
