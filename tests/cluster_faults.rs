//! Cluster mode when things fail: a node killed with SIGKILL, a NATS
//! server killed, the NATS quorum lost, a flooder and a stuck reader on
//! different nodes. Every wait is bounded.

use std::time::Duration;

use crate::cluster::{Fixture, fast, login_eventually, node_config, quit, wait_who};
use crate::nats::NatsCluster;
use tokio::io::AsyncBufReadExt;

use crate::util::{Binary, Client, Deadline, TestServer, start_with};

/// A line within `within`, or `None`.
async fn line_within(client: &mut Client, within: Duration) -> Option<String> {
    tokio::time::timeout(within, client.line()).await.ok()
}

#[tokio::test]
async fn a_node_killed_with_sigkill_goes_offline_and_its_names_come_free() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    let victim = Binary::start(&[
        "--cluster",
        &f.nats.url(2),
        "--cluster-name",
        "t",
        "--node-id",
        "victim",
    ])
    .await;
    let mut dave = victim.login("dave").await;
    let mut alice = f.login(0, "alice").await;
    let mut bob = f.login(1, "bob").await;
    assert_eq!(wait_who(&mut alice, 3).await, ["alice", "bob", "dave"]);
    dave.sync().await;
    victim.signal("KILL");
    // Offline everywhere within the failure detector's bound.
    assert_eq!(wait_who(&mut alice, 2).await, ["alice", "bob"]);
    assert_eq!(wait_who(&mut bob, 2).await, ["alice", "bob"]);
    // The others are unaffected.
    alice.send("bob: still here").await;
    bob.expect("from alice: still here").await;
    // The name is refused with a clear line meanwhile, then free: within
    // the stated bound when the name service answers promptly (here, on
    // two shared cores running other clusters too, it may answer slowly,
    // hence the slack; the wait ends as soon as the name is free).
    let bound = Duration::from_secs(fast().names_freed_within() + 20);
    let (dave_again, refusals) = login_eventually(f.addr(1), "dave", bound).await;
    let held = format!(
        "error: the name 'dave' is held by a node that stopped answering; it is free again \
         within {} seconds",
        fast().names_freed_within()
    );
    assert!(
        refusals.iter().all(|line| *line == held),
        "unexpected refusals: {refusals:?}"
    );
    assert!(!refusals.is_empty(), "the name was never refused");
    drop(dave_again);
}

