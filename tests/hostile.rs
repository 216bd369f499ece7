//! Hostile clients: lines that try to pass for other lines, names that
//! cannot be seen or that wear the server's words, answers that could get
//! an honest reader cut off, readers that read slowly on purpose, output
//! piling up for many readers at once, and floods that try to keep a
//! worker thread to themselves.

use std::time::{Duration, Instant};

use std::io::{Read as _, Write as _};

use tokio::io::AsyncReadExt;

use crate::metrics::Scrape;
use crate::util::{Client, Deadline, WAIT, start, start_web, start_with, test_config};

#[tokio::test]
async fn text_that_could_pass_for_another_line_is_refused() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let padded = format!("bob: hi{}from carol: the deploy key is ...", " ".repeat(64));
    let cases = [
        (
            padded.as_str(),
            "error: a message may not contain more than 16 columns of blank space in a row, not delivered",
        ),
        (
            "bob: a\u{2028}from carol: b",
            "error: a message may not contain U+2028 (it breaks, reorders or hides text), not delivered",
        ),
        (
            "bob: \u{202E}evil",
            "error: a message may not contain U+202E (it breaks, reorders or hides text), not delivered",
        ),
        (
            "bob: in\u{200B}visible",
            "error: a message may not contain U+200B (it breaks, reorders or hides text), not delivered",
        ),
        (
            "bob: \u{2066}isolated\u{2069}",
            "error: a message may not contain U+2066 (it breaks, reorders or hides text), not delivered",
        ),
    ];
    for (line, error) in cases {
        alice.send(line).await;
        alice.expect(error).await;
    }
    // What real text needs still passes: joiners inside words and emoji.
    alice.send("bob: 👩\u{200D}💻 می\u{200C}خواهم").await;
    bob.expect("from alice: 👩\u{200D}💻 می\u{200C}خواهم").await;
    bob.sync().await;
}

#[tokio::test]
async fn names_that_cannot_be_seen_or_that_wear_the_servers_words_are_refused() {
    let server = start();
    let mut client = server.connect().await;
    for (name, error) in [
        (
            "\u{2800}",
            "error: invalid name: a name may not contain U+2800 (it cannot be seen); send another name",
        ),
        (
            "\u{3164}\u{3164}",
            "error: invalid name: a name may not contain U+3164 (it cannot be seen); send another name",
        ),
        (
            "al\u{200B}ice",
            "error: invalid name: a name may not contain U+200B (it cannot be seen); send another name",
        ),
        (
            "\u{0301}",
            "error: invalid name: a name needs at least one visible character; send another name",
        ),
        (
            "server",
            "error: invalid name: the name 'server' is reserved for the server; send another name",
        ),
        (
            "Error",
            "error: invalid name: the name 'error' is reserved for the server; send another name",
        ),
        (
            "FROM",
            "error: invalid name: the name 'from' is reserved for the server; send another name",
        ),
    ] {
        client.send(name).await;
        client.expect(error).await;
    }
    client.send("servant").await;
    client.expect_prefix("server: welcome servant ").await;
}

/// Everything alice can read, until `done` says so; fails past the wait
/// bound.
async fn read_until(client: &mut Client, mut done: impl FnMut(&str) -> bool) {
    let deadline = Deadline::new("the expected lines");
    loop {
        let line = client.line().await;
        if done(&line) {
            return;
        }
        deadline.check();
    }
}

#[tokio::test]
async fn a_client_asking_who_many_times_in_one_write_gets_every_answer() {
    let server = start();
    // Enough peers that 300 answers are far more than one outbox holds.
    let mut peers = Vec::new();
    for i in 0..600 {
        peers.push(server.login(&format!("peer{i:03}")).await);
    }
    let mut asker = server.login("asker").await;
    let asked = format!("{}asker: done\n", "/who\n".repeat(300));
    asker.send_raw(asked.as_bytes()).await;
    let mut answers = 0;
    read_until(&mut asker, |line| {
        if line == "server: 601 online:" {
            answers += 1;
        }
        assert!(!line.starts_with("error"), "{line}");
        line == "from asker: done"
    })
    .await;
    // Every answer, in order, and still online: not cut off for asking.
    assert_eq!(answers, 300);
    asker.sync().await;
}

