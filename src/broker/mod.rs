//! The broker: the one actor that knows who is online.
//!
//! It owns the table of peers (every open connection) and the table of
//! names, and nothing else touches them: there is no mutex around the
//! peers because the broker's mailbox is the one serialization point.
//! "Bob sends to Alice" and "Alice joins" are two messages in that mailbox,
//! handled one after the other, so every session sees the same order of
//! events.
//!
//! Three habits keep the single thread this runs on from becoming the
//! bottleneck or a hazard:
//! - It never waits for a session. Output goes out with `do_send`, and each
//!   session's [`Backlog`](crate::messages::Backlog) (bytes sent to it but
//!   not yet written to its socket) is checked against
//!   `--max-outbox-bytes`: a peer that passes it is evicted, so a reader
//!   that stopped reading costs nobody else anything.
//! - It batches. Output for a session accumulates in that peer's `pending`
//!   buffer (`outbound.rs`) and goes out as one
//!   [`Deliver`](crate::messages::Deliver) once the mailbox is empty (or
//!   enough has piled up), so one busy recipient receives one message per
//!   round, not one per line.
//! - Where a line goes is decided in one function, `Broker::route`; a
//!   future cluster mode adds remote routes there and nowhere else.

mod login;
mod names;
mod outbound;
mod remote;
mod roster;
mod route;
mod shutdown;
mod slices;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use log::info;

use crate::messages::cluster::{ClusterLink, LocalRoster};
use crate::messages::{
    BrokerLink, ConnId, Connect, Control, DrainGuard, Leave, LeaveReason, Name, RosterGauge, Route,
    SliceDone,
};
use crate::metrics::{BatchSampler, Metrics};
use crate::protocol::Reply;
use names::NameTable;
use outbound::{Outbound, Peer};
use remote::Remote;
use shutdown::Phase;

pub use outbound::OutboxLimits;

/// The broker's tables hash with foldhash: several times faster than the
/// standard SipHash on short keys, and still seeded at random per table,
/// since names are chosen by clients.
type Table<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Pending output is sent without waiting for the mailbox to empty once
/// this many bytes have piled up, bounding both memory and latency when
/// the mailbox never empties.
const FLUSH_AT_BYTES: usize = 256 * 1024;

/// The broker actor: the owner of who is online. It handles [`NewPeer`](crate::messages::NewPeer)
/// (take a name) and [`Route`] (messages to deliver) among others, one at
/// a time from its mailbox: that mailbox is the one serialization point, so
/// no mutex guards the peers. See the module documentation.
pub struct Broker {
    /// Every open connection, logged in or not, so shutdown reaches all.
    peers: Table<ConnId, Peer>,
    /// Who is logged in under which name: by spelling, and by the folded
    /// form names are unique by (`names.rs`).
    names: NameTable,
    /// The names of the peers online (logged in, not evicted, here and on
    /// the cluster's other nodes), in order, each with the number of
    /// connections online under it (more than one only for a moment, in
    /// cluster mode): what `/who` lists.
    roster: BTreeMap<Name, u32>,
    /// The answer to `/who` for the current roster; `None` once the roster
    /// has changed. Built at most once per change, so a client asking
    /// `/who` over and over costs a copy of it each time, not a walk over
    /// everyone online.
    who_answer: Option<Vec<u8>>,
    /// Where the roster's size and the answer's length are published.
    gauge: Arc<RosterGauge>,
    /// Output queued in the peers' `pending` buffers.
    out: Outbound,
    /// A flush is queued to run once the mailbox is empty.
    flush_queued: bool,
    phase: Phase,
    /// The rest of the cluster, in cluster mode.
    remote: Option<Remote>,
    /// Where the broker counts what it does (it alone writes there).
    metrics: Arc<Metrics>,
    /// Which batches are timed for the histogram.
    sampler: BatchSampler,
}

impl Broker {
    /// A broker that holds at most `limits` of output for its peers, and
    /// publishes who is online in `gauge`.
    pub fn new(limits: OutboxLimits, gauge: Arc<RosterGauge>) -> Self {
        Broker {
            peers: Table::default(),
            names: NameTable::default(),
            roster: BTreeMap::new(),
            who_answer: None,
            gauge,
            out: Outbound::new(limits),
            flush_queued: false,
            phase: Phase::Running,
            remote: None,
            metrics: Metrics::new(),
            sampler: BatchSampler::default(),
        }
    }

