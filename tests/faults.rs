//! Faults: running out of descriptors, a recipient vanishing with output
//! queued, SIGTERM in heavy traffic, a client killed mid-write.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

use crate::util::{Binary, Client, Deadline, TestServer, WAIT, start_with, test_config};

/// Logs in as `name`, retrying (bounded) while the name is still held or
/// the server still full.
async fn login_when_free(addr: std::net::SocketAddr, name: &str) -> Client {
    let deadline = Deadline::new(&format!("room for {name}"));
    loop {
        let mut client = Client::connect(addr).await;
        loop {
            client.send(name).await;
            let line = client.line().await;
            if line.starts_with(&format!("server: welcome {name} ")) {
                client.name = name.to_owned();
                return client;
            }
            deadline.check();
            if line.starts_with("error: server full") {
                break; // reconnect
            }
            assert!(line.starts_with("error: the name"), "{line}");
        }
    }
}

#[tokio::test]
async fn running_out_of_descriptors_does_not_stop_the_server() {
    // 100 descriptors: --max-connections is lowered to fit (36), and the
    // polite refusals of the rest use up what remains, so accept() fails
    // with EMFILE while the test holds its connections.
    let server = Binary::start_under(&["prlimit", "--nofile=100:100"], &[]).await;
    server.wait_for_log("lowered to 36").await;
    let mut peers = Vec::new();
    for i in 0..36 {
        peers.push(server.login(&format!("p{i}")).await);
    }
    // Each connection refused for being over the maximum holds a
    // descriptor for up to a second (the polite goodbye); 80 of them are
    // more than the 64 spare descriptors.
    let mut extra = Vec::new();
    for _ in 0..80 {
        extra.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    server.wait_for_log("Too many open files").await;
    // The peers it has are served all along.
    peers[0].sync().await;
    peers[1].send("p2: still here").await;
    peers[2].expect("from p1: still here").await;
    // Descriptors free up: accepting goes on.
    drop(extra);
    drop(peers.split_off(30));
    let newcomer = login_when_free(server.addr, "newcomer").await;
    drop(newcomer);
    peers[0].sync().await;
}

#[tokio::test]
async fn a_recipient_that_vanishes_with_output_queued() {
    let server: TestServer = start_with(achat::Config {
        max_outbox_bytes: 256 << 20,
        ..test_config()
    });
    let alice = server.login("alice").await;
    let bob = server.login("bob").await; // reads nothing
    let mut carol = server.login("carol").await;
    // 16 MB for bob: far more than the socket buffers hold, so most of it
    // waits in the server. alice's copies say when all of it was routed.
    let text = "q".repeat(1000);
    let batch = format!("bob, alice: {text}\n").repeat(100);
    let n = 16_000;
    let (alice_r, mut alice_w) = alice.split();
    let confirm = async move {
        let mut lines = alice_r.lines();
        for _ in 0..n {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                line.as_deref(),
                Some(format!("from alice: {text}").as_str())
            );
        }
        lines
    };
    let (_, alice_lines) = tokio::join!(
        async {
            for _ in 0..n / 100 {
                alice_w.send_raw(batch.as_bytes()).await;
            }
        },
        confirm
    );
    // bob vanishes with a reset, megabytes still queued for him.
    let bob_stream = bob.into_stream();
    bob_stream.set_zero_linger().unwrap();
    drop(bob_stream);
    // The server goes on: bob is gone for everyone, his name free.
    let mut alice_lines = alice_lines;
    let deadline = Deadline::new("bob to be seen offline");
    loop {
        alice_w.send_raw(b"bob: anyone?\nalice: mark\n").await;
        let first = alice_lines.next_line().await.unwrap().unwrap();
        if first.starts_with("error: not online: bob") {
            break;
        }
        assert_eq!(first, "from alice: mark");
        deadline.check();
    }
    carol.sync().await;
    let _bob = login_when_free(server.addr, "bob").await;
}

