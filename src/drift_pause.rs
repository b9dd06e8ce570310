//! Data-plane drift pause: when too many requests drift over a sliding window, the
//! canary is paused for everyone until a configuration with a different lock arrives.
//!
//! Every Envoy worker runs its own VM, so the window is kept in proxy-wasm *shared
//! data* (one value per contract and lock, shared by all VMs of the `vm_id`). A worker
//! does not touch shared data per request: it counts in two plain integers and merges
//! them into the shared window from its periodic tick (at most once a second), with a
//! compare-and-swap so concurrent merges from other workers are never lost. The worker
//! whose merge crosses the threshold sets the paused flag in the same value; the others
//! see it on their next tick. Per-request cost: one flag test and two additions.
//!
//! The key names the contract and the lock identity, so a configuration pushed again
//! with the same lock finds the pause still set (an operator has to approve the drift
//! and re-lock, which changes the key), and a new lock starts from a clean window.
//!
//! This module is pure: shared data is reached through [`SharedStore`], which the
//! filter implements over host calls and tests implement in memory.

use std::cell::Cell;

use crate::decide::{Decision, Reason};
use crate::digest::Digest;
use crate::host::HostError;

// The contract's validated `drift_pause`; its window arithmetic is defined here.
pub use crate::contract::DriftPausePolicy;

/// The window is kept as this many slots of `window_seconds / WINDOW_SLOTS` each.
pub const WINDOW_SLOTS: usize = 10;

/// Longest tick: how often at most a worker merges its counts and learns of a pause.
pub const MAX_TICK_MS: u64 = 1000;

/// Encoding version of the shared value; a value of another version is started afresh.
const FORMAT_VERSION: u8 = 1;
const SLOT_BYTES: usize = 24;
const ENCODED_LEN: usize = 2 + WINDOW_SLOTS * SLOT_BYTES;
/// Compare-and-swap attempts per tick before the counts wait for the next tick.
const CAS_ATTEMPTS: usize = 4;

impl DriftPausePolicy {
    /// Width of one slot of the window, in milliseconds (at least 100).
    pub fn slot_ms(&self) -> u64 {
        (u64::from(self.window_seconds.max(1)) * 1000 / WINDOW_SLOTS as u64).max(1)
    }

    /// How often a worker merges its counts: every slot, at most every second.
    pub fn tick_ms(&self) -> u64 {
        self.slot_ms().min(MAX_TICK_MS)
    }

    /// The slot number (epoch) a time falls in.
    pub fn epoch(&self, now_ms: u64) -> u64 {
        now_ms / self.slot_ms()
    }

    /// Whether these totals trip the pause.
    pub fn trips(&self, totals: Totals) -> bool {
        totals.requests >= self.min_requests
            && (totals.drifted as f64) > self.max_ratio * (totals.requests as f64)
    }
}

/// Requests and drifted (or missing) requests in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Requests decided (paused ones excluded).
    pub requests: u64,
    /// Of which drifted or missing an input.
    pub drifted: u64,
}

impl Totals {
    /// The ratio with four decimals (`0.4120`, truncated), computed with integers so the
    /// filter needs no float formatting, and with 64-bit ones only, so it needs no
    /// 128-bit division routine either.
    pub fn ratio_text(&self) -> String {
        let n = self.requests;
        if n == 0 {
            return "0.0000".to_owned();
        }
        // drifted × 10^4 / n by long division; wrapping like the `as u64` it replaces.
        let mut scaled = self.drifted / n;
        let mut rest = self.drifted % n;
        for _ in 0..4 {
            // 10 × rest = digit × n + rest', summed modulo n so nothing overflows.
            let (mut digit, mut sum) = (0, 0);
            for _ in 0..10 {
                if sum >= n - rest {
                    sum -= n - rest;
                    digit += 1;
                } else {
                    sum += rest;
                }
            }
            scaled = scaled.wrapping_mul(10).wrapping_add(digit);
            rest = sum;
        }
        four_decimals(scaled)
    }
}

