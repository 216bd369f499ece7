//! The messages the broker and the sessions send each other.
//!
//! Both actors depend on this module and never on each other: a session
//! holds a [`BrokerLink`] and the broker holds one [`SessionLink`] per
//! connection, both made of actix `Recipient`s. That keeps the import graph
//! acyclic and lets the broker's unit tests use small test actors in place
//! of real sessions.
//!
//! | message   | from → to        | reply                     |
//! |-----------|------------------|---------------------------|
//! | [`Connect`] | session → broker | none                    |
//! | [`NewPeer`] | session → broker | `Result<(), LoginError>` |
//! | [`Route`]   | session → broker | none (its [`Credit`] returns when handled) |
//! | [`Drained`] | session → broker | none (dropping its guard is the answer) |
//! | [`Leave`]   | session → broker | none (the broker answers with [`Control::Close`]) |
//! | [`Shutdown`]| server → broker  | `()`, once every session was told goodbye |
//! | [`Deliver`] | broker → session | none                    |
//! | [`Control`] | broker → session | none                    |
//! | [`SliceDone`] | last [`SliceShare`] dropped → broker | none  |
//!
//! The tutorial's broker handles `NewPeer` and `Message { from, to, msg }`.
//! [`NewPeer`] is the same here; a `Message` is an
//! [`Op::Send`](crate::batch::Op::Send), carried
//! with the other requests from the same read of the socket in one
//! [`Route`], so the broker's mailbox sees one message per read, not one
//! per line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::prelude::*;

use crate::batch::Batch;
use crate::protocol::LoginName;

pub mod accounts;
pub mod cluster;

/// Identifies one TCP connection for its whole life. Given out by the
/// acceptor from a counter and never reused, so a late message about a
/// closed connection can never be mistaken for a newer one with the same
/// name.
pub type ConnId = u64;

/// A peer's login name, shared by the broker's tables without copying.
pub type Name = Arc<str>;

/// Counted in a session's [`Backlog`] for each [`Deliver`] on top of its
/// bytes, so that a flood of tiny messages is bounded by the same cap as a
/// few large ones (each queued message costs memory besides its bytes).
pub const DELIVER_OVERHEAD: usize = 64;