#[tokio::test]
async fn sigterm_in_heavy_traffic_loses_nothing_that_arrived() {
    let server = Binary::start(&[]).await;
    let pairs = 4;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for k in 0..pairs {
        senders.push(server.login(&format!("s{k}")).await);
        receivers.push(server.login(&format!("r{k}")).await);
    }
    // Each sender floods its receiver, copying itself: a copy back means
    // the server has routed that message, so its receiver must get it.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(false);
    let mut confirmed_at_signal = Vec::new();
    let mut sender_tasks = Vec::new();
    for (k, sender) in senders.into_iter().enumerate() {
        let (reader, mut writer) = sender.split();
        let (confirmed_tx, confirmed_rx) = tokio::sync::watch::channel(0u64);
        confirmed_at_signal.push(confirmed_rx);
        let writing = tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                let mut batch = String::new();
                for _ in 0..200 {
                    batch.push_str(&format!("r{k}, s{k}: {seq}\n"));
                    seq += 1;
                }
                if writer.try_send_raw(batch.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let signal_rx = signal_rx.clone();
        sender_tasks.push(tokio::spawn(async move {
            let mut lines = reader.lines();
            let mut next = 0u64;
            loop {
                match tokio::time::timeout(WAIT, lines.next_line()).await {
                    Ok(Ok(Some(line))) if line == "server: shutting down" => {
                        assert!(*signal_rx.borrow(), "goodbye before the signal");
                    }
                    Ok(Ok(Some(line))) => {
                        let seq: u64 = line
                            .strip_prefix(&format!("from s{k}: "))
                            .unwrap_or_else(|| panic!("s{k} got {line:?}"))
                            .parse()
                            .unwrap();
                        assert_eq!(seq, next, "s{k}'s own copies out of order");
                        next += 1;
                        let _ = confirmed_tx.send(next);
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                    Err(_) => panic!("s{k}: nothing within the wait bound"),
                }
            }
            writing.abort();
        }));
    }
    let mut receiver_tasks = Vec::new();
    for (k, receiver) in receivers.into_iter().enumerate() {
        receiver_tasks.push(tokio::spawn(async move {
            let (reader, _writer) = receiver.split();
            let mut lines = reader.lines();
            let mut next = 0u64;
            let mut goodbye = false;
            while let Ok(Some(line)) = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("r stalled")
            {
                if line == "server: shutting down" {
                    goodbye = true;
                    continue;
                }
                assert!(!goodbye, "r{k}: {line:?} after the goodbye");
                let seq: u64 = line
                    .strip_prefix(&format!("from s{k}: "))
                    .unwrap_or_else(|| panic!("r{k} got {line:?}"))
                    .parse()
                    .unwrap();
                assert_eq!(seq, next, "r{k}: a gap or a repeat");
                next += 1;
            }
            assert!(goodbye, "r{k} was never told goodbye");
            next
        }));
    }
    // Let the traffic build up, then signal in the middle of it.
    let deadline = Deadline::new("traffic to build up");
    while confirmed_at_signal.iter().any(|c| *c.borrow() < 5_000) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        deadline.check();
    }
    let confirmed: Vec<u64> = confirmed_at_signal.iter().map(|c| *c.borrow()).collect();
    let _ = signal_tx.send(true);
    server.signal("TERM");
    let mut received = HashMap::new();
    for (k, task) in receiver_tasks.into_iter().enumerate() {
        received.insert(k, task.await.unwrap());
    }
    for task in sender_tasks {
        task.await.unwrap();
    }
    for k in 0..pairs {
        assert!(
            received[&k] >= confirmed[k],
            "r{k} got {} messages, but {} were routed before the signal",
            received[&k],
            confirmed[k]
        );
    }
    let status = server.exit_status().await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_client_killed_mid_write_disturbs_nobody() {
    let server = start_with(test_config());
    let mut bob = server.login("bob").await;
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{}; printf 'alice\\nbob: half a li' >&3; exec sleep 60",
        server.addr.port()
    );
    let mut child = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .kill_on_drop(true)
        .spawn()
        .expect("bash");
    // Wait until alice is logged in (her name is then taken).
    let deadline = Deadline::new("alice to log in");
    loop {
        bob.send("/who").await;
        let count = bob.line().await;
        let names = bob.line().await;
        if count == "server: 2 online:" {
            assert_eq!(names, "server: alice, bob");
            break;
        }
        deadline.check();
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");
    let _alice = login_when_free(server.addr, "alice").await;
    // bob never saw the half line, and is served as before.
    bob.sync().await;
}
