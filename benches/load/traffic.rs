//! Moving messages: the receive loop every reading client runs, the three
//! ways of sending (a window of un-received messages, a fixed pace, as
//! fast as possible), and waiting for the expected deliveries with a time
//! bound and a stall detector.
//!
//! Writes are batched: a sender builds as many lines as its window allows
//! into one buffer and writes it once. Reads go into a large buffer, lines
//! are cut with memchr, and the receiver touches the shared state once per
//! read: one `fetch_add` and one wake-up per sender seen, one histogram
//! lock. Nothing is allocated per message.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::lines::{Line, LineReader, Payload, classify, parse_payload, push_message};
use crate::report::Progress;
use crate::state::Shared;

/// Largest batch a sender writes at once.
const BATCH_BYTES: usize = 64 * 1024;

/// Receiver state for one sender's flow to this client.
#[derive(Default)]
struct Flow {
    next: u64,
    pending: u64,
}

/// Hashes a client index (a `u32`) by multiplication: the keys are small
/// integers chosen by the generator, not by an adversary.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Reads `read` until the connection ends (or the task is aborted),
/// checking and counting every message for client `me`, latencies into
/// `class`. A close by the server is counted as an anomaly unless
/// `close_expected`.
pub(crate) async fn receive(
    shared: Arc<Shared>,
    me: u32,
    class: usize,
    mut read: OwnedReadHalf,
    mut reader: LineReader,
    close_expected: bool,
) {
    let mut flows: HashMap<u32, Flow, BuildHasherDefault<IndexHasher>> = HashMap::default();
    let mut touched: Vec<u32> = Vec::new();
    // One list per class: a broadcaster's copies may count apart from the
    // receiver's own traffic (`Shared::sender_class`).
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); shared.classes.len()];
    let my_name = shared.names[me as usize].as_str();
    let mut answers = 0u64;
    loop {
        let now = shared.now_ns();
        while let Some(line) = reader.next_line() {
            match classify(line) {
                Line::From { name, text } => match parse_payload(text) {
                    Some(p) => {
                        let Payload {
                            sender,
                            seq,
                            sent_ns,
                        } = p;
                        if shared.names.get(sender as usize).map(String::as_bytes) != Some(name) {
                            shared.counts.misattributed.fetch_add(1, Relaxed);
                            shared.note(|| {
                                format!(
                                    "{my_name} got a message from '{}' carrying sender index {sender}",
                                    String::from_utf8_lossy(name)
                                )
                            });
                            continue;
                        }
                        let flow = flows.entry(sender).or_default();
                        if flow.pending == 0 {
                            touched.push(sender);
                        }
                        if seq != flow.next {
                            shared.counts.order_violations.fetch_add(1, Relaxed);
                            let expected = flow.next;
                            shared.note(|| {
                                format!(
                                    "{my_name} got seq {seq} from {} where {expected} was next",
                                    shared.names[sender as usize]
                                )
                            });
                        }
                        flow.next = flow.next.max(seq + 1);
                        flow.pending += 1;
                        latencies[shared.class_of(sender, class)].push(now.saturating_sub(sent_ns));
                    }
                    None => {
                        shared.counts.unparsed.fetch_add(1, Relaxed);
                    }
                },
                Line::Server(text) => {
                    shared.counts.server_lines.fetch_add(1, Relaxed);
                    if let Some(n) = who_count(text) {
                        shared.who.store(n, Relaxed);
                        shared.who_changed.notify_waiters();
                        answers += 1;
                    }
                }
                Line::Error(text) => {
                    shared.counts.error_lines.fetch_add(1, Relaxed);
                    if let Some(names) = text.strip_prefix(b"not online:") {
                        let _ = shared.first_not_online_ns.fetch_min(now, Relaxed);
                        shared.note_offline(names, now);
                    }
                    shared.note(|| {
                        format!("{my_name} got: error: {}", String::from_utf8_lossy(text))
                    });
                }
                Line::Other => {
                    shared.counts.unparsed.fetch_add(1, Relaxed);
                }
            }
        }
        for (class, latencies) in latencies.iter_mut().enumerate() {
            if !latencies.is_empty() {
                shared.record(class, latencies);
                latencies.clear();
            }
        }
        if answers > 0 {
            shared.who_answers[me as usize].fetch_add(answers, Relaxed);
            shared.wake[me as usize].notify_one();
            answers = 0;
        }
        for sender in touched.drain(..) {
            if let Some(flow) = flows.get_mut(&sender) {
                shared.acked[sender as usize].fetch_add(flow.pending, Relaxed);
                flow.pending = 0;
                shared.wake[sender as usize].notify_one();
            }
        }
        let ended = match reader.fill(&mut read).await {
            Ok(0) => Some("closed".to_string()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(how) = ended {
            let at = shared.now_ns();
            if !close_expected {
                shared.counts.closed_by_server.fetch_add(1, Relaxed);
                shared.note(|| {
                    format!(
                        "the server {how} {my_name}'s connection at {:.3}s",
                        at as f64 / 1e9
                    )
                });
            }
            return;
        }
    }
}

/// `server: <n> online:` (the head of a `/who` answer) to `n`.
pub(crate) fn who_count(text: &[u8]) -> Option<u64> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || &text[digits..] != b" online:" {
        return None;
    }
    std::str::from_utf8(&text[..digits]).ok()?.parse().ok()
}

