//! The few host calls made per request, declared directly against the proxy-wasm ABI.
//!
//! The SDK's wrappers panic on any status they do not expect, and a panic traps the VM
//! and takes the filter down; these return the status instead, and take property paths
//! already serialized in `on_configure`.

use std::ptr::null_mut;

use rampart::decide::HostError;
use rampart::drift_pause::SharedStore;

/// `MapType::HttpRequestHeaders` in the ABI.
const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpResponseHeaders` in the ABI.
const RESPONSE_HEADERS: u32 = 2;
const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

// The SDK declares the same imports with its own `Status` enum; at the wasm level both
// are i32, and a raw integer cannot hold a value the enum does not know.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through the module's allocator.
///
/// # Safety
/// `data`/`size` must come from a successful host call that returns memory allocated
/// with `proxy_on_memory_allocate` (the SDK's allocator, a `Vec<u8>` of that length).
unsafe fn host_bytes(
    status: u32,
    data: *mut u8,
    size: usize,
) -> Result<Option<Vec<u8>>, HostError> {
    match status {
        STATUS_OK if data.is_null() => Ok(Some(Vec::new())),
        STATUS_OK => Ok(Some(Vec::from_raw_parts(data, size, size))),
        STATUS_NOT_FOUND => Ok(None),
        _ => Err(HostError),
    }
}

/// A property by its NUL-joined path.
pub fn property(wire_path: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers to live locals; the host writes a buffer it allocated via the
    // module allocator, which `host_bytes` adopts.
    unsafe {
        let status = proxy_get_property(wire_path.as_ptr(), wire_path.len(), &mut data, &mut size);
        host_bytes(status, data, size)
    }
}

fn replace_header(map: u32, name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the host only reads the two buffers during the call.
    let status = unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Sets (replacing every existing value) a request header.
pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
    replace_header(REQUEST_HEADERS, name, value.as_bytes())
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    // SAFETY: the host only reads the buffer during the call.
    let status =
        unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Sets a response header.
pub fn set_response_header(name: &str, value: &str) -> Result<(), HostError> {
    replace_header(RESPONSE_HEADERS, name, value.as_bytes())
}

/// Stores bytes in filter state under a property name (Envoy: `wasm.<name>`).
pub fn set_filter_state(name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the host only reads the two buffers during the call.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Adds one to a counter; a failure only loses a count, so it is ignored.
pub fn increment(metric: u32) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(metric, 1) };
}

/// Host time in nanoseconds since the epoch; 0 if the host cannot tell.
pub fn now_nanos() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: pointer to a live local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == STATUS_OK {
        t
    } else {
        0
    }
}

/// Serializes headers in the ABI's map format: count, sizes, then NUL-terminated data.
pub fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in headers {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Answers the request locally (the host defers it until the callback returns).
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[u8],
    body: &[u8],
) -> Result<(), HostError> {
    // SAFETY: the host only reads the buffers during the call.
    let rc = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    if rc == STATUS_OK {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Asks for `on_tick` every `period_ms` milliseconds on this VM (0: never).
pub fn set_tick_period(period_ms: u32) -> Result<(), HostError> {
    // SAFETY: plain value.
    let status = unsafe { proxy_set_tick_period_milliseconds(period_ms) };
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError)
    }
}

/// Envoy's shared data (per `vm_id`, shared by the VMs of every worker).
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        let mut data: *mut u8 = null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: pointers to live locals; a returned buffer was allocated through the
        // module allocator and is adopted by `host_bytes`.
        let bytes = unsafe {
            let status =
                proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas);
            host_bytes(status, data, size)?
        };
        Ok(bytes.map(|b| (b, cas)))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        // SAFETY: the host only reads the two buffers during the call.
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            STATUS_OK => Ok(true),
            STATUS_CAS_MISMATCH => Ok(false),
            _ => Err(HostError),
        }
    }
}
