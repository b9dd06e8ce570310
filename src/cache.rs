//! A small per-VM cache of recent input values → field digest (or decode error).
//!
//! The same config bytes arrive again and again (a user's flags, a tenant's tier, the
//! node's revision), and parsing, canonicalizing and hashing them is most of a
//! decision's cost. Each input has its own cache of at most [`ENTRIES_PER_INPUT`]
//! values of at most [`MAX_VALUE_BYTES`] bytes, matched by exact byte comparison (no
//! hash, so no collision can make one value pass for another), so memory is bounded:
//! inputs × 16 × 1 KiB at worst.
//!
//! Eviction resists floods of unique values (a client can send a different config
//! header on every request): each input's cache is a segmented LRU. A new value enters
//! on probation (at least [`PROBATION_ENTRIES`] slots); only a value seen again while
//! on probation is promoted to the protected part (at most [`PROTECTED_ENTRIES`]),
//! whose least recently used entry then goes back on probation. A miss only ever
//! evicts the least recently used probation entry. So a flood of never-repeated values
//! churns through the probation slots and cannot evict a protected (repeatedly used)
//! value at all; to push one out, a client has to repeat values of its own — which
//! are then served from the cache too — and get it demoted and evicted before its own
//! traffic uses it again. Stale protected values age out by the same LRU order.
//! Separate caches per input keep a flood on a client header from touching the
//! entries of trusted inputs such as node or dynamic metadata.

use crate::decode::DecodeError;
use crate::digest::Digest;

/// Most values cached per input.
pub const ENTRIES_PER_INPUT: usize = 16;
/// Most values in the protected part of an input's cache (seen at least twice).
pub const PROTECTED_ENTRIES: usize = 12;
/// Fewest probation slots, where new values wait to be seen again.
pub const PROBATION_ENTRIES: usize = ENTRIES_PER_INPUT - PROTECTED_ENTRIES;
/// Longest value cached; longer values are decoded every time.
pub const MAX_VALUE_BYTES: usize = 1024;

/// What decoding a value gave: its field digest, or why it could not be decoded.
pub type Outcome = Result<Digest, DecodeError>;

/// Byte equality eight bytes at a time. On wasm32 a slice `==` goes to the runtime's
/// `memcmp`, which compares byte by byte; a config header of a few hundred bytes,
/// compared on every request, made it a fifth of the filter's time in V8.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .all(|(x, y)| x == y);
    tails_equal
        && a_words.zip(b_words).all(|(x, y)| {
            let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            word(x) == word(y)
        })
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Vec<u8>,
    outcome: Outcome,
    /// Seen again while on probation.
    protected: bool,
    /// Use stamp: larger is more recent.
    last: u32,
}

#[derive(Debug, Clone, Default)]
struct InputCache {
    entries: Vec<Entry>,
    clock: u32,
}

impl InputCache {
    fn tick(&mut self) -> u32 {
        self.clock = self.clock.wrapping_add(1);
        if self.clock == 0 {
            // After 2^32 uses the stamps restart; the recency order is forgotten once
            // (every entry looks equally old), which costs at most a few misses.
            for e in &mut self.entries {
                e.last = 0;
            }
            self.clock = 1;
        }
        self.clock
    }

    fn lookup(&mut self, bytes: &[u8]) -> Option<Outcome> {
        let found = self
            .entries
            .iter()
            .position(|e| same_bytes(&e.bytes, bytes))?;
        let now = self.tick();
        let entry = &mut self.entries[found];
        entry.last = now;
        let outcome = entry.outcome;
        if !entry.protected {
            entry.protected = true;
            let protected = self.entries.iter().filter(|e| e.protected).count();
            if protected > PROTECTED_ENTRIES {
                // Demote the least recently used protected entry (not the one just used).
                if let Some(demoted) = self
                    .entries
                    .iter_mut()
                    .filter(|e| e.protected && e.last != now)
                    .min_by_key(|e| e.last)
                {
                    demoted.protected = false;
                }
            }
        }
        Some(outcome)
    }

