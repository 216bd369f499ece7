//! What the broker knows of each connection ([`Peer`]), and the output it
//! has queued for them but not yet handed over ([`Outbound`]).
//!
//! The session's [`Outbox`](crate::session) owns what a session has been
//! handed; this is the broker's side of the same bytes: output collects in
//! a peer's `pending` buffer for the length of a round of the broker's
//! mailbox, then goes to the session as one [`Deliver`].

use log::warn;

use crate::messages::{
    Backlog, ConnId, Control, Credit, DELIVER_OVERHEAD, Deliver, Name, SessionLink,
};

/// What the broker knows of one connection, logged in or not.
pub(super) struct Peer {
    pub(super) link: SessionLink,
    backlog: Backlog,
    /// Set once logged in.
    pub(super) name: Option<Name>,
    /// Evicted as a slow consumer: no longer routed to, its name still
    /// reserved until its [`Leave`](crate::messages::Leave) arrives.
    pub(super) evicted: bool,
    /// Output not yet handed to the session.
    pub(super) pending: Vec<u8>,
    /// Credits of senders to hold up, handed over with `pending`.
    pub(super) held: Vec<Credit>,
}

/// The bookkeeping of pending output over all peers. A value of its own,
/// beside the table of peers, so that a peer borrowed from that table can
/// be updated together with it.
pub(super) struct Outbound {
    /// Peers whose `pending` is not empty.
    pub(super) dirty: Vec<ConnId>,
    /// Bytes in all `pending` buffers together.
    pub(super) bytes: usize,
    /// A peer is evicted when its backlog would pass this.
    max_outbox_bytes: usize,
    /// Half of it: a peer whose backlog reaches this holds up the senders
    /// that fill it (their credits go to it).
    high_water: usize,
    /// The first peer the current batch filled past `high_water`.
    pub(super) filled: Option<ConnId>,
}

impl Outbound {
    /// No output pending; peers are evicted past `max_outbox_bytes`.
    pub(super) fn new(max_outbox_bytes: usize) -> Self {
        Outbound {
            dirty: Vec::new(),
            bytes: 0,
            max_outbox_bytes,
            high_water: max_outbox_bytes / 2,
            filled: None,
        }
    }
}

impl Peer {
    /// A connection that has not logged in yet.
    pub(super) fn new(link: SessionLink, backlog: Backlog) -> Self {
        Peer {
            link,
            backlog,
            name: None,
            evicted: false,
            pending: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Logged in and not evicted: what routing and `/who` count.
    pub(super) fn is_online(&self) -> bool {
        self.name.is_some() && !self.evicted
    }

    /// Queues `bytes` for this peer, or evicts it if they would take its
    /// backlog past the cap.
    pub(super) fn push(&mut self, id: ConnId, bytes: &[u8], out: &mut Outbound) {
        if self.evicted {
            return;
        }
        let backlog = self.backlog.get() + self.pending.len() + bytes.len();
        if backlog > out.max_outbox_bytes {
            self.evict(id, backlog);
            out.bytes -= self.pending.len();
            self.pending = Vec::new();
            // Senders held up by it go free.
            self.held.clear();
            return;
        }
        if self.pending.is_empty() {
            out.dirty.push(id);
        }
        self.pending.extend_from_slice(bytes);
        out.bytes += bytes.len();
        if backlog >= out.high_water && out.filled.is_none() {
            out.filled = Some(id);
        }
    }

    fn evict(&mut self, id: ConnId, backlog: usize) {
        self.evicted = true;
        warn!(
            "conn {id} ({}): disconnected as a slow consumer (its unwritten output would reach {backlog} bytes)",
            self.name.as_deref().unwrap_or("not logged in")
        );
        self.link.control.do_send(Control::Evict);
    }

    /// Hands the pending output to the session.
    pub(super) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let held = std::mem::take(&mut self.held);
        self.backlog.add(bytes.len() + DELIVER_OVERHEAD);
        // A session that is gone has its `Leave` on the way; nothing to do
        // (the credits, dropped with the message, go back to their senders).
        self.link.deliver.do_send(Deliver { bytes, held });
    }
}
