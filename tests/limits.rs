//! Bad input and limits: long lines, bad UTF-8, full server, slow
//! consumers, floods.

use tokio::io::AsyncBufReadExt;

use crate::metrics::Scrape;
use crate::util::{Deadline, start, start_web, start_with, test_config};

#[tokio::test]
async fn a_line_at_the_limit_is_fine_with_either_terminator() {
    let server = start_with(achat::Config {
        max_line_bytes: 64,
        max_outbox_bytes: 64 * 1024,
        ..test_config()
    });
    let mut alice = server.login("alice").await;
    let text = "x".repeat(64 - "alice: ".len());
    alice.send(&format!("alice: {text}")).await;
    alice.expect(&format!("from alice: {text}")).await;
    alice
        .send_raw(format!("alice: {text}\r\n").as_bytes())
        .await;
    alice.expect(&format!("from alice: {text}")).await;
}

#[tokio::test]
async fn a_line_over_the_limit_is_dropped_with_an_error_and_the_connection_goes_on() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let long = format!("bob: {}\n", "y".repeat(5000));
    alice.send_raw(long.as_bytes()).await;
    alice
        .expect("error: line too long (the limit is 4096 bytes), ignored")
        .await;
    alice.send("bob: short one").await;
    bob.expect("from alice: short one").await;
    bob.sync().await;
}

#[tokio::test]
async fn a_huge_line_in_many_small_writes_is_skipped_not_stored() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send_raw(b"bob: ").await;
    // 64 MiB without a newline: the server must skip it as it comes.
    let chunk = vec![b'z'; 64 * 1024];
    let mut reported = false;
    for i in 0..1024 {
        alice.send_raw(&chunk).await;
        if i == 0 {
            alice
                .expect("error: line too long (the limit is 4096 bytes), ignored")
                .await;
            reported = true;
        }
    }
    assert!(reported);
    alice.send_raw(b"\nbob: after\n").await;
    bob.expect("from alice: after").await;
    alice.sync().await;
}

#[tokio::test]
async fn a_line_that_is_not_utf8_is_dropped_with_an_error() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send_raw(b"bob: \xff\xfe broken\nbob: fine\n").await;
    alice
        .expect("error: line is not valid UTF-8, ignored")
        .await;
    bob.expect("from alice: fine").await;
    // Before login too.
    let mut anon = server.connect().await;
    anon.send_raw(b"\xc3\x28\n").await;
    anon.expect("error: line is not valid UTF-8, ignored").await;
    anon.send("carol").await;
    anon.expect_prefix("server: welcome carol ").await;
}

#[tokio::test]
async fn connections_over_the_maximum_are_refused_and_closed() {
    let server = start_with(achat::Config {
        max_connections: 3,
        ..test_config()
    });
    let mut first = server.login("a").await;
    let _b = server.login("b").await;
    let _c = server.connect().await; // not logged in: counts too
    let mut refused = server.connect().await;
    refused
        .expect("error: server full (3 connections), try again later")
        .await;
    refused.expect_closed().await;
    first.sync().await;
    // Once one leaves, there is room again.
    first.send("/quit").await;
    first.expect("server: bye").await;
    first.expect_closed().await;
    let deadline = Deadline::new("a free slot");
    loop {
        let mut next = server.connect().await;
        next.send("d").await;
        let line = next.line().await;
        if line.starts_with("server: welcome d ") {
            break;
        }
        assert_eq!(line, "error: server full (3 connections), try again later");
        deadline.check();
    }
}

#[tokio::test]
async fn a_reader_that_stops_is_cut_off_and_nobody_else_notices() {
    let server = start_web(achat::Config {
        max_outbox_bytes: 256 * 1024,
        ..test_config()
    });
    let _stuck = server.login("stuck").await; // never reads again
    let alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut carol = server.login("carol").await;

    // alice's errors tell when "stuck" is gone; read them on the side.
    let (alice_reader, mut alice_writer) = alice.split();
    let mut gone = crate::util::on_line_starting(alice_reader, "error: not online: stuck");
    // alice sends to both; bob keeps up, "stuck" does not. alice is not
    // slowed down: every batch reaches bob while "stuck" piles up.
    let text = "m".repeat(1000);
    let batch = format!("stuck, bob: {text}\n").repeat(64);
    let deadline = Deadline::new("the stuck reader to be cut off");
    while gone.try_recv().is_err() {
        alice_writer.send_raw(batch.as_bytes()).await;
        for _ in 0..64 {
            bob.expect(&format!("from alice: {text}")).await;
        }
        // Everyone else chats as usual meanwhile.
        carol.sync().await;
        deadline.check();
    }
    // The stuck peer is offline for everyone.
    carol.send("stuck: hello?").await;
    carol.expect_prefix("error: not online: stuck").await;
    bob.sync().await;
    // And the operator sees it.
    let http = server.http_addr.expect("a web listener");
    let scrape = Scrape::of(http).await;
    // Held up by it (bob keeps up, so alice's credit waits on "stuck"),
    // it read nothing for the stall limit.
    assert_eq!(scrape.cut_off(), (0, 1));
}

