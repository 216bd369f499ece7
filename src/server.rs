//! Starting and stopping a server: the accept loop, the placement of
//! sessions on worker threads, and the shutdown sequence.
//!
//! [`run`] takes an already-bound listener and a shutdown future, in the
//! manner of mini-redis, so the binary passes the signals and tests pass a
//! channel, and tests bind port 0. [`spawn`] runs a server on a thread of
//! its own and returns a [`ServerHandle`] to stop it.
//!
//! Threads: the broker runs alone on one arbiter (one thread, one event
//! loop); sessions are spread round-robin over `--workers` arbiters; the
//! accept loop runs on the thread that called [`run`]. A tokio socket stays
//! tied to the runtime that registered it, so an accepted socket is handed
//! to its worker as a `std::net::TcpStream` and registered there, the way
//! actix-server does.
//!
//! Shutdown, in order (each step bounded by `--shutdown-grace` overall):
//! 1. stop accepting;
//! 2. the broker asks every session to drain its input: read and route
//!    what is already waiting in its socket (at most half the grace);
//! 3. the broker tells every session goodbye, behind all the output it
//!    queued for it; each session writes `server: shutting down`, flushes
//!    and closes;
//! 4. once every session is gone (each holds a clone of an mpsc sender;
//!    all dropped means all gone) or the grace is up, the arbiters stop.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{error, info, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::accounts::LoginRate;
use crate::broker::{Broker, OutboxLimits};
use crate::cluster::{Cluster, ClusterStop};
use crate::config::Config;
use crate::messages::{BrokerLink, ConnId, RosterGauge, Shutdown};
use crate::protocol::Reply;
use crate::session::{ConnectionSlot, Session, SessionEnv, SessionLimits};

/// How long to wait before accepting again after an accept error (for
/// example EMFILE: out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most this many refused connections (server full, or shutting down)
/// are being told why at once; past that they are closed without a word.
const MAX_REFUSALS_IN_FLIGHT: u32 = 64;

