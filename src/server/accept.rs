//! The accept loop: taking connections from the listeners (plain and
//! TLS), counting them against `--max-connections` and
//! `--max-connections-per-ip`, placing each on a worker, and turning away
//! those over a limit.
//!
//! A TLS connection is handshaken on the worker that will own it, before
//! its session starts, within the login timeout; its slot is held from the
//! accept on. A TLS connection over a limit is closed without a word: the
//! `error:` line would have to be sent inside a TLS session, and a
//! handshake per refused connection is work the server would do exactly
//! when it is overloaded or attacked. The client sees the handshake fail.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, error, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::gate::{Gate, Refusal};
use crate::messages::ConnId;
use crate::session::{ConnectionSlot, Session, SessionEnv};
use crate::transport::{Stream, adopt};

/// How long to wait before accepting again after an accept error (for
/// example EMFILE: out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most this many refused connections (server full, or shutting down)
/// are being told why at once; past that they are closed without a word.
pub(super) const MAX_REFUSALS_IN_FLIGHT: u32 = 64;

/// How long telling a refused connection why may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The listeners, registered with the accept loop's runtime.
pub(super) struct Listening {
    pub(super) plain: Option<TcpListener>,
    pub(super) tls: Option<(TcpListener, TlsAcceptor)>,
}

/// The accept loop's state.
pub(super) struct Acceptor {
    /// Admission, shared with the web listener.
    pub(super) gate: Arc<Gate>,
    /// Bounds the connections being refused at once.
    pub(super) refusals: Arc<Semaphore>,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Plain,
    Tls,
}

impl Acceptor {
    /// Accepts connections until `shutdown` completes, then closes the
    /// gate (for the web listener too).
    pub(super) async fn accept_until(
        self,
        listening: Listening,
        workers: &[Arbiter],
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let tls = listening.tls.as_ref().map(|(_, acceptor)| acceptor.clone());
        loop {
            let (accepted, via) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = accept_either(&listening) => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let tls = if via == Via::Tls { tls.clone() } else { None };
                    self.place(stream, peer, tls, workers);
                }
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
        self.gate.close();
        // TLS connections still queued are closed with their listener:
        // turning them away politely would take a handshake each.
        if let Some(plain) = listening.plain {
            self.turn_away_queued(plain);
        }
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
                self.turn_away(stream, peer, Refusal::ShuttingDown, false);
            }
        }
    }

    /// Starts a session for `stream` on the next worker (after a TLS
    /// handshake there, given an acceptor), or refuses it.
    fn place(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        workers: &[Arbiter],
    ) {
        let (id, slot) = match self.gate.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(why) => return self.turn_away(stream, peer, why, tls.is_some()),
        };
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                warn!("could not take over the connection from {peer}: {e}");
                return;
            }
        };
        let env = self.gate.session_env.clone();
        let worker = &workers[(id as usize) % workers.len()];
        let placed = worker.spawn_fn(move || match adopt(stream) {
            Ok(tcp) => start_session(tcp, peer, id, env, slot, tls),
            Err(e) => warn!("conn {id}: could not start a session: {e}"),
        });
        if !placed {
            error!("conn {id}: worker arbiter is gone; connection dropped");
        }
    }

    /// Tells a connection why it is closed, and closes it (a TLS one is
    /// only closed: see the module documentation).
    fn turn_away(&self, stream: TcpStream, peer: SocketAddr, why: Refusal, tls: bool) {
        let refusal = if tls {
            None
        } else {
            match self.refusals.clone().try_acquire_owned() {
                Ok(refusal) => Some(refusal),
                Err(_) => return,
            }
        };
        let line = self.gate.refusal_line(why, peer).to_bytes();
        let Some(refusal) = refusal else {
            return;
        };
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

/// The next connection from either listener (neither is preferred: a
/// flood on one must not starve the other).
async fn accept_either(listening: &Listening) -> (io::Result<(TcpStream, SocketAddr)>, Via) {
    tokio::select! {
        accepted = accept_on(listening.plain.as_ref()) => (accepted, Via::Plain),
        accepted = accept_on(listening.tls.as_ref().map(|(l, _)| l)) => (accepted, Via::Tls),
    }
}

async fn accept_on(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// On the connection's worker: starts its session, after the TLS
/// handshake if it came in on the TLS listener. The handshake's time
/// counts against the login timeout.
fn start_session(
    tcp: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    env: Arc<SessionEnv>,
    slot: ConnectionSlot,
    tls: Option<TlsAcceptor>,
) {
    let login_timeout = env.limits.login_timeout;
    let Some(acceptor) = tls else {
        Session::start(Stream::Plain(tcp), peer, id, env, slot, login_timeout);
        return;
    };
    actix::spawn(async move {
        let began = Instant::now();
        match crate::tls::handshake(&acceptor, tcp, login_timeout).await {
            Ok(stream) => {
                let left = login_timeout.saturating_sub(began.elapsed());
                Session::start(stream, peer, id, env, slot, left);
            }
            // Once, at debug: failed handshakes are a scanner's or a
            // confused client's, and cost nothing but this.
            Err(e) => debug!("conn {id}: TLS handshake with {peer} failed: {e}"),
        }
    });
}
