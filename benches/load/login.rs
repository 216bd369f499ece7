//! The login barrier, used by every scenario: clients connect, send their
//! names, and the barrier returns once every one of them is registered.
//!
//! A server that speaks only the tutorial protocol never says when a login
//! completed, so the barrier does not wait for `server: welcome`. Each
//! client sends, right behind its name (same write), a probe addressed to
//! itself, `<name>: login-probe`, and is logged in when
//! `from <name>: login-probe` comes back. Both servers relay a message to
//! oneself, and both handle a connection's lines in order, so the probe can
//! only come back once the name is registered. achat's `server: welcome`
//! is noted on the way (it says the server speaks `server:` lines, which
//! churn uses for `/who`), and an `error:` line fails the login at once
//! (name taken, invalid, server full).
//!
//! At most `concurrency` logins are in progress at a time, so thousands
//! of clients do not overflow the server's accept backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::lines::{Line, LineReader, classify};
use crate::net::Net;
use crate::report::Progress;
use crate::state::{Shared, duration_ns, new_histogram};

/// The text of the login probe.
const PROBE: &[u8] = b"login-probe";

/// A logged-in client.
pub(crate) struct Client {
    /// Index into [`Shared::names`].
    pub(crate) index: u32,
    pub(crate) stream: TcpStream,
    /// Bytes read past the probe's answer (normally none).
    pub(crate) leftover: Vec<u8>,
}

/// How the barrier went.
pub(crate) struct Logins {
    pub(crate) clients: Vec<Client>,
    pub(crate) elapsed: Duration,
    /// How many got `server: welcome`: 0 means a tutorial-only server.
    pub(crate) welcomed: usize,
    /// Connect-to-probe-back time of each login.
    pub(crate) latency: Histogram<u64>,
    /// Clients not logged in, and why (the first few).
    pub(crate) failed: usize,
    pub(crate) failures: Vec<String>,
}

impl Logins {
    /// Logins per second.
    pub(crate) fn rate(&self) -> f64 {
        self.clients.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Options of a barrier.
#[derive(Clone, Copy)]
pub(crate) struct LoginOptions {
    pub(crate) concurrency: usize,
    pub(crate) timeout: Duration,
    pub(crate) recv_buffer: Option<u32>,
}

/// Logs in clients `indices` (names from `shared`), at most
/// `options.concurrency` at a time; fails if any is refused or not logged
/// in within `options.timeout`.
pub(crate) async fn login_all(
    shared: &Arc<Shared>,
    net: &Net,
    indices: impl IntoIterator<Item = u32>,
    options: LoginOptions,
) -> anyhow::Result<Logins> {
    let logins = login_some(shared, net, indices, options).await;
    if logins.failed > 0 {
        bail!(
            "login barrier: {} of {} clients not logged in: {}",
            logins.failed,
            logins.failed + logins.clients.len(),
            logins.failures.join("; ")
        );
    }
    Ok(logins)
}

/// As [`login_all`], but returns the clients that made it and counts the
/// others.
pub(crate) async fn login_some(
    shared: &Arc<Shared>,
    net: &Net,
    indices: impl IntoIterator<Item = u32>,
    options: LoginOptions,
) -> Logins {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for index in indices {
        let (shared, net, permits) = (shared.clone(), net.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let attempt = login_one(&shared, &net, index, options.recv_buffer);
            match tokio::time::timeout_at(deadline.into(), attempt).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "{}: not logged in within {:?}",
                    shared.names[index as usize], options.timeout
                )),
            }
        });
    }
    let mut clients = Vec::with_capacity(tasks.len());
    let mut latency = new_histogram();
    let mut welcomed = 0;
    let mut failures = Vec::new();
    let mut failed = 0usize;
    let total = tasks.len();
    let mut progress = Progress::new("login");
    while let Some(joined) = tasks.join_next().await {
        progress.show(|| format!("{}/{total} logged in, {failed} failed", clients.len()));
        match joined {
            Ok(Ok((client, took, welcome))) => {
                latency.saturating_record(duration_ns(took).max(1));
                welcomed += usize::from(welcome);
                clients.push(client);
            }
            Ok(Err(why)) => {
                failed += 1;
                if failures.len() < 5 {
                    failures.push(why);
                }
            }
            Err(e) => {
                failed += 1;
                failures.push(format!("login task: {e}"));
            }
        }
    }
    progress.finish();
    clients.sort_by_key(|c| c.index);
    Logins {
        clients,
        elapsed: started.elapsed(),
        welcomed,
        latency,
        failed,
        failures,
    }
}

/// Connects and logs in one client; returns it, the time it took and
/// whether the server welcomed it.
pub(crate) async fn login_one(
    shared: &Shared,
    net: &Net,
    index: u32,
    recv_buffer: Option<u32>,
) -> Result<(Client, Duration, bool), String> {
    let name = &shared.names[index as usize];
    let began = Instant::now();
    let mut stream = net
        .connect(index as usize, recv_buffer)
        .await
        .map_err(|e| {
            format!(
                "{name}: cannot connect to {}: {e}",
                net.addr(index as usize)
            )
        })?;
    let mut hello = Vec::with_capacity(2 * name.len() + 16);
    hello.extend_from_slice(name.as_bytes());
    hello.push(b'\n');
    hello.extend_from_slice(name.as_bytes());
    hello.extend_from_slice(b": ");
    hello.extend_from_slice(PROBE);
    hello.push(b'\n');
    stream
        .write_all(&hello)
        .await
        .map_err(|e| format!("{name}: cannot send the login: {e}"))?;
    let mut reader = LineReader::new(1024, &[]);
    let mut welcome = false;
    loop {
        while let Some(line) = reader.next_line() {
            match classify(line) {
                Line::From { name: from, text } if from == name.as_bytes() && text == PROBE => {
                    let leftover = reader.leftover().to_vec();
                    let client = Client {
                        index,
                        stream,
                        leftover,
                    };
                    return Ok((client, began.elapsed(), welcome));
                }
                Line::Server(text) if text.starts_with(b"welcome ") => welcome = true,
                Line::Error(text) => {
                    return Err(format!(
                        "{name}: the server refused the login: error: {}",
                        String::from_utf8_lossy(text)
                    ));
                }
                _ => {}
            }
        }
        match reader.fill(&mut stream).await {
            Ok(0) => {
                return Err(format!(
                    "{name}: the server closed the connection during login"
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{name}: connection lost during login: {e}")),
        }
    }
}