/// One sender's part in a windowed scenario.
#[derive(Clone)]
pub(crate) struct Windowed {
    pub(crate) me: u32,
    /// The recipient list and `: `, e.g. `r5: ` or `f10,f11: `.
    pub(crate) prefix: Vec<u8>,
    /// Recipients per message.
    pub(crate) fanout: u64,
    pub(crate) messages: u64,
    /// At most this many messages not yet received by all recipients.
    pub(crate) window: u64,
    /// Text length (padding); 0: just the numbers.
    pub(crate) text_len: usize,
    /// Instead of messages, send this line (`/who\n`) each time; an item
    /// is done when its answer arrives (`Shared::who_answers`).
    pub(crate) request: Option<Vec<u8>>,
    /// Stop sending at this instant, even if messages are left.
    pub(crate) until: Option<Instant>,
}

/// Sends `w.messages` messages, keeping at most `w.window` un-received;
/// returns the write half (which must stay open until the run ends: a
/// closed sending side means the peer left).
pub(crate) async fn send_windowed(
    shared: Arc<Shared>,
    w: Windowed,
    mut write: OwnedWriteHalf,
) -> io::Result<OwnedWriteHalf> {
    let me = w.me as usize;
    let line_len = w.prefix.len() + w.text_len.max(40) + 1;
    let batch_max = (BATCH_BYTES / line_len).max(1) as u64;
    let mut buf = Vec::with_capacity(BATCH_BYTES + line_len);
    let mut sent = 0u64;
    while sent < w.messages && w.until.is_none_or(|until| Instant::now() < until) {
        let done = match w.request {
            Some(_) => shared.who_answers[me].load(Relaxed),
            None => shared.acked[me].load(Relaxed) / w.fanout.max(1),
        };
        let in_flight = sent.saturating_sub(done);
        if in_flight >= w.window {
            let woken = shared.wake[me].notified();
            match w.until {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until.into(), woken).await;
                }
                None => woken.await,
            }
            continue;
        }
        let n = (w.window - in_flight).min(w.messages - sent).min(batch_max);
        let sent_ns = shared.now_ns();
        for seq in sent..sent + n {
            match &w.request {
                Some(line) => buf.extend_from_slice(line),
                None => {
                    let payload = Payload {
                        sender: w.me,
                        seq,
                        sent_ns,
                    };
                    push_message(&mut buf, &w.prefix, payload, w.text_len);
                }
            }
        }
        write.write_all(&buf).await?;
        buf.clear();
        sent += n;
    }
    Ok(write)
}

/// Sends one message every `interval` until `stop` says so, then waits
/// (at most `drain`) until all of them were received. Returns how many it
/// sent and the write half.
pub(crate) async fn send_paced(
    shared: Arc<Shared>,
    me: u32,
    prefix: Vec<u8>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut write: OwnedWriteHalf,
) -> io::Result<(u64, OwnedWriteHalf)> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = Vec::with_capacity(128);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let payload = Payload {
            sender: me,
            seq,
            sent_ns: shared.now_ns(),
        };
        push_message(&mut buf, &prefix, payload, 0);
        write.write_all(&buf).await?;
        buf.clear();
        seq += 1;
    }
    Ok((seq, write))
}

/// What a flood sent, and when: `(ns since start, bytes so far)` after
/// every write.
pub(crate) struct Flooded {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) began_ns: u64,
    pub(crate) ended_ns: u64,
    pub(crate) timeline: Vec<(u64, u64)>,
    pub(crate) write: OwnedWriteHalf,
    /// The write error that ended the flood early, if any.
    pub(crate) error: Option<io::Error>,
}

/// What a flood sends, and for how long.
pub(crate) struct FloodPlan {
    pub(crate) me: u32,
    /// The recipient list and `: `.
    pub(crate) prefix: Vec<u8>,
    pub(crate) text_len: usize,
    /// Stop after this many bytes...
    pub(crate) budget: u64,
    /// ... or at this instant.
    pub(crate) until: Instant,
    /// At most this many bytes per second (`None`: as fast as it goes).
    pub(crate) rate: Option<u64>,
}

