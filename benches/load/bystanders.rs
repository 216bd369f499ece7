//! Bystanders: two clients chatting with each other at a steady pace while
//! a scenario (slow, flood) stresses the server, to measure what the
//! stress does to everyone else's latency.
//!
//! They run on a thread and runtime of their own, so that the flood the
//! generator drives on its main runtime does not delay their timestamps:
//! their latency is the server's doing, not the generator's queueing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{oneshot, watch};

use crate::lines::LineReader;
use crate::login::{LoginOptions, login_all};
use crate::net::Net;
use crate::state::Shared;
use crate::traffic::{receive, send_paced};

/// The running bystanders.
pub(crate) struct Bystanders {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<u64, String>>,
}

/// What the bystanders did.
pub(crate) struct Chatted {
    pub(crate) sent: u64,
    pub(crate) error: Option<String>,
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
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, ready) = oneshot::channel();
        let (shared, net) = (shared.clone(), net.clone());
        let thread = std::thread::Builder::new()
            .name("bystanders".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("bystanders' runtime: {e}"))?;
                runtime.block_on(chat(
                    shared, net, pair, class, interval, options, stopped, ready_tx,
                ))
            })
            .context("starting the bystanders' thread")?;
        match ready.await {
            Ok(Ok(())) => Ok(Bystanders { stop, thread }),
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
        let joined = tokio::task::spawn_blocking(move || self.thread.join()).await;
        match joined {
            Ok(Ok(Ok(sent))) => Chatted { sent, error: None },
            Ok(Ok(Err(why))) => Chatted {
                sent: 0,
                error: Some(why),
            },
            _ => Chatted {
                sent: 0,
                error: Some("the bystanders' thread panicked".to_string()),
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    shared: Arc<Shared>,
    net: Net,
    pair: [u32; 2],
    class: usize,
    interval: Duration,
    options: LoginOptions,
    stopped: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Result<u64, String> {
    let logins = match login_all(&shared, &net, pair, options).await {
        Ok(logins) => logins,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for client in logins.clients {
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
