//! The state every task of one run shares ([`Shared`]): the clients' names,
//! per-sender delivery counts (which drive the send windows), one latency
//! histogram per class of traffic, and the anomaly counters.
//!
//! Everything is an atomic or a briefly held mutex, so receivers on a
//! separate runtime (the bystanders) share it too. Receivers touch it once
//! per `read`, not once per line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// How many anomaly descriptions a run keeps (the counters count them all).
const KEPT_ANOMALIES: usize = 8;

/// One kind of traffic with its own latency figures (say, the flood and
/// the bystanders).
pub(crate) struct Class {
    pub(crate) delivered: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

/// Counters of things that should not happen (or that say which server
/// this is).
#[derive(Default)]
pub(crate) struct Counts {
    /// A message arrived out of sequence on its (sender, recipient) flow.
    pub(crate) order_violations: AtomicU64,
    /// A message's `from` name is not the name of the sender in its payload.
    pub(crate) misattributed: AtomicU64,
    /// A `from` line whose text is not a payload of this run.
    pub(crate) unparsed: AtomicU64,
    /// `server:` lines after login.
    pub(crate) server_lines: AtomicU64,
    /// `error:` lines after login.
    pub(crate) error_lines: AtomicU64,
    /// Connections the server closed or reset while the run needed them.
    pub(crate) closed_by_server: AtomicU64,
}

/// The state of one run.
pub(crate) struct Shared {
    /// Time zero of the run: payload timestamps count from here.
    pub(crate) start: Instant,
    /// Client index to login name.
    pub(crate) names: Vec<String>,
    /// Per sender: deliveries of its messages seen by any receiver.
    pub(crate) acked: Vec<AtomicU64>,
    /// Per sender: woken when `acked` grows.
    pub(crate) wake: Vec<Notify>,
    pub(crate) classes: Vec<Class>,
    pub(crate) counts: Counts,
    /// When (ns since start) the first `error: not online:` arrived, or
    /// `u64::MAX`.
    pub(crate) first_not_online_ns: AtomicU64,
    /// The last `server: <n> online:` count seen (`/who`), or `u64::MAX`.
    pub(crate) who: AtomicU64,
    pub(crate) who_changed: Notify,
    anomalies: Mutex<Vec<String>>,
}

impl Shared {
    /// State for clients named `names`, with `classes` kinds of traffic.
    pub(crate) fn new(names: Vec<String>, classes: usize) -> Self {
        let n = names.len();
        Shared {
            start: Instant::now(),
            names,
            acked: (0..n).map(|_| AtomicU64::new(0)).collect(),
            wake: (0..n).map(|_| Notify::new()).collect(),
            classes: (0..classes)
                .map(|_| Class {
                    delivered: AtomicU64::new(0),
                    hist: Mutex::new(new_histogram()),
                })
                .collect(),
            counts: Counts::default(),
            first_not_online_ns: AtomicU64::new(u64::MAX),
            who: AtomicU64::new(u64::MAX),
            who_changed: Notify::new(),
            anomalies: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run's start.
    pub(crate) fn now_ns(&self) -> u64 {
        duration_ns(self.start.elapsed())
    }

    /// Keeps the description of an anomaly (the first few different ones).
    pub(crate) fn note(&self, what: impl FnOnce() -> String) {
        if let Ok(mut kept) = self.anomalies.lock()
            && kept.len() < KEPT_ANOMALIES
        {
            let what = what();
            if !kept.contains(&what) {
                kept.push(what);
            }
        }
    }

    /// The anomalies kept so far.
    pub(crate) fn anomalies(&self) -> Vec<String> {
        self.anomalies.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Records one read's worth of latencies (ns) for `class`.
    pub(crate) fn record(&self, class: usize, latencies: &[u64]) {
        let c = &self.classes[class];
        c.delivered.fetch_add(latencies.len() as u64, Relaxed);
        if let Ok(mut h) = c.hist.lock() {
            for &ns in latencies {
                h.saturating_record(ns.max(1));
            }
        }
    }

    /// A copy of `class`'s latency histogram.
    pub(crate) fn histogram(&self, class: usize) -> Histogram<u64> {
        self.classes[class]
            .hist
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| new_histogram())
    }

    /// Clears `class`'s histogram (to measure a phase of the run only).
    pub(crate) fn reset_histogram(&self, class: usize) {
        if let Ok(mut h) = self.classes[class].hist.lock() {
            h.reset();
        }
    }

    /// Deliveries of `class` so far.
    pub(crate) fn delivered(&self, class: usize) -> u64 {
        self.classes[class].delivered.load(Relaxed)
    }
}

/// Latencies in nanoseconds, 1 ns to one hour, three significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// A duration in whole nanoseconds (saturating).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
