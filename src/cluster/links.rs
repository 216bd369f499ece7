//! The numbered links between nodes: what makes a lost frame visible.
//!
//! NATS core delivers at most once: a subscriber that falls behind loses
//! messages (the server drops them for a slow consumer, async-nats drops
//! them when a subscription's channel is full), and a node that dies takes
//! what it had not handled with it. So every frame of lines from node A to
//! node B carries the next number of the link A→B, and:
//! - B notices a gap in the numbers and answers [`Frame::Lost`](super::wire::Frame);
//! - B answers [`Frame::Done`](super::wire::Frame) once its broker has
//!   handled a frame (the credits of A's senders go back then: the ack is
//!   the cross-node credit);
//! - every second each side sends a `Tick` with the last number it sent
//!   (so a lost *last* frame is found too) and the number below which it
//!   has handled everything (so a lost `Done` is repaired);
//! - when B stops answering, A counts everything B has not confirmed as
//!   lost.
//!
//! Either way the senders of a lost frame are told, naming the recipients.
//!
//! Pure state, no I/O: tested here on plain values.

use std::collections::{BTreeMap, BTreeSet};

use super::wire::Seq;
use crate::messages::Credit;

/// What one node has sent another and not had confirmed.
#[derive(Debug, Default)]
pub struct Outbound {
    /// The number of the last frame sent (0: none yet).
    sent: Seq,
    /// Frames not confirmed yet: their records (to name the recipients if
    /// they are lost) and their senders' credits.
    unconfirmed: BTreeMap<Seq, Unconfirmed>,
    /// Bytes of records in `unconfirmed`.
    bytes: usize,
}

/// A frame sent and not confirmed.
#[derive(Debug)]
pub struct Unconfirmed {
    /// Its records.
    pub records: Vec<u8>,
    /// Its senders' credits, dropped when it is confirmed or lost.
    pub credits: Vec<Credit>,
}

impl Outbound {
    /// Numbers a new frame and keeps it until it is confirmed.
    pub fn send(&mut self, records: Vec<u8>, credits: Vec<Credit>) -> (Seq, &[u8]) {
        self.sent += 1;
        self.bytes += records.len();
        let kept = self
            .unconfirmed
            .entry(self.sent)
            .or_insert(Unconfirmed { records, credits });
        (self.sent, &kept.records)
    }

    /// The last number sent.
    pub fn sent(&self) -> Seq {
        self.sent
    }

    /// Frames not yet confirmed, and their bytes.
    pub fn unconfirmed(&self) -> (usize, usize) {
        (self.unconfirmed.len(), self.bytes)
    }

    /// The other node handled these frames: their credits go back.
    pub fn done(&mut self, seqs: &[Seq]) {
        for seq in seqs {
            if let Some(frame) = self.unconfirmed.remove(seq) {
                self.bytes -= frame.records.len();
            }
        }
    }

    /// The other node handled every frame below `seq`.
    pub fn done_below(&mut self, seq: Seq) {
        while let Some(entry) = self.unconfirmed.first_entry() {
            if *entry.key() >= seq {
                break;
            }
            self.bytes -= entry.remove().records.len();
        }
    }

    /// The other node never got these frames: they are returned, to tell
    /// their senders.
    pub fn lost(&mut self, seqs: &[Seq]) -> Vec<Unconfirmed> {
        let lost: Vec<Unconfirmed> = seqs
            .iter()
            .filter_map(|seq| self.unconfirmed.remove(seq))
            .collect();
        self.bytes -= lost.iter().map(|f| f.records.len()).sum::<usize>();
        lost
    }

    /// The other node is gone: everything it did not confirm is lost. The
    /// numbering starts again, for a node that comes back under its id.
    pub fn fail_all(&mut self) -> Vec<Unconfirmed> {
        self.bytes = 0;
        self.sent = 0;
        std::mem::take(&mut self.unconfirmed)
            .into_values()
            .collect()
    }
}

/// What one node has received from another.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The number expected next (0: nothing received yet).
    next: Seq,
    /// Received and not yet handled by the broker.
    handling: BTreeSet<Seq>,
}

/// What a frame's number says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// The next one, or the first from this node.
    InOrder,
    /// Frames between the last one and this one never came: report them.
    AfterGap(Vec<Seq>),
    /// An old number: a frame seen already (dropped), or the other node
    /// started again under the same id (its numbering restarts).
    Restart,
}

