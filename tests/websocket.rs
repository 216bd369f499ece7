//! The WebSocket transport (`GET /ws` on the web listener), at the
//! protocol level with a Rust WebSocket client: the same protocol as TCP,
//! frame for line, and the rules only a WebSocket has (binary and
//! over-long frames, pings, the Origin check).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::util::{Client, Deadline, TestServer, WAIT, start_web, test_config};

/// A chat client over WebSocket.
pub(crate) struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Protocol bytes sent and received so far, as the server counts them
    /// (each frame's line and its `\n`).
    pub(crate) sent: u64,
    pub(crate) received: u64,
}

/// What the server sent next: a line, or the close frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    Line(String),
    Closed(Option<(CloseCode, String)>),
}

impl Ws {
    /// Connects to `/ws` on `http`, with an `Origin` header if given.
    pub(crate) async fn connect_from(http: SocketAddr, origin: Option<&str>) -> Result<Ws, String> {
        let mut request = format!("ws://{http}/ws")
            .into_client_request()
            .expect("a request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().expect("a header"));
        }
        let connect = tokio_tungstenite::connect_async(request);
        match tokio::time::timeout(WAIT, connect).await {
            Ok(Ok((socket, _))) => Ok(Ws {
                socket,
                sent: 0,
                received: 0,
            }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => panic!("no handshake within the wait bound"),
        }
    }

    pub(crate) async fn connect(server: &TestServer) -> Ws {
        let http = server.http_addr.expect("a web listener");
        Ws::connect_from(http, Some(&format!("http://{http}")))
            .await
            .expect("handshake")
    }

    /// Connected and logged in as `name`.
    pub(crate) async fn login(server: &TestServer, name: &str) -> Ws {
        let mut ws = Ws::connect(server).await;
        ws.send(name).await;
        ws.expect_prefix(&format!("server: welcome {name} ")).await;
        ws
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.sent += line.len() as u64 + 1;
        self.send_message(Message::text(line)).await;
    }

    async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.socket.send(message))
            .await
            .expect("send within the wait bound")
            .expect("send");
    }

    /// The next line or close; pings and pongs are skipped.
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("nothing within the wait bound");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    assert!(!text.contains('\n'), "one line per frame: {text:?}");
                    self.received += text.len() as u64 + 1;
                    return Next::Line(text.to_owned());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Next::Closed(frame.map(|f| (f.code, f.reason.as_str().to_owned())));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
                Some(Err(_)) | None => return Next::Closed(None),
            }
        }
    }

    pub(crate) async fn line(&mut self) -> String {
        match self.next().await {
            Next::Line(line) => line,
            Next::Closed(why) => panic!("closed while a line was expected: {why:?}"),
        }
    }

    pub(crate) async fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().await, expected);
    }

    pub(crate) async fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}..., got {line:?}"
        );
        line
    }

    /// Asserts the next thing is a close frame with `code`; returns its
    /// reason.
    async fn expect_close(&mut self, code: CloseCode) -> String {
        match self.next().await {
            Next::Closed(Some((got, reason))) => {
                assert_eq!(got, code, "close reason {reason:?}");
                reason
            }
            other => panic!("expected a close with {code:?}, got {other:?}"),
        }
    }
}

