//! This node's lease in the name service, and the janitor that frees the
//! names of nodes whose lease went stale.
//!
//! A name in the name service says which node holds it; only that node
//! frees it, when its user leaves. A node that dies cannot, so:
//! - every node renews its lease (`node.<id>` in the bucket) every
//!   [`Timing::lease_every`](crate::cluster::Timing); a node that cannot
//!   renew it for `cut_off_after` knows it is cut off and lets go of its
//!   users (so it never goes on vouching for names the others may hand
//!   out again);
//! - every node looks at all leases every `janitor_every`; one that has
//!   not changed for `free_after` (longer than `cut_off_after`, measured
//!   on the looker's own clock from when it first saw that revision, so
//!   clocks need not agree) belongs to a dead node: its names are freed,
//!   each by deleting the one claim it read (by sequence), so a name claimed anew
//!   in the meantime is never touched, then the lease itself.
//!
//! Several janitors freeing the same node at once do no harm, for the
//! same reason.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use log::{info, warn};

use super::Cluster;
use crate::cluster::names::{NameService, NameServiceError};
use crate::messages::cluster::Contact;

/// The state of this node's lease and of its janitor.
pub(super) struct Lease {
    /// The last successful renewal.
    renewed: Instant,
    /// The last attempt started.
    attempted: Instant,
    renewing: bool,
    /// Gave up its users: the lease could not be renewed for too long.
    pub(super) cut_off: bool,
    /// Other nodes' leases: the revision last seen, and since when.
    seen: HashMap<String, (u64, Instant)>,
    sweeping: bool,
}

impl Lease {
    /// A lease just renewed.
    pub(super) fn new(now: Instant) -> Self {
        Lease {
            renewed: now,
            attempted: now,
            renewing: false,
            cut_off: false,
            seen: HashMap::new(),
            sweeping: false,
        }
    }
}

/// Frees the names this node id held in an earlier life (it crashed, and
/// was started again under the same `--node-id`).
pub(super) async fn free_leftovers(names: &NameService, me: &str) -> Result<(), NameServiceError> {
    let mut freed = 0;
    for holder in names.holders().await? {
        if holder.node == me {
            names.release(&holder.name, holder.revision).await?;
            freed += 1;
        }
    }
    if freed > 0 {
        info!("cluster: freed {freed} names this node id held before it was restarted");
    }
    Ok(())
}

impl Cluster {
    /// Every beat: renew the lease when due; give up the users when it
    /// could not be renewed for too long.
    pub(super) fn lease_tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if !self.lease.cut_off && now.duration_since(self.lease.renewed) > self.timing.cut_off_after
        {
            warn!(
                "cluster: lease not renewed for {:?}: cut off from the cluster",
                now.duration_since(self.lease.renewed)
            );
            self.lease.cut_off = true;
            // The names of its users are given back by the broker's
            // leaves (or freed by the janitors once the lease is stale).
            if let Some(broker) = &self.broker {
                broker.contact.do_send(Contact::Lost);
            }
        }
        if self.lease.renewing || now.duration_since(self.lease.attempted) < self.timing.lease_every
        {
            return;
        }
        self.lease.renewing = true;
        self.lease.attempted = now;
        let names = self.names.clone();
        let me = self.me.clone();
        ctx.spawn(
            async move { names.renew_lease(&me).await }
                .into_actor(self)
                .map(move |renewed, this, _| {
                    this.lease.renewing = false;
                    match renewed {
                        Ok(_) => {
                            this.lease.renewed = now;
                            this.retry_releases();
                            if this.lease.cut_off {
                                this.lease.cut_off = false;
                                if let Some(broker) = &this.broker {
                                    broker.contact.do_send(Contact::Regained);
                                }
                            }
                        }
                        Err(e) => warn!("cluster: could not renew this node's lease: {e}"),
                    }
                }),
        );
    }

    /// Every `janitor_every`: look for stale leases and free their names.
    pub(super) fn janitor_tick(&mut self, ctx: &mut Context<Self>) {
        if self.lease.sweeping || self.lease.cut_off {
            return;
        }
        self.lease.sweeping = true;
        let names = self.names.clone();
        ctx.spawn(
            async move { names.leases().await }
                .into_actor(self)
                .then(|leases, this, _| {
                    let now = Instant::now();
                    let mut stale = Vec::new();
                    match leases {
                        Ok(leases) => {
                            let current: HashMap<String, u64> = leases.into_iter().collect();
                            this.lease.seen.retain(|node, _| current.contains_key(node));
                            for (node, revision) in current {
                                if node == *this.me {
                                    continue;
                                }
                                let seen = this
                                    .lease
                                    .seen
                                    .entry(node.clone())
                                    .or_insert((revision, now));
                                if seen.0 != revision {
                                    *seen = (revision, now);
                                } else if now.duration_since(seen.1) > this.timing.free_after {
                                    stale.push(node);
                                }
                            }
                        }
                        Err(e) => warn!("cluster: janitor could not read the leases: {e}"),
                    }
                    let names = this.names.clone();
                    async move {
                        for node in stale {
                            if let Err(e) = free_node(&names, &node).await {
                                warn!(
                                    "cluster: janitor could not free the names of node {node}: {e}"
                                );
                            }
                        }
                    }
                    .into_actor(this)
                })
                .map(|(), this, _| this.lease.sweeping = false),
        );
    }
}

/// Frees every name `node` holds, then its lease.
async fn free_node(names: &NameService, node: &str) -> Result<(), NameServiceError> {
    let mut freed = 0;
    for holder in names.holders().await? {
        if holder.node == node {
            names.release(&holder.name, holder.revision).await?;
            freed += 1;
        }
    }
    names.drop_lease(node).await?;
    warn!("cluster: node {node} stopped renewing its lease; freed its {freed} names");
    Ok(())
}
