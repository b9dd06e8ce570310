//! The proxy-wasm ABI 0.2.1, as far as Rampart's modules use it.
//!
//! Every import of the ABI is declared here, once, and wrapped in a function that
//! returns the host's status instead of panicking on an unexpected one (a panic traps
//! the VM and takes the filter down). The crate exports only what every module needs —
//! the ABI version marker and the allocator the host calls to hand back data — so each
//! module exports the `proxy_on_*` callbacks it uses and no more: Envoy calls an
//! exported callback on every request, and each call is a crossing into the VM.
//!
//! Off wasm32 the imports are replaced by stand-ins that answer
//! [`Status::UNIMPLEMENTED`], so the modules' logic builds and is unit-tested natively
//! through their own host traits.

use std::mem::MaybeUninit;
use std::ptr::null_mut;

/// A status the host returned: one of the ABI's codes, or any other value as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Success.
    pub const OK: Status = Status(0);
    /// The value does not exist.
    pub const NOT_FOUND: Status = Status(1);
    /// An argument was refused.
    pub const BAD_ARGUMENT: Status = Status(2);
    /// A shared-data write lost a compare-and-swap race.
    pub const CAS_MISMATCH: Status = Status(8);
    /// The host (or, off wasm32, the stand-in) does not implement the call.
    pub const UNIMPLEMENTED: Status = Status(12);

    fn result(self) -> Result<(), Status> {
        if self == Status::OK {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// A log level of `proxy_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warning.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
}

/// A header map of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// The request's headers.
    RequestHeaders = 0,
    /// The response's headers.
    ResponseHeaders = 2,
}

/// A metric kind of `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricType {
    /// A counter.
    Counter = 0,
    /// A gauge.
    Gauge = 1,
}

/// `BufferType::PluginConfiguration` of the ABI.
const PLUGIN_CONFIGURATION: u32 = 7;

/// The ABI version this module speaks. Envoy keeps clearing the route cache after a
/// request-header change only for 0.2.1 and older, which the route header relies on.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The allocator the host calls to place data it returns (headers, properties, shared
/// data) in the VM's memory: a boxed slice of exactly `size` bytes, which
/// [`adopt`] turns back into a `Vec<u8>` of that length and capacity.
#[cfg_attr(
    all(target_arch = "wasm32", target_os = "unknown"),
    export_name = "malloc"
)]
#[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown")), no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
    // SAFETY: `MaybeUninit` needs no initialisation; the host writes the bytes.
    unsafe { buffer.set_len(size) };
    Box::into_raw(buffer.into_boxed_slice()).cast::<u8>()
}

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(
            path: *const u8,
            path_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, size: usize, id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_record_metric(id: u32, value: u64) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }
}

/// Off wasm32 there is no host: every call answers `UNIMPLEMENTED` and writes nothing.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod sys {
    const UNIMPLEMENTED: u32 = 12;
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_replace_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_property(_: *const u8, _: usize, _: *const u8, _: usize) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_record_metric(_: u32, _: u64) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        UNIMPLEMENTED
    }
    pub unsafe fn proxy_send_local_response(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: i32,
    ) -> u32 {
        UNIMPLEMENTED
    }
}

/// Takes ownership of bytes the host returned.
///
/// # Safety
/// On `Status::OK`, a non-null `data` must have come from [`proxy_on_memory_allocate`]
/// with exactly `size` bytes, as the host does for every call that returns data.
unsafe fn adopt(status: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, Status> {
    match Status(status) {
        Status::OK if data.is_null() => Ok(Some(Vec::new())),
        Status::OK => Ok(Some(Vec::from_raw_parts(data, size, size))),
        Status::NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Writes one line to Envoy's log.
pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: the host only reads the buffer during the call.
    Status(unsafe { sys::proxy_log(level as u32, message.as_ptr(), message.len()) }).result()
}

/// The plugin configuration (the filter's `configuration` value); `None` when empty.
pub fn plugin_configuration() -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers to live locals; the host allocates the answer through `malloc`.
    unsafe {
        let status =
            sys::proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size);
        adopt(status, data, size)
    }
}

