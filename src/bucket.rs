//! Sticky bucketing.
//!
//! `bucket(contract, key) = u64_be(SHA-256(contract ":" key)[0..8]) mod 10000`, a basis
//! point in 0..10000. A request is on the canary iff `bucket < round(percent × 100)`.
//! The bucket depends only on the contract name and the key, so a user keeps one
//! side across requests, and raising the percent only ever moves users from stable to
//! canary. Anyone can recompute it:
//! `printf 'checkout-v2:user-42' | sha256sum` → first 16 hex digits → integer mod 10000.

use sha2::block_api::compress256;

/// Number of buckets: basis points.
pub const BUCKETS: u16 = 10_000;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;

/// The bucket hash with `contract:` already absorbed: the state after the prefix's whole
/// blocks and the bytes left over. A request hashes only its own last block or two on
/// the stack, with SHA-256's compression function alone (one block for a key that
/// leaves 9 bytes free in the prefix's last block: padding and length).
#[derive(Clone)]
pub struct BucketSalt {
    state: [u32; 8],
    /// The prefix's bytes after its whole blocks (fewer than 64).
    tail: Vec<u8>,
    /// The prefix's length in bytes, for the padding's message length.
    prefix_len: u64,
}

impl std::fmt::Debug for BucketSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketSalt")
    }
}

impl BucketSalt {
    /// Seeds the hash with `contract:`.
    pub fn new(contract: &str) -> BucketSalt {
        let mut prefix = contract.as_bytes().to_vec();
        prefix.push(b':');
        let mut state = IV;
        let whole = prefix.len() / BLOCK * BLOCK;
        for block in prefix[..whole].chunks_exact(BLOCK) {
            let mut b = [0u8; BLOCK];
            b.copy_from_slice(block);
            compress256(&mut state, &[b]);
        }
        BucketSalt {
            state,
            tail: prefix[whole..].to_vec(),
            prefix_len: prefix.len() as u64,
        }
    }

    /// The key's bucket, 0..10000.
    pub fn bucket(&self, key: &[u8]) -> u16 {
        let mut state = self.state;
        let mut block = [0u8; BLOCK];
        let mut filled = self.tail.len();
        block[..filled].copy_from_slice(&self.tail);
        // Whole blocks first, for a key longer than what fits with the tail.
        let mut rest = key;
        while filled + rest.len() >= BLOCK {
            let (head, tail) = rest.split_at(BLOCK - filled);
            block[filled..].copy_from_slice(head);
            compress256(&mut state, &[block]);
            block = [0u8; BLOCK];
            rest = tail;
            filled = 0;
        }
        block[filled..filled + rest.len()].copy_from_slice(rest);
        filled += rest.len();
        // Padding: 0x80, zeros, the message length in bits (big-endian) in the last 8
        // bytes — of this block, or of a next one when fewer than 9 bytes are left.
        block[filled] = 0x80;
        if filled + 9 > BLOCK {
            compress256(&mut state, &[block]);
            block = [0u8; BLOCK];
        }
        let bits = (self.prefix_len + key.len() as u64).wrapping_mul(8);
        block[BLOCK - 8..].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut state, &[block]);
        // The digest's first 8 bytes, big-endian: its first two words.
        let head = (u64::from(state[0]) << 32) | u64::from(state[1]);
        // 2^64 mod 10000 leaves a bias below 1e-15: irrelevant.
        (head % u64::from(BUCKETS)) as u16
    }
}

/// The bucket of `key` under `contract`.
pub fn bucket(contract: &str, key: &[u8]) -> u16 {
    BucketSalt::new(contract).bucket(key)
}

/// Basis points for a percent: `round(percent × 100)`, clamped to 0..=10000.
pub fn threshold_for_percent(percent: f64) -> u16 {
    // A float-to-int `as` saturates and maps NaN to 0: NaN and negatives give 0.
    ((percent * 100.0).round() as u16).min(BUCKETS)
}