/// How long telling a refused connection why may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Length of the listen queue asked for (the kernel caps it at
/// `net.core.somaxconn`): room for bursts of connections.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket the way the server wants it.
pub fn bind(addr: &str) -> io::Result<StdTcpListener> {
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

fn bind_one(addr: SocketAddr) -> io::Result<StdTcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Runs a server on `listener` until `shutdown` completes, then shuts it
/// down gracefully and returns.
///
/// Must be called inside a running actix `System` (the binary uses
/// `System::new().block_on(...)`; see [`spawn`] for a server on its own
/// thread).
pub async fn run(
    listener: StdTcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if System::try_current().is_none() {
        return Err(io::Error::other(
            "achat::server::run needs a running actix System",
        ));
    }
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;

    let broker_arbiter = Arbiter::try_new()?;
    let broker_sched = config.broker_sched;
    broker_arbiter.spawn_fn(move || match crate::sched::apply(broker_sched) {
        Ok(()) => info!("broker thread scheduling policy: {broker_sched}"),
        Err(e) => {
            warn!("could not set the broker thread's scheduling policy to {broker_sched}: {e}")
        }
    });
    let limits = OutboxLimits {
        per_peer: config.max_outbox_bytes,
        total: config.max_total_outbox_bytes,
    };
    let cluster = match &config.cluster {
        Some(cluster) => Some(crate::cluster::join(cluster, config.max_line_bytes).await?),
        None => None,
    };
    // After the cluster, whose connection says first whether NATS is there.
    let accounts = crate::accounts::open(&config.accounts, config.cluster.as_ref()).await?;
    let gauge = Arc::new(RosterGauge::default());
    let broker_gauge = gauge.clone();
    let cluster_link = cluster
        .as_ref()
        .map(|(_, addr, node)| Cluster::link(addr, node.clone()));
    let broker = Broker::start_in_arbiter(&broker_arbiter.handle(), move |_| {
        let broker = Broker::new(limits, broker_gauge);
        match cluster_link {
            Some(link) => broker.in_cluster(link),
            None => broker,
        }
    });
    if let Some((_, cluster, _)) = &cluster {
        let attached = cluster
            .send(crate::cluster::Attach(crate::cluster::broker_link(&broker)))
            .await;
        match attached {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::other(format!("cluster: cannot subscribe: {e}"))),
            Err(e) => return Err(io::Error::other(format!("cluster: {e}"))),
        }
    }
    let mut workers = Vec::with_capacity(config.workers);
    for _ in 0..config.workers.max(1) {
        let worker = Arbiter::try_new()?;
        worker.spawn_fn(crate::session::prepare_worker_thread);
        workers.push(worker);
    }
    let session_env = Arc::new(SessionEnv {
        broker: BrokerLink::from(&broker),
        gauge,
        limits: SessionLimits {
            max_line_bytes: config.max_line_bytes,
            max_outbox_bytes: config.max_outbox_bytes,
            login_timeout: config.login_timeout,
            flush_timeout: config.shutdown_grace,
        },
        accounts: accounts.as_ref().map(|(_, addr)| addr.clone().recipient()),
        login_rate: Arc::new(LoginRate::new(config.login_rate)),
    });
    info!(
        "serving on {} with {} workers, at most {} connections",
        listener.local_addr()?,
        workers.len(),
        config.max_connections
    );

    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT as usize));
    let acceptor = Acceptor {
        slots: Arc::new(Semaphore::new(config.max_connections)),
        max_connections: config.max_connections,
        refusals: refusals.clone(),
        alive: mpsc::channel(1),
        session_env,
        next_id: 0,
    };
    let (alive, mut all_gone) = acceptor.accept_until(listener, &workers, shutdown).await;

    // Shutdown. The listener is closed: nothing new comes in.
    let started = Instant::now();
    let grace = config.shutdown_grace;
    let deadline = tokio::time::Instant::from_std(started + grace);
    info!("shutdown: stopped accepting; grace period {grace:?}");
    let goodbye = broker.send(Shutdown {
        drain_deadline: started + grace / 2,
    });
    if tokio::time::timeout_at(deadline, goodbye).await.is_err() {
        warn!("shutdown: the broker did not finish in time");
    }
    drop(alive);
    // `recv` yields `None` once every session has dropped its sender.
    if tokio::time::timeout_at(deadline, all_gone.recv())
        .await
        .is_err()
    {
        warn!("shutdown: grace period over; closing the connections still open");
    }
    // Connections turned away during the shutdown get their line too: the
    // tasks telling them run on this thread, and end with `run`.
    let refused = refusals.acquire_many(MAX_REFUSALS_IN_FLIGHT);
    if tokio::time::timeout_at(deadline, refused).await.is_err() {
        warn!("shutdown: grace period over; closing connections still being turned away");
    }
    let mut arbiters = vec![broker_arbiter];
    arbiters.extend(accounts.map(|(arbiter, _)| arbiter));
    if let Some((arbiter, cluster, _)) = cluster {
        // The names of those who left are freed before the node goes.
        let stopped = cluster.send(ClusterStop {
            deadline: deadline.into_std(),
        });
        if tokio::time::timeout_at(deadline, stopped).await.is_err() {
            warn!("shutdown: the cluster did not finish in time");
        }
        arbiters.push(arbiter);
    }
    for arbiter in arbiters.iter().chain(&workers) {
        arbiter.stop();
    }
    for arbiter in arbiters.into_iter().chain(workers) {
        if arbiter.join().is_err() {
            error!("shutdown: an arbiter thread panicked");
        }
    }
    info!("shutdown: done in {:?}", started.elapsed());
    Ok(())
}

/// The accept loop's state.
struct Acceptor {
    /// One permit per connection allowed (`--max-connections`).
    slots: Arc<Semaphore>,
    max_connections: usize,
    /// Bounds the connections being refused at once.
    refusals: Arc<Semaphore>,
    /// Every session holds a clone of the sender; the server waits for the
    /// receiver to see all of them dropped.
    alive: (mpsc::Sender<()>, mpsc::Receiver<()>),
    session_env: Arc<SessionEnv>,
    next_id: ConnId,
}

