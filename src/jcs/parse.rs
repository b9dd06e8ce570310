//! A strict JSON parser (RFC 8259) into [`Json`], made for digests.
//!
//! It accepts exactly what a digest may be taken of: one value with optional
//! whitespace around it; objects without duplicate keys (compared after unescaping);
//! numbers that fit a double (decimal text converted with correct rounding, see
//! [`number`]); strings of valid UTF-8 without raw control characters, whose
//! `\u` escapes pair surrogates correctly. Nesting is bounded by `max_depth` here as
//! well as by the caller's scan, so recursion never goes deeper than the limit.
//! Written for this crate rather than going through serde: it builds the tree
//! directly with few allocations, and keeps the filter module small.

use super::{number, sort_members, Json, JsonError};

/// Parses one JSON document.
pub(super) fn document(bytes: &[u8], max_depth: usize) -> Result<Json, JsonError> {
    let mut p = Parser {
        bytes,
        pos: 0,
        max_depth,
        scratch: Vec::new(),
    };
    p.skip_whitespace();
    let value = p.value(0)?;
    p.skip_whitespace();
    if p.pos != bytes.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Reused buffer for strings with escapes.
    scratch: Vec<u8>,
}

impl Parser<'_> {
    /// `what` at the current position, as `line L column C` (1-based, in bytes).
    fn error(&self, what: &str) -> JsonError {
        let upto = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = upto.len() - upto.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        JsonError::Invalid(format!("{what} at line {line} column {column}"))
    }

    // Called for every byte: inlined even at `opt-level = "z"`.
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input, expected a value")),
        }
    }

    fn literal(&mut self, text: &[u8], value: Json) -> Result<Json, JsonError> {
        if self.bytes[self.pos..].starts_with(text) {
            self.pos += text.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            Err(JsonError::TooDeep {
                limit: self.max_depth,
            })
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // [
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // {
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
        sort_members(&mut members);
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(self.error("duplicate object key"));
        }
        Ok(Json::Object(members))
    }

    /// A string starting at `"`; the result is checked UTF-8.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // "
        let start = self.pos;
        // Fast path: no escapes, so the text is a slice of the input.
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let text = &self.bytes[start..self.pos];
                    self.pos += 1;
                    return std::str::from_utf8(text)
                        .map(str::to_owned)
                        .map_err(|_| self.error("invalid UTF-8 in string"));
                }
                b'\\' => break,
                0x00..=0x1f => return Err(self.error("control character in string")),
                _ => self.pos += 1,
            }
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.extend_from_slice(&self.bytes[start..self.pos]);
        let result = self.escaped_rest(&mut out);
        let text = result.and_then(|()| {
            std::str::from_utf8(&out)
                .map(str::to_owned)
                .map_err(|_| self.error("invalid UTF-8 in string"))
        });
        self.scratch = out;
        text
    }

    /// The rest of a string after its first escape, appended to `out`.
    fn escaped_rest(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(()),
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                0x00..=0x1f => return Err(self.error("control character in string")),
                _ => out.push(b),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return Err(self.error("invalid \\u escape"));
        };
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            v = (v << 4) | u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }

    /// After `\u`: one code point, a surrogate pair joined; lone surrogates are errors.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone leading surrogate"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone trailing surrogate")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("leading zero in number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        let int = int_start..self.pos;
        let mut frac = self.pos..self.pos;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let start = self.pos;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            frac = start..self.pos;
        }
        let mut exp10 = 0i64;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let exp_negative = self.peek() == Some(b'-');
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            let start = self.pos;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            // Saturates far beyond the range of a double, whatever the digit count.
            for &d in &self.bytes[start..self.pos] {
                exp10 = (exp10 * 10 + i64::from(d - b'0')).min(1_000_000_000);
            }
            if exp_negative {
                exp10 = -exp10;
            }
        }
        match number::to_f64(negative, &self.bytes[int], &self.bytes[frac], exp10) {
            Some(v) => Ok(Json::Number(v)),
            None => Err(self.error("number outside the range of a double")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Json, JsonError> {
        document(text.as_bytes(), 16)
    }

    /// The parser agrees with serde_json (the reference it replaced) on values and on
    /// what is rejected, over hand-picked and generated texts.
    #[test]
    fn agrees_with_serde_json() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "1",
            "-1.5e-3",
            "1E+2",
            "0.1",
            "123456789012345678901234567890",
            "1e-400",
            "\"\"",
            "\"a\\u00e9\\ud83d\\ude00\\n\"",
            "[]",
            "{}",
            "[1,[2,{}]]",
            r#"{"b":1,"a":[true,false,null],"c":{"d":"x"}}"#,
            " \t\n[ 1 , 2 ]\r\n",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "[1,]",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "nul",
            "truex",
            "[1 2]",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\nb\"",
            "{\"a\":1,}",
            "[",
            "\"abc",
            "{\"a\":1 \"b\":2}",
            "1e400",
            "-1e400",
            "1 2",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let alphabet = br#"{}[]":,0123456789.eE+-tfnrul\ abu"#;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let mut s = state;
            let text: String = (0..len)
                .map(|_| {
                    s = s.rotate_left(5) ^ 0x9e37_79b9;
                    alphabet[(s as usize) % alphabet.len()] as char
                })
                .collect();
            texts.push(text);
        }
        for text in &texts {
            let reference: Result<Json, _> = serde_json::from_str(text);
            let ours = parse(text);
            match (&reference, &ours) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text:?}: serde_json {reference:?}, ours {ours:?}"),
            }
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = parse("{\"a\":1,\n \"a\":2}").unwrap_err();
        assert_eq!(
            err,
            JsonError::Invalid("duplicate object key at line 2 column 8".into())
        );
        assert_eq!(
            parse("[1,]").unwrap_err(),
            JsonError::Invalid("expected a value at line 1 column 4".into())
        );
        assert!(
            matches!(parse("\"\\ud800\""), Err(JsonError::Invalid(m)) if m.contains("surrogate"))
        );
        assert!(
            matches!(parse("1e999"), Err(JsonError::Invalid(m)) if m.contains("range of a double"))
        );
    }

    #[test]
    fn invalid_utf8_is_rejected_with_or_without_escapes() {
        for bytes in [&b"\"\xff\""[..], b"\"\\n\xc3\"", b"\xff"] {
            assert!(document(bytes, 4).is_err(), "{bytes:?}");
        }
        assert_eq!(
            document("\"é\\n\"".as_bytes(), 4),
            Ok(Json::String("é\n".into()))
        );
    }

    /// A raw control character is refused after an escape as before one.
    #[test]
    fn control_characters_are_refused_on_both_sides_of_an_escape() {
        for text in [&b"\"a\x01\""[..], b"\"\\n\x01\"", b"\"\\u0041\x1f\""] {
            match document(text, 4) {
                Err(JsonError::Invalid(message)) => {
                    assert!(
                        message.starts_with("control character in string"),
                        "{message}"
                    );
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
            }
        }
        assert_eq!(
            document(b"\"\\n\\u0001\"", 4),
            Ok(Json::String("\n\u{1}".into()))
        );
    }

    #[test]
    fn depth_is_bounded_by_the_parser_too() {
        assert_eq!(document(b"[[[]]]", 2), Err(JsonError::TooDeep { limit: 2 }));
        assert!(document(b"[[[]]]", 3).is_ok());
        assert!(document(b"{\"a\":{\"b\":[]}}", 3).is_ok());
        // Objects count as much as arrays.
        assert_eq!(
            document(b"{\"a\":{\"b\":{}}}", 2),
            Err(JsonError::TooDeep { limit: 2 })
        );
        assert_eq!(
            document(b"[{\"a\":[]}]", 2),
            Err(JsonError::TooDeep { limit: 2 })
        );
    }
}
