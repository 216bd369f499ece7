//! Routing: where each request of a batch goes, decided in one place
//! (`Broker::route`); a recipient is looked up by its spelling first and
//! by its folded form only when that misses (`names.rs`).

use std::borrow::Cow;

use log::debug;

use super::names::{Elsewhere, Respelled, Target, resolve};
use super::outbound::Peer;
use super::{Broker, slices};
use crate::batch::{Batch, Op};
use crate::messages::{ConnId, Credit};
use crate::protocol::Reply;

/// Routing: where each request of a batch goes.
impl Broker {
    /// Carries out one [`Route`](crate::messages::Route): every request of the batch, in order, as
    /// if each had been a message of its own; then decides when the
    /// sender's credit goes back.
    pub(super) fn route_batch(&mut self, from: ConnId, batch: &Batch, credit: Credit) {
        self.out.filled = None;
        let mut wide = false;
        for op in batch.ops() {
            // Checked per op: a sender evicted halfway through its own
            // output (say, a thousand `/who`s) is not served further.
            if !self.peers.get(&from).is_some_and(Peer::is_online) {
                debug!("conn {from}: batch dropped, sender no longer online");
                break;
            }
            wide |= self.apply(from, batch, op);
            self.settle();
        }
        // A batch that went to other nodes comes back from each of them.
        let credit = match &mut self.remote {
            Some(remote) => remote.share_credit(credit),
            None => credit,
        };
        self.hold_credit(credit, wide);
    }

    /// Decides when the credit of what was just handled goes back.
    ///
    /// The credit goes back to the sender when it is dropped: now, or,
    /// if the batch filled someone's outbox past half its cap, when that
    /// session has written enough (end-to-end back-pressure: a flooder
    /// slows to its reader's pace instead of getting the reader cut off),
    /// or, if it fanned out widely, once every slice it reached has gone
    /// out (a broadcaster is read as fast as its output goes out).
    pub(super) fn hold_credit(&mut self, credit: Credit, wide: bool) {
        let filled = self.out.filled.take();
        if let Some(peer) = filled.and_then(|id| self.peers.get_mut(&id))
            && !peer.evicted
        {
            peer.held.push(credit);
        } else if wide {
            self.out.slices.hold(credit);
        }
    }

    /// After each request: peers evicted on the way leave the roster, and
    /// if the output held for all peers may have passed its cap, it is
    /// counted and enforced.
    pub(super) fn settle(&mut self) {
        if self.out.may_be_over_total() {
            self.enforce_total();
        }
        while let Some(id) = self.out.evicted.pop() {
            if let Some(name) = self.peers.get(&id).and_then(|peer| peer.name.clone()) {
                self.leave_roster(&name);
            }
        }
    }

    /// Carries out one request from `from`.
    /// Carries out one request from `from`; says whether it fanned out
    /// widely (its output waits for slices).
    fn apply(&mut self, from: ConnId, batch: &Batch, op: &Op) -> bool {
        match op {
            Op::Send {
                everyone,
                names,
                line,
            } => {
                log::trace!(
                    "conn {from}: {:?}",
                    String::from_utf8_lossy(batch.bytes(line.clone()))
                );
                return self.route(
                    from,
                    *everyone,
                    (batch.names(names.clone()), names.len()),
                    batch.bytes(line.clone()),
                );
            }
            Op::Who => {
                let who = self.who_answer.take().unwrap_or_else(|| self.who());
                self.push_to(from, &who);
                self.who_answer = Some(who);
            }
            Op::Echo(range) => self.push_to(from, batch.bytes(range.clone())),
        }
        false
    }

    /// Decides which sessions get `line`, sent by `from` to `names` (with
    /// their length in bytes; and to everyone else online if `everyone`),
    /// and queues it for them; says whether that was a wide fan-out. Names
    /// that are not online are reported to the sender in one `error:` line.
    ///
    /// This is the routing decision, in one place.
    fn route<'n>(
        &mut self,
        from: ConnId,
        everyone: bool,
        (names, names_bytes): (impl Iterator<Item = &'n str> + Clone, usize),
        line: &[u8],
    ) -> bool {
        let mut reached = 0usize;
        let mut delivered = 0u64;
        self.metrics.broker.lines_routed.add(1);
        // Output to many waits for its slice (slices.rs). More names than
        // that take at least two bytes each: shorter lists are not counted.
        let wide = if everyone {
            self.roster.len() > slices::WIDE_FANOUT
        } else {
            names_bytes > 2 * slices::WIDE_FANOUT
                && names.clone().nth(slices::WIDE_FANOUT).is_some()
        };
        if everyone {
            for (&id, peer) in &mut self.peers {
                if id != from && peer.is_online() {
                    peer.push(id, line, wide, &mut self.out);
                    reached += 1;
                    delivered += 1;
                }
            }
            if let Some(remote) = &mut self.remote {
                remote.send_everyone(from, line);
                reached += remote.online();
            }
        }
        let mut missing: Vec<&str> = Vec::new();
        let mut elsewhere: Vec<Elsewhere<'n>> = Vec::new();
        let mut respelled = Respelled::default();
        for name in names.clone() {
            let found = resolve(&self.names, &mut self.peers, self.remote.as_ref(), name);
            // Found by its folded form: reached once, however many ways
            // the line spells it.
            if let Some(spelling) = &found.respelled
                && respelled.is_repeat(spelling, names.clone())
            {
                continue;
            }
            match found.target {
                Target::Here(id, peer) => {
                    // With `*`, everyone but the sender has it already.
                    if !everyone || id == from {
                        peer.push(id, line, wide, &mut self.out);
                        delivered += 1;
                    }
                    reached += 1;
                }
                Target::There(node) => {
                    // With `*`, everyone elsewhere has it already. The
                    // other node is given the spelling it knows.
                    if !everyone {
                        let spelling = found
                            .respelled
                            .map_or(Cow::Borrowed(name), |s| Cow::Owned(s.to_string()));
                        elsewhere.push((node, spelling));
                    }
                    reached += 1;
                }
                Target::Nowhere => missing.push(name),
            }
        }
        self.metrics.broker.deliveries.add(delivered);
        if !elsewhere.is_empty()
            && let Some(remote) = &mut self.remote
        {
            remote.send_named(from, elsewhere, line);
        }
        if !missing.is_empty() {
            self.push_to(from, &Reply::NotOnline(&missing).to_bytes());
        } else if reached == 0 {
            self.push_to(from, &Reply::NobodyElseOnline.to_bytes());
        }
        wide
    }

    /// Queues output for one peer (if it is still there).
    pub(super) fn push_to(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.push(id, bytes, false, &mut self.out);
        }
    }
}
