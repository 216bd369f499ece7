//! The one door every connection comes in by, whatever its transport: the
//! TCP and TLS accept loop and the web listener's `/ws` both ask the
//! [`Gate`] for a place before a session starts, so `--max-connections`,
//! `--max-connections-per-ip`, the connection ids and "the server is
//! shutting down" mean one thing for all of them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use log::{info, warn};
use tokio::sync::{Semaphore, mpsc};

use crate::messages::ConnId;
use crate::metrics::ConnectionRefusal;
use crate::protocol::Reply;
use crate::session::{ConnectionSlot, SessionEnv};
use crate::sources::SourceCounts;

/// Admission for all transports; shared by the accept loop and the web
/// listener.
pub struct Gate {
    /// One permit per connection allowed (`--max-connections`).
    slots: Arc<Semaphore>,
    max_connections: usize,
    /// Open connections per source address (`--max-connections-per-ip`).
    sources: Arc<SourceCounts>,
    /// Every session holds a clone of this sender; the server waits for
    /// the receiver to see all of them dropped. Taken out when the server
    /// stops accepting, so that the gate itself holds none.
    alive: Mutex<Option<mpsc::Sender<()>>>,
    next_id: AtomicU64,
    accepting: AtomicBool,
    /// What every session is started with.
    pub(crate) session_env: Arc<SessionEnv>,
}

/// Why a connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over `--max-connections`.
    Full,
    /// Over `--max-connections-per-ip`.
    TooManyFromSource,
    /// Arrived as the server was stopping.
    ShuttingDown,
}

impl Gate {
    /// A gate for `max_connections` in all and `max_per_source` per source
    /// address (0: no limit); returns the receiver that sees every
    /// session's sender dropped.
    pub(crate) fn new(
        max_connections: usize,
        max_per_source: usize,
        session_env: Arc<SessionEnv>,
    ) -> (Arc<Gate>, mpsc::Receiver<()>) {
        let (alive, all_gone) = mpsc::channel(1);
        let gate = Gate {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            sources: SourceCounts::new(max_per_source),
            alive: Mutex::new(Some(alive)),
            next_id: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            session_env,
        };
        (Arc::new(gate), all_gone)
    }

    /// A place for a connection from `ip`: its id and the slot its session
    /// holds for as long as it lives.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(ConnId, ConnectionSlot), Refusal> {
        self.try_admit(ip).inspect_err(|why| {
            self.session_env.metrics.refused(match why {
                Refusal::Full => ConnectionRefusal::Full,
                Refusal::TooManyFromSource => ConnectionRefusal::TooManyFromSource,
                Refusal::ShuttingDown => ConnectionRefusal::ShuttingDown,
            });
        })
    }

    fn try_admit(&self, ip: IpAddr) -> Result<(ConnId, ConnectionSlot), Refusal> {
        // Under the lock, so no connection is admitted once `close` ran.
        let alive = self.alive.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(alive) = alive.as_ref().filter(|_| self.is_accepting()) else {
            return Err(Refusal::ShuttingDown);
        };
        let source = self.sources.admit(ip).ok_or(Refusal::TooManyFromSource)?;
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = ConnectionSlot {
            slot,
            alive: alive.clone(),
            source,
        };
        Ok((id, slot))
    }

    /// Whether connections are taken (false from the start of the
    /// shutdown on): `/healthz` says so.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Stops admitting; from now on only sessions hold the "alive" sender.
    pub(crate) fn close(&self) {
        let mut alive = self.alive.lock().unwrap_or_else(PoisonError::into_inner);
        self.accepting.store(false, Ordering::Relaxed);
        alive.take();
    }

    /// The line telling a refused connection why, logged once.
    pub(crate) fn refusal_line(
        &self,
        why: Refusal,
        peer: impl std::fmt::Display,
    ) -> Reply<'static> {
        match why {
            Refusal::Full => {
                warn!(
                    "refused {peer}: server full ({} connections)",
                    self.max_connections
                );
                Reply::ServerFull {
                    max_connections: self.max_connections,
                }
            }
            Refusal::TooManyFromSource => {
                // Info, not warn: one host retrying at its limit would
                // otherwise fill the log with warnings.
                info!(
                    "refused {peer}: {} connections from its address already",
                    self.sources.max()
                );
                Reply::TooManyFromAddress
            }
            Refusal::ShuttingDown => Reply::ShuttingDown,
        }
    }
}