/// The bytes handed to a session that it has not written to its socket yet:
/// queued in its mailbox or in its outbox.
///
/// The broker adds to it when it sends a [`Deliver`], the session subtracts
/// as its socket accepts bytes. It is the explicit accounting that caps a
/// slow reader's output (`--max-outbox-bytes`): actix mailboxes themselves
/// are unbounded for `do_send`, and the broker must never wait for a session.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    /// Counts `n` more bytes and returns the new total.
    pub fn add(&self, n: usize) -> usize {
        self.0.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Counts `n` bytes as gone.
    pub fn sub(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// The bytes currently counted.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the broker publishes about who is online, for sessions to read
/// without asking: what a `*` line costs to deliver (one copy per peer
/// online) and how long the answer to `/who` is. Sessions price their
/// batches with it (see `session/chat.rs`), so that a line costs the
/// sender what it costs to deliver. Written by the broker alone; a reader
/// may see a value a moment old, which is all a price needs.
#[derive(Debug, Default)]
pub struct RosterGauge {
    online: AtomicUsize,
    who_bytes: AtomicUsize,
}

impl RosterGauge {
    /// Peers online.
    pub fn online(&self) -> usize {
        self.online.load(Ordering::Relaxed)
    }

    /// Bytes in the answer to `/who`.
    pub fn who_bytes(&self) -> usize {
        self.who_bytes.load(Ordering::Relaxed)
    }

    /// Publishes the number online (the broker only).
    pub fn set_online(&self, online: usize) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// Publishes the size of the answer to `/who` (the broker only).
    pub fn set_who_bytes(&self, bytes: usize) {
        self.who_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Session → broker: a connection was accepted. Sent from the session's
/// `started`, before anything else, so the broker can reach every
/// connection (logged in or not) at shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    /// The connection.
    pub id: ConnId,
    /// How to reach its session.
    pub session: SessionLink,
    /// Its output accounting, shared with the session.
    pub backlog: Backlog,
}

/// Session → broker: take this name. The broker answers once the name is
/// registered (and the welcome line queued) or refused.
#[derive(Message)]
#[rtype(result = "Result<(), LoginError>")]
pub struct NewPeer {
    /// The connection logging in.
    pub id: ConnId,
    /// The name, checked, with its spelling and folded form (computed in
    /// the session, not on the broker's thread).
    pub name: LoginName,
}

/// Why the broker refused a [`NewPeer`]. (What the client is told is
/// [`Reply::NameTaken`](crate::protocol::Reply) or
/// [`Reply::LoginsClosed`](crate::protocol::Reply).)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Another connection is logged in under this name.
    #[error("name {0:?} taken")]
    Taken(String),
    /// Another connection is logged in under the same name spelled
    /// differently (`ALICE` asked for, `Alice` online).
    #[error("name {name:?} taken as {online:?}")]
    TakenAs {
        /// The spelling asked for.
        name: String,
        /// The spelling online.
        online: String,
    },
    /// The server is shutting down and takes no new logins.
    #[error("shutting down")]
    ShuttingDown,
    /// Cluster mode: the name service could not decide (no quorum, no
    /// connection, or this node is cut off from the cluster).
    #[error("the name service is unavailable")]
    Unavailable,
    /// Cluster mode: the name is held by a node that stopped answering; it
    /// is freed within the given number of seconds.
    #[error("held by a lost node")]
    HeldByLostNode(u64),
}

/// Session → broker: the requests found in one read of a logged-in
/// connection, in order. Sent without waiting for an answer; the
/// [`Credit`] it carries is what slows a flooding client down to the
/// broker's pace.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    /// The sending connection.
    pub from: ConnId,
    /// What it asked for.
    pub batch: Batch,
    /// Returned to the session when the broker drops the message, that is,
    /// once it has handled the batch.
    pub credit: Credit,
}

/// One of the few batches a session may have at the broker at once.
///
/// A session takes a permit from its own semaphore before it reads its
/// socket and sends it along with the batch; the broker drops it with the
/// message (RAII). A session out of permits stops reading until one comes
/// back, so its unread input stays in the kernel and TCP slows the client
/// down. Unlike a reply, returning a permit wakes the session only when it
/// is actually waiting for one: no cross-thread wake-up per batch.
///
/// In cluster mode a credit can also stand for a frame of lines from
/// another node ([`Credit::on_drop`]: dropping it tells that node the frame
/// was handled), and a credit can be split ([`Credit::split`]) when a batch
/// must wait for several things, say a slow local reader and the node of a
/// remote recipient: the permit returns when every part is dropped.
#[derive(Debug)]
pub struct Credit(CreditKind);

#[derive(Debug)]
enum CreditKind {
    Unlimited,
    /// Never read: holding it is the point, dropping it the signal.
    Permit(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit),
    Shared(#[allow(dead_code)] Arc<Credit>),
    OnDrop(#[allow(dead_code)] Box<cluster::HandledOnDrop>),
}

impl Credit {
    /// A permit taken from a session's semaphore.
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Credit(CreditKind::Permit(permit))
    }

    /// Credit that limits nothing (tests and benchmarks).
    pub fn unlimited() -> Self {
        Credit(CreditKind::Unlimited)
    }

    /// A credit that, when dropped, tells the cluster a remote frame was
    /// handled.
    pub fn on_drop(handled: cluster::HandledOnDrop) -> Self {
        Credit(CreditKind::OnDrop(Box::new(handled)))
    }

    /// Two credits that together stand for this one: it is returned once
    /// both are dropped.
    pub fn split(self) -> (Credit, Credit) {
        let shared = match self.0 {
            CreditKind::Unlimited => return (Credit::unlimited(), Credit::unlimited()),
            CreditKind::Shared(shared) => shared,
            kind => Arc::new(Credit(kind)),
        };
        (
            Credit(CreditKind::Shared(shared.clone())),
            Credit(CreditKind::Shared(shared)),
        )
    }
}

/// Session → broker: shutdown's drain is done for this session. Sent after
/// its last [`Route`], so when the broker drops the guard (on receipt),
/// everything the session read has been handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drained {
    /// Dropped by the broker.
    pub guard: DrainGuard,
}

/// Session → broker: this connection is ending. Sent exactly once per
/// session that sent [`Connect`]; the broker's handler is the one place a
/// peer is removed. The broker answers with [`Control::Close`], queued
/// behind everything it delivered to the session before.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The connection.
    pub id: ConnId,
    /// Why; a peer that said `/quit` gets `server: bye` as its last line.
    pub reason: LeaveReason,
}

/// Why a connection is ending (see [`Leave`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The client sent `/quit`.
    Quit,
    /// Anything else: end of stream, a reset, an eviction, a timeout, the
    /// shutdown.
    Gone,
}