/// Every entry of a header map, serialized (see [`HeaderMap`]).
pub fn header_map_pairs(map: MapType) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers to live locals; the host allocates the answer through `malloc`.
    unsafe {
        let status = sys::proxy_get_header_map_pairs(map as u32, &mut data, &mut size);
        adopt(status, data, size)
    }
}

/// Sets a header, replacing every value it had.
pub fn replace_header_map_value(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host only reads the two buffers during the call.
    Status(unsafe {
        sys::proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
    .result()
}

/// Removes every value of a header.
pub fn remove_header_map_value(map: MapType, name: &str) -> Result<(), Status> {
    // SAFETY: the host only reads the buffer during the call.
    Status(unsafe { sys::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
        .result()
}

/// A property path in wire form, as [`property`] takes it: the segments joined by NUL.
pub fn property_path<S: AsRef<str>>(segments: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(segment.as_ref().as_bytes());
    }
    out
}

/// A property by its path in wire form ([`property_path`]); `None` when absent.
pub fn property(wire_path: &[u8]) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers to live locals; the host allocates the answer through `malloc`.
    unsafe {
        let status =
            sys::proxy_get_property(wire_path.as_ptr(), wire_path.len(), &mut data, &mut size);
        adopt(status, data, size)
    }
}

/// Sets a property; for a name outside Envoy's attributes, filter state
/// (`wasm.<name>`, readable in access logs).
pub fn set_property(name: &[u8], value: &[u8]) -> Result<(), Status> {
    // SAFETY: the host only reads the two buffers during the call.
    Status(unsafe {
        sys::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
    .result()
}

/// Defines a metric and returns its id.
pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    // SAFETY: pointers to a live string and a live local.
    Status(unsafe { sys::proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })
        .result()
        .map(|()| id)
}

/// Adds `offset` to a counter.
pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: plain values.
    Status(unsafe { sys::proxy_increment_metric(id, offset) }).result()
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: plain values.
    Status(unsafe { sys::proxy_record_metric(id, value) }).result()
}

/// Host time, nanoseconds since the epoch.
pub fn current_time_nanos() -> Result<u64, Status> {
    let mut time = 0;
    // SAFETY: pointer to a live local.
    Status(unsafe { sys::proxy_get_current_time_nanoseconds(&mut time) })
        .result()
        .map(|()| time)
}

/// Asks for `proxy_on_tick` every `period_ms` milliseconds (0: never).
pub fn set_tick_period(period_ms: u32) -> Result<(), Status> {
    // SAFETY: plain value.
    Status(unsafe { sys::proxy_set_tick_period_milliseconds(period_ms) }).result()
}

/// A shared-data value and its compare-and-swap token; `None` when absent.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: pointers to live locals; the host allocates the answer through `malloc`.
    let bytes = unsafe {
        let status =
            sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas);
        adopt(status, data, size)?
    };
    Ok(bytes.map(|b| (b, cas)))
}

/// Writes shared data if its token is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    // SAFETY: the host only reads the two buffers during the call.
    Status(unsafe {
        sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
    .result()
}

/// Answers the request locally; the host sends it once the callback returns.
/// `headers` is a map in the ABI's serialized form ([`serialize_map`]).
pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[u8],
) -> Result<(), Status> {
    // SAFETY: the host only reads the buffers during the call.
    Status(unsafe {
        sys::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
    .result()
}

/// Serializes pairs in the ABI's map form: the count, each key and value size (all u32
/// little-endian), then each key and value followed by a NUL. Keys and values are
/// bytes (text or not; the sizes delimit them, so they may hold NULs).
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.as_ref().len()));
        out.extend_from_slice(&len32(v.as_ref().len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

/// A header map in the ABI's serialized form, checked once, read without copying.
///
/// Names and values are bytes: Envoy passes on whatever a client sent, and a value
/// that is not UTF-8 must reach the decoder as such (to be reported), not end the VM.
#[derive(Debug, Clone, Copy)]
pub struct HeaderMap<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> HeaderMap<'a> {
    /// Checks the layout (count, sizes, NUL terminators within the buffer); `None`
    /// for a malformed map. An empty buffer is an empty map.
    pub fn parse(bytes: &'a [u8]) -> Option<HeaderMap<'a>> {
        let count = walk(bytes, |_, _| {})?;
        Some(HeaderMap { bytes, count })
    }

    /// The number of entries (a repeated header counts once per value).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries in map order, as (name, value).
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            map: *self,
            next: 0,
            data: 4 + self.count * 8,
        }
    }
}

