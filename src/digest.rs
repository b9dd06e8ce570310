//! `sha256:<hex>` digests of canonical JSON.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::jcs::Sink;

/// The text every digest starts with; it names the hash so a future one can be added.
pub const PREFIX: &str = "sha256:";

/// A SHA-256 digest, written `sha256:` followed by 64 lowercase hex digits.
#[derive(Clone, Copy, Eq)]
pub struct Digest(pub [u8; 32]);

impl PartialEq for Digest {
    /// Word by word: on wasm32 an array `==` calls the runtime's `memcmp`, which goes
    /// byte by byte, and the filter compares a digest per input on every request. The
    /// four words are spelled out rather than left to the cache's general word loop,
    /// which measured about 30 ns more per request in V8 (`cargo xtask bench --vm`).
    fn eq(&self, other: &Digest) -> bool {
        let (a, b) = (&self.0, &other.0);
        (word(a, 0) ^ word(b, 0))
            | (word(a, 8) ^ word(b, 8))
            | (word(a, 16) ^ word(b, 16))
            | (word(a, 24) ^ word(b, 24))
            == 0
    }
}

/// The eight bytes of `d` at `at` as one word (any byte order: only compared).
#[inline(always)]
fn word(d: &[u8; 32], at: usize) -> u64 {
    u64::from_ne_bytes([
        d[at],
        d[at + 1],
        d[at + 2],
        d[at + 3],
        d[at + 4],
        d[at + 5],
        d[at + 6],
        d[at + 7],
    ])
}

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Why a text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestParseError;

impl fmt::Display for DigestParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected \"sha256:\" followed by 64 lowercase hex digits")
    }
}

impl std::error::Error for DigestParseError {}

impl Digest {
    /// The digest of raw bytes (for bytes that already are canonical JSON).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 lowercase hex>` from raw bytes, as a header carries it.
    pub fn parse_bytes(text: &[u8]) -> Result<Digest, DigestParseError> {
        let hex = text
            .strip_prefix(PREFIX.as_bytes())
            .ok_or(DigestParseError)?;
        if hex.len() != 64 {
            return Err(DigestParseError);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Digest(out))
    }

    /// The digest of canonical JSON that `write` streams into the hash.
    pub fn of_canonical(write: impl FnOnce(&mut Hasher)) -> Digest {
        let mut h = Hasher::new();
        write(&mut h);
        h.finish()
    }

    /// The first `n` hex digits after the prefix, for short log and header labels.
    pub fn short(&self, n: usize) -> String {
        let mut text = self.to_string();
        text.truncate(PREFIX.len() + n.min(64));
        text
    }
}

fn nibble(c: u8) -> Result<u8, DigestParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(DigestParseError),
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        Digest::parse_bytes(s.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(byte >> 4)];
            buf[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        f.write_str(PREFIX)?;
        // Only ASCII hex digits were written above.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Bytes gathered before they go to SHA-256: canonical JSON arrives in many tiny
/// pieces (a quote, a colon, a key), and each `update` call has a fixed cost.
const HASH_BUFFER: usize = 128;

/// Streams canonical JSON straight into SHA-256, so no canonical text is ever built.
#[derive(Clone)]
pub struct Hasher {
    sha: Sha256,
    buf: [u8; HASH_BUFFER],
    len: usize,
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher {
            sha: Sha256::new(),
            buf: [0; HASH_BUFFER],
            len: 0,
        }
    }

    /// The digest of everything written so far.
    pub fn finish(mut self) -> Digest {
        self.sha.update(&self.buf[..self.len]);
        Digest(self.sha.finalize().into())
    }
}

impl Sink for Hasher {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= HASH_BUFFER {
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
            return;
        }
        self.sha.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() >= HASH_BUFFER {
            self.sha.update(bytes);
        } else {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_text() {
        let d = Digest::of_bytes(b"{}");
        let text = d.to_string();
        assert_eq!(
            text,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(text.parse::<Digest>(), Ok(d));
        assert_eq!(d.short(8), "sha256:44136fa3");
    }

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let d = Digest::of_bytes(b"{}");
        assert_eq!(d, Digest(d.0));
        for at in 0..32 {
            let mut other = d;
            other.0[at] ^= 1;
            assert_ne!(d, other, "differing at byte {at}");
        }
        // The same difference in two words must not cancel out.
        for (a, b) in [(0, 8), (0, 16), (0, 24), (8, 16), (8, 24), (16, 24)] {
            let mut other = d;
            other.0[a] ^= 0x10;
            other.0[b] ^= 0x10;
            assert_ne!(d, other, "differing at bytes {a} and {b}");
        }
    }

    #[test]
    fn equal_digests_hash_alike_and_different_ones_apart() {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        let d = Digest::of_bytes(b"{}");
        let e = Digest::of_bytes(b"[]");
        assert_eq!(state.hash_one(d), state.hash_one(Digest(d.0)));
        assert_ne!(state.hash_one(d), state.hash_one(e));
    }

    #[test]
    fn malformed_digests_are_rejected() {
        for bad in [
            "",
            "sha256:",
            "sha1:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8",
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a0",
            "sha256:g4136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ] {
            assert_eq!(bad.parse::<Digest>(), Err(DigestParseError), "{bad:?}");
        }
    }

    #[test]
    fn streaming_hasher_equals_one_shot() {
        let mut h = Hasher::new();
        h.put(b"{\"a\":");
        h.put(b"1}");
        assert_eq!(h.finish(), Digest::of_bytes(b"{\"a\":1}"));
        // Pieces of every size around the buffer's, in every order.
        let text: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for step in [1, 3, 63, 64, 65, 127, 128, 129, 300, 1000] {
            let mut h = Hasher::new();
            let mut at = 0;
            let mut n = step;
            while at < text.len() {
                let end = (at + n).min(text.len());
                h.put(&text[at..end]);
                at = end;
                n = if n == step { 1 } else { step };
            }
            assert_eq!(h.finish(), Digest::of_bytes(&text), "step {step}");
        }
    }
}