    fn insert(&mut self, bytes: &[u8], outcome: Outcome) {
        let now = self.tick();
        if self.entries.len() < ENTRIES_PER_INPUT {
            self.entries.push(Entry {
                bytes: bytes.to_vec(),
                outcome,
                protected: false,
                last: now,
            });
            return;
        }
        // Full: the protected part holds at most PROTECTED_ENTRIES, so probation is
        // never empty here.
        let Some(victim) = self
            .entries
            .iter_mut()
            .filter(|e| !e.protected)
            .min_by_key(|e| e.last)
        else {
            return;
        };
        victim.bytes.clear();
        victim.bytes.extend_from_slice(bytes);
        victim.outcome = outcome;
        victim.last = now;
    }

    fn protected(&self) -> usize {
        self.entries.iter().filter(|e| e.protected).count()
    }
}

/// One configuration's cache, with one small cache per input.
#[derive(Debug, Clone, Default)]
pub struct DigestCache {
    inputs: Vec<InputCache>,
}

impl DigestCache {
    /// A cache for a contract with `inputs` inputs.
    pub fn new(inputs: usize) -> DigestCache {
        DigestCache {
            inputs: vec![InputCache::default(); inputs],
        }
    }

    /// The cached outcome for input `input` carrying `bytes`, counting a use.
    pub fn lookup(&mut self, input: usize, bytes: &[u8]) -> Option<Outcome> {
        if bytes.len() > MAX_VALUE_BYTES {
            return None;
        }
        self.inputs.get_mut(input)?.lookup(bytes)
    }

    /// Remembers an outcome after a miss (values over [`MAX_VALUE_BYTES`] are not kept).
    pub fn insert(&mut self, input: usize, bytes: &[u8], outcome: Outcome) {
        if bytes.len() > MAX_VALUE_BYTES {
            return;
        }
        if let Some(cache) = self.inputs.get_mut(input) {
            cache.insert(bytes, outcome);
        }
    }

    /// Values held for input `input`.
    pub fn len(&self, input: usize) -> usize {
        self.inputs.get(input).map_or(0, |c| c.entries.len())
    }

    /// Values of input `input` in the protected part.
    pub fn protected(&self, input: usize) -> usize {
        self.inputs.get(input).map_or(0, InputCache::protected)
    }

