//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Parsing is strict in the ways that matter for a digest: duplicate object keys are an
//! error (the I-JSON rule RFC 8785 builds on — otherwise two parsers could see two
//! different configs behind one digest), numbers must fit an IEEE 754 double, nesting
//! is bounded before any recursion happens, and lone surrogates are rejected.
//! Serialization follows RFC 8785: object members sorted by their UTF-16 code units,
//! the ES6 `Number.prototype.toString` form for numbers, minimal string escaping.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

mod bignum;
mod number;
mod parse;

/// Where canonical bytes go: a buffer, or straight into a hash.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A parsed JSON value, with object members already in canonical (UTF-16) order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Every JSON number is an IEEE 754 double in JCS.
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; members sorted by UTF-16 code units, keys unique.
    Object(Vec<(String, Json)>),
}

/// Why bytes are not acceptable JSON for a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Nesting deeper than the limit.
    TooDeep {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Not JSON, or JSON outside what JCS accepts (duplicate keys, numbers beyond
    /// a double, lone surrogates); the message says where.
    Invalid(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooDeep { limit } => write!(f, "JSON nested deeper than {limit} levels"),
            JsonError::Invalid(msg) => write!(f, "invalid JSON: {msg}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Nesting limit used when a caller has no better one (the CLI).
pub const DEFAULT_MAX_DEPTH: usize = 128;

impl Json {
    /// Parses JSON text, rejecting duplicate keys and nesting deeper than `max_depth`.
    pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Json, JsonError> {
        // The parser counts its depth and stops at the limit, so stack use stays fixed
        // whatever a client sends.
        parse::document(bytes, max_depth)
    }

    /// Writes the canonical form into `sink`.
    pub fn write_canonical<S: Sink>(&self, sink: &mut S) {
        match self {
            Json::Null => sink.put(b"null"),
            Json::Bool(true) => sink.put(b"true"),
            Json::Bool(false) => sink.put(b"false"),
            Json::Number(n) => write_number(*n, sink),
            Json::String(s) => write_string(s, sink),
            Json::Array(items) => {
                sink.put(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        sink.put(b",");
                    }
                    item.write_canonical(sink);
                }
                sink.put(b"]");
            }
            Json::Object(members) => {
                sink.put(b"{");
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        sink.put(b",");
                    }
                    write_string(key, sink);
                    sink.put(b":");
                    value.write_canonical(sink);
                }
                sink.put(b"}");
            }
        }
    }

    /// The canonical form as bytes.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }
}

/// Orders strings by UTF-16 code units, as RFC 8785 section 3.2.3 requires.
///
/// It differs from byte order only for characters above U+FFFF against U+E000..U+FFFF.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The deepest nesting of arrays and objects in `bytes`, ignoring brackets inside
/// strings. Malformed input yields some number; the parser then rejects it anyway.
pub fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Writes a string with JCS escaping: `"` and `\`, the short escapes for
/// backspace, tab, newline, form feed and carriage return, `\u00xx` for other
/// controls, every other character as its UTF-8 bytes.
pub fn write_string<S: Sink>(s: &str, sink: &mut S) {
    sink.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[],
            _ => continue,
        };
        sink.put(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            sink.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            sink.put(escape);
        }
        start = i + 1;
    }
    sink.put(&bytes[start..]);
    sink.put(b"\"");
}

/// Writes a number in the ES6 `Number.prototype.toString` form RFC 8785 requires.
///
/// The digits are the shortest that read back as the same double, the closest of
/// those, and the even one of two equally close (see [`number`]); only the layout
/// rules are applied here. Non-finite numbers cannot come out of the parser; they are
/// written as `null` like `JSON.stringify` does, so this can never fail.
pub fn write_number<S: Sink>(value: f64, sink: &mut S) {
    let mut text = NumberText {
        buf: [0; 32],
        len: 0,
    };
    number_text(value, &mut text);
    sink.put(&text.buf[..text.len]);
}

/// A number's text: at most 25 bytes (`-0.000001` and 17 digits; `-1.2345678901234567e-308`).
struct NumberText {
    buf: [u8; 32],
    len: usize,
}

impl Sink for NumberText {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }
}

/// [`write_number`] without the generic sink: one copy of the layout code.
fn number_text(value: f64, sink: &mut NumberText) {
    if !value.is_finite() {
        sink.put(b"null");
        return;
    }
    if value == 0.0 {
        sink.put(b"0"); // also -0, per ES6
        return;
    }
    if value < 0.0 {
        sink.put(b"-");
    }
    // Integers below 2^53 (most config numbers) are written as their digits: every
    // shorter digit string names another representable integer, so these are the
    // shortest round-trip digits ES6 asks for.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        write_decimal(value.abs() as u64, sink);
        return;
    }
    let shortest = number::shortest(value.abs());
    let digits = &shortest.digits[..shortest.len];
    // ES6 names the position of the decimal point `n`: value = 0.DIGITS × 10^n.
    let n = shortest.point;
    let k = shortest.len as i32;
    if k <= n && n <= 21 {
        sink.put(digits);
        for _ in 0..(n - k) {
            sink.put(b"0");
        }
    } else if 0 < n && n <= 21 {
        let split = n as usize;
        sink.put(&digits[..split]);
        sink.put(b".");
        sink.put(&digits[split..]);
    } else if -6 < n && n <= 0 {
        sink.put(b"0.");
        for _ in 0..(-n) {
            sink.put(b"0");
        }
        sink.put(digits);
    } else {
        sink.put(&digits[..1]);
        if digits.len() > 1 {
            sink.put(b".");
            sink.put(&digits[1..]);
        }
        sink.put(if n > 0 { b"e+" } else { b"e-" });
        write_decimal(u64::from((n - 1).unsigned_abs()), sink);
    }
}

/// Writes the decimal digits of `n`.
fn write_decimal(n: u64, sink: &mut NumberText) {
    let mut digits = [b'0'; 20];
    sink.put(decimal_digits(n, &mut digits));
}

/// The decimal digits of `n`, written at the end of `digits`.
pub(crate) fn decimal_digits(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Sorts object members by key in UTF-16 order (RFC 8785 section 3.2.3).
///
/// Heapsort (J. W. J. Williams, 1964): O(n log n) comparisons at worst whatever the
/// input, no allocation, and one instantiation for every caller. Keys are compared
/// with [`utf16_cmp`]; equal keys (rejected by the callers) end up adjacent.
fn sort_members(members: &mut [(String, Json)]) {
    fn sift_down(heap: &mut [(String, Json)], mut root: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= heap.len() {
                return;
            }
            if child + 1 < heap.len()
                && utf16_cmp(&heap[child].0, &heap[child + 1].0) == Ordering::Less
            {
                child += 1;
            }
            if utf16_cmp(&heap[root].0, &heap[child].0) != Ordering::Less {
                return;
            }
            heap.swap(root, child);
            root = child;
        }
    }
    for root in (0..members.len() / 2).rev() {
        sift_down(members, root);
    }
    for end in (1..members.len()).rev() {
        members.swap(0, end);
        sift_down(&mut members[..end], 0);
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        if v.is_finite() {
            Ok(Json::Number(v))
        } else {
            Err(E::custom("number outside the range of a double"))
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            members.push((key, value));
        }
        sort_members(&mut members);
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(de::Error::custom("duplicate object key"));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: f64) -> String {
        let mut out = Vec::new();
        write_number(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_follow_es6_layout() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (9007199254740992.0, "9007199254740992"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
            (333333333.3333333, "333333333.3333333"),
            (4.5, "4.5"),
            (2e-3, "0.002"),
        ];
        for &(v, want) in cases {
            assert_eq!(num(v), want, "{v:e}");
        }
    }

    #[test]
    fn number_corpus_from_rfc_8785_appendix_b() {
        // IEEE 754 bit patterns and their ES6 text, from RFC 8785 appendix B.
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in cases {
            assert_eq!(num(f64::from_bits(bits)), want, "{bits:#x}");
        }
    }

    /// Thousands of doubles against what ECMAScript itself prints for them (the vectors
    /// were generated with Node.js; see tests/vectors/numbers.js), and parsed back.
    #[test]
    fn numbers_match_ecmascript_on_generated_vectors() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/numbers.json");
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() > 4000);
        for case in cases {
            let bits = u64::from_str_radix(case[0].as_str().unwrap(), 16).unwrap();
            let want = case[1].as_str().unwrap();
            let value = f64::from_bits(bits);
            assert_eq!(num(value), want, "{bits:016x}");
            let parsed = Json::parse(want.as_bytes(), 1).unwrap();
            assert_eq!(
                parsed,
                Json::Number(if value == 0.0 { 0.0 } else { value }),
                "{want}"
            );
        }
    }

    /// A tie between two 17-digit strings at a power of two, where the rounding interval
    /// is narrower below: both candidates round-trip, so ES6 takes the even one (Node.js
    /// prints `2.9802322387695312e-8` for 2^-25).
    #[test]
    fn ties_at_powers_of_two_go_to_even() {
        assert_eq!(num(2f64.powi(-25)), "2.9802322387695312e-8");
        assert_eq!(num(-(2f64.powi(-24))), "-5.960464477539063e-8");
    }

    #[test]
    fn objects_sort_by_utf16_code_units() {
        // U+E000 sorts after U+1F600 in UTF-16 (0xD83D < 0xE000) but before it in UTF-8.
        let json = Json::parse("{\"\u{e000}\":1,\"\u{1f600}\":2,\"a\":3}".as_bytes(), 8).unwrap();
        let text = String::from_utf8(json.to_canonical()).unwrap();
        assert_eq!(text, "{\"a\":3,\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn strings_escape_only_what_jcs_escapes() {
        let json = Json::parse(
            r#""a\"\\\/\b\f\n\r\t\u0001\u001f\u007f\u2028é""#.as_bytes(),
            8,
        )
        .unwrap();
        let text = String::from_utf8(json.to_canonical()).unwrap();
        assert_eq!(
            text,
            "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(matches!(
            Json::parse(br#"{"a":1,"a":1}"#, 8),
            Err(JsonError::Invalid(_))
        ));
        assert!(matches!(
            Json::parse(br#"[{"x":{"b":1,"b":2}}]"#, 8),
            Err(JsonError::Invalid(_))
        ));
        // Same text after unescaping is the same key.
        assert!(matches!(
            Json::parse(br#"{"a":1,"\u0061":2}"#, 8),
            Err(JsonError::Invalid(_))
        ));
    }

    #[test]
    fn depth_limit_is_enforced_before_parsing() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(
            Json::parse(deep.as_bytes(), 32),
            Err(JsonError::TooDeep { limit: 32 })
        );
        assert!(Json::parse(b"[[[1]]]", 3).is_ok());
        assert_eq!(
            Json::parse(b"[[[1]]]", 2),
            Err(JsonError::TooDeep { limit: 2 })
        );
        // Brackets inside strings do not count.
        assert!(Json::parse(br#"{"a":"[[[[[\"[[["}"#, 1).is_ok());
    }

    #[test]
    fn numbers_beyond_a_double_and_bad_text_are_rejected() {
        for bad in [
            &b"1e400"[..],
            b"-1e400",
            b"{",
            b"[1,]",
            b"01",
            b"NaN",
            b"\"\\ud800\"",
            b"\xff",
            b"1 2",
        ] {
            assert!(
                Json::parse(bad, 8).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn large_integers_become_doubles() {
        let json = Json::parse(
            b"[18446744073709551615, 100000000000000000000000, -9007199254740993]",
            8,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(json.to_canonical()).unwrap(),
            "[18446744073709552000,1e+23,-9007199254740992]"
        );
    }

    /// Every RFC 8785 conformance vector canonicalizes to exactly the expected bytes.
    #[test]
    fn rfc_8785_vectors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/jcs");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.join("input")).unwrap() {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let expected =
                std::fs::read(dir.join("output").join(path.file_name().unwrap())).unwrap();
            let got = Json::parse(&input, DEFAULT_MAX_DEPTH)
                .unwrap()
                .to_canonical();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "{}",
                path.display()
            );
            assert_eq!(got, expected);
            seen += 1;
        }
        assert_eq!(seen, 6, "all six RFC 8785 vectors are present");
    }

    /// The fuzz target's depth oracle counts brackets, not strings that hold them.
    #[test]
    fn nesting_depth_counts_containers_outside_strings() {
        for (text, depth) in [
            ("42", 0),
            ("[]", 1),
            ("{}", 1),
            (r#"[1,[2],[[3]]]"#, 3),
            (r#"{"a":[{"b":{}}],"c":1}"#, 4),
            (r#""[[[""#, 0),
            (r#"{"a":"]\"[[["}"#, 1),
            (r#"["\\",[]]"#, 2),
            ("[]]]][", 1),
        ] {
            assert_eq!(nesting_depth(text.as_bytes()), depth, "{text}");
        }
    }

    /// A source that is not JSON-shaped is refused with what was expected.
    #[test]
    fn a_value_json_cannot_hold_names_what_was_expected() {
        use serde::de::value::{BytesDeserializer, Error};
        use serde::Deserialize as _;
        let err = Json::deserialize(BytesDeserializer::<Error>::new(b"\x00")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: byte array, expected any JSON value"
        );
    }

    /// Beyond the 800 digits the parser keeps, a non-zero digit still counts: it lifts
    /// a value that is exactly halfway between two doubles in its first 800 digits.
    #[test]
    fn digits_past_the_kept_ones_break_a_tie() {
        // 1 + 2^-53: halfway between 1 and the next double, 1 + 2^-52.
        let halfway = "1.00000000000000011102230246251565404236316680908203125";
        let number = |text: &str| match Json::parse(text.as_bytes(), DEFAULT_MAX_DEPTH) {
            Ok(Json::Number(n)) => n,
            other => panic!("{text}: {other:?}"),
        };
        let zeros = "0".repeat(800);
        assert_eq!(
            number(&format!("{halfway}{zeros}")),
            1.0,
            "a tie goes to even"
        );
        assert_eq!(
            number(&format!("{halfway}{zeros}1")),
            1.000_000_000_000_000_2,
            "a digit past the kept ones is above the tie"
        );
    }
}