impl Acceptor {
    /// Accepts connections until `shutdown` completes; returns the "alive"
    /// channel to wait on.
    async fn accept_until(
        mut self,
        listener: TcpListener,
        workers: &[Arbiter],
        shutdown: impl Future<Output = ()>,
    ) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.place(stream, peer, workers),
                Err(e) => {
                    // Typically EMFILE/ENFILE (out of descriptors) or
                    // ECONNABORTED: never fatal, the connections we have
                    // go on; wait a little for descriptors to free up.
                    warn!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        self.turn_away_queued(listener);
        self.alive
    }

    /// Connections that completed their handshake before the shutdown but
    /// were not accepted yet would be reset when the listener closes; they
    /// are told instead.
    fn turn_away_queued(&self, listener: TcpListener) {
        let Ok(listener) = listener.into_std() else {
            return;
        };
        // Real accept calls, not tokio's cached readiness: whatever is
        // queued now is found.
        while let Ok((stream, peer)) = listener.accept() {
            let registered = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream));
            if let Ok(stream) = registered {
                self.turn_away(stream, peer, Refusal::ShuttingDown);
            }
        }
    }

    /// Starts a session for `stream` on the next worker, or refuses it.
    fn place(&mut self, stream: TcpStream, peer: SocketAddr, workers: &[Arbiter]) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.turn_away(stream, peer, Refusal::Full);
            return;
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                warn!("could not take over the connection from {peer}: {e}");
                return;
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        let slot = ConnectionSlot {
            slot,
            alive: self.alive.0.clone(),
        };
        let env = self.session_env.clone();
        let worker = &workers[(id as usize) % workers.len()];
        let placed = worker.spawn_fn(move || {
            if let Err(e) = Session::start(stream, peer, id, env, slot) {
                warn!("conn {id}: could not start a session: {e}");
            }
        });
        if !placed {
            error!("conn {id}: worker arbiter is gone; connection dropped");
        }
    }

    /// Tells a connection why it is closed, and closes it.
    fn turn_away(&self, stream: TcpStream, peer: SocketAddr, why: Refusal) {
        let Ok(refusal) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        let line = match why {
            Refusal::Full => {
                warn!(
                    "refused {peer}: server full ({} connections)",
                    self.max_connections
                );
                Reply::ServerFull {
                    max_connections: self.max_connections,
                }
            }
            Refusal::ShuttingDown => Reply::ShuttingDown,
        }
        .to_bytes();
        actix::spawn(async move {
            let _refusal = refusal;
            let mut stream = stream;
            // Bounded, so a client that neither reads nor closes holds a
            // refusal slot for a second at most. (Not `try_write`: tokio
            // answers WouldBlock without trying until the reactor has seen
            // the new socket writable.)
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                stream.write_all(&line).await?;
                stream.shutdown().await?;
                // Wait for the client to close: closing with its input
                // unread would reset the connection and could lose the
                // line above.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, io::Error>(())
            })
            .await;
        });
    }
}

/// Why a connection is turned away.
enum Refusal {
    /// Over `--max-connections`.
    Full,
    /// Arrived as the server was stopping.
    ShuttingDown,
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this value is
/// made. The binary makes it before it prints `listening on ADDR`, so a
/// script or supervisor that signals as soon as it reads that line gets
/// the clean shutdown, not the default action (death, exit status 143).
pub struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must be called inside a tokio runtime with
    /// signals enabled (tokio registers a handler when the stream is made,
    /// not when it is first polled).
    pub fn install() -> io::Result<Self> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes on the first of the two signals to arrive.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => info!("SIGINT received"),
            _ = self.terminate.recv() => info!("SIGTERM received"),
        }
    }
}

/// A server running on a thread of its own (see [`spawn`]). Dropping the
/// handle starts the server's shutdown without waiting for it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<io::Result<()>>>,
}

/// Starts a server on `listener` on a new thread with an actix `System` of
/// its own; for tests and for embedding.
pub fn spawn(listener: StdTcpListener, config: Config) -> io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let (done_tx, done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("achat-server".into())
        .spawn(move || {
            let system = System::with_tokio_rt(move || runtime);
            let result = system.block_on(run(listener, config, async {
                // A dropped sender counts as "stop" too.
                let _ = stopped.await;
            }));
            let _ = done_tx.send(result);
        })?;
    Ok(ServerHandle {
        local_addr,
        stop: Some(stop),
        done: Some(done),
    })
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts the server down gracefully and waits until it has finished.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
