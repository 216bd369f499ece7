//! Logins: taking a name, on one node or in the cluster.
//!
//! On one node the broker's table of names decides at once. In cluster
//! mode the cluster's name service decides (`cluster/names.rs`), which
//! takes a round trip to NATS: the broker marks the name as being claimed
//! (so a second login for it here is refused at once), asks the cluster
//! actor, and carries on with its mailbox; the answer completes the login
//! later ([`ResponseActFuture`], spawned in the broker's context, never
//! blocking it).

use std::sync::Arc;

use actix::prelude::*;
use log::info;

use super::Broker;
use super::shutdown::Phase;
use crate::messages::cluster::{Claim, ClaimRefused, LocalRoster};
use crate::messages::{ConnId, LoginError, Name, NewPeer};
use crate::protocol::Reply;

impl Broker {
    /// Whether `id` may log in as `name` as far as this node knows.
    fn check_login(&self, id: ConnId, name: &Name) -> Result<(), LoginError> {
        if matches!(self.phase, Phase::Closing) || !self.peers.contains_key(&id) {
            // A missing entry means the connection has already left (its
            // `Connect` always comes first).
            return Err(LoginError::ShuttingDown);
        }
        let taken = || LoginError::Taken(name.to_string());
        if self.names.contains_key(name) {
            return Err(taken());
        }
        if let Some(remote) = &self.remote {
            if remote.cut_off {
                return Err(LoginError::Unavailable);
            }
            // Being claimed here. (A name another node is listed with is
            // asked for all the same: the list may be a moment old, and
            // the name service decides.)
            if remote.claiming.contains_key(name) {
                return Err(taken());
            }
        }
        Ok(())
    }

    /// Registers `name` for `id` and queues the welcome.
    fn register(
        &mut self,
        id: ConnId,
        name: Name,
        ctx: &mut Context<Self>,
    ) -> Result<(), LoginError> {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(LoginError::ShuttingDown);
        };
        peer.name = Some(name.clone());
        self.names.insert(name.clone(), id);
        info!("conn {id}: logged in as {name}");
        self.join_roster(name.clone());
        let welcome = Reply::Welcome {
            name: &name,
            online: self.roster.len(),
        };
        self.push_to(id, &welcome.to_bytes());
        self.settle();
        self.flush_soon(ctx);
        Ok(())
    }

    /// The end of a claim in the cluster's name service.
    fn claimed(
        &mut self,
        id: ConnId,
        name: Name,
        answer: Result<Result<(), ClaimRefused>, MailboxError>,
        ctx: &mut Context<Self>,
    ) -> Result<(), LoginError> {
        let Some(remote) = &mut self.remote else {
            return Err(LoginError::Unavailable);
        };
        remote.claiming.remove(&name);
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(ClaimRefused::Taken)) => return Err(LoginError::Taken(name.to_string())),
            Ok(Err(ClaimRefused::HeldByLostNode(secs))) => {
                return Err(LoginError::HeldByLostNode(secs));
            }
            Ok(Err(ClaimRefused::Unavailable)) | Err(_) => return Err(LoginError::Unavailable),
        }
        // The name service has decided; what may have changed here
        // meanwhile is this node's own state.
        let roster = remote.link().roster.clone();
        let usable = !remote.cut_off && !matches!(self.phase, Phase::Closing);
        let registered = if usable {
            self.register(id, name.clone(), ctx)
        } else if remote.cut_off {
            Err(LoginError::Unavailable)
        } else {
            Err(LoginError::ShuttingDown)
        };
        // Announced, or given back.
        roster.do_send(LocalRoster {
            name,
            online: registered.is_ok(),
        });
        registered
    }
}

impl Handler<NewPeer> for Broker {
    type Result = ResponseActFuture<Self, Result<(), LoginError>>;

    fn handle(&mut self, msg: NewPeer, ctx: &mut Context<Self>) -> Self::Result {
        let NewPeer { id, name } = msg;
        let name: Name = Arc::from(name);
        let checked = self.check_login(id, &name);
        let remote = match (checked, &mut self.remote) {
            (Err(e), _) => return Box::pin(fut::ready(Err(e))),
            (Ok(()), None) => return Box::pin(fut::ready(self.register(id, name, ctx))),
            (Ok(()), Some(remote)) => remote,
        };
        remote.claiming.insert(name.clone(), ());
        let claim = remote.link().claim.send(Claim { name: name.clone() });
        Box::pin(
            claim
                .into_actor(self)
                .map(move |answer, broker, ctx| broker.claimed(id, name, answer, ctx)),
        )
    }
}