/// A raw HTTP/1.1 request to the web listener; the status line and body.
pub(crate) async fn http_get(http: SocketAddr, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(http).await.expect("connect");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {http}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("a response within the wait bound")
        .expect("read");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_websocket_user_and_an_nc_user_chat_both_ways() {
    let server = start_web(test_config());
    let mut web = Ws::login(&server, "alice").await;
    let mut nc = server.login("bob").await;
    web.send("bob: hello from the browser").await;
    nc.expect("from alice: hello from the browser").await;
    nc.send("alice: hello from nc").await;
    web.expect("from bob: hello from nc").await;
    let mut other = Ws::login(&server, "carol").await;
    nc.send("alice, carol: to both").await;
    web.expect("from bob: to both").await;
    other.expect("from bob: to both").await;
    other.send("*: everyone").await;
    web.expect("from carol: everyone").await;
    nc.expect("from carol: everyone").await;
    web.send("/who").await;
    web.expect("server: 3 online:").await;
    let names = web.expect_prefix("server: ").await;
    assert!(
        names.contains("alice") && names.contains("bob") && names.contains("carol"),
        "{names}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn login_rules_are_the_protocols() {
    let server = start_web(test_config());
    let _nc = server.login("alice").await;
    let mut web = Ws::connect(&server).await;
    web.send("al ice").await;
    web.expect_prefix("error: invalid name: ").await;
    web.send("alice").await;
    web.expect("error: the name 'alice' is taken, choose another")
        .await;
    // Another spelling of an online name is the same name.
    web.send("ALICE").await;
    web.expect_prefix("error: the name 'ALICE' is taken").await;
    web.send("bob").await;
    web.expect_prefix("server: welcome bob ").await;
    // And the other way round: a WebSocket user's name is taken over TCP.
    let mut nc = server.connect().await;
    nc.send("bob").await;
    nc.expect("error: the name 'bob' is taken, choose another")
        .await;
    web.send("/quit").await;
    web.expect_prefix("server: bye").await;
    web.expect_close(CloseCode::Normal).await;
    nc.send("bob").await;
    nc.expect_prefix("server: welcome bob ").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_of_several_lines_is_several_lines_and_a_final_newline_adds_none() {
    let server = start_web(test_config());
    let mut web = Ws::login(&server, "alice").await;
    let mut nc = server.login("bob").await;
    web.send("bob: one\nbob: two\r\n").await;
    nc.expect("from alice: one").await;
    nc.expect("from alice: two").await;
    // A fragmented message is one line.
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, coding::Data, coding::OpCode};
    let first = Frame::message(
        "bob: fra".as_bytes().to_vec(),
        OpCode::Data(Data::Text),
        false,
    );
    let last = Frame::message(
        "gmented".as_bytes().to_vec(),
        OpCode::Data(Data::Continue),
        true,
    );
    web.send_message(Message::Frame(first)).await;
    web.send_message(Message::Frame(last)).await;
    nc.expect("from alice: fragmented").await;
    nc.sync().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_over_long_line_is_refused_as_over_tcp_and_a_huge_frame_closes() {
    let server = start_web(achat::Config {
        max_line_bytes: 100,
        ..test_config()
    });
    let mut web = Ws::login(&server, "alice").await;
    web.send(&format!("alice: {}", "x".repeat(200))).await;
    web.expect("error: line too long (the limit is 100 bytes), ignored")
        .await;
    web.send("alice: still here").await;
    web.expect("from alice: still here").await;
    // Past the largest frame (64 KiB): not buffered, the connection closes.
    web.send(&"y".repeat(100 * 1024)).await;
    web.expect_close(CloseCode::Size).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_binary_frame_closes_with_a_reason() {
    let server = start_web(test_config());
    let mut web = Ws::login(&server, "alice").await;
    let mut nc = server.login("bob").await;
    web.send_message(Message::binary(b"bob: hi".to_vec())).await;
    let reason = web.expect_close(CloseCode::Unsupported).await;
    assert!(reason.contains("text"), "{reason}");
    // alice is gone; nobody else noticed anything.
    nc.send("alice: there?").await;
    nc.expect_prefix("error: not online: alice").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_ping_gets_its_pong() {
    let server = start_web(test_config());
    let mut web = Ws::login(&server, "alice").await;
    web.send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;
    let pong = loop {
        match tokio::time::timeout(WAIT, web.socket.next()).await {
            Ok(Some(Ok(Message::Pong(payload)))) => break payload,
            Ok(Some(Ok(_))) => {}
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    server.shutdown().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let server = start_web(achat::Config {
        allowed_origins: vec!["https://friend.example".into()],
        ..test_config()
    });
    let http = server.http_addr.expect("a web listener");
    let refused = Ws::connect_from(http, Some("https://evil.example")).await;
    let error = refused.err().expect("refused");
    assert!(error.contains("403"), "{error}");
    let refused = Ws::connect_from(http, Some("null")).await;
    assert!(refused.is_err());
    // The own origin, an allowed one, and a client that is no browser.
    for origin in [
        Some(format!("http://{http}")),
        Some("https://friend.example".into()),
        None,
    ] {
        let mut ws = Ws::connect_from(http, origin.as_deref())
            .await
            .expect("allowed");
        ws.send("alice").await;
        ws.expect_prefix("server: welcome alice ").await;
        ws.send("/quit").await;
        ws.expect_prefix("server: bye").await;
        ws.expect_close(CloseCode::Normal).await;
    }
    // Not a handshake at all.
    let (status, body) = http_get(http, "/ws", "").await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("WebSocket"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_login_timeout_and_the_connection_limit_apply() {
    let server = start_web(achat::Config {
        login_timeout: std::time::Duration::from_millis(300),
        ..test_config()
    });
    let mut silent = Ws::connect(&server).await;
    silent.expect("error: no login within 300ms, closing").await;
    silent.expect_close(CloseCode::Normal).await;
    server.shutdown().await;

    let server = start_web(achat::Config {
        max_connections: 2,
        ..test_config()
    });
    let _one = Ws::login(&server, "a").await;
    let _two = server.login("b").await;
    // Full, whichever transport asks: the nc line, then a close.
    let mut third = Ws::connect(&server).await;
    third
        .expect("error: server full (2 connections), try again later")
        .await;
    third.expect_close(CloseCode::Again).await;
    let mut nc = server.connect().await;
    nc.expect("error: server full (2 connections), try again later")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_and_healthz_turns_503() {
    let server = start_web(test_config());
    let http = server.http_addr.expect("a web listener");
    let (status, body) = http_get(http, "/healthz", "").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "ok\n");
    let mut web = Ws::login(&server, "alice").await;
    let mut nc = server.login("bob").await;
    // The shutdown waits for alice: /healthz answers meanwhile.
    let shutdown = tokio::spawn(server.shutdown());
    web.expect("server: shutting down").await;
    // Connections are no longer taken (the gate closed before the
    // goodbyes); the server still runs while its sessions close.
    let (status, body) = http_get(http, "/healthz", "").await;
    assert!(status.contains(" 503 "), "{status}");
    assert_eq!(body, "shutting down\n");
    // A connection arriving now is told so, and counted as refused.
    let mut late = Ws::connect_from(http, Some(&format!("http://{http}")))
        .await
        .expect("upgraded, to be told why");
    late.expect("server: shutting down").await;
    assert!(matches!(late.next().await, Next::Closed(_)));
    let scrape = crate::metrics::Scrape::of(http).await;
    assert_eq!(
        scrape.get(r#"achat_connections_refused_total{reason="shutting_down"}"#),
        1
    );
    nc.expect("server: shutting down").await;
    web.expect_close(CloseCode::Normal).await;
    drop(web);
    nc.expect_closed().await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

#[tokio::test]
async fn a_websocket_reader_that_stops_is_cut_off_and_nobody_else_notices() {
    let server = start_web(achat::Config {
        max_outbox_bytes: 256 * 1024,
        ..test_config()
    });
    let _stuck = Ws::login(&server, "stuck").await; // never reads again
    let alice = server.login("alice").await;
    let mut bob = Ws::login(&server, "bob").await;
    let (alice_reader, mut alice_writer) = alice.split();
    let mut gone = crate::util::on_line_starting(alice_reader, "error: not online: stuck");
    let text = "m".repeat(1000);
    let batch = format!("stuck, bob: {text}\n").repeat(64);
    let deadline = Deadline::new("the stuck WebSocket reader to be cut off");
    while gone.try_recv().is_err() {
        alice_writer.send_raw(batch.as_bytes()).await;
        for _ in 0..64 {
            bob.expect(&format!("from alice: {text}")).await;
        }
        deadline.check();
    }
    let mut carol = Client::connect(server.addr).await;
    carol.send("carol").await;
    carol.expect_prefix("server: welcome carol ").await;
    carol.send("stuck: hello?").await;
    carol.expect_prefix("error: not online: stuck").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_registered_name_asks_a_websocket_user_for_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_web(crate::accounts::with_accounts(dir.path()));
    crate::accounts::register(&server, "alice", "correct-horse").await;
    let mut web = Ws::connect(&server).await;
    web.send("alice").await;
    web.expect("server: 'alice' is registered: send its password")
        .await;
    web.send("wrong-horse").await;
    web.expect("error: wrong password; send a name to log in")
        .await;
    web.send("alice").await;
    web.expect("server: 'alice' is registered: send its password")
        .await;
    web.send("correct-horse").await;
    web.expect_prefix("server: welcome alice ").await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_per_address_count_websockets_and_tcp_together() {
    let server = start_web(achat::Config {
        max_connections_per_ip: 2,
        ..test_config()
    });
    let _web = Ws::login(&server, "alice").await;
    let _nc = server.login("bob").await;
    let mut third = Ws::connect(&server).await;
    third
        .expect("error: too many connections from your address")
        .await;
    third.expect_close(CloseCode::Again).await;
    let mut nc = server.connect().await;
    nc.expect("error: too many connections from your address")
        .await;
    server.shutdown().await;
}
