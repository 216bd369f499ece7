//! Fitting `--max-connections` to the process's file-descriptor limit.
//!
//! Every connection is a socket, and every socket a file descriptor. The
//! soft limit is often 1024 while the hard limit is much higher, so the
//! server raises the soft limit to the hard one at start (no `ulimit -n`
//! needed), then lowers `--max-connections` if the descriptors still do not
//! suffice: refusing connection 20,001 with a clear `error:` line is better
//! than failing to accept it, or anything else, for want of a descriptor.

use std::io;

/// Descriptors kept back for everything that is not a connection: standard
/// streams, the listener, each arbiter's event loop (epoll and wake-up
/// descriptors), and some slack for refusing connections politely.
pub const RESERVED_FDS: u64 = 64;

/// The outcome of [`fit_connections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft limit before raising it.
    pub soft_before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the ceiling for the soft one).
    pub hard: u64,
    /// The number of connections that fits: `max_connections`, or fewer.
    pub max_connections: usize,
}

impl FdBudget {
    /// Whether `max_connections` had to be lowered.
    pub fn lowered(&self, requested: usize) -> bool {
        self.max_connections < requested
    }
}

/// Raises the soft descriptor limit to the hard limit and returns how many
/// of `requested` connections fit.
pub fn fit_connections(requested: usize) -> io::Result<FdBudget> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(FdBudget {
        soft_before,
        soft,
        hard,
        max_connections: connections_within(soft, requested),
    })
}

/// How many of `requested` connections fit under a descriptor limit.
pub fn connections_within(fd_limit: u64, requested: usize) -> usize {
    let room = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    requested.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_for_connections() {
        assert_eq!(connections_within(20_000, 100_000), 20_000 - 64);
        assert_eq!(connections_within(20_000, 500), 500);
        assert_eq!(connections_within(10, 500), 1);
    }

    #[test]
    fn raising_never_lowers() {
        let budget = fit_connections(100).unwrap();
        assert!(budget.soft >= budget.soft_before);
        assert!(budget.soft <= budget.hard);
    }
}
