//! The test harness: start servers, connect clients, wait for lines.
//!
//! Every wait is bounded ([`WAIT`]): a test fails with a message, it never
//! hangs, and nothing sleeps in place of waiting for an event.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use achat::{Config, ServerHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The bound on every wait for something the server should do.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server on port 0 in this process; shut down when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    /// The web listener's address (see [`start_web`]).
    pub http_addr: Option<SocketAddr>,
}

/// The configuration tests start from: two workers, no limit on the
/// login rate nor per source address (tests open hundreds of connections
/// from 127.0.0.1 and log them in at once), defaults otherwise
/// (registration off: no accounts file is made).
pub fn test_config() -> Config {
    Config {
        workers: 2,
        login_rate: achat::accounts::RatePolicy::UNLIMITED,
        max_connections_per_ip: 0,
        ..Config::default()
    }
}

/// Starts a server with [`test_config`].
pub fn start() -> TestServer {
    start_with(test_config())
}

/// Starts a server with `config` on a free port of 127.0.0.1.
pub fn start_with(config: Config) -> TestServer {
    // Server logs, for a failing test: RUST_LOG=achat=debug cargo test ...
    let _ = env_logger::builder().is_test(true).try_init();
    let listener = achat::server::bind("127.0.0.1:0").expect("bind");
    let handle = achat::spawn(listener, config).expect("spawn server");
    TestServer {
        addr: handle.local_addr(),
        http_addr: None,
        handle: Some(handle),
    }
}

/// Starts a server with `config` on a free port of 127.0.0.1, with its
/// web listener on another.
pub fn start_web(config: Config) -> TestServer {
    let _ = env_logger::builder().is_test(true).try_init();
    let listeners = achat::server::Listeners {
        plain: Some(achat::server::bind("127.0.0.1:0").expect("bind")),
        tls: None,
        http: Some(achat::server::bind("127.0.0.1:0").expect("bind")),
    };
    let handle = achat::spawn(listeners, config).expect("spawn server");
    TestServer {
        addr: handle.local_addr(),
        http_addr: handle.http_addr(),
        handle: Some(handle),
    }
}

impl TestServer {
    /// Shuts the server down gracefully and waits for it (bounded).
    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle.shutdown())
                .await
                .expect("server shutdown timed out")
                .expect("server shutdown failed");
        }
    }

    /// A new connection to `addr`, logged in as `name`.
    pub async fn client_for(addr: SocketAddr, name: &str) -> Client {
        let mut client = Client::connect(addr).await;
        client.send(name).await;
        client
            .expect_prefix(&format!("server: welcome {name} "))
            .await;
        client.name = name.to_owned();
        client
    }

    /// A new connection, not logged in.
    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// A new connection logged in as `name`.
    pub async fn login(&self, name: &str) -> Client {
        TestServer::client_for(self.addr, name).await
    }
}