impl FloodPlan {
    /// `me` sending `<prefix><text>` lines (text `text_len` bytes) as fast
    /// as the socket takes them, for `duration` from now.
    pub(crate) fn timed(me: u32, prefix: &[u8], text_len: usize, duration: Duration) -> Self {
        FloodPlan {
            me,
            prefix: prefix.to_vec(),
            text_len,
            budget: u64::MAX,
            until: Instant::now() + duration,
            rate: None,
        }
    }
}

/// Sends as fast as the socket takes it, in 64 KiB writes, until the
/// plan's budget or time runs out (a write blocked at that time is given
/// up); `progress` is told the bytes so far.
pub(crate) async fn send_flood(
    shared: Arc<Shared>,
    plan: FloodPlan,
    mut write: OwnedWriteHalf,
    progress: Arc<std::sync::atomic::AtomicU64>,
) -> Flooded {
    let FloodPlan {
        me,
        prefix,
        text_len,
        budget,
        until,
        rate,
    } = plan;
    let began = Instant::now();
    let line_len = prefix.len() + text_len.max(40) + 1;
    let mut buf = Vec::with_capacity(BATCH_BYTES + line_len);
    let began_ns = shared.now_ns();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut timeline = Vec::new();
    let mut error = None;
    while bytes < budget && Instant::now() < until {
        let sent_ns = shared.now_ns();
        let mut lines = 0;
        while buf.len() < BATCH_BYTES {
            let payload = Payload {
                sender: me,
                seq: messages + lines,
                sent_ns,
            };
            push_message(&mut buf, &prefix, payload, text_len);
            lines += 1;
        }
        // A server that stops reading must not keep the flood past its
        // time: a write still blocked then is abandoned, and only the
        // lines that went out whole count.
        let (written, ended) = write_until(&mut write, &buf, until).await;
        messages += if written == buf.len() {
            lines
        } else {
            memchr::memchr_iter(b'\n', &buf[..written]).count() as u64
        };
        bytes += written as u64;
        if let Some(ended) = ended {
            error = ended.err();
            break;
        }
        buf.clear();
        progress.store(bytes, Relaxed);
        timeline.push((shared.now_ns(), bytes));
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = began + Duration::from_secs_f64(bytes as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    Flooded {
        messages,
        bytes,
        began_ns,
        ended_ns: shared.now_ns(),
        timeline,
        write,
        error,
    }
}

/// Writes `buf` unless `until` comes first; returns the bytes written and,
/// if not all were, why: `Ok(())` for the time, or the write error.
async fn write_until(
    write: &mut OwnedWriteHalf,
    buf: &[u8],
    until: Instant,
) -> (usize, Option<io::Result<()>>) {
    let mut written = 0;
    while written < buf.len() {
        match tokio::time::timeout_at(until.into(), write.write(&buf[written..])).await {
            Ok(Ok(0)) => return (written, Some(Err(io::ErrorKind::WriteZero.into()))),
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => return (written, Some(Err(e))),
            Err(_) => return (written, Some(Ok(()))),
        }
    }
    (written, None)
}

/// Waits until `done()` reaches `total`. Fails when `deadline` passes,
/// nothing moved for `stall`, or the server closed a connection of the
/// run; shows progress from the second second on.
pub(crate) async fn wait_for(
    label: &str,
    shared: &Shared,
    total: u64,
    deadline: Instant,
    stall: Duration,
    mut done: impl FnMut() -> u64,
) -> Result<Duration, String> {
    let began = Instant::now();
    let mut progress = Progress::new(label);
    let mut last = (0u64, Instant::now());
    loop {
        let now_done = done();
        if now_done >= total {
            progress.finish();
            return Ok(began.elapsed());
        }
        let now = Instant::now();
        if now_done != last.0 {
            last = (now_done, now);
        }
        progress.show(|| {
            let secs = began.elapsed().as_secs_f64();
            format!(
                "{now_done}/{total} ({:.0}%), {:.0}/s",
                100.0 * now_done as f64 / total as f64,
                now_done as f64 / secs
            )
        });
        let closed = shared.counts.closed_by_server.load(Relaxed);
        if now >= deadline || now.duration_since(last.1) >= stall || closed > 0 {
            progress.finish();
            let why = if closed > 0 {
                format!(
                    "after {:.1}s: the server closed {closed} connections",
                    began.elapsed().as_secs_f64()
                )
            } else if now >= deadline {
                format!("within {:.1}s", began.elapsed().as_secs_f64())
            } else {
                format!("(nothing arrived for {:.1}s)", stall.as_secs_f64())
            };
            return Err(format!(
                "{label}: only {now_done} of {total} expected deliveries {why}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
