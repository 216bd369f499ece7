//! Chaos: many clients at once doing random legal and illegal things.
//!
//! *Stable* clients stay logged in and reading for the whole run and do
//! random things: messages to peers present and absent (always copying
//! themselves, which paces them: at most [`WINDOW`] unconfirmed), `*`,
//! `/who`, overlong lines, invalid UTF-8, lines dribbled out a few bytes per
//! write, nonsense. *Transient* clients come and go meanwhile: short chats
//! that end in `/quit`, end of stream or a reset mid-line; bad names and
//! taken names; connections that never log in (the login timeout closes
//! them); clients that stop reading (evicted as slow consumers); half-closes;
//! random garbage.
//!
//! What must hold throughout and at the end:
//! - the server stays up and every line it writes is well formed;
//! - every message sent by a client that stayed connected to a stable
//!   client arrives exactly once and in order (transients, which may be
//!   reset mid-stream, must deliver a gap-free prefix);
//! - `/who` at the end lists exactly the clients still connected;
//! - once all have left, the server's memory is back near where it started.
//!
//! Short in CI. The long form, with its figures printed:
//! `ACHAT_CHAOS_SECONDS=1200 ACHAT_CHAOS_CLIENTS=300 cargo test --release --test integration chaos -- --nocapture`
//! (`ACHAT_CHAOS_SEED` replays a run.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

use crate::util::{Binary, Client, Deadline, WAIT};

/// At most this many of a stable client's messages are unconfirmed.
const WINDOW: u64 = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small, seedable generator (xorshift64*), so a failing run replays.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a (sender, recipient) pair's messages add up to. Sequence numbers
/// from one sender only grow, so count and sum pin the set down: a subset
/// of the messages sent, of the same size and sum, is all of them; one of
/// size k whose sum is that of the first k sent is those first k (a gap-free
/// prefix). Kept this small so a long run does not hold every number.
#[derive(Debug, Default, Clone)]
struct Tally {
    count: u64,
    sum: u64,
    last: Option<u64>,
    /// Running sums after each message sent, for senders that may be cut
    /// off (short-lived: a few messages each).
    prefix_sums: Vec<u64>,
}

/// What everybody shares: expectations, counters, the end signal.
#[derive(Default)]
struct Ledger {
    /// (sender, stable recipient) → what was sent.
    sent: Mutex<HashMap<(String, String), Tally>>,
    /// (sender, stable recipient) → what arrived.
    received: Mutex<HashMap<(String, String), Tally>>,
    /// Messages that arrived out of order or twice (must stay 0).
    disorder: AtomicU64,
    /// Senders that might be cut off mid-stream (their deliveries need
    /// only be a gap-free prefix).
    unreliable: Mutex<HashSet<String>>,
    /// The stable clients' names, as a list to pick from and a set to ask.
    stable: Vec<String>,
    stable_set: HashSet<String>,
    stop: AtomicBool,
    sessions: AtomicU64,
    messages: AtomicU64,
    bad_inputs: AtomicU64,
    evictions: AtomicU64,
    timeouts: AtomicU64,
}