/// `x / 10000` written with four decimals.
fn four_decimals(scaled: u64) -> String {
    let frac = scaled % 10_000;
    let mut text = (scaled / 10_000).to_string();
    text.push('.');
    let digits = frac.to_string();
    for _ in digits.len()..4 {
        text.push('0');
    }
    text.push_str(&digits);
    text
}

/// A ratio limit with four decimals (`0.0500`), for log lines.
pub fn ratio_limit_text(max_ratio: f64) -> String {
    // A float-to-int `as` saturates and maps NaN to 0: negatives print as 0.
    four_decimals((max_ratio * 10_000.0).round() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Slot {
    epoch: u64,
    requests: u64,
    drifted: u64,
}

/// The shared window: slots indexed by `epoch % WINDOW_SLOTS`, plus the paused flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftWindow {
    /// The pause has tripped for this contract and lock.
    pub paused: bool,
    slots: [Slot; WINDOW_SLOTS],
}

impl DriftWindow {
    /// Reads a shared value; `None` if it is not one this version wrote.
    pub fn decode(bytes: &[u8]) -> Option<DriftWindow> {
        if bytes.len() != ENCODED_LEN || bytes[0] != FORMAT_VERSION || bytes[1] > 1 {
            return None;
        }
        let mut window = DriftWindow {
            paused: bytes[1] == 1,
            ..DriftWindow::default()
        };
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        for (i, slot) in window.slots.iter_mut().enumerate() {
            let at = 2 + i * SLOT_BYTES;
            *slot = Slot {
                epoch: word(at),
                requests: word(at + 8),
                drifted: word(at + 16),
            };
        }
        Some(window)
    }

    /// The shared value: version, paused flag, then each slot's epoch, requests and
    /// drifted count as little-endian u64.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(FORMAT_VERSION);
        out.push(u8::from(self.paused));
        for slot in &self.slots {
            out.extend_from_slice(&slot.epoch.to_le_bytes());
            out.extend_from_slice(&slot.requests.to_le_bytes());
            out.extend_from_slice(&slot.drifted.to_le_bytes());
        }
        out
    }

    /// Adds counts to the slot of `epoch`, recycling the slot if it held an older one.
    /// Counts for an epoch older than the slot's are dropped: they fell out of the window.
    pub fn add(&mut self, epoch: u64, requests: u64, drifted: u64) {
        let slot = &mut self.slots[(epoch % WINDOW_SLOTS as u64) as usize];
        if slot.epoch < epoch {
            *slot = Slot {
                epoch,
                requests: 0,
                drifted: 0,
            };
        }
        if slot.epoch == epoch {
            slot.requests = slot.requests.saturating_add(requests);
            slot.drifted = slot.drifted.saturating_add(drifted);
        }
    }

    /// Totals of the slots inside the window that ends with `epoch`.
    pub fn totals(&self, epoch: u64) -> Totals {
        let oldest = epoch.saturating_sub(WINDOW_SLOTS as u64 - 1);
        self.slots
            .iter()
            .filter(|s| s.epoch >= oldest && s.epoch <= epoch)
            .fold(Totals::default(), |t, s| Totals {
                requests: t.requests.saturating_add(s.requests),
                drifted: t.drifted.saturating_add(s.drifted),
            })
    }
}

/// Process-wide key/value store shared by every VM (proxy-wasm shared data).
pub trait SharedStore {
    /// The value and its compare-and-swap token; `Ok(None)` if the key has no value.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Stores `value` if the key's token still is `cas` (0: unconditionally).
    /// `Ok(false)` when another writer came first.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError>;
}

/// The shared-data key of a contract's window under one lock.
pub fn shared_key(contract: &str, lock: &Digest) -> String {
    format!("rampart.drift_pause.{contract}.{lock}")
}

/// The shared-data key naming the lock a contract currently runs under in this Envoy.
pub fn current_lock_key(contract: &str) -> String {
    format!("rampart.drift_pause.{contract}.current")
}