    /// The same broker, counting into `metrics` (the server's).
    pub fn counting_into(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same broker as one node of a cluster, reaching the other nodes
    /// through the cluster actor at `link`.
    pub fn in_cluster(mut self, link: ClusterLink) -> Self {
        self.remote = Some(Remote::new(link));
        self
    }
}

impl From<&Addr<Broker>> for BrokerLink {
    /// The link the sessions use to reach this broker.
    fn from(broker: &Addr<Broker>) -> Self {
        BrokerLink {
            connect: broker.clone().recipient(),
            new_peer: broker.clone().recipient(),
            route: broker.clone().recipient(),
            drained: broker.clone().recipient(),
            leave: broker.clone().recipient(),
        }
    }
}

/// Output and the end of a peer: handing pending output over, removing
/// a peer that left.
impl Broker {
    /// Sends all pending output now (what waits for a slice, as far as
    /// the slices in flight allow), and publishes the size of a `/who`
    /// answer if the roster changed.
    fn flush(&mut self) {
        for id in self.out.dirty.drain(..) {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.flush();
            }
        }
        self.out.slices.release(&mut self.peers);
        self.out.bytes = 0;
        if let Some(remote) = &mut self.remote {
            remote.flush();
        }
        if self.who_answer.is_none() {
            self.who_answer = Some(self.who());
        }
    }

    /// Sends pending output soon: once the mailbox is empty, so that what
    /// the messages waiting there produce goes out together, or right away
    /// if a lot has piled up.
    fn flush_soon(&mut self, ctx: &mut Context<Self>) {
        if self.out.bytes >= FLUSH_AT_BYTES {
            self.flush();
        } else if (!self.out.dirty.is_empty()
            || self.out.slices.can_release()
            || self.remote.as_ref().is_some_and(|r| r.waiting))
            && !self.flush_queued
        {
            self.flush_queued = true;
            // `notify` runs after the mailbox has been emptied (see actix's
            // ContextFut::poll: mailbox first, then spawned items).
            ctx.notify(Flush);
        }
    }

    /// Removes a peer that left, and sends it its last output and `Close`.
    fn remove(&mut self, id: ConnId, reason: LeaveReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Some(name) = &peer.name {
            // Only this connection's own registration is removed, never a
            // newer connection that took the name since.
            if let Some(folded) = self.names.remove(name, id) {
                self.metrics.broker.logged_in.set(self.names.len() as u64);
                if !peer.evicted {
                    self.leave_roster(name);
                }
                if let Some(remote) = &self.remote {
                    remote.link().roster.do_send(LocalRoster {
                        name: name.clone(),
                        folded,
                        online: false,
                    });
                }
            }
            info!("conn {id}: {name} left");
        }
        shrink_when_sparse(&mut self.peers);
        self.out.bytes = self.out.bytes.saturating_sub(peer.pending.len());
        if reason == LeaveReason::Quit {
            Reply::Bye.write_to(&mut peer.pending);
        }
        // Its last output first, then the word to close after it.
        peer.flush();
        peer.link.control.do_send(Control::Close);
    }
}

/// Gives back a table's memory once a burst of connections is over: a hash
/// map keeps its largest capacity otherwise. Shrinking only below a quarter
/// full, to half full, keeps this amortized O(1) per removal.
fn shrink_when_sparse<K: std::hash::Hash + Eq, V>(table: &mut Table<K, V>) {
    if table.capacity() > 64 && table.len() < table.capacity() / 4 {
        table.shrink_to(table.len() * 2);
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Unbounded for `send` too: every session has at most one request
        // in flight (it waits for the answer before reading on), so the
        // mailbox is bounded by the number of connections already. actix's
        // own bound would park senders on a shared `Recipient` instead.
        ctx.set_mailbox_capacity(0);
        self.out.slices.set_done(ctx.address().recipient());
    }
}

impl Handler<SliceDone> for Broker {
    type Result = ();

    fn handle(&mut self, _: SliceDone, _: &mut Context<Self>) {
        self.out.slices.slice_done();
        self.out.slices.release(&mut self.peers);
    }
}

/// Self-message: send pending output (see [`Broker::flush_soon`]).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Broker {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {
        self.flush_queued = false;
        self.flush();
    }
}

impl Handler<Connect> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let Connect {
            id,
            session,
            backlog,
        } = msg;
        // A connection accepted just before shutdown joins the shutdown.
        match &self.phase {
            Phase::Running => {}
            Phase::Draining(weak) => {
                // If the upgrade fails, draining is over and `say_goodbye`
                // is about to run; it will reach this connection too.
                if let Some(guard) = weak.upgrade() {
                    session.control.do_send(Control::Drain(DrainGuard(guard)));
                }
            }
            Phase::Closing => {
                session.control.do_send(Control::Goodbye);
            }
        }
        self.peers.insert(id, Peer::new(session, backlog));
    }
}

impl Handler<Route> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Route, ctx: &mut Context<Self>) {
        let timed = self.sampler.start();
        self.route_batch(msg.from, &msg.batch, msg.credit);
        self.flush_soon(ctx);
        if let Some(began) = timed {
            self.metrics.broker.batch_time.observe(began.elapsed());
        }
    }
}

impl Handler<Leave> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.remove(msg.id, msg.reason);
    }
}
