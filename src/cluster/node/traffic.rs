//! What crosses NATS besides names: frames of lines on the numbered
//! links, presence, roster requests, and what to do when a node goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};

use super::{Cluster, ROSTER_PART_BYTES};
use crate::cluster::links::{Arrival, Unconfirmed};
use crate::cluster::presence::Action;
use crate::cluster::wire::{self, Beat, Envelope, Frame, Presence, Roster};
use crate::messages::cluster::{
    Handled, HandledOnDrop, Incoming, NodeId, NodeRoster, Outgoing, Reject, Undelivered,
};
use crate::messages::{Credit, Name};
use crate::protocol::Folded;

impl Cluster {
    /// Carries out what `presence.rs` decided.
    pub(super) fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Ask(node) => {
                    debug!("cluster: asking node {node} for its roster");
                    let request = self.subjects.roster_request(&node);
                    let answer = self.subjects.roster_answer(&self.me, &node);
                    let client = self.client.clone();
                    actix::spawn(async move {
                        let _ = client
                            .publish_with_reply(request, answer, Bytes::new())
                            .await;
                    });
                }
                Action::Roster(node, update) => {
                    if matches!(update, crate::messages::cluster::RosterUpdate::Down) {
                        self.node_gone(&node);
                    }
                    if let Some(broker) = self.broker() {
                        broker.roster.do_send(NodeRoster { node, update });
                    }
                }
            }
        }
    }

    /// A node left or stopped answering: what it did not confirm is lost.
    pub(super) fn node_gone(&mut self, node: &NodeId) {
        warn!("cluster: node {node} is gone");
        self.in_links.remove(node);
        if let Some(mut link) = self.out_links.remove(node) {
            let lost = link.fail_all();
            self.report_lost(lost);
        }
    }

    /// Tells the senders of lost frames, naming the recipients.
    pub(super) fn report_lost(&self, lost: Vec<Unconfirmed>) {
        let Some(broker) = self.broker() else {
            return;
        };
        let mut by_conn: HashMap<u64, Vec<String>> = HashMap::new();
        for frame in &lost {
            for record in wire::records(&frame.records).flatten() {
                let names = by_conn.entry(record.conn).or_default();
                if record.everyone {
                    names.push("*".into());
                } else {
                    names.extend(record.recipients().map(str::to_owned));
                }
            }
        }
        for (conn, mut names) in by_conn {
            names.sort();
            names.dedup();
            broker.undelivered.do_send(Undelivered {
                conn,
                names,
                lost: true,
            });
        }
    }

    /// A message on this node's own subject.
    pub(super) fn on_frame(&mut self, payload: Bytes, ctx: &mut Context<Self>) {
        let envelope = match Envelope::parse(&payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                warn!("cluster: {e}");
                return;
            }
        };
        let from: NodeId = Arc::from(envelope.from);
        match envelope.frame {
            Frame::Lines { seq, records } => {
                let offset = payload.len() - records.len();
                let link = self.in_links.entry(from.clone()).or_default();
                match link.arrived(seq) {
                    Arrival::InOrder => {}
                    Arrival::Restart => info!("cluster: node {from} started its numbering again"),
                    Arrival::AfterGap(lost) => {
                        warn!("cluster: {} frames from node {from} were lost", lost.len());
                        let lost = Envelope {
                            from: &self.me,
                            frame: Frame::Lost(lost),
                        };
                        self.send(self.subjects.node(&from), lost.to_bytes());
                    }
                }
                let Some(broker) = self.broker() else {
                    return;
                };
                let handled = HandledOnDrop::new(
                    ctx.address().recipient(),
                    Handled {
                        node: from.clone(),
                        seq,
                    },
                );
                broker.incoming.do_send(Incoming {
                    from,
                    payload,
                    offset,
                    credit: Credit::on_drop(handled),
                });
            }
            Frame::Done(seqs) => {
                if let Some(link) = self.out_links.get_mut(&from) {
                    link.done(&seqs);
                }
            }
            Frame::Lost(seqs) => {
                if let Some(link) = self.out_links.get_mut(&from) {
                    let lost = link.lost(&seqs);
                    warn!("cluster: node {from} reports {} frames lost", lost.len());
                    self.report_lost(lost);
                }
            }
            Frame::Tick { sent, done_below } => {
                if let Some(link) = self.out_links.get_mut(&from) {
                    link.done_below(done_below);
                }
                let lost = self.in_links.entry(from.clone()).or_default().tick(sent);
                if !lost.is_empty() {
                    warn!("cluster: {} frames from node {from} never came", lost.len());
                    let lost = Envelope {
                        from: &self.me,
                        frame: Frame::Lost(lost),
                    };
                    self.send(self.subjects.node(&from), lost.to_bytes());
                }
            }
            Frame::NotOnline { conn, names } => {
                if let Some(broker) = self.broker() {
                    broker.undelivered.do_send(Undelivered {
                        conn,
                        names: names.split_terminator(',').map(str::to_owned).collect(),
                        lost: false,
                    });
                }
            }
        }
    }

    /// Answers a request for this node's roster, in parts.
    pub(super) fn on_roster_request(&mut self, reply: Option<String>) {
        let Some(reply) = reply else {
            return;
        };
        // What is announced, exactly at the generation published.
        self.flush();
        let names: Vec<&str> = self
            .held
            .iter()
            .filter(|(_, held)| held.announced)
            .map(|(_, held)| &*held.spelling)
            .collect();
        for part in Roster::split(self.generation, &names, ROSTER_PART_BYTES) {
            self.send(reply.clone(), part.to_bytes());
        }
    }
}

