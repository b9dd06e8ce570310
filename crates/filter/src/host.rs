//! Everything the filter asks of Envoy, behind one trait.
//!
//! [`Envoy`] implements it over the ABI ([`rampart_abi`]); the unit tests implement it
//! with a fake that answers from memory and records every call, so the per-request
//! logic runs natively and a change in the number of crossings fails a test.

use rampart::drift_pause::SharedStore;
use rampart::host::HostError;
use rampart_abi::{LogLevel, MapType, MetricType, Status};

/// The host calls the filter makes. Every method is one crossing into Envoy.
pub trait Host {
    /// Writes one line to Envoy's log.
    fn log(&mut self, level: LogLevel, message: &str);
    /// The plugin configuration (the contract); empty when there is none.
    fn plugin_configuration(&mut self) -> Vec<u8>;
    /// Every request header, serialized as an ABI map.
    fn request_headers(&mut self) -> Result<Vec<u8>, HostError>;
    /// A property by its wire path; `None` when absent.
    fn property(&mut self, wire_path: &[u8]) -> Result<Option<Vec<u8>>, HostError>;
    /// Sets a request header, replacing every value it had.
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Removes every value of a request header.
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Stores bytes in filter state (`wasm.<name>` in Envoy).
    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Defines a metric; `None` when the host refuses.
    fn define_metric(&mut self, kind: MetricType, name: &str) -> Option<u32>;
    /// Adds to a counter; a lost count is not worth failing a request for.
    fn increment(&mut self, metric: u32, by: u64);
    /// Sets a gauge.
    fn record(&mut self, metric: u32, value: u64);
    /// Host time in nanoseconds since the epoch; 0 when the host cannot tell.
    fn now_nanos(&mut self) -> u64;
    /// Asks for ticks every `period_ms` (0: none).
    fn set_tick_period(&mut self, period_ms: u32) -> Result<(), HostError>;
    /// Answers the request locally.
    fn send_local_response(
        &mut self,
        status: u32,
        details: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError>;
    /// A shared-data value and its CAS token.
    fn shared_data(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes shared data; `Ok(false)` when the CAS token is stale.
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError>;
}

/// Envoy, through the ABI.
pub struct Envoy;

fn ok(result: Result<(), Status>) -> Result<(), HostError> {
    result.map_err(|_| HostError)
}

impl Host for Envoy {
    fn log(&mut self, level: LogLevel, message: &str) {
        let _ = rampart_abi::log(level, message);
    }

    fn plugin_configuration(&mut self) -> Vec<u8> {
        rampart_abi::plugin_configuration()
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn request_headers(&mut self) -> Result<Vec<u8>, HostError> {
        match rampart_abi::header_map_pairs(MapType::RequestHeaders) {
            Ok(bytes) => Ok(bytes.unwrap_or_default()),
            Err(_) => Err(HostError),
        }
    }

    fn property(&mut self, wire_path: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
        rampart_abi::property(wire_path).map_err(|_| HostError)
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        ok(rampart_abi::replace_header_map_value(
            MapType::RequestHeaders,
            name,
            value.as_bytes(),
        ))
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        ok(rampart_abi::remove_header_map_value(
            MapType::RequestHeaders,
            name,
        ))
    }

    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        ok(rampart_abi::set_property(name.as_bytes(), value))
    }

    fn define_metric(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        rampart_abi::define_metric(kind, name).ok()
    }

    fn increment(&mut self, metric: u32, by: u64) {
        let _ = rampart_abi::increment_metric(metric, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record(&mut self, metric: u32, value: u64) {
        let _ = rampart_abi::record_metric(metric, value);
    }

    fn now_nanos(&mut self) -> u64 {
        rampart_abi::current_time_nanos().unwrap_or(0)
    }

    fn set_tick_period(&mut self, period_ms: u32) -> Result<(), HostError> {
        ok(rampart_abi::set_tick_period(period_ms))
    }

    fn send_local_response(
        &mut self,
        status: u32,
        details: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), HostError> {
        let headers = rampart_abi::serialize_map(headers);
        ok(rampart_abi::send_local_response(
            status, details, body, &headers,
        ))
    }

    fn shared_data(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        rampart_abi::shared_data(key).map_err(|_| HostError)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        match rampart_abi::set_shared_data(key, value, cas) {
            Ok(()) => Ok(true),
            Err(Status::CAS_MISMATCH) => Ok(false),
            Err(_) => Err(HostError),
        }
    }
}

/// The drift pause's shared store over any host.
pub struct Store<'a, H: Host>(pub &'a mut H);

impl<H: Host> SharedStore for Store<'_, H> {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.0.shared_data(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        self.0.set_shared_data(key, value, cas)
    }
}
