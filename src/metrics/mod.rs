//! Counting what the server does, for `GET /metrics`, at no visible cost
//! to the paths that count.
//!
//! The hot counts (every read and write of a session, every batch the
//! broker routes) go into memory that only one writer ever writes: a
//! [`Shard`] per thread for the sessions (all sessions of a worker run on
//! its one thread, one at a time), [`BrokerCounts`] for the broker (one
//! actor, one message at a time). One writer needs no locked instruction:
//! a [`Counter`] adds with a plain load and store, and each shard sits on
//! cache lines of its own, so two workers never contend for one. A scrape
//! sums the shards; it may see one thread's counts a moment older than
//! another's, never a torn or lost one.
//!
//! What any thread may count, and only rarely (a connection refused), is
//! an ordinary atomic add.
//!
//! `export.rs` writes all of it in the Prometheus text format, with the
//! `prometheus-client` crate; docs/OPERATIONS.md lists every metric.

mod export;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::transport::Transport;

pub use export::{CONTENT_TYPE, render};

/// A count with one writer (see the module documentation).
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. For the counter's one writer only: two writers at once
    /// could lose counts (never memory safety).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value (a gauge), for its one writer.
    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One [`Counter`] per transport.
#[derive(Default)]
pub struct PerTransport([Counter; 3]);

impl PerTransport {
    /// The counter of `transport`.
    #[inline]
    pub fn of(&self, transport: Transport) -> &Counter {
        &self.0[transport as usize]
    }
}

/// Every transport, in the order of the labels.
pub const TRANSPORTS: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::WebSocket];

/// Why a login was refused (the label of `achat_logins_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Not a valid name.
    InvalidName,
    /// Taken by someone online (in any spelling).
    Taken,
    /// A registered name, and the wrong password.
    WrongPassword,
    /// Too many login attempts or wrong passwords: wait.
    TooMany,
    /// The server is shutting down.
    ShuttingDown,
    /// The accounts or the cluster's name service could not answer, or
    /// the name is held by a lost node.
    Unavailable,
}

impl LoginRefusal {
    /// Every reason, in the order of the labels.
    pub const ALL: [LoginRefusal; 6] = [
        LoginRefusal::InvalidName,
        LoginRefusal::Taken,
        LoginRefusal::WrongPassword,
        LoginRefusal::TooMany,
        LoginRefusal::ShuttingDown,
        LoginRefusal::Unavailable,
    ];

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            LoginRefusal::InvalidName => "invalid_name",
            LoginRefusal::Taken => "taken",
            LoginRefusal::WrongPassword => "wrong_password",
            LoginRefusal::TooMany => "too_many_attempts",
            LoginRefusal::ShuttingDown => "shutting_down",
            LoginRefusal::Unavailable => "unavailable",
        }
    }
}

/// Why a slow consumer was cut off (the label of
/// `achat_slow_consumers_cut_off_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOff {
    /// Its unwritten output would have passed `--max-outbox-bytes` (or
    /// the total cap for all peers).
    OutboxFull,
    /// It held senders up and read nothing for the stall limit.
    Stalled,
}

impl CutOff {
    /// Every reason, in the order of the labels.
    pub const ALL: [CutOff; 2] = [CutOff::OutboxFull, CutOff::Stalled];

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            CutOff::OutboxFull => "outbox_full",
            CutOff::Stalled => "stalled",
        }
    }
}

/// Why a connection was turned away before it became a session (the label
/// of `achat_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// Over `--max-connections`.
    Full,
    /// Over `--max-connections-per-ip`.
    TooManyFromSource,
    /// Arrived during the shutdown.
    ShuttingDown,
    /// A WebSocket from a page of a foreign origin.
    Origin,
}

