//! Shutdown: in-process through the handle, and the real binary on SIGTERM
//! and SIGINT.

use std::time::Duration;

use crate::util::{Binary, Client, WAIT, start, test_config};

#[tokio::test]
async fn every_connection_is_told_and_closed() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut anon = server.connect().await;
    // Make sure the server has accepted it (a connection still in the
    // listen queue when the listener closes is reset by the kernel).
    anon.send("/who").await;
    anon.expect("error: log in first: send your name").await;
    let clients = async {
        alice.expect("server: shutting down").await;
        alice.expect_closed().await;
        anon.expect("server: shutting down").await;
        anon.expect_closed().await;
    };
    tokio::join!(server.shutdown(), clients);
}

#[tokio::test]
async fn lines_sent_before_the_shutdown_are_delivered_before_the_goodbye() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let n = 1000;
    let burst: String = (0..n).map(|i| format!("bob: m{i}\n")).collect();
    alice.send_raw(burst.as_bytes()).await;
    // No waiting for bob: many of these lines are still unread in the
    // server's socket when the shutdown starts.
    let bob_reads = async {
        for i in 0..n {
            bob.expect(&format!("from alice: m{i}")).await;
        }
        bob.expect("server: shutting down").await;
        bob.expect_closed().await;
    };
    let alice_reads = async {
        alice.expect("server: shutting down").await;
        alice.expect_closed().await;
    };
    tokio::join!(server.shutdown(), bob_reads, alice_reads);
}

/// A connection the kernel completed but the server had not accepted yet
/// when it stopped is told `server: shutting down`, not reset.
#[test]
fn a_connection_still_in_the_listen_queue_is_told_not_reset() {
    use std::io::{BufRead, BufReader};
    let listener = achat::server::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    // The handshake completes in the kernel; nobody accepts it yet.
    let client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(WAIT)).expect("timeout");
    // A shutdown that has already come: the accept loop takes nothing in
    // the ordinary way, so the connection is still queued when it stops.
    let server = std::thread::spawn(move || {
        actix::System::new().block_on(achat::run(listener, test_config(), std::future::ready(())))
    });
    let mut reader = BufReader::new(&client);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line, not a reset");
    assert_eq!(line, "server: shutting down\n");
    line.clear();
    assert_eq!(reader.read_line(&mut line).expect("a clean close"), 0);
    drop(reader);
    drop(client);
    server
        .join()
        .expect("server thread")
        .expect("server stopped cleanly");
}

async fn signal_shuts_down_cleanly(signal: &str) {
    let server = Binary::start(&[]).await;
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    let mut anon = Client::connect(server.addr).await;
    anon.send("/who").await;
    anon.expect("error: log in first: send your name").await;
    let n = 1000;
    let burst: String = (0..n).map(|i| format!("bob: m{i}\n")).collect();
    alice.send_raw(burst.as_bytes()).await;
    server.signal(signal);
    for i in 0..n {
        bob.expect(&format!("from alice: m{i}")).await;
    }
    bob.expect("server: shutting down").await;
    bob.expect_closed().await;
    alice.expect("server: shutting down").await;
    alice.expect_closed().await;
    anon.expect("server: shutting down").await;
    anon.expect_closed().await;
    let status = server.exit_status().await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigterm_delivers_what_arrived_says_goodbye_and_exits_0() {
    signal_shuts_down_cleanly("TERM").await;
}

#[tokio::test]
async fn sigint_delivers_what_arrived_says_goodbye_and_exits_0() {
    signal_shuts_down_cleanly("INT").await;
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_hold_the_shutdown_past_the_grace() {
    let server = Binary::start(&["--shutdown-grace", "1s"]).await;
    // Logged in, then never reads nor closes.
    let _stuck = server.login("stuck").await;
    let mut alice = server.login("alice").await;
    alice.sync().await;
    let started = tokio::time::Instant::now();
    server.signal("TERM");
    let status = server.exit_status().await;
    assert!(status.success(), "exit status {status}");
    // Bounded by the grace (plus start-up slack), not by the client.
    assert!(started.elapsed() < Duration::from_secs(1) + WAIT / 2);
}

#[tokio::test]
async fn the_binary_prints_help_and_version() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--bind",
        "--workers",
        "--max-connections",
        "--max-line-bytes",
        "--max-outbox-bytes",
        "--login-timeout",
        "--shutdown-grace",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("achat-server "));
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
        .args(["--bind", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

/// A script or supervisor that signals the moment it reads `listening on`
/// gets the clean shutdown: the handlers exist before the line is printed.
#[tokio::test]
async fn a_signal_right_after_the_listening_line_shuts_down_cleanly() {
    for signal in ["TERM", "INT", "TERM", "INT", "TERM"] {
        // `start` returns as soon as it has read the line; no pause here.
        let server = Binary::start(&[]).await;
        server.signal(signal);
        let status = server.exit_status().await;
        assert!(status.success(), "SIG{signal}: exit status {status}");
    }
}

/// A client at a prompt (it reads, but never closes its side) is told
/// goodbye and closed promptly: the shutdown does not wait the grace for
/// it, and warns of nothing, since nothing was lost.
#[tokio::test]
async fn an_interactive_client_does_not_hold_the_shutdown_for_the_grace() {
    // A grace longer than the wait bound: waiting for it fails the test.
    let server = Binary::start(&["--shutdown-grace", "60s"]).await;
    let mut alice = server.login("alice").await;
    alice.sync().await;
    server.signal("TERM");
    alice.expect("server: shutting down").await;
    // The server's side is closed; ours stays open, as nc's does.
    assert_eq!(alice.next_line().await, None);
    let (status, log) = server.exit_status_and_log().await;
    assert!(status.success(), "exit status {status}");
    let shutdown_warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("shutdown"));
    assert_eq!(shutdown_warnings.count(), 0, "{log}");
    drop(alice);
}
