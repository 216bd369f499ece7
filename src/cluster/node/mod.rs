//! The [`Cluster`] actor: this node's side of the cluster, on an arbiter
//! (thread) of its own, so the broker never waits on the network.
//!
//! It owns the NATS connection and everything that crosses it:
//! - lines (`traffic.rs`): `Outgoing` frames from the broker are numbered
//!   per link (`cluster/links.rs`) and published on the destination node's
//!   subject; frames arriving on this node's subject go to the broker as
//!   `Incoming`, each with a credit that answers `Done` when dropped;
//! - presence (`traffic.rs`): this node's logins and leaves are announced
//!   (numbered), the others' applied (`cluster/presence.rs`) and passed to
//!   the broker;
//! - heartbeats every [`Timing::beat`], with a `Tick` on every link (here);
//! - names (`claims.rs`): claims and releases in the name service;
//! - this node's lease and the janitor that frees a dead node's names
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
use log::{info, warn};
use tokio::sync::mpsc;

mod claims;
mod janitor;
mod traffic;

use super::links::{Inbound, Outbound};
use super::names::NameService;
use super::presence::Nodes;
use super::wire::{Beat, Envelope, Frame, Presence};
use super::{ClusterConfig, Timing};
use crate::messages::Name;
use crate::messages::cluster::{BrokerClusterLink, ClusterLink, NodeId};
use crate::protocol::Folded;

/// A roster answer is cut into parts of at most this many bytes (NATS's
/// default payload limit is 1 MiB).
const ROSTER_PART_BYTES: usize = 256 * 1024;

/// How long a starting node keeps trying to open the name service.
const SETUP_WAIT: Duration = Duration::from_secs(30);

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

/// A name this node holds in the name service (keyed by its folded form,
/// as the name service is).
struct Held {
    revision: u64,
    announced: bool,
    /// How its user spelled it: what is announced.
    spelling: Name,
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
    held: HashMap<Folded, Held>,
    generation: u64,
    changes: Vec<(bool, Name)>,
    dones: HashMap<NodeId, Vec<u64>>,
    flush_queued: bool,
    lease: janitor::Lease,
    /// Releases in flight hold a clone; shutdown waits for all to drop.
    releases: (mpsc::Sender<()>, Option<mpsc::Receiver<()>>),
    /// Releases that failed (no quorum, say): tried again whenever the
    /// lease is renewed, so no name stays held by a node that let go of it.
    unreleased: Vec<(Folded, u64)>,
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
        // to elect its leader (seconds, on busy machines): the set-up is
        // tried again, bounded.
        let deadline = Instant::now() + SETUP_WAIT;
        let names = loop {
            match open_names(client.clone(), config, &me).await {
                Ok(names) => break names,
                Err(e) if Instant::now() < deadline => {
                    info!("cluster: name service not ready yet ({e}); trying again");
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