impl ConnectionRefusal {
    /// Every reason, in the order of the labels.
    pub const ALL: [ConnectionRefusal; 4] = [
        ConnectionRefusal::Full,
        ConnectionRefusal::TooManyFromSource,
        ConnectionRefusal::ShuttingDown,
        ConnectionRefusal::Origin,
    ];

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionRefusal::Full => "full",
            ConnectionRefusal::TooManyFromSource => "too_many_from_source",
            ConnectionRefusal::ShuttingDown => "shutting_down",
            ConnectionRefusal::Origin => "origin",
        }
    }
}

/// What the sessions of one thread count. Aligned so that no two shards
/// (and nothing else) share a cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct Shard {
    /// Sessions started.
    pub opened: PerTransport,
    /// Sessions ended.
    pub closed: PerTransport,
    /// Bytes read from clients (protocol bytes: inside TLS, out of
    /// WebSocket frames).
    pub bytes_read: PerTransport,
    /// Bytes written to clients (likewise).
    pub bytes_written: PerTransport,
    /// Logins that succeeded.
    pub logins: Counter,
    /// Logins refused, by [`LoginRefusal`].
    pub logins_refused: [Counter; LoginRefusal::ALL.len()],
    /// Connections closed for not logging in in time.
    pub login_timeouts: Counter,
    /// Slow consumers cut off, by [`CutOff`].
    pub cut_off: [Counter; CutOff::ALL.len()],
}

impl Shard {
    /// Counts a refused login.
    pub fn login_refused(&self, why: LoginRefusal) {
        self.logins_refused[why as usize].add(1);
    }

    /// Counts a slow consumer cut off.
    pub fn cut_off(&self, why: CutOff) {
        self.cut_off[why as usize].add(1);
    }
}

/// The bounds of the broker's batch histogram, in nanoseconds (the last
/// bucket, `+Inf`, is implied).
pub const BATCH_BOUNDS_NANOS: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
    25_000_000,
];

/// One batch in this many is timed: two clock reads per batch would be a
/// cost seen in the throughput of small batches; one in sixteen is not,
/// and draws the same distribution.
pub const BATCH_SAMPLE_EVERY: u32 = 16;

/// A histogram of durations with one writer.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [Counter; BATCH_BOUNDS_NANOS.len() + 1],
    sum_nanos: Counter,
}

impl Histogram {
    /// Counts one duration (for the one writer).
    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // Prometheus buckets hold what is at most their bound.
        let bucket = BATCH_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].add(1);
        self.sum_nanos.add(nanos);
    }

    /// Observations per bucket (not cumulative), and their sum.
    pub fn snapshot(&self) -> ([u64; BATCH_BOUNDS_NANOS.len() + 1], u64) {
        (
            self.buckets.each_ref().map(Counter::get),
            self.sum_nanos.get(),
        )
    }
}

/// What the broker counts (it alone writes these).
#[repr(align(128))]
#[derive(Default)]
pub struct BrokerCounts {
    /// Chat lines routed (`bob: hi`, `*: hi`; not commands).
    pub lines_routed: Counter,
    /// Chat lines queued for a recipient on this node: a line to three
    /// is three.
    pub deliveries: Counter,
    /// Users logged in on this node (a gauge). (Those online in all are
    /// the broker's [`RosterGauge`](crate::messages::RosterGauge).)
    pub logged_in: Counter,
    /// The broker's time per `Route` batch, one in
    /// [`BATCH_SAMPLE_EVERY`].
    pub batch_time: Histogram,
}

/// Times one batch in [`BATCH_SAMPLE_EVERY`]: the broker's side of the
/// histogram.
#[derive(Default)]
pub struct BatchSampler(u32);

impl BatchSampler {
    /// When this batch began, if it is one to time.
    #[inline]
    pub fn start(&mut self) -> Option<Instant> {
        // The first batch is timed: a quiet server's histogram is not
        // empty after its first line.
        let timed = self.0.is_multiple_of(BATCH_SAMPLE_EVERY);
        self.0 = self.0.wrapping_add(1);
        timed.then(Instant::now)
    }
}