impl Ledger {
    fn record_sent(&self, from: &str, to: &[String], seq: u64, cut_off_possible: bool) {
        let mut sent = self.sent.lock().unwrap();
        for name in to {
            if self.stable_set.contains(name) && name != from {
                let tally = sent.entry((from.to_owned(), name.clone())).or_default();
                tally.count += 1;
                tally.sum += seq;
                if cut_off_possible {
                    tally.prefix_sums.push(tally.sum);
                }
            }
        }
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    fn record_received(&self, from: &str, to: &str, seq: u64) {
        let mut received = self.received.lock().unwrap();
        let tally = received
            .entry((from.to_owned(), to.to_owned()))
            .or_default();
        if tally.last.is_some_and(|last| seq <= last) {
            self.disorder.fetch_add(1, Ordering::Relaxed);
        }
        tally.last = Some(seq);
        tally.count += 1;
        tally.sum += seq;
    }
}

/// Checks a line the server wrote is one of the three kinds.
fn well_formed(line: &str) {
    assert!(
        line.starts_with("from ") || line.starts_with("server: ") || line.starts_with("error: "),
        "malformed line from the server: {line:?}"
    );
}

/// Parses `from <sender>: m <seq>` (the chaos message format).
fn message(line: &str) -> Option<(&str, u64)> {
    let rest = line.strip_prefix("from ")?;
    let (from, text) = rest.split_once(": ")?;
    let seq = text.strip_prefix("m ")?.parse().ok()?;
    Some((from, seq))
}

/// A stable client: logged in all run long, reading everything.
struct Stable {
    name: String,
    writer: OwnedWriteHalf,
    /// Own messages confirmed (copies come back), counted by the reader.
    confirmed: Arc<AtomicU64>,
    confirmed_changed: Arc<tokio::sync::Notify>,
    seq: u64,
}

/// Runs a stable client until the end, then its two closing phases; returns
/// its connection (still open) and reader for the final `/who` check.
async fn run_stable(
    client: Client,
    ledger: Arc<Ledger>,
    mut rng: Rng,
    everyone: Vec<String>,
    all_done_sending: Arc<tokio::sync::Barrier>,
) -> (OwnedWriteHalf, tokio::task::JoinHandle<()>) {
    let name = client.name.clone();
    ledger.sessions.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = client.split();
    let confirmed = Arc::new(AtomicU64::new(0));
    let confirmed_changed = Arc::new(tokio::sync::Notify::new());
    let (marker_tx, marker_rx) = tokio::sync::oneshot::channel();
    let reading = {
        let (name, ledger) = (name.clone(), ledger.clone());
        let (confirmed, changed) = (confirmed.clone(), confirmed_changed.clone());
        tokio::spawn(async move {
            let mut marker_tx = Some(marker_tx);
            let mut lines = reader.lines();
            while let Ok(Some(line)) = lines.next_line().await {
                well_formed(&line);
                if line == format!("from {name}: end") {
                    if let Some(tx) = marker_tx.take() {
                        let _ = tx.send(());
                    }
                } else if let Some((from, seq)) = message(&line) {
                    if from == name {
                        confirmed.fetch_add(1, Ordering::Relaxed);
                        changed.notify_one();
                    } else {
                        ledger.record_received(from, &name, seq);
                    }
                }
            }
        })
    };
    let mut me = Stable {
        name: name.clone(),
        writer: writer.into_inner(),
        confirmed,
        confirmed_changed,
        seq: 0,
    };
    while !ledger.stop.load(Ordering::Relaxed) {
        stable_action(&mut me, &ledger, &mut rng, &everyone).await;
    }
    // Phase 1: all this client sent has been routed once its last own copy
    // is back.
    let deadline = Deadline::new("own copies to come back");
    while me.confirmed.load(Ordering::Relaxed) < me.seq {
        let _ = tokio::time::timeout(WAIT, me.confirmed_changed.notified()).await;
        deadline.check();
    }
    all_done_sending.wait().await;
    // Phase 2: nobody sends any more; a marker to oneself now arrives after
    // everything routed to us before it.
    me.writer
        .write_all(format!("{name}: end\n").as_bytes())
        .await
        .expect("marker");
    tokio::time::timeout(WAIT, marker_rx)
        .await
        .expect("end marker in time")
        .expect("reader alive");
    (me.writer, reading)
}

async fn stable_action(me: &mut Stable, ledger: &Ledger, rng: &mut Rng, everyone: &[String]) {
    // Pace: at most WINDOW own messages unconfirmed.
    while me.seq - me.confirmed.load(Ordering::Relaxed) >= WINDOW {
        if tokio::time::timeout(WAIT, me.confirmed_changed.notified())
            .await
            .is_err()
        {
            panic!("{}: own messages stopped coming back", me.name);
        }
    }
    let roll = rng.below(100);
    let line: Vec<u8> = if roll < 55 {
        // To a few peers, present or not, always copying oneself.
        let mut to: Vec<String> = (0..1 + rng.below(3))
            .map(|_| everyone[rng.below(everyone.len() as u64) as usize].clone())
            .collect();
        if rng.chance(20) {
            to.push(format!("ghost{}", rng.below(5)));
        }
        to.push(me.name.clone());
        to.sort();
        to.dedup();
        let seq = me.seq;
        me.seq += 1;
        ledger.record_sent(&me.name, &to, seq, false);
        format!("{}: m {seq}\n", to.join(", ")).into_bytes()
    } else if roll < 62 {
        let seq = me.seq;
        me.seq += 1;
        let others: Vec<String> = ledger.stable.to_vec();
        ledger.record_sent(&me.name, &others, seq, false);
        format!("*, {}: m {seq}\n", me.name).into_bytes()
    } else if roll < 70 {
        b"/who\n".to_vec()
    } else if roll < 76 {
        ledger.bad_inputs.fetch_add(1, Ordering::Relaxed);
        let mut long = vec![b'x'; 4097 + rng.below(3000) as usize];
        long.push(b'\n');
        long
    } else if roll < 82 {
        ledger.bad_inputs.fetch_add(1, Ordering::Relaxed);
        b"someone: \xff\xfe\xfd\n".to_vec()
    } else if roll < 88 {
        ledger.bad_inputs.fetch_add(1, Ordering::Relaxed);
        [&b"no colon here\n"[..], b"/dance\n", b" , : nobody\n"][rng.below(3) as usize].to_vec()
    } else {
        // A message dribbled out a few bytes per write.
        let seq = me.seq;
        me.seq += 1;
        let to = vec![me.name.clone()];
        ledger.record_sent(&me.name, &to, seq, false);
        let line = format!("{}: m {seq}\n", me.name).into_bytes();
        for piece in line.chunks(1 + rng.below(3) as usize) {
            me.writer.write_all(piece).await.expect("dribble");
        }
        return;
    };
    me.writer
        .write_all(&line)
        .await
        .expect("stable client write");
}

/// Whether `line` is the login timeout (on a loaded machine a transient
/// client may be slow enough to meet it); counts it.
fn timed_out(line: &str, ledger: &Ledger) -> bool {
    let timed_out = line.starts_with("error: no login within");
    if timed_out {
        ledger.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    timed_out
}

/// A transient client: one short life with a random behaviour.
async fn run_transient(addr: std::net::SocketAddr, id: u64, ledger: Arc<Ledger>, mut rng: Rng) {
    let name = format!("t{id}");
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => return, // a full listen queue is not the server's fault
    };
    ledger.sessions.fetch_add(1, Ordering::Relaxed);
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    let behaviour = rng.below(100);
    if behaviour < 10 {
        // Never logs in: the login timeout closes it.
        let _ = writer.write_all(b"\n  \n").await;
        loop {
            match tokio::time::timeout(WAIT, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    well_formed(&line);
                    if line.starts_with("error: no login within") {
                        ledger.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => return,
                Err(_) => panic!("{name}: never closed for want of a login"),
            }
        }
    }
    if behaviour < 18 {
        // Garbage, then gone.
        ledger.bad_inputs.fetch_add(1, Ordering::Relaxed);
        let mut junk = vec![0u8; 1 + rng.below(8000) as usize];
        for b in &mut junk {
            *b = rng.next() as u8;
        }
        let _ = writer.write_all(&junk).await;
        return;
    }
    // Log in, after a bad name or a taken one now and then.
    if rng.chance(30) {
        ledger.bad_inputs.fetch_add(1, Ordering::Relaxed);
        let bad = ["bad name", "a,b", "x:y", "*", "/nope"][rng.below(5) as usize];
        let _ = writer.write_all(format!("{bad}\n").as_bytes()).await;
        match lines.next_line().await {
            Ok(Some(line)) if timed_out(&line, &ledger) => return,
            Ok(Some(line)) => assert!(line.starts_with("error: "), "{name}: {line}"),
            _ => return,
        }
    }
    if rng.chance(20) {
        let taken = &ledger.stable[rng.below(ledger.stable.len() as u64) as usize];
        let _ = writer.write_all(format!("{taken}\n").as_bytes()).await;
        match lines.next_line().await {
            Ok(Some(line)) if timed_out(&line, &ledger) => return,
            Ok(Some(line)) => assert_eq!(
                line,
                format!("error: the name '{taken}' is taken, choose another")
            ),
            _ => return,
        }
    }
    if writer
        .write_all(format!("{name}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    match lines.next_line().await {
        Ok(Some(line)) if timed_out(&line, &ledger) => return,
        Ok(Some(line)) => assert!(
            line.starts_with(&format!("server: welcome {name} ")),
            "{line}"
        ),
        _ => return,
    }
    ledger.unreliable.lock().unwrap().insert(name.clone());
    let stable = ledger.stable.clone();
    let n = 1 + rng.below(20);
    let mut batch = String::new();
    for seq in 0..n {
        let to = stable[rng.below(stable.len() as u64) as usize].clone();
        ledger.record_sent(&name, std::slice::from_ref(&to), seq, true);
        batch.push_str(&format!("{to}: m {seq}\n"));
    }
    if behaviour < 30 {
        // Stops reading, and is flooded by itself: evicted as a slow
        // consumer (64 KiB cap), or reset by us.
        let _ = writer.write_all(batch.as_bytes()).await;
        let flood = format!("{name}: {}\n", "f".repeat(1000)).repeat(64);
        for _ in 0..200 {
            if writer.write_all(flood.as_bytes()).await.is_err() {
                ledger.evictions.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        return;
    }
    if behaviour < 45 {
        // Half-close: every answer still comes, then the close.
        batch.push_str("/who\nghost: x\n");
        let _ = writer.write_all(batch.as_bytes()).await;
        let _ = writer.shutdown().await;
        let mut saw_who = false;
        let mut saw_error = false;
        loop {
            match tokio::time::timeout(WAIT, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    well_formed(&line);
                    saw_who |= line.ends_with(" online:");
                    saw_error |= line.starts_with("error: not online: ghost");
                }
                Ok(_) => break,
                Err(_) => panic!("{name}: half-closed and never closed by the server"),
            }
        }
        assert!(
            saw_who && saw_error,
            "{name}: answers lost after a half-close"
        );
        return;
    }
    // A short chat, read on the side, then one of three ways out.
    let reading = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            well_formed(&line);
        }
    });
    for piece in batch.as_bytes().chunks(1 + rng.below(64) as usize) {
        if writer.write_all(piece).await.is_err() {
            return;
        }
    }
    match rng.below(3) {
        0 => {
            let _ = writer.write_all(b"/quit\n").await;
            let _ = tokio::time::timeout(WAIT, reading).await;
        }
        1 => {
            drop(writer);
            let _ = tokio::time::timeout(WAIT, reading).await;
        }
        _ => {
            // Reset in the middle of a line.
            let _ = writer.write_all(b"somebody: half a li").await;
            let _ = writer.as_ref().set_zero_linger();
            reading.abort();
            drop(writer);
        }
    }
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `/who`'s list of names, read off a logged-in client.
async fn who(client: &mut Client) -> Vec<String> {
    client.send("/who").await;
    let head = client.line().await;
    let count: usize = head
        .strip_prefix("server: ")
        .and_then(|h| h.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a /who answer: {head:?}"));
    let mut names = Vec::new();
    while names.len() < count {
        let line = client.line().await;
        let list = line.strip_prefix("server: ").expect("a /who line");
        names.extend(list.split(", ").map(str::to_owned));
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let seconds = env_or("ACHAT_CHAOS_SECONDS", 3);
    let clients = env_or("ACHAT_CHAOS_CLIENTS", 40);
    let seed = env_or(
        "ACHAT_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    println!(
        "chaos: {clients} clients for {seconds}s, seed {seed} (ACHAT_CHAOS_SEED={seed} replays)"
    );
    let server = Binary::start(&["--max-outbox-bytes", "65536", "--login-timeout", "1s"]).await;
    let rss_start = rss_kib(server.pid());

    let n_stable = (clients / 4).max(4);
    let stable: Vec<String> = (0..n_stable).map(|i| format!("s{i}")).collect();
    let ledger = Arc::new(Ledger {
        stable: stable.clone(),
        stable_set: stable.iter().cloned().collect(),
        ..Ledger::default()
    });
    let mut targets = stable.clone();
    targets.extend((0..10).map(|i| format!("t{i}")));
    let mut rng = Rng(seed);
    let barrier = Arc::new(tokio::sync::Barrier::new(n_stable as usize));
    // All stable clients are in before anybody tries to take their names.
    let mut logged_in = Vec::new();
    for name in &stable {
        logged_in.push(crate::util::TestServer::client_for(server.addr, name).await);
    }
    let stable_tasks: Vec<_> = logged_in
        .into_iter()
        .map(|client| {
            tokio::spawn(run_stable(
                client,
                ledger.clone(),
                Rng(rng.next() | 1),
                targets.clone(),
                barrier.clone(),
            ))
        })
        .collect();
    let next_id = Arc::new(AtomicU64::new(0));
    let transient_loops: Vec<_> = (0..clients - n_stable)
        .map(|_| {
            let (ledger, next_id) = (ledger.clone(), next_id.clone());
            let mut rng = Rng(rng.next() | 1);
            let addr = server.addr;
            tokio::spawn(async move {
                while !ledger.stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    run_transient(addr, id, ledger.clone(), Rng(rng.next() | 1)).await;
                }
            })
        })
        .collect();

    // The run's length is the point here, not a wait for an event.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    ledger.stop.store(true, Ordering::Relaxed);
    for task in transient_loops {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("a transient client hung")
            .unwrap();
    }
    let mut stable_clients = Vec::new();
    for task in stable_tasks {
        stable_clients.push(
            tokio::time::timeout(WAIT * 3, task)
                .await
                .expect("a stable client hung")
                .unwrap(),
        );
    }

    // Exactly once, in order (a prefix for senders that may be cut off).
    let sent = std::mem::take(&mut *ledger.sent.lock().unwrap());
    let received = std::mem::take(&mut *ledger.received.lock().unwrap());
    let unreliable = std::mem::take(&mut *ledger.unreliable.lock().unwrap());
    assert_eq!(
        ledger.disorder.load(Ordering::Relaxed),
        0,
        "messages out of order or repeated"
    );
    let mut delivered = 0;
    for (key, got) in &received {
        let expected = sent
            .get(key)
            .unwrap_or_else(|| panic!("{key:?}: received {got:?}, never sent"));
        assert!(got.count <= expected.count, "{key:?}: duplicates");
        delivered += got.count;
        if unreliable.contains(&key.0) {
            let prefix = match got.count {
                0 => 0,
                k => expected.prefix_sums[usize::try_from(k - 1).unwrap()],
            };
            assert_eq!(got.sum, prefix, "{key:?}: not a gap-free prefix");
        } else {
            assert_eq!(
                (got.count, got.sum),
                (expected.count, expected.sum),
                "{key:?}: lost messages"
            );
        }
    }
    for (key, expected) in &sent {
        if !unreliable.contains(&key.0) && !received.contains_key(key) {
            panic!("{key:?}: {} messages sent, none arrived", expected.count);
        }
    }

    // /who lists exactly who is still connected.
    let mut checker = crate::util::TestServer::client_for(server.addr, "checker").await;
    let mut expected: Vec<String> = stable.clone();
    expected.push("checker".into());
    expected.sort();
    let deadline = Deadline::new("/who to list exactly the connected clients");
    while who(&mut checker).await != expected {
        deadline.check();
    }
    drop(stable_clients);
    let deadline = Deadline::new("everybody to have left");
    while who(&mut checker).await != ["checker"] {
        deadline.check();
    }
    // The allocator hands freed memory back about a second after it is
    // freed: poll until it has (bounded), rather than read it at once.
    let bound = rss_start + 16 * 1024;
    let deadline = Deadline::new("server memory to come back");
    let mut rss_end = rss_kib(server.pid());
    while rss_end > bound && tokio::time::Instant::now() < deadline.at() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_end = rss_kib(server.pid());
    }
    println!(
        "chaos: {} sessions, {} messages ({delivered} checked deliveries to stable clients), \
         {} bad inputs, {} slow consumers cut off, {} login timeouts; \
         server memory {rss_start} KiB at start, {rss_end} KiB once all had left",
        ledger.sessions.load(Ordering::Relaxed),
        ledger.messages.load(Ordering::Relaxed),
        ledger.bad_inputs.load(Ordering::Relaxed),
        ledger.evictions.load(Ordering::Relaxed),
        ledger.timeouts.load(Ordering::Relaxed),
    );
    assert!(
        rss_end <= bound,
        "server memory did not come back: {rss_start} KiB at start, {rss_end} KiB at the end"
    );
    drop(checker);
    server.signal("TERM");
    assert!(server.exit_status().await.success());
}
