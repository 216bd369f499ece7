//! Names on this node's side: claims for logins, announcing and freeing
//! names as users come and go.

use std::pin::Pin;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use log::warn;

use super::{Cluster, Held};
use crate::cluster::names::ClaimError;
use crate::messages::Name;
use crate::messages::cluster::{Claim, ClaimRefused, LocalRoster};
use crate::protocol::Folded;

/// A release that failed, to try again.
#[derive(Message)]
#[rtype(result = "()")]
struct ReleaseFailed(Folded, u64);

impl Handler<ReleaseFailed> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: ReleaseFailed, _: &mut Context<Self>) {
        self.unreleased.push((msg.0, msg.1));
    }
}

impl Handler<LocalRoster> for Cluster {
    type Result = ();

    fn handle(&mut self, msg: LocalRoster, ctx: &mut Context<Self>) {
        let LocalRoster {
            name,
            folded,
            online,
        } = msg;
        // Claimed by folded form, announced by spelling.
        if online {
            if let Some(held) = self.held.get_mut(&folded) {
                held.announced = true;
                self.changes.push((true, name));
            }
        } else if let Some(held) = self.held.remove(&folded) {
            if held.announced {
                self.changes.push((false, held.spelling));
            }
            self.release(folded, held.revision);
        }
        self.flush_soon(ctx);
    }
}

impl Cluster {
    /// Frees a name in the name service, in the background; one that
    /// fails is tried again after the next renewal of the lease.
    pub(super) fn release(&self, name: Folded, revision: u64) {
        let names = self.names.clone();
        let in_flight = self.releases.0.clone();
        let this = self.myself.clone();
        actix::spawn(async move {
            let _in_flight = in_flight;
            if let Err(e) = names.release(name.as_str(), revision).await {
                warn!("cluster: could not free the name {name} (tried again later): {e}");
                if let Some(this) = this.and_then(|weak| weak.upgrade()) {
                    this.do_send(ReleaseFailed(name, revision));
                }
            }
        });
    }

    /// Tries the failed releases again (the lease was just renewed: the
    /// name service answers again).
    pub(super) fn retry_releases(&mut self) {
        for (name, revision) in std::mem::take(&mut self.unreleased) {
            self.release(name, revision);
        }
    }

    /// One claim of `name` (spelled `spelling`), and what it means here.
    /// The name service is keyed by the folded form, so `Alice` on one
    /// node and `alice` on another are one claim.
    pub(super) fn claim_once(
        &mut self,
        name: Folded,
        spelling: Name,
        attempt: u32,
    ) -> Pin<Box<dyn ActorFuture<Self, Output = Result<(), ClaimRefused>>>> {
        let names = self.names.clone();
        let me = self.me.clone();
        let claim_name = name.clone();
        let claim = async move { names.claim(claim_name.as_str(), &me).await };
        Box::pin(claim.into_actor(self).then(move |answer, this, _| {
            let outcome = match answer {
                Ok(revision) => {
                    this.held.insert(
                        name.clone(),
                        Held {
                            revision,
                            announced: false,
                            spelling,
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
                            return this.claim_again(name, spelling, attempt);
                        }
                    } else {
                        return this.ask_holder(holder, name, spelling, attempt);
                    }
                }
            };
            boxed_ready(outcome)
        }))
    }
}

impl Cluster {
    /// The name is held by another node: it alone knows whether its user
    /// is still there or the name is on its way back (a `/quit` there a
    /// moment ago, its release not applied yet). Asked, not guessed.
    /// The question is the folded form: the key the holder holds it by.
    pub(super) fn ask_holder(
        &mut self,
        holder: String,
        name: Folded,
        spelling: Name,
        attempt: u32,
    ) -> ClaimFuture {
        let client = self.client.clone();
        let subject = self.subjects.holds(&holder);
        let question = Bytes::from(name.as_str().as_bytes().to_vec());
        let timeout = self.timing.request_timeout;
        Box::pin(
            async move { tokio::time::timeout(timeout, client.request(subject, question)).await }
                .into_actor(self)
                .then(move |answer, this, _| match answer {
                    Ok(Ok(reply)) if &reply.payload[..] == b"0" => {
                        this.claim_again(name, spelling, attempt)
                    }
                    Ok(Ok(_)) => boxed_ready(Err(ClaimRefused::Taken)),
                    // No answer ("no responders" at once, if nobody
                    // listens on its subject): a node that is not heard
                    // from either is gone, and its names are on their way
                    // back. (A node that just started may not have heard
                    // a live holder yet: asking first keeps it from
                    // calling that holder lost.)
                    _ if !this.nodes.is_alive(&holder) => boxed_ready(Err(
                        ClaimRefused::HeldByLostNode(this.timing.names_freed_within()),
                    )),
                    _ => boxed_ready(Err(ClaimRefused::Taken)),
                }),
        )
    }

    /// Claims again after a short pause, a few times at most.
    pub(super) fn claim_again(
        &mut self,
        name: Folded,
        spelling: Name,
        attempt: u32,
    ) -> ClaimFuture {
        if attempt >= 6 {
            return boxed_ready(Err(ClaimRefused::Taken));
        }
        Box::pin(
            tokio::time::sleep(Duration::from_millis(20 << attempt))
                .into_actor(self)
                .then(move |(), this, _| this.claim_once(name, spelling, attempt + 1)),
        )
    }
}

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
        self.claim_once(msg.folded, msg.name, 0)
    }
}
