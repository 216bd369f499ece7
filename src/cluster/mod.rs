//! Cluster mode: several achat nodes, one chat namespace, over NATS.
//!
//! One process holds at most as many users as it has file descriptors,
//! and its broker is one thread. Cluster mode puts several nodes behind
//! one namespace, built on an existing distributed engine rather than a
//! protocol of our own: **NATS** core pub/sub carries the lines between
//! nodes, and a JetStream key-value bucket holds what must be agreed on
//! (who holds which name, which nodes are alive).
//!
//! The pieces:
//! - [`wire`]: the frames nodes send each other (pure);
//! - [`links`]: numbered links, so a frame lost between nodes is seen and
//!   its senders told (pure);
//! - [`presence`]: who is online on which node, kept by every node from
//!   the others' announcements, with repair of whatever was missed (pure);
//! - [`keys`] and [`names`]: the name service on JetStream KV: claims
//!   that are atomic on nats-server 2.9 too, releases, leases;
//! - `node/`: the [`Cluster`] actor, on an arbiter of its own: the NATS
//!   connection, the subscriptions and the heartbeats (`mod.rs`), lines and
//!   presence (`traffic.rs`), claims and releases (`claims.rs`), the lease
//!   and the janitor that frees the names of a node that died
//!   (`janitor.rs`).
//!
//! [`join`] connects a starting node (the server calls it before it
//! accepts). The broker never touches NATS and never waits for it: it routes lines
//! for remote users into per-node buffers (`broker/remote.rs`) and hands
//! them to the cluster actor with `do_send`. See docs/CLUSTER.md for how to
//! run a cluster and what it guarantees.

pub mod keys;
pub mod links;
pub mod names;
mod node;
pub mod presence;
pub mod wire;

use std::io;
use std::time::Duration;

use actix::prelude::*;
use log::info;

pub use node::{Attach, Cluster, ClusterError, ClusterStop};

/// The broker sends a frame to a node once this many bytes of records
/// wait for it (a frame is at most this plus one record).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// How a node joins a cluster (`--cluster`, `--cluster-name`, `--node-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers, comma-separated (`nats://127.0.0.1:4222,...`).
    pub urls: String,
    /// Keeps several achat clusters apart on one NATS: the first token of
    /// every subject and the name of the key-value bucket.
    pub cluster_name: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// The clocks of failure detection.
    pub timing: Timing,
}

/// The clocks of failure detection. The defaults are the documented
/// bounds (docs/CLUSTER.md); tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A node announces itself this often (and ticks every link).
    pub beat: Duration,
    /// A node not heard from for this long is taken for gone: its users are
    /// shown offline and lines to it are reported lost.
    pub down_after: Duration,
    /// A node renews its lease in the name service this often ...
    pub lease_every: Duration,
    /// ... and, unable to renew it for this long, knows it is cut off: it
    /// disconnects its users and takes no logins.
    pub cut_off_after: Duration,
    /// The names of a node whose lease has not changed for this long are
    /// freed by the others (longer than `cut_off_after`, so the node has
    /// let go of them first).
    pub free_after: Duration,
    /// How often each node looks for such leases.
    pub janitor_every: Duration,
    /// Bound on one request to the name service.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            beat: Duration::from_secs(1),
            down_after: Duration::from_secs(3),
            lease_every: Duration::from_secs(2),
            cut_off_after: Duration::from_secs(10),
            free_after: Duration::from_secs(20),
            janitor_every: Duration::from_secs(5),
            request_timeout: Duration::from_secs(3),
        }
    }
}

impl Timing {
    /// The bound, in seconds, on how long the name of a user of a node
    /// that died stays taken: the lease must go stale, then a janitor
    /// round must come, then the release itself.
    pub fn names_freed_within(&self) -> u64 {
        (self.free_after + self.janitor_every + self.request_timeout * 2)
            .as_secs()
            .max(1)
    }
}

/// A node id for a node started without `--node-id`: 8 random hex digits.
pub fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // The standard library's per-process random hash keys, mixed with the
    // time and the pid: random enough to tell nodes apart, no crate needed.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

/// Connects to the cluster on an arbiter of its own (the NATS client's
/// tasks live there) and starts the cluster actor.
pub async fn join(
    config: &ClusterConfig,
    max_line_bytes: usize,
) -> io::Result<(Arbiter, Addr<Cluster>, crate::messages::cluster::NodeId)> {
    let arbiter = Arbiter::try_new()?;
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let for_arbiter = config.clone();
    arbiter.spawn(async move {
        let _ = connected_tx.send(Cluster::connect(&for_arbiter).await);
    });
    let cluster = connected
        .await
        .map_err(|_| io::Error::other("cluster: the cluster's thread ended"))?
        .map_err(io::Error::other)?;
    // One relayed line and its recipients, plus a full frame, must fit in
    // one NATS message.
    let needed = 2 * max_line_bytes + MAX_FRAME_BYTES;
    if cluster.max_payload() < needed {
        return Err(io::Error::other(format!(
            "cluster: --max-line-bytes {max_line_bytes} needs NATS messages of {needed} bytes; \
             the server allows {} (max_payload)",
            cluster.max_payload()
        )));
    }
    let node = cluster.node_id();
    info!(
        "cluster: node {node} of cluster {} (NATS {})",
        config.cluster_name, config.urls
    );
    let addr = Cluster::start_in_arbiter(&arbiter.handle(), move |_| cluster);
    Ok((arbiter, addr, node))
}

/// Where the cluster actor reaches the broker.
pub fn broker_link(
    broker: &Addr<crate::broker::Broker>,
) -> crate::messages::cluster::BrokerClusterLink {
    crate::messages::cluster::BrokerClusterLink {
        incoming: broker.clone().recipient(),
        roster: broker.clone().recipient(),
        undelivered: broker.clone().recipient(),
        contact: broker.clone().recipient(),
    }
}
