//! The [`Cluster`] actor: this node's side of the cluster, on an arbiter
//! (thread) of its own, so the broker never waits on the network.
//!
//! It owns the NATS connection and everything that crosses it:
//! - lines: [`Outgoing`] frames from the broker are numbered per link
//!   (`links.rs`) and published on the destination node's subject;
//!   frames arriving on this node's subject go to the broker as
//!   [`Incoming`], each with a credit that answers `Done` when dropped;
//! - presence: this node's logins and leaves are announced (numbered),
//!   the others' applied (`presence.rs`) and passed to the broker;
//! - heartbeats every [`Timing::beat`], with a `Tick` on every link;
//! - names: claims and releases in the name service (`names.rs`), this
//!   node's lease and the janitor that frees a dead node's names
//!   (`janitor.rs`).
//!
//! Publishing goes through one task fed by an unbounded channel, in
//! order: a handler never awaits the client, and NATS keeps per-link order
//! because one connection publishes everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use log::{debug, info, warn};
use tokio::sync::mpsc;

mod janitor;

use super::links::{Arrival, Inbound, Outbound, Unconfirmed};
use super::names::{ClaimError, NameService};
use super::presence::{Action, Nodes};
use super::wire::{self, Beat, Envelope, Frame, Presence, Roster};
use super::{ClusterConfig, Timing};
use crate::messages::cluster::{
    BrokerClusterLink, Claim, ClaimRefused, ClusterLink, Handled, HandledOnDrop, Incoming,
    LocalRoster, NodeId, NodeRoster, Outgoing, Reject, Undelivered,
};
use crate::messages::{Credit, Name};

/// A roster answer is cut into parts of at most this many bytes (NATS's
/// default payload limit is 1 MiB).
const ROSTER_PART_BYTES: usize = 256 * 1024;

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No NATS server answered.
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        /// What was tried.
        urls: String,
        /// Why it failed.
        source: async_nats::ConnectError,
    },
    /// The name service could not be opened or set up.
    #[error("cannot open the cluster's name service: {0}")]
    Names(String),
}

/// The subjects of a cluster, by name.
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
}

impl Subjects {
    fn node(&self, node: &str) -> String {
        format!("{}.node.{node}", self.prefix)
    }
    fn beat(&self) -> String {
        format!("{}.beat", self.prefix)
    }
    fn presence(&self) -> String {
        format!("{}.presence", self.prefix)
    }
    fn holds(&self, node: &str) -> String {
        format!("{}.holds.{node}", self.prefix)
    }
    fn roster_request(&self, node: &str) -> String {
        format!("{}.roster.{node}", self.prefix)
    }
    fn roster_answer(&self, asker: &str, node: &str) -> String {
        format!("{}.rosters.{asker}.{node}", self.prefix)
    }
}

/// A name this node holds in the name service.
struct Held {
    revision: u64,
    announced: bool,
}

/// This node's side of the cluster (see the module documentation).
pub struct Cluster {
    me: NodeId,
    subjects: Subjects,
    timing: Timing,
    client: async_nats::Client,
    names: NameService,
    broker: Option<BrokerClusterLink>,
    publish: mpsc::UnboundedSender<Publish>,
    publish_rx: Option<mpsc::UnboundedReceiver<Publish>>,
    out_links: HashMap<NodeId, Outbound>,
    in_links: HashMap<NodeId, Inbound>,
    nodes: Nodes,
    held: HashMap<Name, Held>,
    generation: u64,
    changes: Vec<(bool, Name)>,
    dones: HashMap<NodeId, Vec<u64>>,
    flush_queued: bool,
    lease: janitor::Lease,
    /// Releases in flight hold a clone; shutdown waits for all to drop.
    releases: (mpsc::Sender<()>, Option<mpsc::Receiver<()>>),
    /// Releases that failed (no quorum, say): tried again whenever the
    /// lease is renewed, so no name stays held by a node that let go of it.
    unreleased: Vec<(Name, u64)>,
    myself: Option<actix::WeakAddr<Cluster>>,
}

