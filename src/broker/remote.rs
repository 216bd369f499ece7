//! The broker in cluster mode: who is online on the other nodes (the
//! directory), the lines waiting to go to them, and what arrives from
//! them.
//!
//! Routing stays one decision in `Broker::route`: a recipient who is not
//! online here but is in the directory gets the line as a record in the
//! buffer of its node, and the buffers go to the cluster actor at the same
//! flush as local output. The broker never talks to NATS itself and never
//! waits on it (`cluster/` does, on its own thread).
//!
//! A sender's credit stays out until every node its batch went to has
//! handled it ([`Credit::split`]): that is what paces a flooder on one
//! node to a slow reader on another, as on one node.

use actix::prelude::*;
use log::{info, warn};

use super::names::Elsewhere;
use super::{Broker, Table, slices};
use crate::cluster::wire;
use crate::messages::cluster::{
    ClusterLink, Contact, Incoming, NodeId, NodeRoster, Outgoing, Reject, RosterUpdate, Undelivered,
};
use crate::messages::{ConnId, Credit, LeaveReason, Name};
use crate::protocol::{Folded, Reply};

/// A frame to a node is sent once this many bytes of records wait for it,
/// without waiting for the end of the mailbox round (well under NATS's
/// default 1 MiB payload limit).
const FRAME_BYTES: usize = crate::cluster::MAX_FRAME_BYTES;

/// The broker's view of the rest of the cluster.
pub(super) struct Remote {
    link: ClusterLink,
    /// Names online on other nodes, by spelling: where, and the folded
    /// form (to drop its entry in `folded`).
    directory: Table<Name, (NodeId, Folded)>,
    /// The same names by folded form: their spelling (a key of
    /// `directory`). Looked up only when the spelling a sender typed is
    /// not in `directory` (`names.rs`).
    folded: Table<Folded, Name>,
    /// Each other node's names.
    nodes: Table<NodeId, Table<Name, ()>>,
    /// Records waiting to go, per node.
    outgoing: Table<NodeId, Pending>,
    /// Nodes the current batch wrote to (their buffers take a share of
    /// the sender's credit).
    touched: Vec<NodeId>,
    /// Names being claimed in the name service by logins on this node,
    /// by folded form: what the name service decides on.
    pub(super) claiming: Table<Folded, ()>,
    /// Cut off from the cluster: no logins.
    pub(super) cut_off: bool,
    /// Some buffer has records waiting for the next flush.
    pub(super) waiting: bool,
}

#[derive(Default)]
struct Pending {
    records: Vec<u8>,
    credits: Vec<Credit>,
}

impl Remote {
    /// The cluster as seen from a node that has just started: nobody
    /// anywhere else yet.
    pub(super) fn new(link: ClusterLink) -> Self {
        Remote {
            link,
            directory: Table::default(),
            folded: Table::default(),
            nodes: Table::default(),
            outgoing: Table::default(),
            touched: Vec::new(),
            claiming: Table::default(),
            cut_off: false,
            waiting: false,
        }
    }

    /// The cluster actor's address book.
    pub(super) fn link(&self) -> &ClusterLink {
        &self.link
    }

    /// The node `name` (spelled exactly so) is online on, if another one.
    pub(super) fn node_of(&self, name: &str) -> Option<&NodeId> {
        self.directory.get(name).map(|(node, _)| node)
    }

    /// The spelling and node of the user online elsewhere under the name
    /// `folded` is, in any spelling.
    pub(super) fn spelling_of(&self, folded: &Folded) -> Option<(&Name, &NodeId)> {
        let spelling = self.folded.get(folded)?;
        let (node, _) = self.directory.get(spelling)?;
        Some((spelling, node))
    }

    /// Users online on other nodes.
    pub(super) fn online(&self) -> usize {
        self.directory.len()
    }

    /// Queues `line` from `conn` for `names`, all online elsewhere (with
    /// their nodes): one record per node.
    pub(super) fn send_named(&mut self, conn: ConnId, mut names: Vec<Elsewhere<'_>>, line: &[u8]) {
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for group in names.chunk_by(|a, b| a.0 == b.0) {
            let node = group[0].0.clone();
            let names = group.iter().map(|(_, name)| &**name);
            self.pending(node, |records| {
                wire::write_record(records, conn, false, names, line)
            });
        }
    }