/// Every value of header `name` in a serialized map, in map order, found in one walk
/// that checks the layout as it goes (as [`HeaderMap::parse`] does before reading):
/// `None` for a malformed map; names compared ASCII case-insensitively; `each` is
/// called per value.
pub fn each_value<'a>(bytes: &'a [u8], name: &[u8], mut each: impl FnMut(&'a [u8])) -> Option<()> {
    walk(bytes, |key, value| {
        // Lengths first: most names differ in length.
        if key.len() == name.len() && key.eq_ignore_ascii_case(name) {
            each(value);
        }
    })
    .map(drop)
}

/// Walks a serialized map in order, checking its layout (count, sizes, NUL terminators
/// within the buffer) as it goes and handing each (name, value) to `entry`: the entry
/// count, or `None` at the first fault (entries before it have been handed out). An
/// empty buffer is an empty map.
#[inline(always)]
fn walk<'a>(bytes: &'a [u8], mut entry: impl FnMut(&'a [u8], &'a [u8])) -> Option<usize> {
    if bytes.is_empty() {
        return Some(0);
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    for i in 0..count {
        let key_size = usize::try_from(read_u32(bytes, 4 + i * 8)?).ok()?;
        let value_size = usize::try_from(read_u32(bytes, 8 + i * 8)?).ok()?;
        let key_end = data.checked_add(key_size)?;
        let value_at = key_end.checked_add(1)?;
        let value_end = value_at.checked_add(value_size)?;
        if *bytes.get(key_end)? != 0 || *bytes.get(value_end)? != 0 {
            return None;
        }
        entry(bytes.get(data..key_end)?, bytes.get(value_at..value_end)?);
        data = value_end + 1;
    }
    Some(count)
}

/// The entries of a [`HeaderMap`], in map order.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    map: HeaderMap<'a>,
    next: usize,
    data: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.map.count {
            return None;
        }
        let bytes = self.map.bytes;
        let key_size = usize::try_from(read_u32(bytes, 4 + self.next * 8)?).ok()?;
        let value_size = usize::try_from(read_u32(bytes, 8 + self.next * 8)?).ok()?;
        let key = bytes.get(self.data..self.data + key_size)?;
        let value_at = self.data + key_size + 1;
        let value = bytes.get(value_at..value_at + value_size)?;
        self.data = value_at + value_size + 1;
        self.next += 1;
        Some((key, value))
    }
}

