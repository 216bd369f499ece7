//! The messages between the broker and the cluster actor (cluster mode
//! only), so that neither imports the other.
//!
//! The broker never waits on the network: everything it sends the cluster
//! actor goes with `do_send`, except a login's [`Claim`], whose answer
//! the broker awaits without blocking its mailbox.
//!
//! | message | from → to | reply |
//! |---|---|---|
//! | [`Claim`] | broker → cluster | `Result<(), ClaimRefused>` |
//! | [`LocalRoster`] | broker → cluster | none |
//! | [`Outgoing`] | broker → cluster | none (its credits return when the other node has handled it) |
//! | [`Reject`] | broker → cluster | none |
//! | [`Incoming`] | cluster → broker | none (its credit tells the sending node when it was handled) |
//! | [`NodeRoster`] | cluster → broker | none |
//! | [`Undelivered`] | cluster → broker | none |
//! | [`Contact`] | cluster → broker | none |
//! | [`Handled`] | a dropped [`Incoming`] credit → cluster | none |

use std::sync::Arc;

use actix::prelude::*;

use super::{ConnId, Credit, Name};
use crate::protocol::Folded;

/// A node's id (`--node-id`), shared without copying.
pub type NodeId = Arc<str>;

/// Broker → cluster: take this name for this node in the cluster's name
/// service.
#[derive(Message)]
#[rtype(result = "Result<(), ClaimRefused>")]
pub struct Claim {
    /// The name, valid, as spelled.
    pub name: Name,
    /// What the name is unique by: the name service's key.
    pub folded: Folded,
}

/// Why the cluster did not give a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    /// Someone online holds it.
    #[error("taken")]
    Taken,
    /// A node that stopped answering holds it; free within this many
    /// seconds.
    #[error("held by a lost node")]
    HeldByLostNode(u64),
    /// The name service could not decide.
    #[error("name service unavailable")]
    Unavailable,
}

/// Broker → cluster: a name claimed by this node came online (announce
/// it) or went offline (announce that, and free the name in the name
/// service). Sent in the order it happened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LocalRoster {
    /// The name, as spelled (what is announced).
    pub name: Name,
    /// Its folded form (what it was claimed under).
    pub folded: Folded,
    /// Online now, or gone.
    pub online: bool,
}

/// Broker → cluster: records of lines for users on `node`
/// (see [`cluster::wire`](crate::cluster::wire)).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outgoing {
    /// The destination node.
    pub node: NodeId,
    /// Records, back to back.
    pub records: Vec<u8>,
    /// Credits of the senders, held until `node` has handled the frame.
    pub credits: Vec<Credit>,
}

/// Broker → cluster: tell `node` that these recipients of its user `conn`
/// are not online here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reject {
    /// The node the line came from.
    pub node: NodeId,
    /// The sender's connection there.
    pub conn: u64,
    /// The names, each followed by `,`.
    pub names: String,
}

/// Cluster → broker: a frame of lines from another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Incoming {
    /// The node it came from.
    pub from: NodeId,
    /// The records (the frame's payload from `offset` on).
    pub payload: bytes::Bytes,
    /// Where the records start in `payload`.
    pub offset: usize,
    /// Dropped when the frame is handled; held like a sender's credit when
    /// a recipient's outbox is past half full.
    pub credit: Credit,
}

/// Cluster → broker: who is online on another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeRoster {
    /// The node.
    pub node: NodeId,
    /// What changed.
    pub update: RosterUpdate,
}

/// What changed of a node's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterUpdate {
    /// These are all its users now.
    Replace(Vec<Name>),
    /// These came online (`true`) or went offline, in order.
    Changes(Vec<(bool, Name)>),
    /// The node is gone (left, or stopped answering): none of its users
    /// are online.
    Down,
}

/// Cluster → broker: tell connection `conn` that its line may not have
/// reached `names`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Undelivered {
    /// The sender.
    pub conn: ConnId,
    /// The recipients (`*` for everyone on a node).
    pub names: Vec<String>,
    /// `true`: lost between nodes ([`Reply::Undelivered`](crate::protocol::Reply));
    /// `false`: they were not online there ([`Reply::NotOnline`](crate::protocol::Reply)).
    pub lost: bool,
}

/// Cluster → broker: this node lost (or regained) its place in the
/// cluster. Cut off, it may no longer hold names: its users are told and
/// disconnected, and logins are refused until contact is back.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Contact {
    /// Cut off: disconnect every user.
    Lost,
    /// Back: logins are taken again.
    Regained,
}

/// To the cluster actor, from a dropped [`Incoming`] credit: frame `seq`
/// from `node` is handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Handled {
    /// The node the frame came from.
    pub node: NodeId,
    /// Its number on that link.
    pub seq: u64,
}

/// Sends [`Handled`] when dropped (inside a [`Credit`]).
pub struct HandledOnDrop {
    to: Recipient<Handled>,
    handled: Option<Handled>,
}

impl HandledOnDrop {
    /// Will tell `to` that `handled` is done.
    pub fn new(to: Recipient<Handled>, handled: Handled) -> Self {
        HandledOnDrop {
            to,
            handled: Some(handled),
        }
    }
}

impl Drop for HandledOnDrop {
    fn drop(&mut self) {
        if let Some(handled) = self.handled.take() {
            self.to.do_send(handled);
        }
    }
}

impl std::fmt::Debug for HandledOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.handled {
            Some(h) => write!(f, "HandledOnDrop({} #{})", h.node, h.seq),
            None => write!(f, "HandledOnDrop(sent)"),
        }
    }
}

/// What the broker holds of the cluster actor.
#[derive(Clone)]
pub struct ClusterLink {
    /// This node's id.
    pub node: NodeId,
    /// Where [`Claim`] goes.
    pub claim: Recipient<Claim>,
    /// Where [`LocalRoster`] goes.
    pub roster: Recipient<LocalRoster>,
    /// Where [`Outgoing`] goes.
    pub outgoing: Recipient<Outgoing>,
    /// Where [`Reject`] goes.
    pub reject: Recipient<Reject>,
}

/// What the cluster actor holds of the broker.
#[derive(Clone)]
pub struct BrokerClusterLink {
    /// Where [`Incoming`] goes.
    pub incoming: Recipient<Incoming>,
    /// Where [`NodeRoster`] goes.
    pub roster: Recipient<NodeRoster>,
    /// Where [`Undelivered`] goes.
    pub undelivered: Recipient<Undelivered>,
    /// Where [`Contact`] goes.
    pub contact: Recipient<Contact>,
}