    /// Whether nothing is cached at all.
    pub fn is_empty(&self) -> bool {
        self.inputs.iter().all(|c| c.entries.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> Outcome {
        Ok(Digest::of_bytes(&n.to_le_bytes()))
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        // Every length around the word size, a difference at every position (in the
        // words and in the tail), and lengths that differ.
        for len in 0..=26usize {
            let a: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            assert!(same_bytes(&a, &a.clone()), "len {len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!same_bytes(&a, &b), "len {len}, differing at {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !same_bytes(&a, &longer) && !same_bytes(&longer, &a),
                "len {len}"
            );
        }
    }

    #[test]
    fn hits_return_the_stored_outcome_by_exact_bytes() {
        let mut c = DigestCache::new(2);
        assert!(c.is_empty());
        assert_eq!(c.lookup(0, b"gold"), None);
        c.insert(0, b"gold", digest(1));
        c.insert(0, b"{", Err(DecodeError::InvalidJson));
        assert_eq!(c.lookup(0, b"gold"), Some(digest(1)));
        assert_eq!(c.lookup(0, b"{"), Some(Err(DecodeError::InvalidJson)));
        assert_eq!(c.lookup(0, b"gol"), None);
        assert_eq!(c.lookup(0, b"gold "), None);
        // Inputs do not share entries, and unknown inputs are ignored.
        assert_eq!(c.lookup(1, b"gold"), None);
        c.insert(7, b"gold", digest(1));
        assert_eq!(c.lookup(7, b"gold"), None);
    }

    #[test]
    fn values_up_to_the_limit_are_kept() {
        let mut c = DigestCache::new(1);
        let longest = vec![b'x'; MAX_VALUE_BYTES];
        assert_eq!(c.lookup(0, &longest), None);
        c.insert(0, &longest, digest(1));
        assert_eq!(c.len(0), 1);
        assert_eq!(c.lookup(0, &longest), Some(digest(1)));
    }

    #[test]
    fn long_values_are_not_kept() {
        let mut c = DigestCache::new(1);
        let long = vec![b'x'; MAX_VALUE_BYTES + 1];
        c.insert(0, &long, digest(1));
        assert_eq!(c.lookup(0, &long), None);
        assert_eq!(c.len(0), 0);
    }

    #[test]
    fn size_is_bounded() {
        let mut c = DigestCache::new(1);
        for i in 0..10_000u32 {
            c.insert(0, &i.to_le_bytes(), digest(i));
        }
        assert_eq!(c.len(0), ENTRIES_PER_INPUT);
    }

    /// Beside a full protected part there is room for exactly `PROBATION_ENTRIES` new
    /// values; the next new value evicts the oldest of them, never a protected one.
    #[test]
    fn probation_holds_the_slots_protection_leaves() {
        let mut c = DigestCache::new(1);
        for i in 0..PROTECTED_ENTRIES as u32 {
            let v = format!("kept-{i}");
            c.insert(0, v.as_bytes(), digest(i));
            assert!(c.lookup(0, v.as_bytes()).is_some());
        }
        assert_eq!(c.protected(0), PROTECTED_ENTRIES);
        for i in 0..PROBATION_ENTRIES as u32 {
            c.insert(0, format!("new-{i}").as_bytes(), digest(100 + i));
        }
        assert_eq!(c.len(0), ENTRIES_PER_INPUT);
        for i in 0..PROBATION_ENTRIES as u32 {
            let v = format!("new-{i}");
            // Looked up without promoting: a clone answers, the cache keeps its state.
            assert_eq!(c.clone().lookup(0, v.as_bytes()), Some(digest(100 + i)));
        }
        c.insert(0, b"one-more", digest(999));
        assert_eq!(c.len(0), ENTRIES_PER_INPUT);
        assert_eq!(
            c.clone().lookup(0, b"new-0"),
            None,
            "the oldest new value goes"
        );
        assert_eq!(c.clone().lookup(0, b"one-more"), Some(digest(999)));
        for i in 0..PROTECTED_ENTRIES as u32 {
            assert!(c
                .clone()
                .lookup(0, format!("kept-{i}").as_bytes())
                .is_some());
        }
    }

    /// A flood of values never seen twice cannot push out values that are in use,
    /// however rarely they are used compared with the flood.
    #[test]
    fn a_flood_of_unique_values_leaves_repeated_ones_in_place() {
        let mut c = DigestCache::new(1);
        let popular: Vec<Vec<u8>> = (0..PROTECTED_ENTRIES as u32)
            .map(|i| format!("popular-{i}").into_bytes())
            .collect();
        for (i, p) in popular.iter().enumerate() {
            c.insert(0, p, digest(i as u32));
            assert!(c.lookup(0, p).is_some());
        }
        assert_eq!(c.protected(0), PROTECTED_ENTRIES);
        for n in 0..100_000u32 {
            let hostile = format!("hostile-{n}");
            assert_eq!(c.lookup(0, hostile.as_bytes()), None);
            c.insert(0, hostile.as_bytes(), digest(n));
            if n % 10_000 == 0 {
                for p in &popular {
                    assert!(c.lookup(0, p).is_some(), "lost {p:?} after {n} misses");
                }
            }
        }
        assert_eq!(c.len(0), ENTRIES_PER_INPUT);
    }

    /// A value that comes back is admitted on its second request, and the least
    /// recently used protected value makes room (stale values age out).
    #[test]
    fn a_returning_value_is_promoted_and_stale_ones_age_out() {
        let mut c = DigestCache::new(1);
        for i in 0..ENTRIES_PER_INPUT as u32 {
            let v = format!("old-{i}");
            c.insert(0, v.as_bytes(), digest(i));
            for _ in 0..200 {
                c.lookup(0, v.as_bytes());
            }
        }
        assert_eq!(c.protected(0), PROTECTED_ENTRIES);
        // Twenty new values, each requested twice: all end up protected.
        for i in 0..20u32 {
            let v = format!("new-{i}");
            assert_eq!(c.lookup(0, v.as_bytes()), None);
            c.insert(0, v.as_bytes(), digest(1000 + i));
            assert_eq!(c.lookup(0, v.as_bytes()), Some(digest(1000 + i)));
        }
        for i in 8..20u32 {
            let v = format!("new-{i}");
            assert_eq!(c.lookup(0, v.as_bytes()), Some(digest(1000 + i)), "{v}");
        }
        assert_eq!(c.protected(0), PROTECTED_ENTRIES);
        assert_eq!(c.len(0), ENTRIES_PER_INPUT);
    }
}
