//! Logins: taking a name, on one node or in the cluster.
//!
//! On one node the broker's table of names decides at once. In cluster
//! mode the cluster's name service decides (`cluster/names.rs`), which
//! takes a round trip to NATS: the broker marks the name as being claimed
//! (so a second login for it here is refused at once), asks the cluster
//! actor, and carries on with its mailbox; the answer completes the login
//! later ([`ResponseActFuture`], spawned in the broker's context, never
//! blocking it).

use actix::prelude::*;
use log::info;

use super::Broker;
use super::shutdown::Phase;
use crate::messages::cluster::{Claim, ClaimRefused, LocalRoster};
use crate::messages::{ConnId, LoginError, NewPeer};
use crate::protocol::{LoginName, Reply};

impl Broker {
    /// Whether `id` may log in as `name` as far as this node knows.
    fn check_login(&self, id: ConnId, name: &LoginName) -> Result<(), LoginError> {
        if matches!(self.phase, Phase::Closing) || !self.peers.contains_key(&id) {
            // A missing entry means the connection has already left (its
            // `Connect` always comes first).
            return Err(LoginError::ShuttingDown);
        }
        if let Some(taken) = self.taken_here(name) {
            return Err(taken);
        }
        if let Some(remote) = &self.remote {
            if remote.cut_off {
                return Err(LoginError::Unavailable);
            }
            // Being claimed here. (A name another node is listed with is
            // asked for all the same: the list may be a moment old, and
            // the name service decides.)
            if remote.claiming.contains_key(name.folded()) {
                return Err(self.taken(name, None));
            }
        }
        Ok(())
    }

    /// The refusal of `name` if a connection here holds it in any
    /// spelling.
    fn taken_here(&self, name: &LoginName) -> Option<LoginError> {
        let holder = self.names.holder(name.folded())?;
        let online = self
            .peers
            .get(&holder)
            .and_then(|peer| peer.name.as_deref());
        Some(self.taken(name, online))
    }

    /// The refusal of `name`, taken by a user online as `online` (if it
    /// is known how: the name service does not say).
    fn taken(&self, name: &LoginName, online: Option<&str>) -> LoginError {
        let elsewhere = || {
            let remote = self.remote.as_ref()?;
            Some(&**remote.spelling_of(name.folded())?.0)
        };
        match online.or_else(elsewhere) {
            Some(online) if online != &**name.spelling() => LoginError::TakenAs {
                name: name.spelling().to_string(),
                online: online.to_owned(),
            },
            _ => LoginError::Taken(name.spelling().to_string()),
        }
    }

    /// Registers `name` for `id` and queues the welcome.
    fn register(
        &mut self,
        id: ConnId,
        login: &LoginName,
        ctx: &mut Context<Self>,
    ) -> Result<(), LoginError> {
        // Only a claim's answer comes here after a wait, and the name was
        // marked as being claimed meanwhile: not expected, but the table
        // must never hold two spellings of one name.
        if let Some(taken) = self.taken_here(login) {
            return Err(taken);
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(LoginError::ShuttingDown);
        };
        let name = login.spelling().clone();
        peer.name = Some(name.clone());
        self.names.insert(login, id);
        self.metrics.broker.logged_in.set(self.names.len() as u64);
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
        name: LoginName,
        answer: Result<Result<(), ClaimRefused>, MailboxError>,
        ctx: &mut Context<Self>,
    ) -> Result<(), LoginError> {
        let Some(remote) = &mut self.remote else {
            return Err(LoginError::Unavailable);
        };
        remote.claiming.remove(name.folded());
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(ClaimRefused::Taken)) => return Err(self.taken(&name, None)),
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
            self.register(id, &name, ctx)
        } else if remote.cut_off {
            Err(LoginError::Unavailable)
        } else {
            Err(LoginError::ShuttingDown)
        };
        // Announced, or given back.
        roster.do_send(LocalRoster {
            name: name.spelling().clone(),
            folded: name.folded().clone(),
            online: registered.is_ok(),
        });
        registered
    }
}

impl Handler<NewPeer> for Broker {
    type Result = ResponseActFuture<Self, Result<(), LoginError>>;

    fn handle(&mut self, msg: NewPeer, ctx: &mut Context<Self>) -> Self::Result {
        let NewPeer { id, name } = msg;
        let checked = self.check_login(id, &name);
        let remote = match (checked, &mut self.remote) {
            (Err(e), _) => return Box::pin(fut::ready(Err(e))),
            (Ok(()), None) => return Box::pin(fut::ready(self.register(id, &name, ctx))),
            (Ok(()), Some(remote)) => remote,
        };
        remote.claiming.insert(name.folded().clone(), ());
        let claim = remote.link().claim.send(Claim {
            name: name.spelling().clone(),
            folded: name.folded().clone(),
        });
        Box::pin(
            claim
                .into_actor(self)
                .map(move |answer, broker, ctx| broker.claimed(id, name, answer, ctx)),
        )
    }
}