/// What arrives from NATS, told apart by subject.
enum Inbox {
    Frame,
    Beat,
    Presence,
    RosterRequest,
    Holds,
    RosterAnswer,
}

impl Cluster {
    fn inbox(&self, subject: &str) -> Option<Inbox> {
        let rest = subject
            .strip_prefix(self.subjects.prefix.as_str())?
            .strip_prefix('.')?;
        let (kind, tail) = rest.split_once('.').unwrap_or((rest, ""));
        Some(match kind {
            "node" => Inbox::Frame,
            "beat" => Inbox::Beat,
            "presence" => Inbox::Presence,
            "roster" => Inbox::RosterRequest,
            "holds" => Inbox::Holds,
            "rosters" if tail.starts_with(&*self.me) => Inbox::RosterAnswer,
            _ => return None,
        })
    }
}

impl StreamHandler<async_nats::Message> for Cluster {
    fn handle(&mut self, msg: async_nats::Message, ctx: &mut Context<Self>) {
        let Some(kind) = self.inbox(&msg.subject) else {
            return;
        };
        match kind {
            Inbox::Frame => self.on_frame(msg.payload, ctx),
            Inbox::Beat => {
                if let Ok(beat) = Beat::parse(&msg.payload)
                    && beat.from != &*self.me
                {
                    let from: NodeId = Arc::from(beat.from);
                    let actions =
                        self.nodes
                            .beat(&from, beat.generation, beat.leaving, Instant::now());
                    self.act(actions);
                }
            }
            Inbox::Presence => {
                if let Ok(p) = Presence::parse(&msg.payload)
                    && p.from != &*self.me
                {
                    let from: NodeId = Arc::from(p.from);
                    let changes = p
                        .changes
                        .iter()
                        .map(|(on, n)| (*on, Name::from(*n)))
                        .collect();
                    let actions = self
                        .nodes
                        .presence(&from, p.generation, changes, Instant::now());
                    self.act(actions);
                }
            }
            Inbox::Holds => {
                if let Some(reply) = msg.reply {
                    // Asked by folded form, the name service's key.
                    let held = std::str::from_utf8(&msg.payload)
                        .is_ok_and(|key| self.held.contains_key(&Folded::from_key(key)));
                    self.send(
                        reply.to_string(),
                        if held { b"1".to_vec() } else { b"0".to_vec() },
                    );
                }
            }
            Inbox::RosterRequest => {
                self.on_roster_request(msg.reply.map(|r| r.to_string()));
            }
            Inbox::RosterAnswer => {
                let node = msg.subject.rsplit('.').next().unwrap_or_default();
                if let Ok(part) = Roster::parse(&msg.payload) {
                    let node: NodeId = Arc::from(node);
                    let names = part.names.iter().map(|n| Name::from(*n)).collect();
                    let actions = self.nodes.roster_part(
                        &node,
                        part.generation,
                        part.part,
                        part.parts,
                        names,
                    );
                    self.act(actions);
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // A subscription ends only when the client is closed: at shutdown.
        debug!("cluster: a subscription ended");
    }
}

impl Handler<Outgoing> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: Outgoing, _: &mut Context<Self>) {
        let Outgoing {
            node,
            records,
            credits,
        } = msg;
        if !self.nodes.is_alive(&node) {
            self.report_lost(vec![Unconfirmed { records, credits }]);
            return;
        }
        let link = self.out_links.entry(node.clone()).or_default();
        let (seq, records) = link.send(records, credits);
        let frame = wire::lines_frame(&self.me, seq, records);
        self.send(self.subjects.node(&node), frame);
    }
}

impl Handler<Handled> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: Handled, ctx: &mut Context<Self>) {
        if let Some(link) = self.in_links.get_mut(&msg.node) {
            link.handled(msg.seq);
            self.dones.entry(msg.node).or_default().push(msg.seq);
            self.flush_soon(ctx);
        }
    }
}

impl Handler<Reject> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: Reject, _: &mut Context<Self>) {
        let frame = Envelope {
            from: &self.me,
            frame: Frame::NotOnline {
                conn: msg.conn,
                names: &msg.names,
            },
        };
        self.send(self.subjects.node(&msg.node), frame.to_bytes());
    }
}
