//! TLS: the listener beside the plain one, `achat-client --tls`, the
//! handshake's bound, and a certificate that cannot be used.
//!
//! Certificates are made here, per test, with rcgen: a CA and a server
//! certificate it signs for `localhost` and 127.0.0.1. No key file is
//! committed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use achat::server::Listeners;
use achat::{Config, ServerHandle};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::util::{Binary, Client, TestServer, WAIT, test_config};

/// A CA and a server certificate it signed, as PEM files in a directory
/// that goes with the value.
pub(crate) struct Certs {
    dir: tempfile::TempDir,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

impl Certs {
    /// A fresh CA, and a certificate from it for `localhost` and 127.0.0.1.
    pub(crate) fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Certs {
            dir,
            ca_der: ca.der().clone(),
        }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.path("cert.pem")
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.path("key.pem")
    }

    /// `--tls-bind 127.0.0.1:0 --tls-cert ... --tls-key ...`.
    pub(crate) fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-bind".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            str(&self.cert()),
            "--tls-key".into(),
            str(&self.key()),
        ]
    }
}

fn str(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// A server in this process with a plain and a TLS listener.
pub(crate) struct TlsServer {
    handle: Option<ServerHandle>,
    pub(crate) plain: SocketAddr,
    pub(crate) tls: SocketAddr,
    pub(crate) certs: Certs,
}

impl TlsServer {
    pub(crate) fn start(config: Config) -> TlsServer {
        let _ = env_logger::builder().is_test(true).try_init();
        let certs = Certs::new();
        let acceptor = achat::tls::load_acceptor(&certs.cert(), &certs.key()).unwrap();
        let listeners = Listeners {
            http: None,
            plain: Some(achat::server::bind("127.0.0.1:0").unwrap()),
            tls: Some((achat::server::bind("127.0.0.1:0").unwrap(), acceptor)),
        };
        let handle = achat::spawn(listeners, config).unwrap();
        TlsServer {
            plain: handle.local_addr(),
            tls: handle.tls_addr().unwrap(),
            handle: Some(handle),
            certs,
        }
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle.shutdown())
                .await
                .expect("server shutdown timed out")
                .expect("server shutdown failed");
        }
    }
}

/// A line-oriented TLS client, trusting `ca` only.
pub(crate) struct TlsClient {
    stream: BufReader<TlsStream<TcpStream>>,
}

impl TlsClient {
    pub(crate) async fn connect(addr: SocketAddr, certs: &Certs) -> std::io::Result<TlsClient> {
        TlsClient::connect_with(TcpStream::connect(addr).await?, certs).await
    }

    /// A TLS client on a socket the test connected itself.
    pub(crate) async fn connect_with(tcp: TcpStream, certs: &Certs) -> std::io::Result<TlsClient> {
        Ok(TlsClient {
            stream: BufReader::new(tls_stream(tcp, certs).await?),
        })
    }

    pub(crate) async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// The next line, or `None` at the end of the stream.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.stream.read_line(&mut line))
            .await
            .expect("no line within the wait bound");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
        }
    }

    pub(crate) async fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.next_line().await.expect("a line");
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}..., got {line:?}"
        );
        line
    }
}