impl Cluster {
    /// Connects to NATS and opens the name service (run on the arbiter the
    /// actor will live on: the client's tasks stay on that thread).
    /// Leftover names of an earlier life of this node id are freed.
    pub async fn connect(config: &ClusterConfig) -> Result<Self, ClusterError> {
        let urls: Vec<String> = config
            .urls
            .split(',')
            .map(|u| u.trim().to_owned())
            .collect();
        let node_id = config.node_id.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("achat-{node_id}"))
            .connection_timeout(config.timing.request_timeout)
            .request_timeout(Some(config.timing.request_timeout))
            .max_reconnects(None)
            .event_callback(move |event| async move {
                match event {
                    async_nats::Event::Connected => info!("cluster: connected to NATS"),
                    async_nats::Event::SlowConsumer(_) => {
                        warn!("cluster: NATS messages dropped (slow consumer); losses are reported")
                    }
                    other => warn!("cluster: NATS {other}"),
                }
            })
            .connect(urls)
            .await
            .map_err(|source| ClusterError::Connect {
                urls: config.urls.clone(),
                source,
            })?;
        let me: NodeId = Arc::from(config.node_id.as_str());
        // A stream just created by several nodes at once may take a moment
        // to elect its leader: the set-up is tried again, bounded.
        let deadline = Instant::now() + config.timing.request_timeout * 3;
        let names = loop {
            match open_names(client.clone(), config, &me).await {
                Ok(names) => break names,
                Err(e) if Instant::now() < deadline => {
                    debug!("cluster: name service not ready yet ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(ClusterError::Names(e.to_string())),
            }
        };
        let (publish, publish_rx) = mpsc::unbounded_channel();
        let (releases_tx, releases_rx) = mpsc::channel(1);
        Ok(Cluster {
            me,
            subjects: Subjects {
                prefix: config.cluster_name.clone(),
            },
            timing: config.timing,
            client,
            names,
            broker: None,
            publish,
            publish_rx: Some(publish_rx),
            out_links: HashMap::new(),
            in_links: HashMap::new(),
            nodes: Nodes::default(),
            held: HashMap::new(),
            generation: 0,
            changes: Vec::new(),
            dones: HashMap::new(),
            flush_queued: false,
            lease: janitor::Lease::new(Instant::now()),
            releases: (releases_tx, Some(releases_rx)),
            unreleased: Vec::new(),
            myself: None,
        })
    }

    /// The address book the broker needs.
    pub fn link(addr: &Addr<Cluster>, node: NodeId) -> ClusterLink {
        ClusterLink {
            node,
            claim: addr.clone().recipient(),
            roster: addr.clone().recipient(),
            outgoing: addr.clone().recipient(),
            reject: addr.clone().recipient(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me.clone()
    }

    /// The largest message the NATS server takes.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    fn send(&self, subject: String, payload: Vec<u8>) {
        // Fails only once the publishing task is gone, at the very end.
        let _ = self
            .publish
            .send(Publish::Message(subject, Bytes::from(payload)));
    }

    fn broker(&self) -> Option<&BrokerClusterLink> {
        self.broker.as_ref()
    }

    /// Carries out what `presence.rs` decided.
    fn act(&mut self, actions: Vec<Action>) {
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
    fn node_gone(&mut self, node: &NodeId) {
        warn!("cluster: node {node} is gone");
        self.in_links.remove(node);
        if let Some(mut link) = self.out_links.remove(node) {
            let lost = link.fail_all();
            self.report_lost(lost);
        }
    }

    /// Tells the senders of lost frames, naming the recipients.
    fn report_lost(&self, lost: Vec<Unconfirmed>) {
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

    /// Publishes pending announcements and `Done`s (once per mailbox round).
    fn flush_soon(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_queued {
            self.flush_queued = true;
            ctx.run_later(Duration::ZERO, |this, _| {
                this.flush_queued = false;
                this.flush();
            });
        }
    }

    fn flush(&mut self) {
        if !self.changes.is_empty() {
            self.generation += 1;
            let changes = std::mem::take(&mut self.changes);
            let presence = Presence {
                from: &self.me,
                generation: self.generation,
                changes: changes.iter().map(|(on, n)| (*on, &**n)).collect(),
            };
            self.send(self.subjects.presence(), presence.to_bytes());
        }
        for (node, seqs) in std::mem::take(&mut self.dones) {
            let done = Envelope {
                from: &self.me,
                frame: Frame::Done(seqs),
            };
            self.send(self.subjects.node(&node), done.to_bytes());
        }
    }

    /// Every beat: announce this node, tick every link, expire the silent.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        self.flush();
        let beat = Beat {
            from: &self.me,
            generation: self.generation,
            leaving: false,
        };
        self.send(self.subjects.beat(), beat.to_bytes());
        let nodes: Vec<NodeId> = self.nodes.alive().cloned().collect();
        for node in nodes {
            let tick = Envelope {
                from: &self.me,
                frame: Frame::Tick {
                    sent: self.out_links.get(&node).map_or(0, Outbound::sent),
                    done_below: self.in_links.get(&node).map_or(0, Inbound::done_below),
                },
            };
            self.send(self.subjects.node(&node), tick.to_bytes());
        }
        let actions = self.nodes.expire(
            Instant::now(),
            self.timing.down_after,
            self.timing.down_after,
        );
        self.act(actions);
        self.lease_tick(ctx);
    }

    /// A message on this node's own subject.
    fn on_frame(&mut self, payload: Bytes, ctx: &mut Context<Self>) {
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
    fn on_roster_request(&mut self, reply: Option<String>) {
        let Some(reply) = reply else {
            return;
        };
        // What is announced, exactly at the generation published.
        self.flush();
        let names: Vec<&str> = self
            .held
            .iter()
            .filter(|(_, held)| held.announced)
            .map(|(name, _)| &**name)
            .collect();
        for part in Roster::split(self.generation, &names, ROSTER_PART_BYTES) {
            self.send(reply.clone(), part.to_bytes());
        }
    }
}

/// A release that failed, to try again.
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseFailed(Name, u64);

impl Handler<ReleaseFailed> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: ReleaseFailed, _: &mut Context<Self>) {
        self.unreleased.push((msg.0, msg.1));
    }
}

/// Opens the name service, frees what this node id held in an earlier
/// life, and takes the lease.
async fn open_names(
    client: async_nats::Client,
    config: &ClusterConfig,
    me: &str,
) -> Result<NameService, super::names::NameServiceError> {
    let names = NameService::open(client, &config.cluster_name, None)
        .await?
        .with_timeout(config.timing.request_timeout);
    janitor::free_leftovers(&names, me).await?;
    names.renew_lease(me).await?;
    Ok(names)
}

/// What the publishing task is asked to do, in order.
enum Publish {
    Message(String, Bytes),
    /// Flush the connection, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Actor for Cluster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        self.myself = Some(ctx.address().downgrade());
        if let Some(mut rx) = self.publish_rx.take() {
            let client = self.client.clone();
            actix::spawn(async move {
                while let Some(job) = rx.recv().await {
                    match job {
                        Publish::Message(subject, payload) => {
                            if let Err(e) = client.publish(subject, payload).await {
                                warn!("cluster: publish failed: {e}");
                            }
                        }
                        Publish::Flush(done) => {
                            let _ = client.flush().await;
                            let _ = done.send(());
                        }
                    }
                }
            });
        }
    }
}

/// Server → cluster actor, once the broker is started: where to send what
/// arrives; the subscriptions and the clocks start now.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Attach(pub BrokerClusterLink);

impl Handler<Attach> for Cluster {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) -> Self::Result {
        self.broker = Some(msg.0);
        let client = self.client.clone();
        let s = self.subjects.clone();
        let me = self.me.clone();
        let subscribe = async move {
            let mut subscriptions = Vec::new();
            for subject in [
                s.node(&me),
                s.beat(),
                s.presence(),
                s.roster_request(&me),
                s.holds(&me),
                format!("{}.rosters.{me}.*", s.prefix),
            ] {
                let subscription = client.subscribe(subject).await;
                subscriptions.push(subscription.map_err(|e| e.to_string())?);
            }
            client.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(subscriptions)
        };
        Box::pin(subscribe.into_actor(self).map(|subscribed, this, ctx| {
            for subscription in subscribed? {
                ctx.add_stream(subscription);
            }
            this.beat(ctx);
            ctx.run_interval(this.timing.beat, |this, ctx| this.beat(ctx));
            ctx.run_interval(this.timing.janitor_every, |this, ctx| {
                this.janitor_tick(ctx)
            });
            info!(
                "cluster: node {} joined cluster {}",
                this.me, this.subjects.prefix
            );
            Ok(())
        }))
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
                    let held = std::str::from_utf8(&msg.payload)
                        .is_ok_and(|name| self.held.contains_key(name));
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

impl Handler<LocalRoster> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: LocalRoster, ctx: &mut Context<Self>) {
        let LocalRoster { name, online } = msg;
        if online {
            if let Some(held) = self.held.get_mut(&name) {
                held.announced = true;
                self.changes.push((true, name));
            }
        } else if let Some(held) = self.held.remove(&name) {
            if held.announced {
                self.changes.push((false, name.clone()));
            }
            self.release(name, held.revision);
        }
        self.flush_soon(ctx);
    }
}

