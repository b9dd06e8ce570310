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

/// A fixed buffer that `fmt::Write` can fill without allocating.
struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> StackText<N> {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a number in the ES6 `Number.prototype.toString` form RFC 8785 requires.
///
/// Rust's `{:e}` gives the shortest digits that round-trip (the same digits ES6
/// asks for); only the layout rules differ, and they are applied here.
/// Non-finite numbers cannot come out of the parser; they are written as `null`
/// like `JSON.stringify` does, so this can never fail.
pub fn write_number<S: Sink>(value: f64, sink: &mut S) {
    use std::fmt::Write as _;
    if !value.is_finite() {
        sink.put(b"null");
        return;
    }
    if value == 0.0 {
        sink.put(b"0"); // also -0, per ES6
        return;
    }
    // Integers below 2^53 (most config numbers) are written as their digits: every
    // shorter digit string names another representable integer, so these are the
    // shortest round-trip digits ES6 asks for, without the float formatter.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        let mut n = value.abs() as u64;
        let mut digits = [0u8; 16];
        let mut at = digits.len();
        while n > 0 {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        if value < 0.0 {
            sink.put(b"-");
        }
        sink.put(&digits[at..]);
        return;
    }
    let mut text = StackText::<40>::new();
    if write!(text, "{:e}", value.abs()).is_err() {
        sink.put(b"null");
        return;
    }
    let sci = text.bytes();
    // `sci` is `D[.DDD]e[-]X`: gather the digits and the decimal exponent.
    let Some(e_pos) = sci.iter().position(|&c| c == b'e') else {
        sink.put(b"null");
        return;
    };
    let mut digits = [0u8; 20];
    let mut k = 0;
    for &c in &sci[..e_pos] {
        if c.is_ascii_digit() && k < digits.len() {
            digits[k] = c;
            k += 1;
        }
    }
    let exp: i32 = std::str::from_utf8(&sci[e_pos + 1..])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    prefer_even_on_tie(value.abs(), &mut digits[..k]);
    let digits = &digits[..k];
    // ES6 names the position of the decimal point `n`: value = 0.DIGITS × 10^n.
    let n = exp + 1;
    let k = k as i32;
    if value < 0.0 {
        sink.put(b"-");
    }
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
        sink.put(b"e");
        sink.put(if n > 0 { b"+" } else { b"-" });
        let mut exp_text = StackText::<16>::new();
        if write!(exp_text, "{}", (n - 1).unsigned_abs()).is_ok() {
            sink.put(exp_text.bytes());
        }
    }
}

/// ES6 breaks a tie between two equally short, equally close digit strings towards
/// the even one; Rust's shortest formatting rounds such ties up. Found and fixed here
/// with exact integer arithmetic.
///
/// With `value = m × 2^e`, `m` odd: for `e >= 0` the value is an integer whose shortest
/// form is all of its digits, so no tie exists. For `e < 0` the value is
/// `m × 5^-e / 10^-e`, and `m × 5^-e` (odd, so without trailing zeros) holds exactly its
/// significant digits. A tie at `k` digits means those are `k + 1` digits ending in 5;
/// as `k <= 17` this needs `5^-e < 10^18`, so `-e <= 25` and everything fits a `u128`.
/// Both candidates lie at the same distance on either side of the value, inside a
/// rounding interval that is symmetric unless `m == 1` (a power of two, left alone),
/// so the even one round-trips whenever the odd one does.
fn prefer_even_on_tie(value: f64, digits: &mut [u8]) {
    let k = digits.len();
    let Some(&last) = digits.last() else { return };
    if (last - b'0') % 2 == 0 || k > 17 {
        return;
    }
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    if m == 0 {
        return;
    }
    let zeros = m.trailing_zeros();
    m >>= zeros;
    e += zeros as i32;
    if !(-25..0).contains(&e) || m == 1 {
        return;
    }
    let exact = u128::from(m) * 5u128.pow(e.unsigned_abs());
    let low = 10u128.pow(k as u32);
    if exact < low || exact >= low * 10 {
        return;
    }
    let truncated = exact / 10;
    let shown = digits
        .iter()
        .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    if shown != truncated && shown != truncated + 1 {
        return;
    }
    let mut even = if truncated % 2 == 0 {
        truncated
    } else {
        truncated + 1
    };
    if even >= low {
        return;
    }
    for d in digits.iter_mut().rev() {
        *d = b'0' + (even % 10) as u8;
        even /= 10;
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
        members.sort_unstable_by(|a, b| utf16_cmp(&a.0, &b.0));
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
}