#[tokio::test]
async fn chat_goes_on_when_a_nats_server_is_killed() {
    let Some(mut f) = Fixture::start(2).await else {
        return;
    };
    let mut alice = f.login(0, "alice").await;
    let mut bob = f.login(1, "bob").await;
    wait_who(&mut alice, 2).await;
    wait_who(&mut bob, 2).await;
    // Node 0's server.
    f.nats.kill(0);
    let deadline = Deadline::new("chat to resume after a NATS server was killed");
    for i in 0.. {
        alice.send(&format!("bob: ping {i}")).await;
        if let Some(line) = line_within(&mut bob, Duration::from_millis(500)).await {
            assert!(line.starts_with("from alice: ping "), "{line:?}");
            break;
        }
        deadline.check();
    }
    // Lines sent during the failover were delivered or reported, never
    // silently lost; from now on both ways work.
    bob.send("alice: pong").await;
    loop {
        let line = alice.line().await;
        if line == "from bob: pong" {
            break;
        }
        assert!(
            line.starts_with("error: lost between nodes, may not have reached: bob")
                || line == "error: not online: bob (message not delivered to them)",
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn losing_the_quorum_refuses_logins_then_disconnects_clearly_and_recovers() {
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    // Both nodes on the server that survives: core NATS goes on there.
    let nodes: Vec<TestServer> = (0..2)
        .map(|i| start_with(node_config(nats.url(2), &format!("n{i}"))))
        .collect();
    let mut alice = TestServer::client_for(nodes[0].addr, "alice").await;
    let mut bob = TestServer::client_for(nodes[1].addr, "bob").await;
    wait_who(&mut alice, 2).await;
    nats.kill(0);
    nats.kill(1);
    // A login cannot be decided: refused with the name-service error.
    let mut carol = Client::connect(nodes[0].addr).await;
    carol.send("carol").await;
    carol
        .expect(
            "error: names cannot be checked right now (the cluster's name service is \
             unavailable), try again in a moment",
        )
        .await;
    // Users online chat on meanwhile ...
    alice.send("bob: during the outage").await;
    bob.expect("from alice: during the outage").await;
    // ... until the node's lease is past saving: then they are told, and
    // disconnected (no node may go on vouching for names it cannot renew).
    for user in [&mut alice, &mut bob] {
        loop {
            let Some(line) = user.next_line().await else {
                panic!("closed without the cut-off line");
            };
            if line
                == "server: this node lost contact with the cluster, disconnecting; log in again \
                    in a moment"
            {
                break;
            }
        }
        assert_eq!(user.next_line().await, None);
    }
    // The quorum back: logins work again, and the names of the users cut
    // off were freed (their releases are tried again).
    nats.restart(0).await;
    nats.restart(1).await;
    let within = Duration::from_secs(30);
    let (alice, _) = login_eventually(nodes[1].addr, "alice", within).await;
    let (bob, _) = login_eventually(nodes[0].addr, "bob", within).await;
    quit(alice).await;
    quit(bob).await;
}

#[tokio::test]
async fn a_remote_flooder_is_paced_by_a_slow_reader_and_nothing_is_lost() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    let mut alice = f.login(0, "alice").await;
    let bob = f.login(1, "bob").await;
    wait_who(&mut alice, 2).await;
    // 8 MB for bob, eight times his outbox cap: without back-pressure
    // across the nodes he would be cut off as a slow consumer.
    const LINES: usize = 8000;
    let text = "x".repeat(1000);
    let (mut bob_reader, _bob_writer) = bob.split();
    let (alice_reader, mut alice_writer) = alice.split();
    let flood = tokio::spawn(async move {
        let mut out = Vec::new();
        for i in 0..LINES {
            out.extend_from_slice(format!("bob: {i} {text}\n").as_bytes());
            if out.len() >= 64 * 1024 || i + 1 == LINES {
                alice_writer.send_raw(&out).await;
                out.clear();
            }
        }
        alice_writer
    });
    // Bob reads slowly: 64 KiB at a time, with pauses (about 1.3 MB/s).
    let mut next = 0;
    let mut line = String::new();
    let mut read_since_pause = 0;
    while next < LINES {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(10), bob_reader.read_line(&mut line))
            .await
            .expect("bob's next line")
            .unwrap();
        assert!(n > 0, "bob was disconnected after {next} lines");
        let expected = format!("from alice: {next} ");
        assert!(
            line.starts_with(&expected),
            "{next}: {:?}",
            &line[..40.min(line.len())]
        );
        next += 1;
        read_since_pause += n;
        if read_since_pause >= 64 * 1024 {
            read_since_pause = 0;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let writer = flood.await.unwrap();
    // No error of any kind came back to the flooder.
    let mut alice = Client::rejoin(alice_reader, writer, "alice");
    alice.sync().await;
}

#[tokio::test]
async fn a_stuck_remote_reader_is_cut_off_and_the_flooder_goes_on() {
    let Some(f) = Fixture::start(2).await else {
        return;
    };
    let mut alice = f.login(0, "alice").await;
    let bob = f.login(1, "bob").await;
    let mut carol = f.login(1, "carol").await;
    wait_who(&mut alice, 3).await;
    let (alice_reader, mut alice_writer) = alice.split();
    let text = "y".repeat(1000);
    let flood = tokio::spawn(async move {
        // 4 MB: four times bob's outbox cap.
        for i in 0..4000 {
            let line = format!("bob: {i} {text}\n");
            alice_writer.send_raw(line.as_bytes()).await;
        }
        alice_writer
    });
    // Bob reads nothing; he is cut off on his node as on one node, and
    // alice is told he is gone (never that lines were lost).
    let mut alice_reader = alice_reader;
    let mut line = String::new();
    tokio::time::timeout(crate::util::WAIT, alice_reader.read_line(&mut line))
        .await
        .expect("alice's next line")
        .unwrap();
    assert_eq!(
        line,
        "error: not online: bob (message not delivered to them)\n"
    );
    // The rest of the flood gets the same answer, line by line.
    let mut alice = Client::rejoin(alice_reader, flood.await.unwrap(), "alice");
    alice.send("alice: flood over").await;
    loop {
        let line = alice.line().await;
        if line == "from alice: flood over" {
            break;
        }
        assert_eq!(
            line,
            "error: not online: bob (message not delivered to them)"
        );
    }
    // carol, on bob's node, is unaffected.
    alice.send("carol: fine?").await;
    loop {
        let line = carol.line().await;
        if line == "from alice: fine?" {
            break;
        }
    }
    drop(bob);
}

#[tokio::test]
async fn nats_unreachable_at_start_is_a_clear_error_and_a_failed_exit() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
        .args(["--bind", "127.0.0.1:0", "--http", "off", "--cluster"])
        .arg(format!("nats://127.0.0.1:{port}"))
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(crate::util::WAIT, out)
        .await
        .expect("the server gave up in time")
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_node_that_shuts_down_says_goodbye_and_gives_its_names_back_at_once() {
    let Some(mut f) = Fixture::start(2).await else {
        return;
    };
    let mut alice = f.login(0, "alice").await;
    let mut bob = f.login(1, "bob").await;
    wait_who(&mut alice, 2).await;
    let node = f.nodes.remove(1);
    node.shutdown().await;
    bob.expect("server: shutting down").await;
    // Offline at once (its last heartbeat says it is leaving) ...
    assert_eq!(wait_who(&mut alice, 1).await, ["alice"]);
    // ... and the name free at once: it was released before the node went.
    let mut again = Client::connect(f.addr(0)).await;
    again.send("bob").await;
    again.expect_prefix("server: welcome bob ").await;
}