/// Gaps larger than this are reported as their last numbers only: the
/// frames a sender still waits for are always its newest (their number is
/// bounded by its senders' credits, far below this), and it keeps one
/// `Lost` frame small.
const MAX_LOST_REPORTED: u64 = 10_000;

impl Inbound {
    /// Frame `seq` arrived; it is being handled until [`Inbound::handled`].
    pub fn arrived(&mut self, seq: Seq) -> Arrival {
        let arrival = if self.next == 0 || seq == self.next {
            Arrival::InOrder
        } else if seq > self.next {
            Arrival::AfterGap(gap(self.next, seq))
        } else {
            self.handling.clear();
            Arrival::Restart
        };
        self.next = seq + 1;
        self.handling.insert(seq);
        arrival
    }

    /// The broker has handled frame `seq`.
    pub fn handled(&mut self, seq: Seq) {
        self.handling.remove(&seq);
    }

    /// The other node says it has sent up to `sent`: frames from the one
    /// expected next to `sent` never came.
    pub fn tick(&mut self, sent: Seq) -> Vec<Seq> {
        if sent == 0 || sent < self.next {
            return Vec::new();
        }
        let from = self.next.max(1);
        self.next = sent + 1;
        gap(from, sent + 1)
    }

    /// Every frame below this number was handled.
    pub fn done_below(&self) -> Seq {
        self.handling.first().copied().unwrap_or(self.next)
    }
}

/// The numbers from `from` up to, not including, `to` (the last
/// [`MAX_LOST_REPORTED`] of them).
fn gap(from: Seq, to: Seq) -> Vec<Seq> {
    (to.saturating_sub(MAX_LOST_REPORTED).max(from)..to).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_numbered_and_kept_until_confirmed() {
        let mut out = Outbound::default();
        assert_eq!(out.send(b"a".to_vec(), vec![]).0, 1);
        assert_eq!(out.send(b"bb".to_vec(), vec![]).0, 2);
        assert_eq!(out.send(b"ccc".to_vec(), vec![]).0, 3);
        assert_eq!(out.unconfirmed(), (3, 6));
        out.done(&[2]);
        assert_eq!(out.unconfirmed(), (2, 4));
        out.done_below(2);
        assert_eq!(out.unconfirmed(), (1, 3));
        let lost = out.lost(&[3, 4]);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].records, b"ccc");
        assert_eq!(out.unconfirmed(), (0, 0));
        out.send(vec![1], vec![]);
        assert_eq!(out.fail_all().len(), 1);
        assert_eq!(out.send(vec![], vec![]).0, 1, "numbering restarts");
    }

    #[test]
    fn a_confirmed_frame_gives_its_credits_back() {
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let permit = semaphore.clone().try_acquire_owned().unwrap();
        let mut out = Outbound::default();
        out.send(vec![], vec![Credit::new(permit)]);
        assert_eq!(semaphore.available_permits(), 0);
        out.done(&[1]);
        assert_eq!(semaphore.available_permits(), 1);
    }

    #[test]
    fn gaps_and_restarts_are_seen() {
        let mut inb = Inbound::default();
        assert_eq!(inb.arrived(1), Arrival::InOrder);
        assert_eq!(inb.arrived(2), Arrival::InOrder);
        assert_eq!(inb.arrived(5), Arrival::AfterGap(vec![3, 4]));
        assert_eq!(inb.done_below(), 1);
        inb.handled(1);
        inb.handled(5);
        assert_eq!(inb.done_below(), 2);
        inb.handled(2);
        assert_eq!(inb.done_below(), 6);
        assert_eq!(inb.arrived(1), Arrival::Restart);
        assert_eq!(inb.done_below(), 1);
    }

    #[test]
    fn a_tick_finds_a_lost_last_frame() {
        let mut inb = Inbound::default();
        assert_eq!(inb.tick(0), Vec::<Seq>::new());
        inb.arrived(1);
        assert_eq!(inb.tick(1), Vec::<Seq>::new());
        assert_eq!(inb.tick(3), vec![2, 3]);
        assert_eq!(inb.arrived(4), Arrival::InOrder);
        let mut fresh = Inbound::default();
        assert_eq!(fresh.tick(2), vec![1, 2], "everything missed from a node");
        // A node that restarted under a long-lived link: the newest
        // numbers are the ones its peer may still wait for.
        let lost = Inbound::default().tick(1_000_000);
        assert_eq!(lost.len() as u64, MAX_LOST_REPORTED);
        assert_eq!(lost.last(), Some(&1_000_000));
    }
}
