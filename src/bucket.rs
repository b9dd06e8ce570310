//! Sticky bucketing.
//!
//! `bucket(contract, key) = u64_be(SHA-256(contract ":" key)[0..8]) mod 10000`, a basis
//! point in 0..10000. A request is on the canary iff `bucket < round(percent × 100)`.
//! The bucket depends only on the contract name and the key, so a user keeps one
//! side across requests, and raising the percent only ever moves users from stable to
//! canary. Anyone can recompute it:
//! `printf 'checkout-v2:user-42' | sha256sum` → first 16 hex digits → integer mod 10000.

use sha2::{Digest as _, Sha256};

/// Number of buckets: basis points.
pub const BUCKETS: u16 = 10_000;

/// The bucket hash with the contract name already absorbed; cloned per request.
#[derive(Clone)]
pub struct BucketSalt(Sha256);

impl std::fmt::Debug for BucketSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketSalt")
    }
}

impl BucketSalt {
    /// Seeds the hash with `contract:`.
    pub fn new(contract: &str) -> BucketSalt {
        let mut h = Sha256::new();
        h.update(contract.as_bytes());
        h.update(b":");
        BucketSalt(h)
    }

    /// The key's bucket, 0..10000.
    pub fn bucket(&self, key: &[u8]) -> u16 {
        let mut h = self.0.clone();
        h.update(key);
        let out: [u8; 32] = h.finalize().into();
        let mut head = [0u8; 8];
        head.copy_from_slice(&out[..8]);
        // 2^64 mod 10000 leaves a bias below 1e-15: irrelevant.
        (u64::from_be_bytes(head) % u64::from(BUCKETS)) as u16
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