/// All of a server's counts. One per server (tests run several in one
/// process, each with its own).
pub struct Metrics {
    /// Tells this server's shards apart in a thread's list.
    id: u64,
    /// Every thread's shard, for the scrape (locked when a thread counts
    /// for the first time, and by the scrape; never on a hot path).
    shards: Mutex<Vec<Arc<Shard>>>,
    /// The broker's counts.
    pub broker: BrokerCounts,
    /// Connections refused, by [`ConnectionRefusal`]; any thread adds.
    refused: [AtomicU64; ConnectionRefusal::ALL.len()],
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").field("id", &self.id).finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            broker: BrokerCounts::default(),
            refused: Default::default(),
        }
    }
}

thread_local! {
    /// This thread's shards, one per server it counts for (one, but in
    /// tests), by the server's [`Metrics::id`].
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

impl Metrics {
    /// A server's metrics, all zero.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// This thread's shard: what a session keeps and counts into. Only
    /// this thread may count into it.
    pub fn shard(&self) -> Arc<Shard> {
        SHARDS.with_borrow_mut(|mine| {
            if let Some((_, shard)) = mine.iter().find(|(id, _)| *id == self.id) {
                return shard.clone();
            }
            // The shards of servers that are gone (held by this list
            // alone) go first.
            mine.retain(|(_, shard)| Arc::strong_count(shard) > 1);
            let shard = Arc::new(Shard::default());
            self.lock_shards().push(shard.clone());
            mine.push((self.id, shard.clone()));
            shard
        })
    }

    /// Counts a connection turned away.
    pub fn refused(&self, why: ConnectionRefusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shards' counts, summed.
    pub fn totals(&self) -> Totals {
        let shards = self.lock_shards();
        let sum = |count: &dyn Fn(&Shard) -> u64| shards.iter().map(|s| count(s)).sum::<u64>();
        let per_transport = |counters: &dyn Fn(&Shard) -> &PerTransport| {
            TRANSPORTS.map(|t| sum(&|s| counters(s).of(t).get()))
        };
        // Ends before starts: a session that starts and ends between the
        // two reads is then counted as open, never an end without a start.
        let closed = per_transport(&|s| &s.closed);
        let opened = per_transport(&|s| &s.opened);
        Totals {
            open: std::array::from_fn(|i| opened[i].saturating_sub(closed[i])),
            opened,
            bytes_read: per_transport(&|s| &s.bytes_read),
            bytes_written: per_transport(&|s| &s.bytes_written),
            logins: sum(&|s| s.logins.get()),
            logins_refused: std::array::from_fn(|i| sum(&|s| s.logins_refused[i].get())),
            login_timeouts: sum(&|s| s.login_timeouts.get()),
            cut_off: std::array::from_fn(|i| sum(&|s| s.cut_off[i].get())),
            refused: self.refused.each_ref().map(|c| c.load(Ordering::Relaxed)),
        }
    }
}

/// The sessions' counts summed over the threads, and the refusals, at one
/// scrape. Arrays are indexed like [`TRANSPORTS`], [`LoginRefusal::ALL`],
/// [`CutOff::ALL`] and [`ConnectionRefusal::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Sessions open.
    pub open: [u64; 3],
    /// Sessions started.
    pub opened: [u64; 3],
    /// Bytes read.
    pub bytes_read: [u64; 3],
    /// Bytes written.
    pub bytes_written: [u64; 3],
    /// Logins that succeeded.
    pub logins: u64,
    /// Logins refused.
    pub logins_refused: [u64; LoginRefusal::ALL.len()],
    /// Login timeouts.
    pub login_timeouts: u64,
    /// Slow consumers cut off.
    pub cut_off: [u64; CutOff::ALL.len()],
    /// Connections refused.
    pub refused: [u64; ConnectionRefusal::ALL.len()],
}