/// A line-oriented TCP client, like `nc` with a stopwatch.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: ClientWriter,
    /// The name it logged in with, if any (used by [`Client::sync`]).
    pub name: String,
    syncs: u64,
    /// Bytes sent and received so far (what the server's metrics count).
    pub sent: u64,
    pub received: u64,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        Client::from_stream(stream)
    }

    /// A client on a socket the test connected itself (to set socket
    /// options first, say).
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("nodelay");
        let (reader, writer) = stream.into_split();
        Client {
            reader: BufReader::new(reader),
            writer: ClientWriter { writer },
            name: String::new(),
            syncs: 0,
            sent: 0,
            received: 0,
        }
    }

    /// Sends `line` and a `\n`.
    pub async fn send(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send_raw(&bytes).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.send_raw(bytes).await;
        self.sent += bytes.len() as u64;
    }

    /// Like [`Client::send_raw`], but returns the error instead of
    /// panicking (for writes to a server that may have closed on us).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.try_send_raw(bytes).await
    }

    /// The socket itself, for tests that need socket options.
    pub fn into_stream(self) -> TcpStream {
        self.reader
            .into_inner()
            .reunite(self.writer.writer)
            .expect("halves of one stream")
    }

    /// The two halves, for reading and writing from different tasks.
    pub fn split(self) -> (BufReader<OwnedReadHalf>, ClientWriter) {
        (self.reader, self.writer)
    }

    /// The client again, from its halves (see [`Client::split`]).
    pub fn rejoin(reader: BufReader<OwnedReadHalf>, writer: ClientWriter, name: &str) -> Client {
        Client {
            reader,
            writer,
            name: name.to_owned(),
            syncs: 0,
            sent: 0,
            received: 0,
        }
    }

    /// Half-closes: no more input from us; the server may still answer.
    pub async fn shutdown_write(&mut self) {
        self.writer.writer.shutdown().await.expect("shutdown");
    }

    /// The next line (without its `\n`); panics on timeout or end of stream.
    pub async fn line(&mut self) -> String {
        match self.next_line().await {
            Some(line) => line,
            None => panic!("connection closed while a line was expected"),
        }
    }

    /// The next line, or `None` at end of stream (or reset); panics on
    /// timeout.
    pub async fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("no line within the wait bound");
        match read {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.received += n as u64;
                assert!(line.ends_with('\n'), "unterminated line {line:?}");
                line.pop();
                Some(line)
            }
        }
    }

    /// Asserts the next line is `expected`.
    pub async fn expect(&mut self, expected: &str) {
        let line = self.line().await;
        assert_eq!(line, expected);
    }

    /// Asserts the next line starts with `prefix`; returns it.
    pub async fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}..., got {line:?}"
        );
        line
    }

    /// Asserts the server closes the connection next (no more lines), then
    /// closes our side too (the server waits for that before it lets go).
    pub async fn expect_closed(mut self) {
        if let Some(line) = self.next_line().await {
            panic!("expected the connection to close, got {line:?}");
        }
    }

    /// Reads and discards until the server closes (bounded); returns the
    /// number of bytes skipped.
    pub async fn read_to_close(&mut self) -> usize {
        let mut sink = Vec::new();
        let skipped = tokio::time::timeout(WAIT, self.reader.read_to_end(&mut sink))
            .await
            .expect("connection not closed within the wait bound")
            .unwrap_or(0);
        self.received += skipped as u64;
        skipped
    }

    /// Asserts that nothing arrives before a fresh message to itself: the
    /// server handles a connection's lines in order, so anything the server
    /// had queued for us before this point would come first.
    pub async fn sync(&mut self) {
        assert!(!self.name.is_empty(), "sync needs a logged-in client");
        self.syncs += 1;
        let marker = format!("sync-{}", self.syncs);
        let name = self.name.clone();
        self.send(&format!("{name}: {marker}")).await;
        self.expect(&format!("from {name}: {marker}")).await;
    }
}

/// A bound for retry loops over round trips ("log in until the name is
/// free"): each attempt waits for the server's answer, so the loop needs no
/// sleep, only a limit.
pub struct Deadline {
    at: tokio::time::Instant,
    what: String,
}

impl Deadline {
    /// A deadline [`WAIT`] from now, for waiting on `what`.
    pub fn new(what: &str) -> Deadline {
        Deadline {
            at: tokio::time::Instant::now() + WAIT,
            what: what.to_owned(),
        }
    }

    /// When it passes.
    pub fn at(&self) -> tokio::time::Instant {
        self.at
    }

    /// Panics if the deadline has passed.
    pub fn check(&self) {
        assert!(
            tokio::time::Instant::now() < self.at,
            "timed out waiting for: {}",
            self.what
        );
    }
}

/// The writing half of a [`Client`].
pub struct ClientWriter {
    writer: OwnedWriteHalf,
}

impl ClientWriter {
    /// The socket's write half itself.
    pub fn into_inner(self) -> OwnedWriteHalf {
        self.writer
    }

    /// Sends bytes, returning the error if the server has closed on us.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(WAIT, self.writer.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).await.expect("write");
    }
}

/// The real server binary, started on a free port, its standard error
/// collected (see [`Binary::stderr`]).
pub struct Binary {
    child: tokio::process::Child,
    /// The plain listener's address (the TLS one's under `--bind off`).
    pub addr: SocketAddr,
    /// The TLS listener's address, given `--tls-bind`.
    pub tls_addr: Option<SocketAddr>,
    /// The web listener's address, given `--http` (off by default here).
    pub http_addr: Option<SocketAddr>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    logged: std::sync::Arc<tokio::sync::Notify>,
    /// Collects standard error; ends when the server has closed it.
    collector: tokio::task::JoinHandle<()>,
}

impl Binary {
    /// `achat-server --bind 127.0.0.1:0 --max-connections-per-ip 0 <args>`
    /// (either default left out when `args` has the flag).
    pub async fn start(args: &[&str]) -> Binary {
        Binary::start_under(&[], args).await
    }

