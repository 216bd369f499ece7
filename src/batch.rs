//! A [`Batch`]: the requests found in one read of a logged-in socket, as
//! the session hands them to the broker inside a
//! [`Route`](crate::messages::Route).

use std::ops::Range;

use crate::protocol::{self, ChatLine, Reply};

/// The requests from one read of a socket, in order.
///
/// It is laid out for the broker, the one serialization point, to do as
/// little as possible: the session (on a worker thread) parses each line,
/// formats the `from <sender>: <text>` line once, and the broker only looks
/// recipients up and copies bytes. Two buffers and a list of operations
/// pointing into them, so a read holding hundreds of lines costs three
/// allocations, not hundreds.
#[derive(Debug, Default)]
pub struct Batch {
    /// Output lines, back to back.
    lines: Vec<u8>,
    /// Recipient names, each followed by a `,` (names never contain one).
    names: String,
    /// What to do, in order.
    ops: Vec<Op>,
}

/// One request in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Relay a formatted line.
    Send {
        /// To everyone online except the sender (`*`).
        everyone: bool,
        /// The named recipients: a range of [`Batch::names`], deduplicated.
        names: Range<usize>,
        /// The formatted `from ...` line: a range of the batch's lines.
        line: Range<usize>,
    },
    /// Answer `/who`.
    Who,
    /// Write these bytes back to the sender, in order with the rest of its
    /// output (errors and `/help` found by the session).
    Echo(Range<usize>),
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch with room for what `input_len` bytes of typical chat
    /// lines produce, so filling it rarely reallocates.
    pub fn for_input(input_len: usize) -> Self {
        Batch {
            lines: Vec::with_capacity(input_len + input_len / 2),
            names: String::with_capacity(input_len / 4),
            ops: Vec::with_capacity(input_len / 16),
        }
    }

    /// Adds a chat line from `sender`.
    pub fn push_chat(&mut self, sender: &str, chat: &ChatLine<'_>) {
        let start = self.names.len();
        for name in &chat.names {
            self.names.push_str(name);
            self.names.push(',');
        }
        let names = start..self.names.len();
        let line = self.push_bytes(|out| protocol::write_message(out, sender, chat.text));
        self.ops.push(Op::Send {
            everyone: chat.everyone,
            names,
            line,
        });
    }

    /// Adds a `/who`.
    pub fn push_who(&mut self) {
        self.ops.push(Op::Who);
    }

    /// Adds a line (or a few) for the sender itself.
    pub fn push_reply(&mut self, reply: &Reply<'_>) {
        let range = self.push_bytes(|out| reply.write_to(out));
        self.ops.push(Op::Echo(range));
    }

    fn push_bytes(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Range<usize> {
        let start = self.lines.len();
        write(&mut self.lines);
        start..self.lines.len()
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The bytes an operation points at.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        self.lines.get(range).unwrap_or_default()
    }

    /// The recipient names an operation points at.
    pub fn names(&self, range: Range<usize>) -> impl Iterator<Item = &str> + Clone {
        self.names
            .get(range)
            .unwrap_or_default()
            .split_terminator(',')
    }

    /// Bytes of output lines in the batch (each relayed line counted once,
    /// which is what one recipient gets of it at most).
    pub fn output_len(&self) -> usize {
        self.lines.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::parse_chat;

    #[test]
    fn a_batch_keeps_order_and_content() {
        let mut batch = Batch::new();
        batch.push_chat("alice", &parse_chat("bob, carol: hi"));
        batch.push_reply(&Reply::NotUtf8);
        batch.push_who();
        batch.push_chat("alice", &parse_chat("*: all"));
        let ops = batch.ops().to_vec();
        assert_eq!(ops.len(), 4);
        let Op::Send {
            everyone,
            names,
            line,
        } = ops[0].clone()
        else {
            panic!()
        };
        assert!(!everyone);
        assert_eq!(batch.names(names).collect::<Vec<_>>(), ["bob", "carol"]);
        assert_eq!(batch.bytes(line), b"from alice: hi\n");
        let Op::Echo(echo) = ops[1].clone() else {
            panic!()
        };
        assert_eq!(
            batch.bytes(echo),
            b"error: line is not valid UTF-8, ignored\n"
        );
        assert_eq!(ops[2], Op::Who);
        let Op::Send {
            everyone, names, ..
        } = ops[3].clone()
        else {
            panic!()
        };
        assert!(everyone);
        assert_eq!(batch.names(names).count(), 0);
    }
}