impl Cluster {
    /// Frees a name in the name service, in the background; one that
    /// fails is tried again after the next renewal of the lease.
    fn release(&self, name: Name, revision: u64) {
        let names = self.names.clone();
        let in_flight = self.releases.0.clone();
        let this = self.myself.clone();
        actix::spawn(async move {
            let _in_flight = in_flight;
            if let Err(e) = names.release(&name, revision).await {
                warn!("cluster: could not free the name {name} (tried again later): {e}");
                if let Some(this) = this.and_then(|weak| weak.upgrade()) {
                    this.do_send(ReleaseFailed(name, revision));
                }
            }
        });
    }

    /// Tries the failed releases again (the lease was just renewed: the
    /// name service answers again).
    fn retry_releases(&mut self) {
        for (name, revision) in std::mem::take(&mut self.unreleased) {
            self.release(name, revision);
        }
    }

    /// One claim, and what it means here.
    fn claim_once(
        &mut self,
        name: Name,
        attempt: u32,
    ) -> Pin<Box<dyn ActorFuture<Self, Output = Result<(), ClaimRefused>>>> {
        let names = self.names.clone();
        let me = self.me.clone();
        let claim_name = name.clone();
        let claim = async move { names.claim(&claim_name, &me).await };
        Box::pin(claim.into_actor(self).then(move |answer, this, _| {
            let outcome = match answer {
                Ok(revision) => {
                    this.held.insert(
                        name.clone(),
                        Held {
                            revision,
                            announced: false,
                        },
                    );
                    return boxed_ready(Ok(()));
                }
                Err(ClaimError::Invalid(why)) => {
                    warn!("cluster: a name the name service cannot take: {why}");
                    Err(ClaimRefused::Unavailable)
                }
                Err(ClaimError::Unavailable(why)) => {
                    warn!("cluster: name service unavailable for a login: {why}");
                    Err(ClaimRefused::Unavailable)
                }
                Err(ClaimError::Taken { holder, revision }) => {
                    if holder == *this.me {
                        if this.held.contains_key(&name) {
                            Err(ClaimRefused::Taken)
                        } else {
                            // Held by this node and not in use: a release
                            // on its way, or a claim of ours that timed
                            // out but went through. Either way it is ours
                            // to free (freeing twice does no harm).
                            this.release(name.clone(), revision);
                            return this.claim_again(name, attempt);
                        }
                    } else if !this.nodes.is_alive(&holder) {
                        Err(ClaimRefused::HeldByLostNode(
                            this.timing.names_freed_within(),
                        ))
                    } else {
                        return this.ask_holder(holder, name, attempt);
                    }
                }
            };
            boxed_ready(outcome)
        }))
    }
}

