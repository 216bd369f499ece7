//! Shutting down in two phases: every session first drains the input
//! already waiting in its socket (so nothing a client sent before the
//! signal is lost), then is told goodbye after all the output queued for
//! it. A connection accepted meanwhile joins whichever phase is under way
//! (see the broker's `Connect` handler).

use actix::prelude::*;
use log::{info, warn};
use tokio::sync::mpsc;

use super::Broker;
use crate::messages::{Control, DrainGuard, Drained, Shutdown};

/// Where the broker is in its life.
pub(super) enum Phase {
    Running,
    /// Shutdown phase one: sessions are draining their input. A weak handle
    /// on the drain channel lets a connection that registers now join in.
    Draining(mpsc::WeakSender<()>),
    /// Shutdown phase two: every session was told goodbye.
    Closing,
}

impl Broker {
    /// Shutdown, phase two: every session gets `Goodbye` after all the
    /// output queued for it.
    pub(super) fn say_goodbye(&mut self) {
        self.flush();
        self.out.slices.release_all(&mut self.peers);
        self.phase = Phase::Closing;
        info!(
            "shutdown: saying goodbye to {} connections",
            self.peers.len()
        );
        for peer in self.peers.values() {
            peer.link.control.do_send(Control::Goodbye);
        }
    }
}

impl Handler<Drained> for Broker {
    type Result = ();

    /// Everything the session read was handled before this message (one
    /// mailbox, in order): dropping its guard says so to the shutdown.
    fn handle(&mut self, msg: Drained, _: &mut Context<Self>) {
        drop(msg.guard);
    }
}

impl Handler<Shutdown> for Broker {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        info!(
            "shutdown: draining input of {} connections",
            self.peers.len()
        );
        self.flush();
        let (guard, mut drained) = mpsc::channel::<()>(1);
        for peer in self.peers.values() {
            peer.link
                .control
                .do_send(Control::Drain(DrainGuard(guard.clone())));
        }
        self.phase = Phase::Draining(guard.downgrade());
        drop(guard);
        let deadline = tokio::time::Instant::from_std(msg.drain_deadline);
        let all_drained = async move {
            // `recv` yields `None` once every guard has been dropped.
            let waited = tokio::time::timeout_at(deadline, drained.recv()).await;
            if waited.is_err() {
                warn!("shutdown: not every connection drained its input in time");
            }
        };
        Box::pin(
            all_drained
                .into_actor(self)
                .map(|(), broker, _| broker.say_goodbye()),
        )
    }
}