    /// Queues `line` from `conn` for everyone on every other node.
    pub(super) fn send_everyone(&mut self, conn: ConnId, line: &[u8]) {
        let nodes: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(node, _)| node.clone())
            .collect();
        for node in nodes {
            self.pending(node, |records| {
                wire::write_record(records, conn, true, std::iter::empty(), line)
            });
        }
    }

    fn pending(&mut self, node: NodeId, write: impl FnOnce(&mut Vec<u8>)) {
        let pending = self.outgoing.entry(node.clone()).or_default();
        write(&mut pending.records);
        self.waiting = true;
        if !self.touched.contains(&node) {
            self.touched.push(node.clone());
        }
        if pending.records.len() >= FRAME_BYTES {
            self.send(&node);
        }
    }

    /// The sender's credit after the current batch: each node it wrote to
    /// keeps a share until it has handled the frame; what is returned is
    /// the share for local output.
    pub(super) fn share_credit(&mut self, mut credit: Credit) -> Credit {
        for node in self.touched.drain(..) {
            let (keep, give) = credit.split();
            credit = keep;
            match self.outgoing.get_mut(&node) {
                Some(pending) if !pending.records.is_empty() => pending.credits.push(give),
                // Already sent (the buffer filled up): the frame's
                // credits went with it; this share is dropped.
                _ => {}
            }
        }
        credit
    }

    fn send(&mut self, node: &NodeId) {
        if let Some(pending) = self.outgoing.get_mut(node)
            && !pending.records.is_empty()
        {
            let Pending { records, credits } = std::mem::take(pending);
            self.link.outgoing.do_send(Outgoing {
                node: node.clone(),
                records,
                credits,
            });
        }
    }

    /// Sends every waiting frame (the broker's flush).
    pub(super) fn flush(&mut self) {
        if !std::mem::take(&mut self.waiting) {
            return;
        }
        let nodes: Vec<NodeId> = self
            .outgoing
            .iter()
            .filter(|(_, p)| !p.records.is_empty())
            .map(|(node, _)| node.clone())
            .collect();
        for node in nodes {
            self.send(&node);
        }
    }

    /// Applies a change of another node's roster; returns what changed,
    /// in order (`true`: came online), for the broker's roster. The order
    /// matters: a user who came and went within one announcement is gone.
    fn update(&mut self, node: NodeId, update: RosterUpdate) -> Vec<(bool, Name)> {
        let mut changed = Vec::new();
        let names = self.nodes.entry(node.clone()).or_default();
        match update {
            RosterUpdate::Down => changed.extend(names.drain().map(|(name, ())| (false, name))),
            RosterUpdate::Replace(all) => {
                let new: Table<Name, ()> = all.into_iter().map(|n| (n, ())).collect();
                let gone = names.keys().filter(|name| !new.contains_key(*name));
                changed.extend(gone.cloned().map(|name| (false, name)));
                let came = new.keys().filter(|name| !names.contains_key(*name));
                changed.extend(came.cloned().map(|name| (true, name)));
                *names = new;
            }
            RosterUpdate::Changes(changes) => {
                for (online, name) in changes {
                    let effective = if online {
                        names.insert(name.clone(), ()).is_none()
                    } else {
                        names.remove(&name).is_some()
                    };
                    if effective {
                        changed.push((online, name));
                    }
                }
            }
        }
        for (online, name) in &changed {
            if *online {
                self.came(name, &node);
            } else if self.directory.get(name).is_some_and(|(at, _)| *at == node) {
                self.went(name);
            }
        }
        if self.nodes.get(&node).is_some_and(|n| n.is_empty()) {
            self.nodes.remove(&node);
        }
        changed
    }

    /// `name` came online on `node`. (The name service keeps a folded
    /// name on one node at a time; for a moment two spellings may be
    /// listed, one that left and one that came, and the newer is found.)
    fn came(&mut self, name: &Name, node: &NodeId) {
        let folded = Folded::of(name);
        self.folded.insert(folded.clone(), name.clone());
        self.directory.insert(name.clone(), (node.clone(), folded));
    }

    /// `name` is no longer online on the node the directory had it on.
    fn went(&mut self, name: &Name) {
        if let Some((_, folded)) = self.directory.remove(name)
            && self.folded.get(&folded) == Some(name)
        {
            self.folded.remove(&folded);
        }
    }
}