impl Cluster {
    /// The name is held by a live node: it alone knows whether its user is
    /// still there or the name is on its way back (a `/quit` there a
    /// moment ago, its release not applied yet). Asked, not guessed.
    fn ask_holder(&mut self, holder: String, name: Name, attempt: u32) -> ClaimFuture {
        let client = self.client.clone();
        let subject = self.subjects.holds(&holder);
        let question = Bytes::from(name.as_bytes().to_vec());
        let timeout = self.timing.request_timeout;
        Box::pin(
            async move { tokio::time::timeout(timeout, client.request(subject, question)).await }
                .into_actor(self)
                .then(move |answer, this, _| match answer {
                    Ok(Ok(reply)) if &reply.payload[..] == b"0" => this.claim_again(name, attempt),
                    _ => boxed_ready(Err(ClaimRefused::Taken)),
                }),
        )
    }

    /// Claims again after a short pause, a few times at most.
    fn claim_again(&mut self, name: Name, attempt: u32) -> ClaimFuture {
        if attempt >= 6 {
            return boxed_ready(Err(ClaimRefused::Taken));
        }
        Box::pin(
            tokio::time::sleep(Duration::from_millis(20 << attempt))
                .into_actor(self)
                .then(move |(), this, _| this.claim_once(name, attempt + 1)),
        )
    }
}

