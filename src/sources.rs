//! Connections counted per source address, for `--max-connections-per-ip`:
//! one host must not take every connection slot.
//!
//! A source is an IPv4 address, or an IPv6 /64 prefix: one IPv6 host
//! usually holds a whole /64 and can pick any address in it, so counting
//! per IPv6 address would limit nothing. An IPv4 address mapped into IPv6
//! (`::ffff:a.b.c.d`, what a dual-stack listener reports) counts as that
//! IPv4 address. The login rate and the wrong-password back-off
//! (`accounts/`) count by the same [`Source`].
//!
//! The accept loop takes a [`SourceGuard`] per connection and the session
//! holds it (in its [`ConnectionSlot`](crate::session::ConnectionSlot));
//! dropping it, on whatever thread the session ends, gives the count back.
//! The map holds only sources with a connection open (an entry goes when
//! its count drops to zero), so it is bounded by `--max-connections`.
//! A mutex rather than messages to the accept loop: it is taken once per
//! connection opened and once per connection closed, for a hash-map step.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Default of `--max-connections-per-ip`: room for a household or an
/// office behind one NAT address, and for the load generator, which
/// spreads its clients over loopback addresses at most 32 to one.
pub const DEFAULT_MAX_PER_SOURCE: usize = 64;

/// The unit connections are counted by (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => Source::V6Prefix(prefix_64(v6)),
            },
        }
    }
}

fn prefix_64(ip: Ipv6Addr) -> u64 {
    (ip.to_bits() >> 64) as u64
}

/// The open connections of every source that has some.
#[derive(Debug)]
pub struct SourceCounts {
    /// Connections allowed per source; 0 means no limit (and no counting).
    max: usize,
    open: Mutex<HashMap<Source, usize, foldhash::fast::RandomState>>,
}

impl SourceCounts {
    /// Counts for a limit of `max` per source (0: unlimited).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(SourceCounts {
            max,
            open: Mutex::default(),
        })
    }

    /// The limit per source (0: unlimited).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts one more connection from `ip`, or `None` if its source has
    /// the most it may have already. Without a limit nothing is counted.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceGuard> {
        if self.max == 0 {
            return Some(SourceGuard { counted: None });
        }
        let source = Source::from(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(source).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceGuard {
            counted: Some((self.clone(), source)),
        })
    }

    /// How many connections `ip`'s source has open (for tests and logs).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&Source::from(ip)).copied().unwrap_or(0)
    }

    /// How many sources have connections open.
    pub fn sources(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn release(&self, source: Source) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&source);
            }
        }
    }
}

/// One connection counted against its source; dropping it gives the count
/// back.
#[derive(Debug)]
pub struct SourceGuard {
    counted: Option<(Arc<SourceCounts>, Source)>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        if let Some((counts, source)) = self.counted.take() {
            counts.release(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::from(ip("2001:db8:1:2::1")),
            Source::from(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::from(ip("2001:db8:1:2::1")),
            Source::from(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::from(ip("::ffff:10.0.0.1")),
            Source::from(ip("10.0.0.1"))
        );
        assert_ne!(Source::from(ip("10.0.0.1")), Source::from(ip("10.0.0.2")));
    }

    #[test]
    fn a_source_gets_its_limit_and_its_count_back() {
        let counts = SourceCounts::new(2);
        let a = ip("127.0.0.1");
        let first = counts.admit(a).unwrap();
        let _second = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_none());
        // Another source is not affected.
        let other = counts.admit(ip("127.0.0.2")).unwrap();
        assert_eq!(counts.sources(), 2);
        drop(first);
        assert_eq!(counts.open_from(a), 1);
        let _third = counts.admit(a).unwrap();
        drop(other);
        // An entry goes when its count reaches zero: the map stays bounded.
        assert_eq!(counts.sources(), 1);
    }

    #[test]
    fn zero_means_unlimited() {
        let counts = SourceCounts::new(0);
        let guards: Vec<_> = (0..1000)
            .map(|_| counts.admit(ip("::1")).unwrap())
            .collect();
        assert_eq!(guards.len(), 1000);
        assert_eq!(counts.sources(), 0);
    }
}