#[tokio::test]
async fn a_reader_at_a_modest_rate_is_never_cut_off_and_paces_its_flooder() {
    // A small outbox, so that the flooder is soon held up by this reader,
    // and a small receive buffer on the reader's side, so that what the
    // kernels hold cannot hide its pace.
    let server = start_with(achat::Config {
        max_outbox_bytes: 64 * 1024,
        ..test_config()
    });
    let mut flooder = server.login("flooder").await;
    let reader = {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        socket.connect(&server.addr.into()).expect("connect");
        socket.set_nonblocking(true).expect("nonblocking");
        let stream = tokio::net::TcpStream::from_std(socket.into()).expect("register");
        let mut client = Client::from_stream(stream);
        client.send("reader").await;
        client.expect_prefix("server: welcome reader ").await;
        client.name = "reader".into();
        client
    };
    let (mut reader_half, _reader_writer) = reader.split();
    // About 48 KB/s: 6 KB every 125 ms. With the server's send buffer,
    // the socket comes writable only seconds apart at this pace, which is
    // what used to get such a reader cut off after 500 ms.
    let text = "r".repeat(400);
    let count = 500; // 200 KB in all: several seconds at this pace
    let lines = format!("reader: {text}\n").repeat(count);
    let flood = tokio::spawn(async move {
        flooder.send_raw(lines.as_bytes()).await;
        flooder
    });
    let expected = format!("from flooder: {text}\n");
    let mut received = Vec::new();
    let mut buf = vec![0; 6 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < expected.len() * count {
        assert!(
            Instant::now() < deadline,
            "the reader fell behind the deadline"
        );
        tokio::time::sleep(Duration::from_millis(125)).await;
        let n = tokio::time::timeout(WAIT, reader_half.read(&mut buf))
            .await
            .expect("a read in time")
            .expect("read");
        assert!(
            n > 0,
            "the reader was cut off after {} bytes",
            received.len()
        );
        received.extend_from_slice(&buf[..n]);
    }
    assert_eq!(received, expected.repeat(count).into_bytes());
    // The flooder was never told the reader went offline.
    let mut flooder = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the flood went out")
        .expect("flood task");
    flooder.sync().await;
}

#[tokio::test]
async fn past_the_total_cap_the_client_holding_the_most_is_cut_off_first() {
    // Only the total cap can cut anyone off here: one client alone is
    // allowed four times more than all together.
    let server = start_web(achat::Config {
        max_outbox_bytes: 4 << 20,
        max_total_outbox_bytes: 1 << 20,
        ..test_config()
    });
    // Two clients that never read; one is sent far more than the other.
    // (Of the light one's 400 KB, the kernels take some; the rest waits in
    // the server.)
    let _heavy = server.login("heavy").await;
    let _light = server.login("light").await;
    let mut sender = server.login("sender").await;
    let text = "h".repeat(1000);
    sender
        .send_raw(format!("light: {text}\n").repeat(400).as_bytes())
        .await;
    sender.sync().await;
    // Then only the heavy one, until all together pass the cap.
    let deadline = Deadline::new("the heavy reader to be cut off");
    let mut sent_to_heavy = 0;
    'flood: loop {
        let burst = format!("heavy: {text}\n").repeat(64);
        sender.send_raw(burst.as_bytes()).await;
        sent_to_heavy += burst.len();
        sender.send("sender: marker").await;
        loop {
            let line = sender.line().await;
            if line == "from sender: marker" {
                break;
            }
            if line.starts_with("error: not online: heavy") {
                break 'flood;
            }
        }
        deadline.check();
    }
    // Cut by the total cap, long before its own cap: what it was sent is
    // about the total cap, plus what the kernels hold.
    assert!(sent_to_heavy < 3 << 20, "{sent_to_heavy} bytes sent to it");
    // The light one is still online: it was not the heaviest.
    sender.send("/who").await;
    read_until(&mut sender, |line| {
        line.starts_with("server: ") && line.contains("online")
    })
    .await;
    read_until(&mut sender, |line| {
        assert!(!line.contains("heavy"), "{line}");
        line.contains("light")
    })
    .await;
    // The operator sees why.
    let scrape = Scrape::of(server.http_addr.expect("a web listener")).await;
    assert_eq!(scrape.cut_off(), (1, 0));
}

/// Writes `lines` to `stream` over and over, from a thread of its own (so
/// that the flood never waits for the test), until `stop` is set; then
/// shuts the socket down.
fn flood_from_a_thread(
    stream: std::net::TcpStream,
    lines: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if (&stream).write_all(lines.as_bytes()).is_err() {
                break;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    })
}