/// Server → broker: shut down. The broker asks every session to drain its
/// input ([`Control::Drain`]), waits until all have (or `drain_deadline`
/// passes), then sends every session [`Control::Goodbye`] and replies.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// When to stop waiting for slow drains.
    pub drain_deadline: Instant,
}

/// Broker → session: bytes to write to the socket, already formatted as
/// protocol lines. Already counted in the session's [`Backlog`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// One or more complete lines.
    pub bytes: Vec<u8>,
    /// Credits of senders that filled this session's outbox past half its
    /// cap: the session holds them until its backlog falls below that
    /// again, which slows those senders to its pace (see `Session`).
    pub held: Vec<Credit>,
    /// Set when this is part of a slice of a wide fan-out: dropped once the
    /// session has taken the output (see [`SliceShare`]).
    pub slice: Option<SliceShare>,
}

/// A session's share of a slice of a wide fan-out, carried by its
/// [`Deliver`]. When the last share of a slice is dropped (every session
/// of the slice has taken its output, or is gone), the broker is sent
/// [`SliceDone`] and hands over the next slice.
#[derive(Clone)]
pub struct SliceShare(
    /// Never read: dropping the last clone is the signal.
    #[allow(dead_code)]
    Arc<SliceDoneOnDrop>,
);

/// Sends [`SliceDone`] when dropped.
struct SliceDoneOnDrop(Recipient<SliceDone>);

impl Drop for SliceDoneOnDrop {
    fn drop(&mut self) {
        self.0.do_send(SliceDone);
    }
}

impl SliceShare {
    /// The first share of a new slice; clone it for each session.
    pub fn new(done: Recipient<SliceDone>) -> Self {
        SliceShare(Arc::new(SliceDoneOnDrop(done)))
    }
}

/// Sent to the broker (by the last [`SliceShare`] of a slice dropped):
/// every session of a slice has taken its output.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SliceDone;

/// Broker → session: a change of state. Queued in the same mailbox as
/// [`Deliver`], so it takes effect after everything delivered before it.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Control {
    /// Your backlog passed `--max-outbox-bytes`: disconnect now, without
    /// flushing.
    Evict,
    /// You left (answer to [`Leave`]): flush your output, then close.
    Close,
    /// Shutdown, phase one: read and route what is already waiting in your
    /// socket, stop reading, then send the guard back in [`Drained`].
    Drain(DrainGuard),
    /// Shutdown, phase two: write `server: shutting down`, flush, close.
    Goodbye,
}

/// Held by a session while it drains its input at shutdown; the broker
/// waits until every guard is dropped (RAII: a session that dies drops it
/// too, so nobody is waited for in vain).
#[derive(Debug, Clone)]
pub struct DrainGuard(pub tokio::sync::mpsc::Sender<()>);

/// What the broker holds of a session.
#[derive(Clone)]
pub struct SessionLink {
    /// Where output goes.
    pub deliver: Recipient<Deliver>,
    /// Where state changes go.
    pub control: Recipient<Control>,
}

impl SessionLink {
    /// The link to any actor that handles both session messages.
    pub fn new<S>(addr: &Addr<S>) -> Self
    where
        S: Actor + Handler<Deliver> + Handler<Control>,
        S::Context: actix::dev::ToEnvelope<S, Deliver> + actix::dev::ToEnvelope<S, Control>,
    {
        SessionLink {
            deliver: addr.clone().recipient(),
            control: addr.clone().recipient(),
        }
    }
}

/// What a session holds of the broker. One is shared (behind an `Arc`) by
/// all sessions, which keeps each session small. Made by the broker
/// (`BrokerLink::from(&Addr<Broker>)`), so sessions never name its type.
#[derive(Clone)]
pub struct BrokerLink {
    /// Where [`Connect`] goes.
    pub connect: Recipient<Connect>,
    /// Where [`NewPeer`] goes.
    pub new_peer: Recipient<NewPeer>,
    /// Where [`Route`] goes.
    pub route: Recipient<Route>,
    /// Where [`Drained`] goes.
    pub drained: Recipient<Drained>,
    /// Where [`Leave`] goes.
    pub leave: Recipient<Leave>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credit_stays_small() {
        // Every Route and every held credit carries one: cluster mode's
        // variants must not make the single-node path's messages bigger.
        assert!(std::mem::size_of::<Credit>() <= 24);
    }

    #[test]
    fn backlog_counts() {
        let b = Backlog::default();
        assert_eq!(b.add(10), 10);
        b.clone().sub(4);
        assert_eq!(b.get(), 6);
    }
}
