//! Leaving: end of stream, resets, half-closes.

use tokio::net::TcpStream;

use crate::util::{Client, Deadline, start};

/// Waits until `name` is free again, by logging in with it (bounded).
async fn relogin(server: &crate::util::TestServer, name: &str) -> Client {
    let mut client = server.connect().await;
    let deadline = Deadline::new(&format!("{name} can log in again"));
    loop {
        client.send(name).await;
        let line = client.line().await;
        if line.starts_with(&format!("server: welcome {name} ")) {
            break;
        }
        assert!(line.starts_with("error: the name"), "{line}");
        deadline.check();
    }
    client.name = name.to_owned();
    client
}

#[tokio::test]
async fn end_of_stream_removes_the_peer_and_frees_its_name() {
    let server = start();
    let alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    drop(alice);
    let mut alice = relogin(&server, "alice").await;
    bob.send("alice: hi new alice").await;
    alice.expect("from bob: hi new alice").await;
}

#[tokio::test]
async fn a_reset_removes_the_peer() {
    let server = start();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    // SO_LINGER 0: closing sends a reset instead of a FIN.
    stream.set_zero_linger().unwrap();
    stream.writable().await.unwrap();
    stream.try_write(b"alice\n").unwrap();
    let mut buf = [0u8; 256];
    stream.readable().await.unwrap();
    let n = loop {
        match stream.try_read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stream.readable().await.unwrap()
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("server: welcome alice")
    );
    drop(stream);
    let _alice = relogin(&server, "alice").await;
}

#[tokio::test]
async fn a_half_closed_client_gets_its_answers_then_the_server_closes() {
    let server = start();
    let mut bob = server.login("bob").await;
    let mut alice = server.login("alice").await;
    alice.send("bob: last words").await;
    alice.send("carol: hello?").await;
    alice.send("/who").await;
    alice.shutdown_write().await;
    alice
        .expect("error: not online: carol (message not delivered to them)")
        .await;
    alice.expect("server: 2 online:").await;
    alice.expect("server: alice, bob").await;
    alice.expect_closed().await;
    bob.expect("from alice: last words").await;
}

#[tokio::test]
async fn messages_to_a_peer_that_left_are_refused_with_an_error() {
    let server = start();
    let mut alice = server.login("alice").await;
    let bob = server.login("bob").await;
    drop(bob);
    let deadline = Deadline::new("bob is seen as offline");
    loop {
        alice.send("bob: are you there?").await;
        // The message to herself marks the end of the answer.
        alice.send("alice: mark").await;
        let line = alice.line().await;
        if line == "error: not online: bob (message not delivered to them)" {
            alice.expect("from alice: mark").await;
            break;
        }
        assert_eq!(line, "from alice: mark");
        deadline.check();
    }
}

#[tokio::test]
async fn a_client_that_vanishes_mid_line_disturbs_nobody() {
    let server = start();
    let mut alice = server.login("alice").await;
    let mut bob = server.login("bob").await;
    alice.send_raw(b"bob: this line never ends").await;
    drop(alice);
    bob.sync().await;
    let _alice = relogin(&server, "alice").await;
    bob.sync().await;
}

/// After `/quit` the server closes the connection and frees its slot
/// promptly even if the client keeps its side open: it does not hold the
/// connection for `--shutdown-grace`.
#[tokio::test]
async fn a_client_that_quits_but_keeps_its_socket_open_is_closed_promptly() {
    let server = crate::util::start_with(achat::Config {
        max_connections: 1,
        // Longer than the wait bound: holding the slot that long fails.
        shutdown_grace: std::time::Duration::from_secs(60),
        ..crate::util::test_config()
    });
    let mut alice = server.login("alice").await;
    alice.send("/quit").await;
    alice.expect("server: bye").await;
    assert_eq!(alice.next_line().await, None);
    // Alice's socket stays open; the slot frees when the server lets go.
    let deadline = crate::util::Deadline::new("the only slot to be free again");
    loop {
        let mut next = server.connect().await;
        next.send("bob").await;
        let line = next.line().await;
        if line.starts_with("server: welcome bob ") {
            break;
        }
        assert_eq!(line, "error: server full (1 connections), try again later");
        deadline.check();
    }
    drop(alice);
}
