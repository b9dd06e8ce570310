//! The per-request path timed inside a wasm engine, without Envoy (`cargo xtask bench
//! --vm`, feature `vm-bench`; never in the shipped module).
//!
//! Envoy's CPU per request mixes Rampart's work with the proxy's and the kernel's and
//! swings with the host's load; this runs the filter's own per-request code — the same
//! [`State::on_request_headers`] — over a host that answers from memory, so the V8 the
//! harness runs it in shows what the decision itself costs there, function by function.
//!
//! The harness hands over one scenario (`rampart_vm_bench_load`) as an ABI map
//! ([`rampart_abi::serialize_map`]): `contract` → the contract, `map` → one serialized
//! request header map per request (taken in turn), any other key → a property's wire
//! path and the value the host answers with.

use crate::filter::{Action, State};
use crate::host::Host;
use rampart::host::HostError;
use rampart_abi::{HeaderMap, LogLevel, MetricType};

/// What the host answers with, from memory; every write is dropped but the route
/// header's value is looked at. Each answer is a fresh copy, as Envoy allocates one in
/// the module per read.
#[derive(Default)]
struct Replay {
    contract: Vec<u8>,
    properties: Vec<(Vec<u8>, Vec<u8>)>,
    maps: Vec<Vec<u8>>,
    next: usize,
    /// The route header and its stable value, once configured.
    stable: Option<(String, String)>,
    /// Route header writes of another value than the stable one: canary routes.
    canary: u32,
}

impl Host for Replay {
    fn log(&mut self, _level: LogLevel, _message: &str) {}

    fn plugin_configuration(&mut self) -> Vec<u8> {
        self.contract.clone()
    }

    fn request_headers(&mut self) -> Result<Vec<u8>, HostError> {
        self.maps.get(self.next).cloned().ok_or(HostError)
    }

    fn property(&mut self, wire_path: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .properties
            .iter()
            .find(|(path, _)| path == wire_path)
            .map(|(_, value)| value.clone()))
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if let Some((header, stable)) = &self.stable {
            if header == name && stable != value {
                self.canary = self.canary.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn remove_request_header(&mut self, _name: &str) -> Result<(), HostError> {
        Ok(())
    }

    fn set_filter_state(&mut self, _name: &str, _value: &[u8]) -> Result<(), HostError> {
        Ok(())
    }

    fn define_metric(&mut self, _kind: MetricType, _name: &str) -> Option<u32> {
        Some(1)
    }

    fn increment(&mut self, _metric: u32, _by: u64) {}

    fn record(&mut self, _metric: u32, _value: u64) {}

    fn now_nanos(&mut self) -> u64 {
        0
    }

    fn set_tick_period(&mut self, _period_ms: u32) -> Result<(), HostError> {
        Ok(())
    }

    fn send_local_response(
        &mut self,
        _status: u32,
        _details: &str,
        _body: &[u8],
        _headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        Ok(())
    }

    fn shared_data(&mut self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Ok(None)
    }

    fn set_shared_data(&mut self, _key: &str, _value: &[u8], _cas: u32) -> Result<bool, HostError> {
        Ok(true)
    }
}

/// Reads a scenario (see the module docs); `None` when it is malformed, has no
/// contract or no request.
fn parse(bytes: &[u8]) -> Option<Replay> {
    let mut replay = Replay::default();
    let mut contract = None;
    for (key, value) in HeaderMap::parse(bytes)?.iter() {
        match key {
            b"contract" => contract = Some(value.to_vec()),
            b"map" => replay.maps.push(value.to_vec()),
            path => replay.properties.push((path.to_vec(), value.to_vec())),
        }
    }
    replay.contract = contract?;
    (!replay.maps.is_empty()).then_some(replay)
}

thread_local! {
    static BENCH: std::cell::RefCell<Option<(Replay, State)>> = const { std::cell::RefCell::new(None) };
}

/// Loads the scenario at `ptr` (`len` bytes, allocated with the module's `malloc`) and
/// configures the filter with its contract. Returns 1 when the contract is valid, 0
/// when it gave safe mode, -1 when the scenario is malformed.
#[no_mangle]
pub extern "C" fn rampart_vm_bench_load(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: the harness wrote `len` bytes at `ptr`, allocated by `malloc` (a boxed
    // slice of exactly `len` bytes), and hands them over.
    let bytes = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) };
    let Some(mut replay) = parse(&bytes) else {
        return -1;
    };
    let state = State::configure(&mut replay);
    let (header, stable) = state.stable_route();
    replay.stable = Some((header.to_owned(), stable.to_owned()));
    let active = i32::from(matches!(state, State::Active(_)));
    BENCH.with(|b| *b.borrow_mut() = Some((replay, state)));
    active
}

/// Runs `requests` requests through the per-request path, the scenario's header maps
/// in turn. Returns how many were routed to the canary (so the harness can tell the
/// decisions were real), or -1 when no scenario is loaded.
#[no_mangle]
pub extern "C" fn rampart_vm_bench_run(requests: u32) -> i32 {
    BENCH.with(|b| {
        let Ok(mut bench) = b.try_borrow_mut() else {
            return -1;
        };
        let Some((replay, state)) = bench.as_mut() else {
            return -1;
        };
        replay.canary = 0;
        for _ in 0..requests {
            let _: Action = state.on_request_headers(replay);
            replay.next = (replay.next + 1) % replay.maps.len();
        }
        i32::try_from(replay.canary).unwrap_or(i32::MAX)
    })
}
