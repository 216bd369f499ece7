//! Slowing password guessing down: failed attempts per name and per
//! source address, and how long the next attempt must wait after them.
//!
//! Pure (the time is always passed in), so the arithmetic is tested
//! without a clock or a socket; the accounts actor holds one [`Backoff`]
//! per kind of key. State is in memory only: a restart forgets it, which
//! costs an attacker a restart of the server per round of free guesses.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How failures turn into waiting.
///
/// The first `free_failures` failures cost nothing (people mistype); each
/// failure after them makes the next attempt wait twice as long as the
/// last, from `first_wait` up to `max_wait`. A key that has not failed for
/// [`BackoffPolicy::forget_after`] starts again from nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Failures that cost no wait.
    pub free_failures: u32,
    /// The wait after the first failure past the free ones.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
}

impl BackoffPolicy {
    /// Per name: 3 free failures, then 1 s, 2 s, 4 s ... up to 5 minutes.
    /// An attacker on one name gets about 300 guesses a day once at the
    /// cap.
    pub const PER_NAME: BackoffPolicy = BackoffPolicy {
        free_failures: 3,
        first_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(300),
    };

    /// Per source address: 10 free failures (several people behind one
    /// NAT mistyping), then the same doubling: one host trying many names
    /// is slowed as one guesser.
    pub const PER_ADDRESS: BackoffPolicy = BackoffPolicy {
        free_failures: 10,
        first_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(300),
    };

    /// The wait after `failures` failures in a row.
    pub fn wait_after(&self, failures: u32) -> Duration {
        let Some(past_free) = failures.checked_sub(self.free_failures + 1) else {
            return Duration::ZERO;
        };
        // 2^31 seconds is past any cap anyone sets.
        let factor = 1u32 << past_free.min(31);
        self.first_wait
            .checked_mul(factor)
            .unwrap_or(self.max_wait)
            .min(self.max_wait)
    }

    /// How long a key is remembered after its last failure: three times
    /// the longest wait (15 minutes by default), so someone at the cap
    /// stays at the cap.
    pub fn forget_after(&self) -> Duration {
        self.max_wait.saturating_mul(3)
    }
}

/// At most this many keys are remembered per table; past it the oldest
/// tenth is forgotten. 100,000 entries are a few MiB.
pub const MAX_TRACKED: usize = 100_000;

/// The failures of one key.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed attempts per key (a folded name, or a source address).
#[derive(Debug)]
pub struct Backoff<K> {
    policy: BackoffPolicy,
    entries: HashMap<K, Failures>,
    max_entries: usize,
}

impl<K: Hash + Eq> Backoff<K> {
    /// An empty table remembering at most [`MAX_TRACKED`] keys.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_capacity(policy, MAX_TRACKED)
    }

    /// An empty table remembering at most `max_entries` keys.
    pub fn with_capacity(policy: BackoffPolicy, max_entries: usize) -> Self {
        Backoff {
            policy,
            entries: HashMap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// `Err(wait)` while an attempt for `key` must wait that much longer.
    pub fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(failures) = self.entries.get(key) else {
            return Ok(());
        };
        let ready_at = failures.last + self.policy.wait_after(failures.count);
        match ready_at.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failed attempt for `key`.
    pub fn fail<Q>(&mut self, key: &Q, now: Instant)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let forget_after = self.policy.forget_after();
        if !self.entries.contains_key(key) && self.entries.len() >= self.max_entries {
            make_room(&mut self.entries, self.max_entries, |f: &Failures| {
                (now.saturating_duration_since(f.last) > forget_after, f.last)
            });
        }
        let failures = self.entries.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(failures.last) > forget_after {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
    }

    /// Forgets `key`'s failures (a right password for a name).
    pub fn clear<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Takes back one failure counted for `key` (an attempt counted
    /// before it was decided, that turned out not to be a wrong password).
    pub fn refund<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(failures) = self.entries.get_mut(key) {
            failures.count = failures.count.saturating_sub(1);
            if failures.count == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Makes room in a full table: drops the entries `stale` calls stale, and
/// if that is not enough, the oldest tenth by the time it gives. Linear in
/// the table's size, and then not needed again for a tenth of it, so
/// amortized constant per insertion even under a flood of new keys.
pub(crate) fn make_room<K: Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    max_entries: usize,
    stale: impl Fn(&V) -> (bool, Instant),
) {
    map.retain(|_, v| !stale(v).0);
    if map.len() < max_entries {
        return;
    }
    let mut times: Vec<Instant> = map.values().map(|v| stale(v).1).collect();
    let cut = (times.len() / 10).max(1).min(times.len() - 1);
    let (_, &mut oldest_kept, _) = times.select_nth_unstable(cut);
    map.retain(|_, v| stale(v).1 >= oldest_kept);
    // Entries that share one instant may all survive; never more than max.
    if map.len() >= max_entries {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        let p = BackoffPolicy::PER_NAME;
        let waits: Vec<u64> = (0..=14).map(|n| p.wait_after(n).as_secs()).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
        );
        assert_eq!(p.wait_after(u32::MAX), p.max_wait);
        assert_eq!(BackoffPolicy::PER_ADDRESS.wait_after(10), Duration::ZERO);
        assert_eq!(BackoffPolicy::PER_ADDRESS.wait_after(11), S);
    }

    #[test]
    fn an_attempt_during_the_wait_is_refused_with_what_is_left() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::PER_NAME);
        for _ in 0..3 {
            b.fail(&"alice", t0);
            assert_eq!(b.check(&"alice", t0), Ok(()));
        }
        b.fail(&"alice", t0);
        assert_eq!(b.check(&"alice", t0), Err(S));
        assert_eq!(b.check(&"alice", t0 + S / 4), Err(S * 3 / 4));
        assert_eq!(b.check(&"alice", t0 + S), Ok(()));
        assert_eq!(b.check(&"bob", t0), Ok(()), "other keys are not touched");
        b.fail(&"alice", t0 + S);
        assert_eq!(b.check(&"alice", t0 + S), Err(2 * S));
    }

    #[test]
    fn success_clears_and_quiet_forgets() {
        let t0 = Instant::now();
        let p = BackoffPolicy {
            free_failures: 0,
            first_wait: S,
            max_wait: 4 * S,
        };
        let mut b = Backoff::new(p);
        b.fail(&1, t0);
        b.fail(&1, t0);
        assert_eq!(b.check(&1, t0), Err(2 * S));
        b.refund(&1);
        assert_eq!(b.check(&1, t0), Err(S));
        b.clear(&1);
        assert_eq!(b.check(&1, t0), Ok(()));
        b.fail(&1, t0);
        b.fail(&1, t0);
        // Long after: the count starts again.
        let later = t0 + p.forget_after() + S;
        b.fail(&1, later);
        assert_eq!(b.check(&1, later), Err(S));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let t0 = Instant::now();
        let mut b = Backoff::with_capacity(BackoffPolicy::PER_NAME, 100);
        for i in 0..1000u32 {
            b.fail(&i, t0 + S * i);
            assert!(b.len() <= 100);
        }
        for _ in 0..4 {
            b.fail(&999, t0 + S * 999);
        }
        assert!(b.check(&999, t0 + S * 999).is_err(), "the newest is kept");
        assert_eq!(b.check(&0, t0 + S * 999), Ok(()));
    }
}