use std::pin::Pin;

/// A claim in progress, with access to the actor.
type ClaimFuture = Pin<Box<dyn ActorFuture<Cluster, Output = Result<(), ClaimRefused>>>>;

fn boxed_ready(
    outcome: Result<(), ClaimRefused>,
) -> Pin<Box<dyn ActorFuture<Cluster, Output = Result<(), ClaimRefused>>>> {
    Box::pin(fut::ready(outcome))
}

impl Handler<Claim> for Cluster {
    type Result = ResponseActFuture<Self, Result<(), ClaimRefused>>;

    fn handle(&mut self, msg: Claim, _: &mut Context<Self>) -> Self::Result {
        if self.lease.cut_off {
            return boxed_ready(Err(ClaimRefused::Unavailable));
        }
        self.claim_once(msg.name, 0)
    }
}

/// Server → cluster actor at shutdown: say goodbye, wait (bounded) for
/// the names of the users who left to be freed, flush.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClusterStop {
    /// When to stop waiting.
    pub deadline: Instant,
}

impl Handler<ClusterStop> for Cluster {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: ClusterStop, _: &mut Context<Self>) -> Self::Result {
        self.flush();
        let beat = Beat {
            from: &self.me,
            generation: self.generation,
            leaving: true,
        };
        self.send(self.subjects.beat(), beat.to_bytes());
        // Names still held (users who had not left) are freed too.
        for (name, held) in std::mem::take(&mut self.held) {
            self.release(name, held.revision);
        }
        let waiting = self.releases.1.take();
        // Our own sender goes: `recv` ends once every release has.
        let (placeholder, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.releases.0, placeholder));
        let deadline = tokio::time::Instant::from_std(msg.deadline);
        let publish = self.publish.clone();
        Box::pin(
            async move {
                if let Some(mut waiting) = waiting {
                    let _ = tokio::time::timeout_at(deadline, waiting.recv()).await;
                }
                // Behind everything queued for publishing.
                let (flushed, done) = tokio::sync::oneshot::channel();
                if publish.send(Publish::Flush(flushed)).is_ok() {
                    let _ = tokio::time::timeout_at(deadline, done).await;
                }
            }
            .into_actor(self),
        )
    }
}
