//! Starting and stopping a server: its listeners, its threads, and the
//! shutdown sequence. The accept loop itself, with the placement of
//! sessions on worker threads and the refusals, is `server/accept.rs`.
//!
//! [`run`] takes already-bound [`Listeners`] (a plain one, a TLS one, or
//! both; a plain `TcpListener` converts into them) and a shutdown future,
//! in the manner of mini-redis, so the binary passes the signals and tests
//! pass a channel, and tests bind port 0. [`spawn`] runs a server on a thread of
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

mod accept;
mod gate;

pub use gate::{Gate, Refusal};

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use log::{error, info, warn};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::accounts::LoginRate;
use crate::broker::{Broker, OutboxLimits};
use crate::cluster::{Cluster, ClusterStop};
use crate::config::Config;
use crate::messages::{BrokerLink, RosterGauge, Shutdown};
use crate::session::{SessionEnv, SessionLimits};
use accept::{Acceptor, Listening, MAX_REFUSALS_IN_FLIGHT};

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

/// The bound listeners a server takes connections from: plain TCP, TLS,
/// or both. A plain listener alone converts into one (`From`).
pub struct Listeners {
    /// Plain TCP (`--bind`), unless `--bind off`.
    pub plain: Option<StdTcpListener>,
    /// TLS (`--tls-bind`), with the acceptor holding the certificate
    /// ([`crate::tls::load_acceptor`]).
    pub tls: Option<(StdTcpListener, TlsAcceptor)>,
    /// The web listener (`--http`): the web client, `/ws`, `/healthz`,
    /// `/metrics`;
    /// HTTPS with the TLS listener's certificate when there is one.
    pub http: Option<StdTcpListener>,
}

impl From<StdTcpListener> for Listeners {
    fn from(plain: StdTcpListener) -> Self {
        Listeners {
            plain: Some(plain),
            tls: None,
            http: None,
        }
    }
}

impl Listeners {
    /// The plain listener's address and the TLS listener's.
    pub fn local_addrs(&self) -> io::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let plain = self.plain.as_ref().map(StdTcpListener::local_addr);
        let tls = self.tls.as_ref().map(|(l, _)| l.local_addr());
        Ok((plain.transpose()?, tls.transpose()?))
    }

    /// The web listener's address.
    pub fn http_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.http
            .as_ref()
            .map(StdTcpListener::local_addr)
            .transpose()
    }

    /// Registers the chat listeners with the current runtime (the web
    /// listener goes to actix-web).
    fn register(self) -> io::Result<Listening> {
        let register = |listener: StdTcpListener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        };
        Ok(Listening {
            plain: self.plain.map(register).transpose()?,
            tls: match self.tls {
                Some((listener, acceptor)) => Some((register(listener)?, acceptor)),
                None => None,
            },
        })
    }
}

/// Runs a server on `listeners` (one plain listener will do) until
/// `shutdown` completes, then shuts it down gracefully and returns.
///
/// Must be called inside a running actix `System` (the binary uses
/// `System::new().block_on(...)`; see [`spawn`] for a server on its own
/// thread).
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if System::try_current().is_none() {
        return Err(io::Error::other(
            "achat::server::run needs a running actix System",
        ));
    }
    let mut listeners: Listeners = listeners.into();
    let (plain_addr, tls_addr) = listeners.local_addrs()?;
    let http = listeners.http.take();
    if plain_addr.is_none() && tls_addr.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener: neither plain TCP nor TLS",
        ));
    }
    let listening = listeners.register()?;

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
    let metrics = crate::metrics::Metrics::new();
    let broker_metrics = metrics.clone();
    let cluster_link = cluster
        .as_ref()
        .map(|(_, addr, node)| Cluster::link(addr, node.clone()));
    let broker = Broker::start_in_arbiter(&broker_arbiter.handle(), move |_| {
        let broker = Broker::new(limits, broker_gauge).counting_into(broker_metrics);
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
        accounts: accounts.as_ref().map(|(_, link)| link.clone()),
        login_rate: Arc::new(LoginRate::new(config.login_rate)),
        metrics,
    });
    let on = [
        plain_addr.map(|a| a.to_string()),
        tls_addr.map(|a| format!("{a} (TLS)")),
    ];
    info!(
        "serving on {} with {} workers, at most {} connections ({} per address)",
        on.into_iter().flatten().collect::<Vec<_>>().join(" and "),
        workers.len(),
        config.max_connections,
        match config.max_connections_per_ip {
            0 => "unlimited".to_owned(),
            n => n.to_string(),
        }
    );

    let (gate, mut all_gone) = Gate::new(
        config.max_connections,
        config.max_connections_per_ip,
        session_env,
    );
    let web = match http {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let tls = listening.tls.as_ref().map(|(_, acceptor)| acceptor.clone());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let state = crate::web::WebState {
                gate: gate.clone(),
                origins: crate::web::Origins::new(config.allowed_origins.clone()),
                secure: tls.is_some(),
            };
            let server =
                crate::web::start(listener, tls, state, workers.len(), config.max_connections)?;
            info!("web client on {scheme}://{addr}/");
            let handle = server.handle();
            actix::spawn(async move {
                if let Err(e) = server.await {
                    error!("web listener: {e}");
                }
            });
            Some(handle)
        }
        None => None,
    };
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT as usize));
    let acceptor = Acceptor {
        gate: gate.clone(),
        refusals: refusals.clone(),
    };
    acceptor.accept_until(listening, &workers, shutdown).await;

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
    if let Some(web) = web {
        // Its WebSocket sessions are gone (they are sessions); what is
        // left is plain HTTP, closed now.
        web.stop(false).await;
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
    tls_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<io::Result<()>>>,
}

/// Starts a server on `listeners` (one plain listener will do) on a new
/// thread with an actix `System` of its own; for tests and for embedding.
pub fn spawn(listeners: impl Into<Listeners>, config: Config) -> io::Result<ServerHandle> {
    let listener: Listeners = listeners.into();
    let (plain_addr, tls_addr) = listener.local_addrs()?;
    let http_addr = listener.http_addr()?;
    let Some(local_addr) = plain_addr.or(tls_addr) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener: neither plain TCP nor TLS",
        ));
    };
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
        tls_addr,
        http_addr,
        stop: Some(stop),
        done: Some(done),
    })
}

impl ServerHandle {
    /// The address the server listens on: the plain listener's, or
    /// without one the TLS listener's.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the TLS listener, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address of the web listener, if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
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
