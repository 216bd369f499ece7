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
//!
//! The tutorial's broker handles `NewPeer` and `Message { from, to, msg }`.
//! [`NewPeer`] is the same here; a `Message` is an [`Op::Send`], carried
//! with the other requests from the same read of the socket in one
//! [`Route`], so the broker's mailbox sees one message per read, not one
//! per line.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::prelude::*;

use crate::protocol::{self, ChatLine};

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
    /// A name that passed [`protocol::validate_name`].
    pub name: String,
}

/// Why the broker refused a [`NewPeer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Another connection is logged in under this name.
    #[error("the name '{0}' is taken, choose another")]
    Taken(String),
    /// The server is shutting down and takes no new logins.
    #[error("the server is shutting down")]
    ShuttingDown,
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
#[derive(Debug)]
pub struct Credit(
    /// Never read: holding it is the point, dropping it the signal.
    #[allow(dead_code)]
    Option<tokio::sync::OwnedSemaphorePermit>,
);

impl Credit {
    /// A permit taken from a session's semaphore.
    pub fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Credit(Some(permit))
    }

    /// Credit that limits nothing (tests and benchmarks).
    pub fn unlimited() -> Self {
        Credit(None)
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
    /// A last `server:` line for the leaving peer (`/quit` says "bye").
    pub farewell: Option<&'static str>,
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
}

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
/// all sessions, which keeps each session small.
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

impl BrokerLink {
    /// The link to any actor that handles the broker's messages.
    pub fn new<B>(addr: &Addr<B>) -> Self
    where
        B: Actor
            + Handler<Connect>
            + Handler<NewPeer>
            + Handler<Route>
            + Handler<Drained>
            + Handler<Leave>,
        B::Context: actix::dev::ToEnvelope<B, Connect>
            + actix::dev::ToEnvelope<B, NewPeer>
            + actix::dev::ToEnvelope<B, Route>
            + actix::dev::ToEnvelope<B, Drained>
            + actix::dev::ToEnvelope<B, Leave>,
    {
        BrokerLink {
            connect: addr.clone().recipient(),
            new_peer: addr.clone().recipient(),
            route: addr.clone().recipient(),
            drained: addr.clone().recipient(),
            leave: addr.clone().recipient(),
        }
    }
}

/// The requests from one read of a socket, in order.
///
/// It is laid out for the broker, the one serialization point, to do as
/// little as possible: the session (on a worker thread) parses each line,
/// formats the `from <sender>: <text>` line once, and the broker only looks
/// recipients up and copies bytes. Two buffers and a list of operations
/// pointing into them, so a read holding hundreds of lines costs three
/// allocations, not hundreds.
#[derive(Debug, Default)]
pub struct Batch {
    /// Output lines, back to back.
    lines: Vec<u8>,
    /// Recipient names, each followed by a `,` (names never contain one).
    names: String,
    /// What to do, in order.
    ops: Vec<Op>,
}

/// One request in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Relay a formatted line.
    Send {
        /// To everyone online except the sender (`*`).
        everyone: bool,
        /// The named recipients: a range of [`Batch::names`], deduplicated.
        names: Range<usize>,
        /// The formatted `from ...` line: a range of the batch's lines.
        line: Range<usize>,
    },
    /// Answer `/who`.
    Who,
    /// Write these bytes back to the sender, in order with the rest of its
    /// output (errors and `/help` found by the session).
    Echo(Range<usize>),
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch with room for what `input_len` bytes of typical chat
    /// lines produce, so filling it rarely reallocates.
    pub fn for_input(input_len: usize) -> Self {
        Batch {
            lines: Vec::with_capacity(input_len + input_len / 2),
            names: String::with_capacity(input_len / 4),
            ops: Vec::with_capacity(input_len / 16),
        }
    }

    /// Adds a chat line from `sender`.
    pub fn push_chat(&mut self, sender: &str, chat: &ChatLine<'_>) {
        let start = self.names.len();
        for name in &chat.names {
            self.names.push_str(name);
            self.names.push(',');
        }
        let names = start..self.names.len();
        let line = self.push_bytes(|out| protocol::write_message(out, sender, chat.text));
        self.ops.push(Op::Send {
            everyone: chat.everyone,
            names,
            line,
        });
    }

    /// Adds a `/who`.
    pub fn push_who(&mut self) {
        self.ops.push(Op::Who);
    }

    /// Adds output for the sender itself, written by `write`.
    pub fn push_echo(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let range = self.push_bytes(write);
        self.ops.push(Op::Echo(range));
    }

    fn push_bytes(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Range<usize> {
        let start = self.lines.len();
        write(&mut self.lines);
        start..self.lines.len()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The bytes an operation points at.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        self.lines.get(range).unwrap_or_default()
    }

    /// The recipient names an operation points at.
    pub fn names(&self, range: Range<usize>) -> impl Iterator<Item = &str> {
        self.names
            .get(range)
            .unwrap_or_default()
            .split_terminator(',')
    }

    /// Bytes of output lines in the batch (each relayed line counted once,
    /// which is what one recipient gets of it at most).
    pub fn output_len(&self) -> usize {
        self.lines.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, parse_request};

    fn chat(line: &str) -> ChatLine<'_> {
        match parse_request(line) {
            Ok(Request::Chat(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_keeps_order_and_content() {
        let mut batch = Batch::new();
        batch.push_chat("alice", &chat("bob, carol: hi"));
        batch.push_echo(|out| protocol::write_error(out, "oops"));
        batch.push_who();
        batch.push_chat("alice", &chat("*: all"));
        let ops = batch.ops().to_vec();
        assert_eq!(ops.len(), 4);
        let Op::Send {
            everyone,
            names,
            line,
        } = ops[0].clone()
        else {
            panic!()
        };
        assert!(!everyone);
        assert_eq!(batch.names(names).collect::<Vec<_>>(), ["bob", "carol"]);
        assert_eq!(batch.bytes(line), b"from alice: hi\n");
        let Op::Echo(echo) = ops[1].clone() else {
            panic!()
        };
        assert_eq!(batch.bytes(echo), b"error: oops\n");
        assert_eq!(ops[2], Op::Who);
        let Op::Send {
            everyone, names, ..
        } = ops[3].clone()
        else {
            panic!()
        };
        assert!(everyone);
        assert_eq!(batch.names(names).count(), 0);
    }

    #[test]
    fn backlog_counts() {
        let b = Backlog::default();
        assert_eq!(b.add(10), 10);
        b.clone().sub(4);
        assert_eq!(b.get(), 6);
    }
}