/// At configuration time, on every VM (a configuration push starts new VMs, so the
/// previous configuration is only known through shared data): records `lock` as the
/// contract's current lock. The one caller that moves it from another lock also ends
/// a pause tripped under that lock, and gets that lock back to log the fact.
pub fn switch_lock<S: SharedStore>(
    store: &mut S,
    contract: &str,
    lock: &Digest,
) -> Result<Option<Digest>, HostError> {
    let key = current_lock_key(contract);
    let text = lock.to_string();
    for _ in 0..CAS_ATTEMPTS {
        let (previous, cas) = match store.get(&key)? {
            Some((bytes, cas)) => (Digest::parse_bytes(&bytes).ok(), cas),
            None => (None, 0),
        };
        if previous == Some(*lock) {
            return Ok(None);
        }
        if !store.set(&key, text.as_bytes(), cas)? {
            continue;
        }
        return match previous {
            Some(old) if DriftPause::clear(store, &shared_key(contract, &old))? => Ok(Some(old)),
            _ => Ok(None),
        };
    }
    Ok(None)
}

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// Nothing to merge and no news.
    Idle,
    /// Counts merged; no pause.
    Merged,
    /// This worker's merge crossed the threshold: it tripped the pause (log it).
    Tripped(Totals),
    /// Another worker had tripped the pause; this one follows.
    Joined,
    /// Other workers kept winning the compare-and-swap; the counts wait for next tick.
    Contended,
    /// Already paused: nothing more to do until a new configuration.
    Paused,
}

/// One VM's side of the drift pause for one configuration.
#[derive(Debug)]
pub struct DriftPause {
    policy: DriftPausePolicy,
    key: String,
    paused: Cell<bool>,
    pending_requests: Cell<u64>,
    pending_drifted: Cell<u64>,
}

