//! Bystanders: two clients chatting with each other at a steady pace while
//! a scenario (slow, flood, the hostile ones) stresses the server, to
//! measure what the stress does to everyone else's latency. They log in on
//! their own, or are handed two clients logged in already (`lists` places
//! pairs on given server workers by the order of connection).
//!
//! They run on a thread and runtime of their own, so that the flood the
//! generator drives on its main runtime does not delay their timestamps:
//! their latency is the server's doing, not the generator's queueing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{oneshot, watch};

use crate::lines::LineReader;
use crate::login::{Client, LoginOptions, login_all};
use crate::net::Net;
use crate::state::Shared;
use crate::traffic::{receive, send_paced};

/// The running bystanders.
pub(crate) struct Bystanders {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<u64, String>>,
    class: usize,
}

/// What the bystanders did.
pub(crate) struct Chatted {
    pub(crate) sent: u64,
    pub(crate) error: Option<String>,
    /// The class of their latencies.
    pub(crate) class: usize,
}

/// Where the bystanders come from: logged in on their own thread, or
/// logged in already by the scenario (which chose their order of
/// connection) and moved over.
enum Pair {
    LogIn {
        net: Net,
        pair: [u32; 2],
        options: LoginOptions,
    },
    Adopt(Vec<(u32, std::net::TcpStream, Vec<u8>)>),
}

impl Bystanders {
    /// Logs clients `pair` in (on their own thread) and has each send one
    /// message to the other every `interval`, latencies into `class`.
    /// Returns once they are logged in and chatting.
    pub(crate) async fn start(
        shared: &Arc<Shared>,
        net: &Net,
        pair: [u32; 2],
        class: usize,
        interval: Duration,
        options: LoginOptions,
    ) -> anyhow::Result<Self> {
        let net = net.clone();
        Self::spawn(shared, Pair::LogIn { net, pair, options }, class, interval).await
    }

    /// As [`Bystanders::start`], with two clients logged in already (by a
    /// scenario that needs them connected in a given order).
    pub(crate) async fn adopt(
        shared: &Arc<Shared>,
        pair: [Client; 2],
        class: usize,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let mut moved = Vec::with_capacity(2);
        for client in pair {
            let stream = client.stream.into_std().context("detaching a socket")?;
            moved.push((client.index, stream, client.leftover));
        }
        Self::spawn(shared, Pair::Adopt(moved), class, interval).await
    }

    async fn spawn(
        shared: &Arc<Shared>,
        pair: Pair,
        class: usize,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready) = oneshot::channel();
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bystanders".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("bystanders' runtime: {e}"))?;
                runtime.block_on(chat(shared, pair, class, interval, stopped, ready_tx))
            })
            .context("starting the bystanders' thread")?;
        match ready.await {
            Ok(Ok(())) => Ok(Bystanders {
                stop,
                thread,
                class,
            }),
            Ok(Err(why)) => anyhow::bail!("bystanders: {why}"),
            Err(_) => {
                let why = match thread.join() {
                    Ok(Err(why)) => why,
                    _ => "their thread ended".to_string(),
                };
                anyhow::bail!("bystanders: {why}")
            }
        }
    }

    /// Stops them; they wait (a bounded time) for their last messages.
    pub(crate) async fn stop(self) -> Chatted {
        let _ = self.stop.send(true);
        let class = self.class;
        let joined = tokio::task::spawn_blocking(move || self.thread.join()).await;
        let (sent, error) = match joined {
            Ok(Ok(Ok(sent))) => (sent, None),
            Ok(Ok(Err(why))) => (0, Some(why)),
            _ => (0, Some("the bystanders' thread panicked".to_string())),
        };
        Chatted { sent, error, class }
    }
}

/// The pair's clients on this thread's runtime.
async fn clients(shared: &Arc<Shared>, pair: Pair) -> Result<Vec<Client>, String> {
    match pair {
        Pair::LogIn { net, pair, options } => login_all(shared, &net, pair, options)
            .await
            .map(|logins| logins.clients)
            .map_err(|e| e.to_string()),
        Pair::Adopt(moved) => moved
            .into_iter()
            .map(|(index, stream, leftover)| {
                let stream = tokio::net::TcpStream::from_std(stream)
                    .map_err(|e| format!("cannot register a socket: {e}"))?;
                Ok(Client {
                    index,
                    stream,
                    leftover,
                })
            })
            .collect(),
    }
}

async fn chat(
    shared: Arc<Shared>,
    pair: Pair,
    class: usize,
    interval: Duration,
    stopped: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Result<u64, String> {
    let clients = match clients(&shared, pair).await {
        Ok(clients) if clients.len() == 2 => clients,
        Ok(_) => {
            let why = "not two clients".to_string();
            let _ = ready.send(Err(why.clone()));
            return Err(why);
        }
        Err(why) => {
            let _ = ready.send(Err(why.clone()));
            return Err(why);
        }
    };
    let pair = [clients[0].index, clients[1].index];
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for client in clients {
        let peer = if client.index == pair[0] {
            pair[1]
        } else {
            pair[0]
        };
        let prefix = format!("{}: ", shared.names[peer as usize]).into_bytes();
        let (read, write) = client.stream.into_split();
        let reader = LineReader::new(64 * 1024, &client.leftover);
        readers.push(tokio::spawn(receive(
            shared.clone(),
            client.index,
            class,
            read,
            reader,
            false,
        )));
        senders.push(tokio::spawn(send_paced(
            shared.clone(),
            client.index,
            prefix,
            interval,
            stopped.clone(),
            write,
        )));
    }
    let _ = ready.send(Ok(()));
    let mut sent = 0;
    let mut writes = Vec::new();
    let mut error = None;
    for s in senders {
        match s.await {
            Ok(Ok((n, write))) => {
                sent += n;
                writes.push(write);
            }
            Ok(Err(e)) => error = Some(format!("write failed: {e}")),
            Err(e) => error = Some(format!("sender task: {e}")),
        }
    }
    // The last messages are under way: wait for them (bounded).
    let until = Instant::now() + Duration::from_secs(5);
    while shared.delivered(class) < sent && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for r in &readers {
        r.abort();
    }
    drop(writes);
    match error {
        Some(why) => Err(why),
        None => Ok(sent),
    }
}