/// A TLS connection over `tcp` to `localhost`, trusting `certs`' CA only.
pub(crate) async fn tls_stream(
    tcp: TcpStream,
    certs: &Certs,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(certs.ca_der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(achat::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connect = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    tokio::time::timeout(WAIT, connect)
        .await
        .expect("handshake timed out")
}

const CLIENT: &str = env!("CARGO_BIN_EXE_achat-client");

/// Runs `achat-client <args>` in pipe mode with `input`; its exit code,
/// standard output and standard error.
async fn run_client(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(CLIENT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the client did not exit in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_tls_client_chats_with_a_plain_user() {
    let server = TlsServer::start(test_config());
    let mut bob = TestServer::client_for(server.plain, "bob").await;
    let ca = str(&server.certs.ca());
    let addr = server.tls.to_string();
    let (code, out, err) = run_client(
        &["--tls", "--ca", &ca, &addr],
        "alice\nbob: hello over TLS\n",
    )
    .await;
    assert_eq!(code, 0, "stdout {out:?}, stderr {err:?}");
    assert!(out.starts_with("server: welcome alice "), "{out:?}");
    bob.expect("from alice: hello over TLS").await;

    // And the other way, to a TLS user that stays.
    let mut carol = TlsClient::connect(server.tls, &server.certs).await.unwrap();
    carol.send("carol").await;
    carol.expect_prefix("server: welcome carol ").await;
    bob.send("carol: hi from plain TCP").await;
    carol.expect_prefix("from bob: hi from plain TCP").await;
    carol.send("/quit").await;
    carol.expect_prefix("server: bye").await;
    assert_eq!(carol.next_line().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn the_client_refuses_a_certificate_it_does_not_trust() {
    let server = TlsServer::start(test_config());
    let addr = server.tls.to_string();
    let other_ca = Certs::new();
    let untrusted = str(&other_ca.ca());
    let (code, _, err) = run_client(&["--tls", "--ca", &untrusted, &addr], "alice\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TLS handshake with") && err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let ca = str(&server.certs.ca());
    let (code, _, err) = run_client(
        &[
            "--tls",
            "--ca",
            &ca,
            "--server-name",
            "chat.example.org",
            &addr,
        ],
        "alice\n",
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not valid for name \"chat.example.org\""),
        "{err}"
    );

    // Without --ca the system's roots do not know the test's CA: the
    // message says what to do (whether the machine has roots or none).
    let (code, _, err) = run_client(&["--tls", &addr], "alice\n").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--ca FILE"), "{err}");

    // A CA file that is not one is a usage error, said in one line.
    let (code, _, err) = run_client(&["--tls", "--ca", &str(&server.certs.key()), &addr], "").await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_within_the_login_timeout() {
    let login_timeout = Duration::from_millis(500);
    let server = TlsServer::start(Config {
        login_timeout,
        max_connections: 2,
        ..test_config()
    });
    let started = Instant::now();
    // One sends nothing at all, one the start of a ClientHello's record.
    let mut silent = TcpStream::connect(server.tls).await.unwrap();
    let mut partial = TcpStream::connect(server.tls).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    for stream in [&mut silent, &mut partial] {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut sink))
            .await
            .expect("the stalled handshake was not closed");
        // Closed (or reset), with nothing sent: no TLS session, no line.
        assert!(read.map_or(true, |n| n == 0), "{sink:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= login_timeout - Duration::from_millis(50),
        "{took:?}"
    );
    assert!(took < login_timeout + Duration::from_secs(5), "{took:?}");
    // Their slots under --max-connections were given back.
    let deadline = crate::util::Deadline::new("a slot to free up after the handshakes");
    loop {
        let mut client = Client::connect(server.plain).await;
        client.send("after").await;
        let answer = client.line().await;
        if answer.starts_with("server: welcome after ") {
            break;
        }
        assert!(answer.starts_with("error: server full"), "{answer}");
        deadline.check();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_that_does_not_log_in_is_told_over_tls() {
    let server = TlsServer::start(Config {
        login_timeout: Duration::from_millis(300),
        ..test_config()
    });
    let mut idle = TlsClient::connect(server.tls, &server.certs).await.unwrap();
    idle.expect_prefix("error: no login within 300ms").await;
    assert_eq!(idle.next_line().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn bind_off_serves_tls_only() {
    let certs = Certs::new();
    let mut args = vec!["--bind".to_owned(), "off".to_owned()];
    args.extend(certs.server_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Binary::start(&args).await;
    let tls = server.tls_addr.expect("a TLS address");
    assert_eq!(server.addr, tls);
    let mut alice = TlsClient::connect(tls, &certs).await.unwrap();
    alice.send("alice").await;
    alice.expect_prefix("server: welcome alice ").await;
    server.signal("TERM");
    let (status, log) = server.exit_status_and_log().await;
    assert!(status.success(), "{log}");
}

/// Runs `achat-server <args>`, which should refuse to start; its exit code
/// and standard error.
async fn refused_start(args: &[&str]) -> (i32, String) {
    // The certificate and the flags are checked before anything is bound.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_achat-server"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("the server did not exit")
        .unwrap();
    assert!(out.stdout.is_empty(), "it listened: {:?}", out.stdout);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_the_server() {
    let certs = Certs::new();
    let other = Certs::new();
    std::fs::write(certs.path("junk.pem"), "not a certificate\n").unwrap();
    let (cert, key) = (str(&certs.cert()), str(&certs.key()));
    let missing = str(&certs.path("missing.pem"));
    let junk = str(&certs.path("junk.pem"));
    let other_key = str(&other.key());
    let tls = |cert: &str, key: &str| {
        vec![
            "--tls-bind".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--tls-cert".to_owned(),
            cert.to_owned(),
            "--tls-key".to_owned(),
            key.to_owned(),
        ]
    };
    for (args, expected) in [
        (
            tls(&missing, &key),
            format!("certificate file {missing}: No such file"),
        ),
        (
            tls(&junk, &key),
            format!("certificate file {junk}: no PEM 'CERTIFICATE'"),
        ),
        (
            tls(&cert, &junk),
            format!("key file {junk}: no PEM 'PRIVATE KEY'"),
        ),
        (
            tls(&cert, &other_key),
            format!("the key in {other_key} does not match"),
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = refused_start(&args).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, err) = refused_start(&["--tls-bind", "127.0.0.1:0", "--tls-cert", &cert]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-key is missing"), "{err}");
    let (code, err) = refused_start(&["--bind", "off"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--bind off leaves nothing to listen on"),
        "{err}"
    );
}

/// A plain client on the TLS port gets nothing it could mistake for chat.
#[tokio::test]
async fn plain_text_on_the_tls_port_is_not_served() {
    let server = TlsServer::start(Config {
        login_timeout: Duration::from_secs(5),
        ..test_config()
    });
    let mut plain = Client::connect(server.tls).await;
    plain.send("alice").await;
    let mut rest = Vec::new();
    let stream = plain.into_stream();
    let mut stream = stream;
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("not closed");
    assert!(
        !String::from_utf8_lossy(&rest).contains("welcome"),
        "{rest:?}"
    );
    server.shutdown().await;
}

/// Over a limit, a TLS connection is closed without a word (the line would
/// take a handshake); its handshake fails.
#[tokio::test]
async fn a_tls_connection_past_the_limit_per_address_is_closed() {
    let server = TlsServer::start(Config {
        max_connections_per_ip: 1,
        ..test_config()
    });
    let mut alice = TlsClient::connect(server.tls, &server.certs).await.unwrap();
    alice.send("alice").await;
    alice.expect_prefix("server: welcome alice ").await;
    assert!(TlsClient::connect(server.tls, &server.certs).await.is_err());
    // The plain listener counts the same connections.
    let mut plain = Client::connect(server.plain).await;
    plain
        .expect("error: too many connections from your address")
        .await;
    server.shutdown().await;
}

/// At shutdown a TLS user is told goodbye over TLS, then closed. (Whether
/// its input is still unread when the drain starts is up to timing:
/// `transport`'s unit tests check the TLS drain itself.)
#[tokio::test]
async fn a_tls_user_is_told_goodbye_over_tls() {
    let server = TlsServer::start(test_config());
    let mut alice = TlsClient::connect(server.tls, &server.certs).await.unwrap();
    alice.send("alice").await;
    alice.expect_prefix("server: welcome alice ").await;
    let mut bob = TestServer::client_for(server.plain, "bob").await;
    bob.send("alice: one").await;
    alice.expect_prefix("from bob: one").await;
    alice.send("bob: two").await;
    bob.expect("from alice: two").await;
    let alice_reads = async {
        alice.expect_prefix("server: shutting down").await;
        assert_eq!(alice.next_line().await, None);
    };
    let bob_reads = async {
        bob.expect("server: shutting down").await;
        bob.expect_closed().await;
    };
    tokio::join!(server.shutdown(), alice_reads, bob_reads);
}

/// Output to a TLS reader that fills its socket is all written, to the
/// last line: a TLS write can return having only buffered its record in
/// rustls, and the session flushes that when its outbox is empty.
#[tokio::test]
async fn a_burst_to_a_tls_reader_arrives_whole() {
    let server = TlsServer::start(test_config());
    // A small receive buffer: the burst fills the socket.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let tcp = socket.connect(server.tls).await.unwrap();
    let mut alice = TlsClient::connect_with(tcp, &server.certs).await.unwrap();
    alice.send("alice").await;
    alice.expect_prefix("server: welcome alice ").await;
    let mut bob = TestServer::client_for(server.plain, "bob").await;
    // 300 KB: more than the sockets hold, less than half the outbox cap
    // (past half, a reader that reads nothing for 500 ms is cut off).
    let text = "x".repeat(1000);
    let n = 300;
    let burst: String = (0..n).map(|i| format!("alice: {i} {text}\n")).collect();
    bob.send_raw(burst.as_bytes()).await;
    // Everything is in alice's outbox or on its way before she reads.
    bob.sync().await;
    for i in 0..n {
        alice.expect_prefix(&format!("from bob: {i} x")).await;
    }
    server.shutdown().await;
}

/// The time a handshake takes counts against the login timeout: a client
/// that stalls 1.5 s before its ClientHello has what is left of 2 s.
#[tokio::test]
async fn the_handshake_uses_up_the_login_timeout() {
    let login_timeout = Duration::from_secs(2);
    let server = TlsServer::start(Config {
        login_timeout,
        ..test_config()
    });
    let started = Instant::now();
    let tcp = TcpStream::connect(server.tls).await.unwrap();
    // The stall itself, not a wait for the server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut slow = TlsClient::connect_with(tcp, &server.certs).await.unwrap();
    slow.expect_prefix("error: no login within 2s").await;
    let took = started.elapsed();
    // With a fresh 2 s after the handshake it would be 3.5 s.
    assert!(took < Duration::from_millis(3000), "{took:?}");
    assert!(took >= login_timeout, "{took:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_web_listener_serves_https_and_wss_with_the_same_certificate() {
    let certs = Certs::new();
    let mut args = certs.server_args();
    args.extend(["--http".into(), "127.0.0.1:0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Binary::start(&args).await;
    let https = server.http_addr.expect("the web listener");
    // The page, over HTTPS.
    let mut page = tls_stream(TcpStream::connect(https).await.unwrap(), &certs)
        .await
        .unwrap();
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, page.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .ok();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("<!doctype html>"), "{response}");
    // Chat over wss://, with a plain TCP user.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tls = tls_stream(TcpStream::connect(https).await.unwrap(), &certs)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", https.port());
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("a handshake in time")
        .unwrap();
    ws.send(Message::text("alice")).await.unwrap();
    let mut nc = server.login("bob").await;
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame")
        {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => {}
            other => panic!("closed: {other:?}"),
        }
    };
    assert!(next(&mut ws).await.starts_with("server: welcome alice "));
    ws.send(Message::text("bob: over wss")).await.unwrap();
    nc.expect("from alice: over wss").await;
    server.signal("TERM");
    assert_eq!(next(&mut ws).await, "server: shutting down");
}