impl Handler<NodeRoster> for Broker {
    type Result = ();

    fn handle(&mut self, msg: NodeRoster, _: &mut Context<Self>) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        let changed = remote.update(msg.node.clone(), msg.update);
        if !changed.is_empty() {
            let came = changed.iter().filter(|(online, _)| *online).count();
            info!(
                "node {}: {came} came online, {} went offline",
                msg.node,
                changed.len() - came
            );
        }
        for (online, name) in changed {
            if online {
                self.join_roster(name);
            } else {
                self.leave_roster(&name);
            }
        }
    }
}

impl Handler<Incoming> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        let Incoming {
            from,
            payload,
            offset,
            credit,
        } = msg;
        self.out.filled = None;
        let mut wide = false;
        let local_online = self.names.len();
        for record in wire::records(payload.get(offset..).unwrap_or_default()) {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    warn!("node {from}: {e}; rest of the frame dropped");
                    break;
                }
            };
            if record.everyone {
                let fan_out = local_online > slices::WIDE_FANOUT;
                let mut reached = 0;
                for (&id, peer) in &mut self.peers {
                    if peer.is_online() {
                        peer.push(id, record.line, fan_out, &mut self.out);
                        reached += 1;
                    }
                }
                self.metrics.broker.deliveries.add(reached);
                wide |= fan_out;
            } else {
                let mut missing = String::new();
                for name in record.recipients() {
                    // The sending node resolved the name to its spelling
                    // here; the fold is the fallback for a user who left
                    // and came back in another spelling meanwhile.
                    let id = self
                        .names
                        .exact(name)
                        .or_else(|| self.names.holder(&Folded::of(name)));
                    let online = id
                        .and_then(|id| Some(id).zip(self.peers.get_mut(&id)))
                        .filter(|(_, peer)| peer.is_online());
                    match online {
                        Some((id, peer)) => {
                            peer.push(id, record.line, false, &mut self.out);
                            self.metrics.broker.deliveries.add(1);
                        }
                        None => {
                            missing.push_str(name);
                            missing.push(',');
                        }
                    }
                }
                if !missing.is_empty()
                    && let Some(remote) = &self.remote
                {
                    remote.link.reject.do_send(Reject {
                        node: from.clone(),
                        conn: record.conn,
                        names: missing,
                    });
                }
            }
            self.settle();
        }
        self.hold_credit(credit, wide);
        self.flush_soon(ctx);
    }
}

impl Handler<Undelivered> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Undelivered, ctx: &mut Context<Self>) {
        let names: Vec<&str> = msg.names.iter().map(String::as_str).collect();
        let reply = if msg.lost {
            Reply::Undelivered(&names)
        } else {
            Reply::NotOnline(&names)
        };
        self.push_to(msg.conn, &reply.to_bytes());
        self.flush_soon(ctx);
    }
}

impl Handler<Contact> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Contact, _: &mut Context<Self>) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        match msg {
            Contact::Regained => {
                info!("cluster: contact regained; taking logins again");
                remote.cut_off = false;
            }
            Contact::Lost => {
                warn!("cluster: cut off from the cluster; disconnecting every user");
                remote.cut_off = true;
                let online: Vec<ConnId> = self
                    .peers
                    .iter()
                    .filter(|(_, peer)| peer.name.is_some())
                    .map(|(&id, _)| id)
                    .collect();
                let line = Reply::CutOff.to_bytes();
                for id in online {
                    self.push_to(id, &line);
                    self.remove(id, LeaveReason::Gone);
                }
            }
        }
    }
}