/// The side a bucket falls on at a threshold.
pub fn is_canary(bucket: u16, threshold: u16) -> bool {
    bucket < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_matches_the_documented_formula() {
        // sha256("checkout-v2:user-42") computed independently of this code path.
        let digest = crate::digest::Digest::of_bytes(b"checkout-v2:user-42");
        let head = u64::from_be_bytes(digest.0[..8].try_into().unwrap());
        assert_eq!(u64::from(bucket("checkout-v2", b"user-42")), head % 10_000);
    }

    #[test]
    fn every_length_matches_the_formula() {
        // Contract names and keys across the block boundaries: prefixes of whole
        // blocks, keys that fill the last block to 55, 56 and 64 bytes, long keys.
        for contract_len in [0usize, 1, 9, 54, 55, 62, 63, 64, 100, 127, 128, 200] {
            let contract = "c".repeat(contract_len);
            let salt = BucketSalt::new(&contract);
            for key_len in 0..=200usize {
                let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + contract_len) as u8).collect();
                let mut message = contract.as_bytes().to_vec();
                message.push(b':');
                message.extend_from_slice(&key);
                let digest = crate::digest::Digest::of_bytes(&message);
                let head = u64::from_be_bytes(digest.0[..8].try_into().unwrap());
                assert_eq!(
                    u64::from(salt.bucket(&key)),
                    head % 10_000,
                    "contract of {contract_len} bytes, key of {key_len}"
                );
            }
        }
    }

    #[test]
    fn salt_changes_buckets() {
        let same = (0..200)
            .filter(|i| {
                let key = format!("user-{i}");
                bucket("a", key.as_bytes()) == bucket("b", key.as_bytes())
            })
            .count();
        assert!(
            same < 5,
            "{same} of 200 keys share a bucket across contracts"
        );
    }

    #[test]
    fn thresholds_round_to_basis_points() {
        assert_eq!(threshold_for_percent(0.0), 0);
        assert_eq!(threshold_for_percent(5.0), 500);
        assert_eq!(threshold_for_percent(0.015), 2);
        assert_eq!(threshold_for_percent(33.333), 3333);
        assert_eq!(threshold_for_percent(100.0), 10_000);
        assert_eq!(threshold_for_percent(100.004), 10_000);
        assert_eq!(threshold_for_percent(250.0), 10_000);
        assert_eq!(threshold_for_percent(1e300), 10_000);
        assert_eq!(threshold_for_percent(-5.0), 0);
        assert_eq!(threshold_for_percent(f64::NAN), 0);
        assert_eq!(threshold_for_percent(f64::INFINITY), 10_000);
    }

    #[test]
    fn a_bucket_equal_to_the_threshold_is_stable() {
        // Buckets 0..threshold are the canary: `threshold` buckets out of 10000.
        assert!(is_canary(499, 500));
        assert!(!is_canary(500, 500));
        assert!(!is_canary(0, 0), "0% sends nobody");
        assert!(is_canary(BUCKETS - 1, BUCKETS), "100% sends everyone");
        let canary = (0..BUCKETS).filter(|&b| is_canary(b, 2500)).count();
        assert_eq!(canary, 2500);
    }

    #[test]
    fn canary_set_only_grows_with_percent() {
        let salt = BucketSalt::new("ramp");
        let buckets: Vec<u16> = (0..2000)
            .map(|i| salt.bucket(format!("u{i}").as_bytes()))
            .collect();
        let mut previous = 0;
        for percent in [0.0, 1.0, 5.0, 25.0, 50.0, 100.0] {
            let t = threshold_for_percent(percent);
            let on: Vec<bool> = buckets.iter().map(|&b| is_canary(b, t)).collect();
            let count = on.iter().filter(|&&c| c).count();
            assert!(count >= previous);
            previous = count;
            // Every user on the canary at this percent is on it at all higher percents.
            for higher in [t, t.saturating_add(100), BUCKETS] {
                for (i, &b) in buckets.iter().enumerate() {
                    if on[i] {
                        assert!(is_canary(b, higher));
                    }
                }
            }
        }
        assert_eq!(previous, 2000, "100% puts everyone on the canary");
    }

    #[test]
    fn buckets_spread_evenly() {
        let salt = BucketSalt::new("spread");
        let n = 20_000;
        let mut tenths = [0u32; 10];
        for i in 0..n {
            tenths[usize::from(salt.bucket(format!("user-{i}").as_bytes()) / 1000)] += 1;
        }
        // Expected 2000 per tenth, sd ≈ 42; allow 5 sd.
        for count in tenths {
            assert!((1790..=2210).contains(&count), "{tenths:?}");
        }
    }
}