#[tokio::test]
async fn a_flooding_client_is_slowed_to_its_readers_pace_and_holds_up_nobody_else() {
    // A small outbox, so that without back-pressure on the flooder its
    // (reading, but slower) recipient would be cut off within moments.
    let server = start_with(achat::Config {
        max_outbox_bytes: 64 * 1024,
        ..test_config()
    });
    let mut flooder = server.login("flooder").await;
    let mut sink = server.login("sink").await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let n = 200_000;
    let flood = async {
        let line = "sink: flood flood flood flood flood flood flood flood\n".repeat(1000);
        for _ in 0..n / 1000 {
            flooder.send_raw(line.as_bytes()).await;
        }
    };
    let drain = async {
        for _ in 0..n {
            sink.expect("from flooder: flood flood flood flood flood flood flood flood")
                .await;
        }
    };
    let chat = async {
        for i in 0..100 {
            alice.send(&format!("bob: ping {i}")).await;
            bob.expect(&format!("from alice: ping {i}")).await;
        }
    };
    tokio::join!(flood, drain, chat);
}

#[tokio::test]
async fn tiny_lines_from_a_long_name_do_not_get_a_reader_cut_off() {
    // `s:x` (4 bytes in) becomes `from <32 characters>: x` (42 bytes out):
    // a read's worth of input is ten times that in output, more than the
    // outbox holds. Batches are cut by their output, so this still works.
    let server = start_with(achat::Config {
        max_outbox_bytes: 64 * 1024,
        ..test_config()
    });
    let long = "x".repeat(32);
    let mut flooder = server.login(&long).await;
    let mut sink = server.login("s").await;
    let n = 100_000;
    let flood = async {
        let lines = "s:x\n".repeat(10_000);
        for _ in 0..n / 10_000 {
            flooder.send_raw(lines.as_bytes()).await;
        }
    };
    let drain = async {
        for _ in 0..n {
            sink.expect(&format!("from {long}: x")).await;
        }
    };
    tokio::join!(flood, drain);
    sink.sync().await;
}

#[tokio::test]
async fn a_reader_that_stops_holds_its_only_sender_up_briefly_then_is_cut_off() {
    let server = start_web(achat::Config {
        max_outbox_bytes: 256 * 1024,
        ..test_config()
    });
    let _stuck = server.login("stuck").await; // never reads
    let alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    // alice sends to "stuck" only; once its outbox is half full, alice is
    // held up (her input is no longer read) until "stuck" is cut off.
    let (alice_reader, mut alice_writer) = alice.split();
    let mut lines = alice_reader.lines();
    let batch = format!("stuck: {}\n", "z".repeat(1000)).repeat(64);
    let writes = async {
        // Until the socket pushes back or the errors tell us it is over.
        for _ in 0..2000 {
            if alice_writer.try_send_raw(batch.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let cut_off = async {
        loop {
            let line = tokio::time::timeout(crate::util::WAIT, lines.next_line())
                .await
                .expect("stuck was never cut off")
                .unwrap()
                .unwrap();
            if line.starts_with("error: not online: stuck") {
                return;
            }
        }
    };
    tokio::select! {
        () = cut_off => {}
        () = async { writes.await; std::future::pending::<()>().await } => {}
    }
    // alice goes on as before (after ending the line her last write may
    // have left unfinished).
    alice_writer.send_raw(b"\nbob: free again\n").await;
    bob.expect("from alice: free again").await;
    let http = server.http_addr.expect("a web listener");
    let scrape = Scrape::of(http).await;
    assert_eq!(scrape.cut_off(), (0, 1));
}
