//! The state every task of one run shares ([`Shared`]): the clients' names,
//! per-sender delivery counts (which drive the send windows), per-client
//! `/who` answers and when the server said a client was not online, one
//! latency histogram per class of traffic, and the anomaly counters.
//!
//! Everything is an atomic or a briefly held mutex, so receivers on a
//! separate runtime (the bystanders) share it too. Receivers touch it once
//! per `read`, not once per line.

use std::collections::HashMap;
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
    /// Per client: `/who` answers it received (their `server: <n> online:`
    /// heads); `wake` is woken as they come.
    pub(crate) who_answers: Vec<AtomicU64>,
    /// Per client: when (ns since start) an `error: not online:` first
    /// named it, or `u64::MAX`.
    pub(crate) offline_ns: Vec<AtomicU64>,
    /// Name to client index (to read the names in `error: not online:`).
    index: HashMap<String, u32>,
    /// Per sender: the class its messages count in, whoever receives them
    /// (`NO_CLASS`: the receiver's class).
    sender_class: Vec<u8>,
    anomalies: Mutex<Vec<String>>,
}

/// "No class of its own" in [`Shared::sender_class`].
const NO_CLASS: u8 = u8::MAX;

impl Shared {
    /// State for clients named `names`, with `classes` kinds of traffic.
    pub(crate) fn new(names: Vec<String>, classes: usize) -> Self {
        let n = names.len();
        Shared {
            start: Instant::now(),
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
            who_answers: (0..n).map(|_| AtomicU64::new(0)).collect(),
            offline_ns: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
            index: names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i as u32))
                .collect(),
            sender_class: vec![NO_CLASS; n],
            names,
            anomalies: Mutex::new(Vec::new()),
        }
    }

    /// Counts `sender`'s messages in `class` whoever receives them (a
    /// broadcaster's copies at the bystanders are not bystander traffic).
    pub(crate) fn sender_class(mut self, sender: u32, class: usize) -> Self {
        self.sender_class[sender as usize] = u8::try_from(class).unwrap_or(NO_CLASS);
        self
    }

    /// The class a message from `sender` counts in, received by a client
    /// of class `receiver_class`.
    pub(crate) fn class_of(&self, sender: u32, receiver_class: usize) -> usize {
        match self.sender_class.get(sender as usize) {
            Some(&c) if c != NO_CLASS => usize::from(c),
            _ => receiver_class,
        }
    }

    /// Notes the names listed in `error: not online: <names> (...)` (the
    /// text after `not online:`) as offline from `now_ns` on.
    pub(crate) fn note_offline(&self, names: &[u8], now_ns: u64) {
        let list = names.split(|&b| b == b'(').next().unwrap_or(names);
        for name in list.split(|&b| b == b',') {
            let name = name.trim_ascii();
            if let Some(&i) = std::str::from_utf8(name)
                .ok()
                .and_then(|name| self.index.get(name))
            {
                let _ = self.offline_ns[i as usize].fetch_min(now_ns, Relaxed);
            }
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
