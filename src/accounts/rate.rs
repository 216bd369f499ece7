//! Login attempts per source address: a token bucket each, so one host
//! cannot ask for logins (and so name look-ups and password checks) as
//! fast as it can send lines.
//!
//! Every name line that asks for a login takes a token from its address's
//! bucket; a bucket holds [`RatePolicy::burst`] tokens and refills at
//! [`RatePolicy::per_second`]. The buckets are shared by the sessions of
//! every worker behind one mutex ([`LoginRate`]), held for a hash-map
//! look-up: logins are rare next to chat lines. The arithmetic
//! ([`Buckets`]) is pure, the time passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backoff::{MAX_TRACKED, make_room};
use crate::sources::Source;

/// How fast one address may ask for logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    /// Attempts allowed at once from a quiet address.
    pub burst: u32,
    /// Attempts regained per second.
    pub per_second: u32,
}

impl RatePolicy {
    /// 64 at once, then 16 a second: the load benchmarks log up to 1,000
    /// clients a second in over many loopback addresses with at most 32
    /// per address at once, well inside it; a person retrying a name is
    /// never near it; a script guessing through names is held to 16 a
    /// second per address (and its wrong passwords to far fewer, by the
    /// back-off).
    pub const DEFAULT: RatePolicy = RatePolicy {
        burst: 64,
        per_second: 16,
    };

    /// No limit in practice (tests that log thousands in from 127.0.0.1).
    pub const UNLIMITED: RatePolicy = RatePolicy {
        burst: u32::MAX,
        per_second: u32::MAX,
    };
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy::DEFAULT
    }
}

/// One address's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every address seen lately (pure: time passed in).
#[derive(Debug)]
pub struct Buckets {
    policy: RatePolicy,
    buckets: HashMap<Source, Bucket>,
    max_entries: usize,
}

impl Buckets {
    /// No address seen yet; at most `max_entries` remembered.
    pub fn new(policy: RatePolicy, max_entries: usize) -> Self {
        Buckets {
            policy,
            buckets: HashMap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// Takes a token for `addr`, or says how long until one is there.
    pub fn take(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let policy = self.policy;
        let key = Source::from(addr);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_entries {
            // A bucket that has refilled is the same as no bucket.
            make_room(&mut self.buckets, self.max_entries, |b: &Bucket| {
                (refilled(policy, b, now) >= f64::from(policy.burst), b.last)
            });
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(policy.burst),
            last: now,
        });
        bucket.tokens = refilled(policy, bucket, now);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(
                Duration::try_from_secs_f64(missing / f64::from(policy.per_second.max(1)))
                    .unwrap_or(Duration::MAX),
            )
        }
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn refilled(policy: RatePolicy, bucket: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    (bucket.tokens + elapsed * f64::from(policy.per_second)).min(f64::from(policy.burst))
}

/// The buckets, shared by every session of a server.
#[derive(Debug)]
pub struct LoginRate(Mutex<Buckets>);

impl LoginRate {
    /// Buckets for `policy`, at most [`MAX_TRACKED`] addresses remembered.
    pub fn new(policy: RatePolicy) -> Self {
        LoginRate(Mutex::new(Buckets::new(policy, MAX_TRACKED)))
    }

    /// A login attempt from `addr` now: `Err(wait)` if it is refused.
    pub fn attempt(&self, addr: IpAddr) -> Result<(), Duration> {
        // A panic while the lock was held cannot leave the buckets in a
        // state worse than a moment old: carry on with them.
        let mut buckets = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.take(addr, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let policy = RatePolicy {
            burst: 3,
            per_second: 2,
        };
        let mut b = Buckets::new(policy, 10);
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(b.take(a, t0), Ok(()));
        }
        assert_eq!(b.take(a, t0), Err(Duration::from_millis(500)));
        assert_eq!(b.take(ip("10.0.0.2"), t0), Ok(()), "per address");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.take(a, later), Ok(()));
        assert!(b.take(a, later).is_err());
        // A long quiet refills to the burst, no more.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(a, much_later), Ok(()));
        }
        assert!(b.take(a, much_later).is_err());
    }

    #[test]
    fn one_ipv6_host_is_one_bucket() {
        let t0 = Instant::now();
        let mut b = Buckets::new(
            RatePolicy {
                burst: 1,
                per_second: 1,
            },
            10,
        );
        assert_eq!(b.take(ip("2001:db8::1"), t0), Ok(()));
        assert!(b.take(ip("2001:db8::2"), t0).is_err());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut b = Buckets::new(RatePolicy::DEFAULT, 50);
        for i in 0..500u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            b.take(addr, t0 + Duration::from_millis(u64::from(i)))
                .unwrap();
            assert!(b.len() <= 50);
        }
    }

    #[test]
    fn the_default_lets_the_benchmarks_spread_of_logins_through() {
        // 32 clients at once per address, again as soon as they are done.
        let t0 = Instant::now();
        let mut b = Buckets::new(RatePolicy::DEFAULT, 10);
        let a = ip("127.0.0.7");
        for round in 0..2 {
            for _ in 0..32 {
                assert_eq!(b.take(a, t0 + Duration::from_secs(round)), Ok(()));
            }
        }
    }
}
