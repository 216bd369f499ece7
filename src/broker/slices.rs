//! Wide fan-outs handed over in slices, so that nobody's message waits
//! behind a whole round of someone's broadcast.
//!
//! A line to thousands wakes thousands of sessions, each for a write of
//! its own (a few microseconds each, on loopback more, since the write
//! runs the receiver's TCP stack too). Handed over at once, those wake-ups
//! fill the workers' run queues: a bystander's session, woken by its
//! socket or by a line for it, queues behind every one of them, and with
//! 5,000 readers that was 80 ms on this machine (twice: once to read the
//! line, once to write it).
//!
//! So the output of a wide fan-out ([`WIDE_FANOUT`] recipients or more)
//! waits in the peers' `pending` buffers, in a queue, and goes out
//! [`SLICE_PEERS`] sessions at a time, at most [`SLICES_IN_FLIGHT`] slices
//! at once: the next slice goes once every session of an earlier one has
//! taken its [`Deliver`](crate::messages::Deliver) (each holds a
//! [`SliceShare`]; the last one dropped tells the broker, [`SliceDone`]).
//! Output for a waiting peer that is not part of a wide fan-out (a direct
//! line, a `/who`, an error) takes it out of the queue and goes at once,
//! with what was waiting before it, in order.
//!
//! The sender of a wide fan-out gets its credit back once the queue has
//! handed over every peer its batch reached: a broadcaster is read as fast
//! as its output goes out, never faster, and the queue holds at most two
//! batches' worth per broadcaster.

use std::collections::VecDeque;

use actix::Recipient;

use super::Table;
use super::outbound::Peer;
use crate::messages::{ConnId, Credit, SliceDone, SliceShare};

/// A line to more than this many peers is a wide fan-out. Up to it, a
/// fan-out goes out at once: a few hundred wake-ups are a couple of
/// milliseconds of writes.
pub(super) const WIDE_FANOUT: usize = 256;

/// Sessions handed their output per slice. With two slices in flight, a
/// worker's run queue holds at most ~64 of them (two workers), well under
/// a millisecond of writes ahead of anyone. Measured on `broadcast`
/// (5,000 readers, 2 MiB batches; docs/BENCHMARKS.md): 64 and 2 in flight
/// gave bystanders a p99 of 11.5 ms at 1.09 M deliveries/s; 128 and 2,
/// 17 ms at the same rate; 256 and 4, 29 ms and 0.68 M/s.
pub(super) const SLICE_PEERS: usize = 64;

/// Slices handed over and not yet taken by all their sessions: two, so
/// the workers have the next slice before they finish the last.
pub(super) const SLICES_IN_FLIGHT: usize = 2;

/// The queue of peers waiting for their slice, and the broadcasters' credits
/// waiting for it to reach their recipients.
pub(super) struct Slices {
    /// Peers whose `pending` output waits for a slice, in the order they
    /// got it. A peer taken out early (see [`Peer::waiting`]) or gone stays
    /// in the queue until popped, then is skipped.
    queue: VecDeque<ConnId>,
    /// Entries ever pushed to and popped from `queue`: positions in it.
    pushed: u64,
    popped: u64,
    /// Slices handed over whose sessions have not all taken theirs.
    in_flight: usize,
    /// Credits of broadcasters, each with the queue position its output
    /// reaches: it goes back once the queue has been popped that far.
    held: VecDeque<(u64, Credit)>,
    /// Where [`SliceDone`] goes: the broker itself (set once started).
    done: Option<Recipient<SliceDone>>,
}

impl Slices {
    /// Nothing waiting.
    pub(super) fn new() -> Self {
        Slices {
            queue: VecDeque::new(),
            pushed: 0,
            popped: 0,
            in_flight: 0,
            held: VecDeque::new(),
            done: None,
        }
    }

    /// Tells the queue where [`SliceDone`] goes.
    pub(super) fn set_done(&mut self, done: Recipient<SliceDone>) {
        self.done = Some(done);
    }

    /// Queues a peer whose output now waits for a slice.
    pub(super) fn enqueue(&mut self, id: ConnId) {
        self.queue.push_back(id);
        self.pushed += 1;
    }

    /// Holds a broadcaster's credit until every peer queued so far has been
    /// handed its output.
    pub(super) fn hold(&mut self, credit: Credit) {
        if self.popped == self.pushed {
            return;
        }
        self.held.push_back((self.pushed, credit));
    }

    /// Whether a slice is waiting that may go now.
    pub(super) fn can_release(&self) -> bool {
        self.in_flight < SLICES_IN_FLIGHT && !self.queue.is_empty()
    }

    /// A slice was taken by all its sessions.
    pub(super) fn slice_done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Hands over slices while fewer than [`SLICES_IN_FLIGHT`] are out, and
    /// gives back the credits whose output has all gone out.
    pub(super) fn release(&mut self, peers: &mut Table<ConnId, Peer>) {
        while self.can_release() {
            // The slice's peers first: a share made for nobody would still
            // say `SliceDone` when dropped, for a slice never counted.
            let mut slice = Vec::with_capacity(SLICE_PEERS);
            while slice.len() < SLICE_PEERS
                && let Some(id) = self.queue.pop_front()
            {
                self.popped += 1;
                if peers.get(&id).is_some_and(|peer| peer.waiting) {
                    slice.push(id);
                }
            }
            if slice.is_empty() {
                break;
            }
            let share = self.done.clone().map(SliceShare::new);
            if share.is_some() {
                self.in_flight += 1;
            }
            for id in slice {
                if let Some(peer) = peers.get_mut(&id) {
                    peer.flush_with(share.clone());
                }
            }
        }
        while self.held.front().is_some_and(|&(at, _)| at <= self.popped) {
            self.held.pop_front();
        }
    }

    /// Hands every waiting peer its output now (at shutdown), and every
    /// credit back.
    pub(super) fn release_all(&mut self, peers: &mut Table<ConnId, Peer>) {
        for id in self.queue.drain(..) {
            if let Some(waiting) = peers.get_mut(&id).filter(|p| p.waiting) {
                waiting.flush_with(None);
            }
        }
        self.popped = self.pushed;
        self.held.clear();
    }
}