#[inline(always)]
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialized_map_reads_back_in_order() {
        let pairs = [("x-a", "1"), ("x-b", ""), ("x-a", "two")];
        let bytes = serialize_map(&pairs);
        let map = HeaderMap::parse(&bytes).unwrap();
        assert_eq!(map.len(), 3);
        let read: Vec<(&[u8], &[u8])> = map.iter().collect();
        assert_eq!(
            read,
            vec![
                (&b"x-a"[..], &b"1"[..]),
                (&b"x-b"[..], &b""[..]),
                (&b"x-a"[..], &b"two"[..])
            ]
        );
    }

    #[test]
    fn property_paths_join_their_segments_with_nul() {
        assert_eq!(
            property_path(&["metadata", "filter_metadata", "tenant", "tier"]),
            b"metadata\0filter_metadata\0tenant\0tier"
        );
        assert_eq!(property_path(&[String::from("one")]), b"one");
        assert_eq!(property_path::<&str>(&[]), b"");
    }

    #[test]
    fn an_empty_buffer_is_an_empty_map() {
        assert!(HeaderMap::parse(b"").unwrap().is_empty());
        assert_eq!(
            HeaderMap::parse(&serialize_map::<&str, &str>(&[]))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn malformed_maps_are_refused_not_read_past_their_end() {
        let good = serialize_map(&[("k", "v"), ("key", "value")]);
        // Every truncation, and every single-byte corruption of the size table.
        for cut in 1..good.len() {
            assert!(HeaderMap::parse(&good[..cut]).is_none(), "cut at {cut}");
        }
        for at in 0..20 {
            let mut bad = good.clone();
            bad[at] = bad[at].wrapping_add(1);
            if let Some(map) = HeaderMap::parse(&bad) {
                assert!(map.iter().count() <= map.len());
            }
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::parse(&huge).is_none());
    }

    #[test]
    fn each_value_agrees_with_parsing_then_reading() {
        let good = serialize_map(&[("k", "v"), ("Key", "value"), ("key", ""), ("x", "y")]);
        let both = |bytes: &[u8], name: &[u8]| {
            let mut walked = Vec::new();
            let walk = each_value(bytes, name, |v| walked.push(v.to_vec())).map(|()| walked);
            let parsed = HeaderMap::parse(bytes).map(|map| {
                map.iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_vec())
                    .collect::<Vec<_>>()
            });
            (walk, parsed)
        };
        let (walk, parsed) = both(&good, b"key");
        assert_eq!(walk, Some(vec![b"value".to_vec(), Vec::new()]));
        assert_eq!(walk, parsed);
        assert_eq!(both(&good, b"absent").0, Some(vec![]));
        assert_eq!(both(b"", b"k").0, Some(vec![]));
        // Every truncation and single-byte corruption: refused exactly when parsing
        // refuses, and the same values otherwise.
        for cut in 0..good.len() {
            let (walk, parsed) = both(&good[..cut], b"key");
            assert_eq!(walk, parsed, "cut at {cut}");
        }
        for at in 0..good.len() {
            for delta in [1u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = bad[at].wrapping_add(delta);
                for name in [&b"key"[..], b"k", b"x"] {
                    let (walk, parsed) = both(&bad, name);
                    assert_eq!(walk, parsed, "byte {at} + {delta}");
                }
            }
        }
    }

    #[test]
    fn non_utf8_values_are_returned_as_bytes() {
        let mut bytes = serialize_map(&[("k", "ab")]);
        let at = bytes.len() - 3;
        bytes[at] = 0xff;
        let map = HeaderMap::parse(&bytes).unwrap();
        assert_eq!(map.iter().next(), Some((&b"k"[..], &[0xff, b'b'][..])));
    }

    #[test]
    fn off_wasm32_every_call_answers_unimplemented() {
        assert_eq!(log(LogLevel::Info, "x"), Err(Status::UNIMPLEMENTED));
        assert_eq!(property(b"a\0b"), Err(Status::UNIMPLEMENTED));
        assert_eq!(
            header_map_pairs(MapType::RequestHeaders),
            Err(Status::UNIMPLEMENTED)
        );
    }

    #[test]
    fn the_allocator_returns_a_buffer_adopt_can_own() {
        let data = proxy_on_memory_allocate(5);
        // SAFETY: `data` was just allocated with 5 bytes; write them before adopting.
        let owned = unsafe {
            std::ptr::copy_nonoverlapping(b"hello".as_ptr(), data, 5);
            adopt(0, data, 5)
        };
        assert_eq!(owned, Ok(Some(b"hello".to_vec())));
        // SAFETY: a null pointer with OK is an empty answer.
        assert_eq!(unsafe { adopt(0, null_mut(), 0) }, Ok(Some(Vec::new())));
        // SAFETY: statuses other than OK never touch the pointer.
        assert_eq!(unsafe { adopt(1, null_mut(), 0) }, Ok(None));
        // SAFETY: as above.
        assert_eq!(unsafe { adopt(10, null_mut(), 0) }, Err(Status(10)));
    }
}
