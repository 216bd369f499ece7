//! What the broker knows of each connection ([`Peer`]), and the output it
//! has queued for them but not yet handed over ([`Outbound`]).
//!
//! The session's [`Outbox`](crate::session) owns what a session has been
//! handed; this is the broker's side of the same bytes: output collects in
//! a peer's `pending` buffer for the length of a round of the broker's
//! mailbox, then goes to the session as one [`Deliver`] (or, if it is the
//! output of a wide fan-out, when its slice comes: `slices.rs`).

use log::warn;

use super::slices::Slices;
use crate::messages::{
    Backlog, ConnId, Control, Credit, DELIVER_OVERHEAD, Deliver, Name, SessionLink, SliceShare,
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
    /// `pending` is all output of wide fan-outs, waiting in the queue of
    /// [`Slices`] for its slice.
    pub(super) waiting: bool,
}

/// The bounds on output held for clients: handed to a session and not
/// yet written to its socket, or queued in the broker for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// For one peer (`--max-outbox-bytes`): a peer whose output would pass
    /// it is evicted.
    pub per_peer: usize,
    /// For all peers together (`--max-total-outbox-bytes`): past it, the
    /// peers holding the most are evicted, heaviest first.
    pub total: usize,
}

/// The bookkeeping of pending output over all peers. A value of its own,
/// beside the table of peers, so that a peer borrowed from that table can
/// be updated together with it.
pub(super) struct Outbound {
    /// Peers whose `pending` is not empty and not waiting for a slice.
    pub(super) dirty: Vec<ConnId>,
    /// Peers whose output waits for a slice.
    pub(super) slices: Slices,
    /// Bytes in all `pending` buffers together.
    pub(super) bytes: usize,
    pub(super) limits: OutboxLimits,
    /// Half the per-peer cap: a peer whose backlog reaches this holds up
    /// the senders that fill it (their credits go to it).
    high_water: usize,
    /// The first peer the current batch filled past `high_water`.
    pub(super) filled: Option<ConnId>,
    /// Peers evicted since the broker last looked (it takes them off the
    /// roster).
    pub(super) evicted: Vec<ConnId>,
    /// Output held for all peers at the last count (see
    /// `Broker::enforce_total`) ...
    pub(super) counted_total: usize,
    /// ... plus everything queued since: an upper bound on what is held
    /// now (sessions only ever write theirs down), kept without touching
    /// the sessions' counters on every line.
    pub(super) queued_since_count: usize,
}

impl Outbound {
    /// No output pending.
    pub(super) fn new(limits: OutboxLimits) -> Self {
        Outbound {
            dirty: Vec::new(),
            slices: Slices::new(),
            bytes: 0,
            limits,
            high_water: limits.per_peer / 2,
            filled: None,
            evicted: Vec::new(),
            counted_total: 0,
            queued_since_count: 0,
        }
    }

    /// Whether the output held for all peers may have passed the total
    /// cap: time to count it exactly.
    pub(super) fn may_be_over_total(&self) -> bool {
        self.counted_total + self.queued_since_count > self.limits.total
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
            waiting: false,
        }
    }

    /// Logged in and not evicted: what routing and `/who` count.
    pub(super) fn is_online(&self) -> bool {
        self.name.is_some() && !self.evicted
    }

    /// Output held for this peer: handed to its session and not written,
    /// or pending here.
    pub(super) fn held_bytes(&self) -> usize {
        self.backlog.get() + self.pending.len()
    }

    /// Queues `bytes` for this peer, or evicts it if they would take its
    /// backlog past the cap. Output of a `wide` fan-out waits for its slice
    /// if nothing else is pending.
    pub(super) fn push(&mut self, id: ConnId, bytes: &[u8], wide: bool, out: &mut Outbound) {
        if self.evicted {
            return;
        }
        let backlog = self.held_bytes() + bytes.len();
        if backlog > out.limits.per_peer {
            self.evict(
                id,
                out,
                format_args!("its unwritten output would reach {backlog} bytes"),
            );
            return;
        }
        if self.pending.is_empty() {
            if wide {
                self.waiting = true;
                out.slices.enqueue(id);
            } else {
                out.dirty.push(id);
            }
            out.queued_since_count += DELIVER_OVERHEAD;
        } else if self.waiting && !wide {
            // Output of its own: it goes at the next flush, with what was
            // waiting before it.
            self.waiting = false;
            out.dirty.push(id);
        }
        self.pending.extend_from_slice(bytes);
        out.bytes += bytes.len();
        out.queued_since_count += bytes.len();
        if backlog >= out.high_water && out.filled.is_none() {
            out.filled = Some(id);
        }
    }

    /// Cuts this peer off as a slow consumer: its pending output is
    /// dropped, the senders it held up go free, its session is told to
    /// close at once.
    pub(super) fn evict(&mut self, id: ConnId, out: &mut Outbound, why: std::fmt::Arguments<'_>) {
        self.evicted = true;
        self.waiting = false;
        warn!(
            "conn {id} ({}): disconnected as a slow consumer ({why})",
            self.name.as_deref().unwrap_or("not logged in")
        );
        out.bytes -= self.pending.len();
        self.pending = Vec::new();
        self.held.clear();
        out.evicted.push(id);
        self.link.control.do_send(Control::Evict);
    }

    /// Hands the pending output to the session.
    pub(super) fn flush(&mut self) {
        self.flush_with(None);
    }

    /// Hands the pending output to the session, as part of `slice` if
    /// given.
    pub(super) fn flush_with(&mut self, slice: Option<SliceShare>) {
        self.waiting = false;
        if self.pending.is_empty() {
            return;
        }
        let mut bytes = std::mem::take(&mut self.pending);
        // A buffer grown by appending may hold twice its length: what goes
        // to a session that is not writing stays allocated for as long as
        // it waits, so it should cost what it holds.
        if bytes.capacity() - bytes.len() > bytes.len() / 4 + 64 {
            bytes.shrink_to_fit();
        }
        let held = std::mem::take(&mut self.held);
        self.backlog.add(bytes.len() + DELIVER_OVERHEAD);
        // A session that is gone has its `Leave` on the way; nothing to do
        // (the credits, dropped with the message, go back to their senders).
        self.link.deliver.do_send(Deliver { bytes, held, slice });
    }
}

/// The bound on output held for all peers together.
impl super::Broker {
    /// Counts the output held for all peers exactly (the sessions' backlogs
    /// and the pending buffers), and if it passes `--max-total-outbox-bytes`
    /// evicts the peers holding the most, heaviest first, until it is back
    /// under three quarters of the cap (so the next count is far off).
    ///
    /// O(peers), but it runs only once a quarter of the cap has been queued
    /// since the last count.
    pub(super) fn enforce_total(&mut self) {
        let cap = self.out.limits.total;
        let mut held: Vec<(usize, ConnId)> = self
            .peers
            .iter()
            .filter(|(_, peer)| !peer.evicted)
            .map(|(&id, peer)| (peer.held_bytes(), id))
            .collect();
        let mut total: usize = held.iter().map(|&(bytes, _)| bytes).sum();
        if total > cap {
            held.sort_unstable_by(|a, b| b.cmp(a));
            let target = cap / 4 * 3;
            for (bytes, id) in held {
                if total <= target {
                    break;
                }
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.evict(
                        id,
                        &mut self.out,
                        format_args!(
                            "it held {bytes} bytes of unwritten output, the most, when all \
                             clients together passed --max-total-outbox-bytes {cap}"
                        ),
                    );
                    total -= bytes;
                }
            }
        }
        self.out.counted_total = total;
        self.out.queued_since_count = 0;
    }
}
