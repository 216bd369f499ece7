//! `--max-connections-per-ip`: one source address cannot take every
//! connection slot. The other tests run without the limit (see
//! `util::test_config`); these set it.

use std::net::SocketAddr;

use achat::Config;
use tokio::net::TcpSocket;

use crate::util::{Client, Deadline, WAIT, start_with, test_config};

/// A connection to `addr` from the source address `from` (127.0.0.x).
async fn connect_from(from: &str, addr: SocketAddr) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    Client::from_stream(stream)
}

#[tokio::test]
async fn a_source_past_its_limit_is_refused_until_one_of_its_connections_closes() {
    let server = start_with(Config {
        max_connections_per_ip: 3,
        ..test_config()
    });
    let mut held = Vec::new();
    for name in ["u1", "u2"] {
        held.push(server.login(name).await);
    }
    // Logged in or not, every open connection counts.
    held.push(server.connect().await);
    let mut fourth = server.connect().await;
    fourth
        .expect("error: too many connections from your address")
        .await;
    fourth.expect_closed().await;

    // Another address is counted apart (loopback is 127.0.0.0/8).
    let mut other = connect_from("127.0.0.2", server.addr).await;
    other.send("elsewhere").await;
    other.expect_prefix("server: welcome elsewhere ").await;

    let mut first = held.remove(0);
    first.send("/quit").await;
    first.expect("server: bye").await;
    first.expect_closed().await;
    // The count goes back when the session has ended, an instant after
    // the client sees the close: each attempt is a round trip.
    let deadline = Deadline::new("a connection from 127.0.0.1 to be let in again");
    loop {
        let mut again = server.connect().await;
        again.send("again").await;
        let answer = again.line().await;
        if answer.starts_with("server: welcome again ") {
            break;
        }
        assert_eq!(answer, "error: too many connections from your address");
        deadline.check();
    }
    server.shutdown().await;
}