#[tokio::test]
async fn a_client_sending_huge_recipient_lists_does_not_keep_its_worker() {
    // One worker: the attacker and the bystanders share its thread.
    let server = start_with(achat::Config {
        workers: 1,
        ..test_config()
    });
    let attacker = server
        .login("attacker")
        .await
        .into_stream()
        .into_std()
        .expect("std");
    attacker.set_nonblocking(false).expect("blocking");
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    // The attacker floods from threads of its own, so that its writes
    // and its reads (its answers are errors) never wait for this test.
    let list = vec!["a"; 2000].join(",");
    let lines = format!("{list}: x\n").repeat(16);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (reader, writer) = (attacker.try_clone().expect("clone"), attacker);
    let (answered, first_answer) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut sink = vec![0; 1 << 16];
        while matches!((&reader).read(&mut sink), Ok(n) if n > 0) {
            let _ = answered.send(());
        }
    });
    let flood = flood_from_a_thread(writer, lines, stop.clone());
    // The flood is on once the server answers it.
    first_answer
        .recv_timeout(WAIT)
        .expect("the attacker's first answer");
    // A generous bound: one bystander round trip must never take a second.
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        alice.send(&format!("bob: ping {i}")).await;
        bob.expect(&format!("from alice: ping {i}")).await;
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flood.join();
    let _ = drain.join();
    assert!(
        slowest < Duration::from_secs(1),
        "slowest round trip {slowest:?}"
    );
}

/// A line to many readers that have all stopped: every one of them is on
/// the stall clock once its output is past half its cap, so they are cut
/// together, not one after the other while each holds the sender up for
/// the stall limit in turn (thirty of them held it about ten seconds).
#[tokio::test]
async fn many_stuck_readers_of_a_broadcast_are_cut_together() {
    // The default cap, so that with a batch's delivery budget spread over
    // thirty readers none of them reaches its cap before the clock says.
    let server = start();
    let mut stuck = Vec::new();
    for i in 0..30 {
        stuck.push(server.login(&format!("stuck{i}")).await);
    }
    let mut sender = server.login("sender").await;
    let started = Instant::now();
    let line = format!("*: {}\n", "b".repeat(4000)).repeat(16);
    let deadline = Deadline::new("every stuck reader to be cut off");
    loop {
        sender.send_raw(line.as_bytes()).await;
        sender.send("/who").await;
        let online = loop {
            let line = sender.line().await;
            if let Some(count) = line
                .strip_prefix("server: ")
                .and_then(|rest| rest.strip_suffix(" online:"))
            {
                break count.to_owned();
            }
        };
        if online == "1" {
            break;
        }
        deadline.check();
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    drop(stuck);
}

/// A client flooding `*: x` to hundreds of readers (one short line, a copy
/// for each of them: a wide fan-out) must not hold up two bystanders
/// chatting, who get the flood too. Before a line was priced at what it
/// delivers, one read of the flooder was millions of deliveries and a
/// bystander's line waited seconds behind them.
#[tokio::test]
async fn a_broadcast_flood_to_many_readers_does_not_hold_up_a_bystander_pair() {
    let server = start();
    let mut readers = Vec::new();
    for i in 0..400 {
        let reader = server.login(&format!("reader{i}")).await.into_stream();
        readers.push(reader.into_std().expect("std"));
    }
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let flooder = server.login("flooder").await.into_stream();
    let flooder = flooder.into_std().expect("std");
    flooder.set_nonblocking(false).expect("blocking");
    // The readers read everything, on a thread of their own (so their
    // work is not this test's), and say when the flood has reached them.
    let (reached, flood_on) = std::sync::mpsc::channel();
    let reading = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for reader in readers {
                let reached = reached.clone();
                tasks.push(tokio::spawn(async move {
                    let mut reader = tokio::net::TcpStream::from_std(reader).expect("tokio");
                    let mut sink = vec![0; 1 << 14];
                    let mut told = false;
                    while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {
                        if !told {
                            told = reached.send(()).is_ok();
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = flood_from_a_thread(flooder, "*: x\n".repeat(4096), stop.clone());
    flood_on
        .recv_timeout(WAIT)
        .expect("the flood reaching a reader");
    // A generous bound: one bystander round trip must never take a second.
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        alice.send(&format!("bob: ping {i}")).await;
        let ping = format!("from alice: ping {i}");
        read_until(&mut bob, |line| line == ping).await;
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flood.join();
    drop(flood_on);
    server.shutdown().await;
    let _ = reading.join();
    assert!(
        slowest < Duration::from_secs(1),
        "slowest round trip {slowest:?}"
    );
}
