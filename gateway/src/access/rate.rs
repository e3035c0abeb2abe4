//! Keyed rate limits (GCRA, governor), with the number of tracked keys bounded.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keys tracked before idle ones are dropped: a client whose bucket is full again is
/// indistinguishable from a new one, so dropping it loses nothing. Bounds the memory a flood of
/// distinct addresses can take (~100 bytes a key).
const MAX_KEYS: usize = 100_000;
/// Checks between sweeps for idle keys.
const SWEEP_EVERY: u64 = 4096;

pub(super) struct Limiter<K: Hash + Eq + Clone> {
    quota: Quota,
    limiter: RwLock<DefaultKeyedRateLimiter<K>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_sec` sustained with `burst` at once; `None` when `per_sec` is 0 (unlimited).
    pub(super) fn new(per_sec: u32, burst: u32) -> Option<Limiter<K>> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Limiter {
            quota,
            limiter: RwLock::new(RateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Counts one request of `key`: `None` when it is within its rate, else how long until it
    /// would be.
    pub(super) fn check(&self, key: &K) -> Option<Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(SWEEP_EVERY)
            && self.limiter.read().len() > MAX_KEYS / 2
        {
            let mut limiter = self.limiter.write();
            limiter.retain_recent();
            if limiter.len() > MAX_KEYS {
                // Every key is busy (a flood of addresses): start over rather than grow without
                // bound; the busy clients get a full bucket once.
                tracing::warn!(keys = limiter.len(), "rate limiter full of active keys; resetting it");
                *limiter = RateLimiter::keyed(self.quota);
            }
        }
        self.limiter.read().check_key(key).err().map(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}