impl DriftPause {
    /// The drift pause of `contract` under lock identity `lock`.
    pub fn new(policy: DriftPausePolicy, contract: &str, lock: &Digest) -> DriftPause {
        DriftPause {
            policy,
            key: shared_key(contract, lock),
            paused: Cell::new(false),
            pending_requests: Cell::new(0),
            pending_drifted: Cell::new(0),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &DriftPausePolicy {
        &self.policy
    }

    /// The shared-data key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this VM routes everyone to stable because of the pause.
    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// Counts one decision (per request: two additions, no host call).
    pub fn record(&self, decision: &Decision) {
        let drifted = match decision.reason {
            Reason::Drift | Reason::Missing => true,
            Reason::Match | Reason::Unkeyed => false,
            Reason::Paused | Reason::DriftPaused | Reason::InvalidContract => return,
        };
        self.pending_requests
            .set(self.pending_requests.get().saturating_add(1));
        if drifted {
            self.pending_drifted
                .set(self.pending_drifted.get().saturating_add(1));
        }
    }

    /// Counts not yet merged into the shared window.
    pub fn pending(&self) -> Totals {
        Totals {
            requests: self.pending_requests.get(),
            drifted: self.pending_drifted.get(),
        }
    }

    /// At configuration time: adopts a pause already tripped under this contract and
    /// lock (the same lock pushed again). Returns whether it was paused.
    pub fn start<S: SharedStore>(&self, store: &mut S) -> Result<bool, HostError> {
        let paused = match store.get(&self.key)? {
            Some((bytes, _)) => DriftWindow::decode(&bytes).is_some_and(|w| w.paused),
            None => false,
        };
        self.paused.set(paused);
        Ok(paused)
    }

    /// Merges this VM's counts into the shared window and trips or follows the pause.
    /// On a host error the counts are kept for the next tick and nothing is paused.
    pub fn tick<S: SharedStore>(
        &self,
        store: &mut S,
        now_ms: u64,
    ) -> Result<TickOutcome, HostError> {
        if self.paused.get() {
            return Ok(TickOutcome::Paused);
        }
        let epoch = self.policy.epoch(now_ms);
        for _ in 0..CAS_ATTEMPTS {
            let (mut window, cas) = match store.get(&self.key)? {
                Some((bytes, cas)) => (DriftWindow::decode(&bytes).unwrap_or_default(), cas),
                None => (DriftWindow::default(), 0),
            };
            if window.paused {
                self.follow();
                return Ok(TickOutcome::Joined);
            }
            let pending = self.pending();
            if pending.requests == 0 {
                return Ok(TickOutcome::Idle);
            }
            window.add(epoch, pending.requests, pending.drifted);
            let totals = window.totals(epoch);
            let trips = self.policy.trips(totals);
            window.paused = trips;
            if store.set(&self.key, &window.encode(), cas)? {
                if trips {
                    self.follow();
                    return Ok(TickOutcome::Tripped(totals));
                }
                self.pending_requests.set(0);
                self.pending_drifted.set(0);
                return Ok(TickOutcome::Merged);
            }
        }
        Ok(TickOutcome::Contended)
    }

    fn follow(&self) {
        self.paused.set(true);
        self.pending_requests.set(0);
        self.pending_drifted.set(0);
    }

    /// When a configuration with another lock replaces this one: ends a pause tripped
    /// under the old key and starts that key afresh. Returns `true` for the one caller
    /// (of all VMs) that ended it, which logs the fact.
    pub fn clear<S: SharedStore>(store: &mut S, old_key: &str) -> Result<bool, HostError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, cas)) = store.get(old_key)? else {
                return Ok(false);
            };
            if !DriftWindow::decode(&bytes).is_some_and(|w| w.paused) {
                return Ok(false);
            }
            if store.set(old_key, &DriftWindow::default().encode(), cas)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A [`SharedStore`] in memory with the host's compare-and-swap rules, for tests and
/// embedders without a proxy.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl SharedStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, HostError> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Ok(false);
            }
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_owned(), (value.to_vec(), self.next_cas));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Route;

    /// The memory store keeps the host's compare-and-swap rules: a write naming a stale
    /// CAS is refused and changes nothing, CAS 0 writes unconditionally.
    #[test]
    fn memory_store_refuses_a_stale_compare_and_swap() {
        let mut store = MemoryStore::default();
        assert_eq!(store.set("k", b"a", 0), Ok(true));
        let (_, first) = store.get("k").unwrap().unwrap();
        assert_eq!(store.set("k", b"b", first), Ok(true));
        let (value, second) = store.get("k").unwrap().unwrap();
        assert_eq!(value, b"b");
        assert_ne!(first, second);
        assert_eq!(store.set("k", b"c", first), Ok(false));
        assert_eq!(store.get("k").unwrap(), Some((b"b".to_vec(), second)));
        assert_eq!(store.set("k", b"d", 0), Ok(true));
        assert_eq!(store.get("k").unwrap().unwrap().0, b"d");
    }

    fn policy() -> DriftPausePolicy {
        DriftPausePolicy {
            max_ratio: 0.2,
            min_requests: 100,
            window_seconds: 30,
        }
    }

    fn decision(reason: Reason) -> Decision {
        Decision {
            route: Route::Stable,
            reason,
            bucket: None,
            observed: false,
            issues: Vec::new(),
        }
    }

    fn lock() -> Digest {
        Digest::of_bytes(b"lock")
    }

    #[test]
    fn slots_and_ticks_follow_the_window() {
        let p = policy();
        assert_eq!(p.slot_ms(), 3000);
        assert_eq!(p.tick_ms(), 1000);
        let short = DriftPausePolicy {
            window_seconds: 1,
            ..p
        };
        assert_eq!((short.slot_ms(), short.tick_ms()), (100, 100));
        assert_eq!(p.epoch(9_999), 3);
    }

    #[test]
    fn trip_needs_both_the_ratio_and_the_minimum() {
        let p = policy();
        let t = |requests, drifted| Totals { requests, drifted };
        assert!(!p.trips(t(99, 99)), "below min_requests");
        assert!(
            !p.trips(t(100, 20)),
            "ratio equal to the limit does not trip"
        );
        assert!(p.trips(t(100, 21)));
        assert!(!p.trips(t(0, 0)));
        let zero = DriftPausePolicy {
            max_ratio: 0.0,
            min_requests: 1,
            ..p
        };
        assert!(zero.trips(t(1, 1)) && !zero.trips(t(5, 0)));
    }

    #[test]
    fn window_forgets_slots_older_than_the_window() {
        let mut w = DriftWindow::default();
        w.add(100, 50, 10);
        w.add(105, 30, 3);
        assert_eq!(
            w.totals(105),
            Totals {
                requests: 80,
                drifted: 13
            }
        );
        // Epoch 109 still sees 100 (10 slots: 100..=109); 110 does not.
        assert_eq!(w.totals(109).requests, 80);
        assert_eq!(w.totals(110).requests, 30);
        // Epoch 110 reuses slot 0 and restarts it.
        w.add(110, 7, 7);
        assert_eq!(
            w.totals(110),
            Totals {
                requests: 37,
                drifted: 10
            }
        );
        // A late count for epoch 100 is dropped: its slot now holds 110.
        w.add(100, 1000, 1000);
        assert_eq!(w.totals(110).requests, 37);
        assert_eq!(w.totals(200), Totals::default());
    }

    #[test]
    fn window_round_trips_through_bytes_and_rejects_others() {
        let mut w = DriftWindow::default();
        w.add(7, 3, 1);
        w.add(12, u64::MAX, 2);
        w.paused = true;
        let bytes = w.encode();
        assert_eq!(bytes.len(), ENCODED_LEN);
        assert_eq!(DriftWindow::decode(&bytes), Some(w));
        assert_eq!(DriftWindow::decode(&bytes[1..]), None);
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(DriftWindow::decode(&other), None);
        other[0] = FORMAT_VERSION;
        other[1] = 7;
        assert_eq!(DriftWindow::decode(&other), None);
    }

    #[test]
    fn ratios_are_written_with_four_decimals() {
        let t = |requests, drifted| Totals { requests, drifted }.ratio_text();
        assert_eq!(t(1000, 412), "0.4120");
        assert_eq!(t(3, 1), "0.3333");
        assert_eq!(t(5, 5), "1.0000");
        assert_eq!(t(0, 0), "0.0000");
        assert_eq!(ratio_limit_text(0.05), "0.0500");
        assert_eq!(ratio_limit_text(0.00125), "0.0013");
        assert_eq!(ratio_limit_text(0.0), "0.0000");
        assert_eq!(ratio_limit_text(-0.5), "0.0000");
        assert_eq!(ratio_limit_text(1.0), "1.0000");
    }

    #[test]
    fn a_ratio_equal_to_the_limit_does_not_trip() {
        let p = policy();
        let t = |requests, drifted| p.trips(Totals { requests, drifted });
        // max_ratio 0.2 of at least 100 requests.
        assert!(!t(100, 20), "exactly at the limit");
        assert!(t(100, 21));
        assert!(!t(99, 99), "too few requests");
        assert!(t(100, 100));
        assert!(!t(0, 0));
    }

    #[test]
    fn the_lock_key_is_the_wire_name_every_vm_shares() {
        // Every VM of an Envoy reads and writes this shared-data key: its spelling is
        // a wire format between module builds.
        assert_eq!(
            current_lock_key("checkout-v2"),
            "rampart.drift_pause.checkout-v2.current"
        );
    }

    /// The 64-bit long division agrees with the 128-bit formula it replaced, at the
    /// edges of the u64 range too.
    #[test]
    fn ratio_text_matches_the_wide_formula() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let edges = [
            0,
            1,
            2,
            3,
            9_999,
            10_000,
            u64::MAX / 10_000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for i in 0..20_000usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let requests = match i % 4 {
                0 => edges[i / 4 % edges.len()],
                1 => state >> (state % 64),
                _ => state % 100_000,
            };
            let drifted = match i % 3 {
                0 => requests.saturating_sub(state % 7),
                1 => state >> (state % 60),
                _ => edges[i % edges.len()],
            };
            let totals = Totals { requests, drifted };
            let want = if requests == 0 {
                "0.0000".to_owned()
            } else {
                four_decimals((u128::from(drifted) * 10_000 / u128::from(requests)) as u64)
            };
            assert_eq!(totals.ratio_text(), want, "{drifted} / {requests}");
        }
    }

    #[test]
    fn only_decided_requests_count() {
        let pause = DriftPause::new(policy(), "c", &lock());
        for reason in [
            Reason::Match,
            Reason::Drift,
            Reason::Missing,
            Reason::Unkeyed,
            Reason::Paused,
            Reason::DriftPaused,
            Reason::InvalidContract,
        ] {
            pause.record(&decision(reason));
        }
        assert_eq!(
            pause.pending(),
            Totals {
                requests: 4,
                drifted: 2
            }
        );
    }

    /// Two workers, neither of which alone reaches `min_requests`, trip the pause
    /// together; the second learns of it on its next tick.
    #[test]
    fn workers_aggregate_through_shared_data() {
        let mut store = MemoryStore::default();
        let a = DriftPause::new(policy(), "checkout", &lock());
        let b = DriftPause::new(policy(), "checkout", &lock());
        for _ in 0..60 {
            a.record(&decision(Reason::Drift));
            b.record(&decision(Reason::Drift));
        }
        let now = 1_700_000_000_000;
        assert_eq!(a.tick(&mut store, now), Ok(TickOutcome::Merged));
        assert!(!a.is_paused());
        assert_eq!(
            b.tick(&mut store, now + 10),
            Ok(TickOutcome::Tripped(Totals {
                requests: 120,
                drifted: 120
            }))
        );
        assert!(b.is_paused());
        a.record(&decision(Reason::Match));
        assert_eq!(a.tick(&mut store, now + 20), Ok(TickOutcome::Joined));
        assert!(a.is_paused());
        assert_eq!(a.tick(&mut store, now + 30), Ok(TickOutcome::Paused));
        assert_eq!(a.pending(), Totals::default());
    }

    #[test]
    fn low_ratio_never_trips_and_old_drift_ages_out() {
        let mut store = MemoryStore::default();
        let w = DriftPause::new(policy(), "c", &lock());
        let mut now = 1_000_000_000;
        for _ in 0..30 {
            w.record(&decision(Reason::Drift));
        }
        assert_eq!(w.tick(&mut store, now), Ok(TickOutcome::Merged));
        // 31 s later that drift has left the window: 10 drifted of 100 (below 0.2)
        // do not trip, where 40 of 130 would have.
        now += 31_000;
        for i in 0..100 {
            w.record(&decision(if i < 10 {
                Reason::Drift
            } else {
                Reason::Match
            }));
        }
        assert_eq!(w.tick(&mut store, now), Ok(TickOutcome::Merged));
        assert!(!w.is_paused());
        assert_eq!(w.tick(&mut store, now), Ok(TickOutcome::Idle));
    }

    #[test]
    fn same_lock_keeps_the_pause_and_a_new_lock_clears_it_once() {
        let mut store = MemoryStore::default();
        let old = DriftPause::new(policy(), "c", &lock());
        for _ in 0..100 {
            old.record(&decision(Reason::Missing));
        }
        assert!(matches!(
            old.tick(&mut store, 5_000),
            Ok(TickOutcome::Tripped(_))
        ));
        let again = DriftPause::new(policy(), "c", &lock());
        assert_eq!(again.start(&mut store), Ok(true));
        assert!(again.is_paused());

        let relocked = DriftPause::new(policy(), "c", &Digest::of_bytes(b"new lock"));
        assert_eq!(relocked.start(&mut store), Ok(false));
        assert_ne!(relocked.key(), old.key());
        assert_eq!(DriftPause::clear(&mut store, old.key()), Ok(true));
        assert_eq!(
            DriftPause::clear(&mut store, old.key()),
            Ok(false),
            "only one VM reports the clear"
        );
        // Going back to the old lock later starts from a clean window.
        let back = DriftPause::new(policy(), "c", &lock());
        assert_eq!(back.start(&mut store), Ok(false));
    }

    #[test]
    fn switching_locks_clears_the_old_pause_once() {
        let mut store = MemoryStore::default();
        let a = lock();
        let b = Digest::of_bytes(b"approved");
        // First configuration: nothing to clear, on any VM.
        assert_eq!(switch_lock(&mut store, "c", &a), Ok(None));
        assert_eq!(switch_lock(&mut store, "c", &a), Ok(None));
        let old = DriftPause::new(policy(), "c", &a);
        for _ in 0..100 {
            old.record(&decision(Reason::Drift));
        }
        assert!(matches!(
            old.tick(&mut store, 0),
            Ok(TickOutcome::Tripped(_))
        ));
        // Every VM of the new configuration switches; only the first reports.
        assert_eq!(switch_lock(&mut store, "c", &b), Ok(Some(a)));
        assert_eq!(switch_lock(&mut store, "c", &b), Ok(None));
        assert_eq!(
            DriftPause::new(policy(), "c", &a).start(&mut store),
            Ok(false)
        );
        // Another contract's lock is its own business.
        assert_eq!(switch_lock(&mut store, "other", &a), Ok(None));
        // Switching without a pause to end reports nothing.
        assert_eq!(switch_lock(&mut store, "c", &a), Ok(None));
    }

    #[test]
    fn lost_compare_and_swap_keeps_counts_for_the_next_tick() {
        /// A store where another writer always comes first.
        struct Busy(MemoryStore);
        impl SharedStore for Busy {
            fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
                self.0.get(key)
            }
            fn set(&mut self, key: &str, value: &[u8], _cas: u32) -> Result<bool, HostError> {
                // Someone else writes in between.
                self.0.set(key, value, 0)?;
                Ok(false)
            }
        }
        let mut store = Busy(MemoryStore::default());
        let w = DriftPause::new(policy(), "c", &lock());
        w.record(&decision(Reason::Drift));
        assert_eq!(w.tick(&mut store, 0), Ok(TickOutcome::Contended));
        assert_eq!(w.pending().requests, 1);
    }

    #[test]
    fn host_errors_never_pause() {
        struct Broken;
        impl SharedStore for Broken {
            fn get(&mut self, _: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
                Err(HostError)
            }
            fn set(&mut self, _: &str, _: &[u8], _: u32) -> Result<bool, HostError> {
                Err(HostError)
            }
        }
        let w = DriftPause::new(policy(), "c", &lock());
        for _ in 0..1000 {
            w.record(&decision(Reason::Drift));
        }
        assert_eq!(w.start(&mut Broken), Err(HostError));
        assert_eq!(w.tick(&mut Broken, 0), Err(HostError));
        assert!(!w.is_paused());
        assert_eq!(DriftPause::clear(&mut Broken, "k"), Err(HostError));
    }

    #[test]
    fn garbage_in_shared_data_starts_a_fresh_window() {
        let mut store = MemoryStore::default();
        let w = DriftPause::new(policy(), "c", &lock());
        store.set(w.key(), b"not a window", 0).unwrap();
        assert_eq!(w.start(&mut store), Ok(false));
        w.record(&decision(Reason::Match));
        assert_eq!(w.tick(&mut store, 0), Ok(TickOutcome::Merged));
        let (bytes, _) = store.get(w.key()).unwrap().unwrap();
        assert_eq!(DriftWindow::decode(&bytes).unwrap().totals(0).requests, 1);
    }

    #[test]
    fn key_names_contract_and_lock() {
        assert_eq!(
            shared_key("checkout-v2", &lock()),
            format!("rampart.drift_pause.checkout-v2.{}", lock())
        );
    }
}