    /// The same, run under a wrapper command such as `prlimit --nofile=...`.
    pub async fn start_under(wrapper: &[&str], args: &[&str]) -> Binary {
        Binary::start_logging(wrapper, args, "warn").await
    }

    /// The same, logging at `level` (`RUST_LOG`). Unless `args` say
    /// otherwise, registration is off (no accounts file appears in the
    /// working directory) and the login rate is not limited.
    pub async fn start_logging(wrapper: &[&str], args: &[&str], level: &str) -> Binary {
        let mut defaults = Vec::new();
        if !args.contains(&"--accounts") {
            defaults.extend(["--accounts", "off"]);
        }
        if !args.contains(&"--login-burst") {
            defaults.extend(["--login-burst", "1000000"]);
        }
        use std::process::Stdio;
        let server = env!("CARGO_BIN_EXE_achat-server");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(wrapper_args).arg(server);
                c
            }
            None => tokio::process::Command::new(server),
        };
        let has = |flag: &str| args.contains(&flag);
        if !has("--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        if !has("--http") {
            command.args(["--http", "off"]);
        }
        if !has("--max-connections-per-ip") {
            command.args(["--max-connections-per-ip", "0"]);
        }
        let mut child = command
            .args(defaults)
            .args(args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start achat-server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let logged = std::sync::Arc::new(tokio::sync::Notify::new());
        let (collected, notify) = (stderr.clone(), logged.clone());
        let collector = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut all) = collected.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                notify.notify_waiters();
            }
        });
        let mut stdout = BufReader::new(stdout);
        let mut listening = async |prefix: &str| {
            let mut line = String::new();
            tokio::time::timeout(WAIT, stdout.read_line(&mut line))
                .await
                .expect("no 'listening on' line in time")
                .expect("read stdout");
            line.trim()
                .strip_prefix(prefix)
                .map(|rest| rest.trim_end_matches('/'))
                .unwrap_or_else(|| panic!("expected {prefix:?}..., got {line:?}"))
                .parse::<SocketAddr>()
                .expect("an address")
        };
        let plain = if args.windows(2).any(|w| w == ["--bind", "off"]) {
            None
        } else {
            Some(listening("listening on ").await)
        };
        let tls_addr = if has("--tls-bind") {
            Some(listening("listening (TLS) on ").await)
        } else {
            None
        };
        let http_addr = match args.iter().position(|a| *a == "--http") {
            Some(i) if args.get(i + 1) != Some(&"off") => {
                let scheme = if tls_addr.is_some() { "https" } else { "http" };
                Some(listening(&format!("web client on {scheme}://")).await)
            }
            _ => None,
        };
        let addr = plain.or(tls_addr).expect("a listener");
        Binary {
            child,
            addr,
            tls_addr,
            http_addr,
            stderr,
            logged,
            collector,
        }
    }

    /// What the server has logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until the server has logged a line containing
    /// `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let wait = async {
            loop {
                let logged = self.logged.notified();
                if self.stderr().contains(needle) {
                    return;
                }
                logged.await;
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!(
                "the server never logged {needle:?}; it logged:\n{}",
                self.stderr()
            );
        }
    }

    /// A new connection logged in as `name`.
    pub async fn login(&self, name: &str) -> Client {
        TestServer::client_for(self.addr, name).await
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends the server a signal (`TERM`, `INT`, ...).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the server to exit.
    pub async fn exit_status(self) -> std::process::ExitStatus {
        self.exit_status_and_log().await.0
    }

    /// Waits (bounded) for the server to exit; returns its exit status and
    /// everything it logged.
    pub async fn exit_status_and_log(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the server did not exit in time")
            .expect("wait");
        tokio::time::timeout(WAIT, &mut self.collector)
            .await
            .expect("the server's standard error did not close in time")
            .expect("collector");
        (status, self.stderr())
    }
}

/// Reads `reader` on the side and fires the returned channel at the first
/// line starting with `prefix` (for tests that must keep writing while
/// they wait for an error line).
pub fn on_line_starting(
    reader: BufReader<OwnedReadHalf>,
    prefix: &'static str,
) -> tokio::sync::oneshot::Receiver<()> {
    let (seen, fired) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with(prefix) {
                let _ = seen.send(());
                return;
            }
        }
    });
    fired
}
