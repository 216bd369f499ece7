//! What nodes say to each other over NATS, as bytes: pure encoding and
//! decoding, no I/O, so every frame is tested on plain values.
//!
//! The format is a few length-prefixed fields, not a general serializer:
//! the lines a node relays are already formatted protocol lines, and the
//! one hot frame ([`Frame::Lines`]) is the broker's buffer of records with
//! a short header in front, so a relayed line is copied once on the way
//! out and not at all on the way in.
//!
//! | subject | frame | meaning |
//! |---|---|---|
//! | `<cluster>.node.<id>` | [`Frame::Lines`] | lines for users on node `<id>`, numbered per link |
//! | | [`Frame::Done`] | these frames of yours were handled here (credit back) |
//! | | [`Frame::Lost`] | these frames of yours never arrived here |
//! | | [`Frame::Tick`] | what I sent you and what I am done with (repairs lost `Done`s and finds a lost last frame) |
//! | | [`Frame::NotOnline`] | recipients of your user who are not online here |
//! | `<cluster>.beat` | [`Beat`] | I am alive; my roster is at generation `generation` (or: I am leaving) |
//! | `<cluster>.presence` | [`Presence`] | who joined and left on a node, numbered by generation |
//! | `<cluster>.roster.<id>` | (request) → [`Roster`] parts | node `<id>`'s whole roster, for a node that missed changes |

use std::fmt;

/// A link's frame number: per (sending node, receiving node), from 1.
pub type Seq = u64;

const LINES: u8 = 1;
const DONE: u8 = 2;
const LOST: u8 = 3;
const TICK: u8 = 4;
const NOT_ONLINE: u8 = 5;

/// A frame on a node's own subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Lines for users on the receiving node.
    Lines {
        /// The link's frame number.
        seq: Seq,
        /// Records (see [`write_record`] and [`records`]).
        records: &'a [u8],
    },
    /// The receiver's frames `seqs` were handled by the sender's broker.
    Done(Vec<Seq>),
    /// The receiver's frames `seqs` never arrived at the sender.
    Lost(Vec<Seq>),
    /// Sent once a second on every link.
    Tick {
        /// The last frame number the sender sent on this link.
        sent: Seq,
        /// Every frame of the receiver's below this number is done.
        done_below: Seq,
    },
    /// Recipients of user `conn` (on the receiving node) who were not
    /// online on the sending node when its line arrived.
    NotOnline {
        /// The sender's connection on the receiving node.
        conn: u64,
        /// The names, each followed by `,`.
        names: &'a str,
    },
}

/// A frame with the node it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The sending node's id.
    pub from: &'a str,
    /// What it says.
    pub frame: Frame<'a>,
}

/// Why bytes are not a frame. Only a node of another version (or
/// something else publishing on our subjects) sends such bytes; they are
/// logged and dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster frame: {0}")]
pub struct Malformed(&'static str);

impl Envelope<'_> {
    /// Encodes the envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match &self.frame {
            Frame::Lines { seq, records } => {
                return lines_frame(self.from, *seq, records);
            }
            Frame::Done(seqs) | Frame::Lost(seqs) => {
                let kind = if matches!(self.frame, Frame::Done(_)) {
                    DONE
                } else {
                    LOST
                };
                header(&mut out, kind, self.from);
                put_u32(&mut out, seqs.len());
                for seq in seqs {
                    out.extend_from_slice(&seq.to_be_bytes());
                }
            }
            Frame::Tick { sent, done_below } => {
                header(&mut out, TICK, self.from);
                out.extend_from_slice(&sent.to_be_bytes());
                out.extend_from_slice(&done_below.to_be_bytes());
            }
            Frame::NotOnline { conn, names } => {
                header(&mut out, NOT_ONLINE, self.from);
                out.extend_from_slice(&conn.to_be_bytes());
                put_bytes(&mut out, names.as_bytes());
            }
        }
        out
    }

    /// Decodes bytes received on a node's subject.
    pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>, Malformed> {
        let mut r = Reader(bytes);
        let kind = r.u8()?;
        let from = r.str8()?;
        let frame = match kind {
            LINES => Frame::Lines {
                seq: r.u64()?,
                records: r.rest(),
            },
            DONE | LOST => {
                let n = r.u32()?;
                if n > r.0.len() / 8 {
                    return Err(Malformed("count past the end"));
                }
                let seqs = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                if kind == DONE {
                    Frame::Done(seqs)
                } else {
                    Frame::Lost(seqs)
                }
            }
            TICK => Frame::Tick {
                sent: r.u64()?,
                done_below: r.u64()?,
            },
            NOT_ONLINE => Frame::NotOnline {
                conn: r.u64()?,
                names: r.str32()?,
            },
            _ => return Err(Malformed("unknown kind")),
        };
        Ok(Envelope { from, frame })
    }
}

/// A [`Frame::Lines`] from `from`: the header, then `records` as they are.
pub fn lines_frame(from: &str, seq: Seq, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() + from.len() + 10);
    header(&mut out, LINES, from);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(records);
    out
}

/// One line relayed to users of another node, as it is laid out in a
/// [`Frame::Lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The sender's connection on the sending node (errors about this
    /// line are sent back for it).
    pub conn: u64,
    /// To every user online on the receiving node.
    pub everyone: bool,
    /// The recipients on the receiving node, each followed by `,`; empty
    /// with `everyone`.
    pub names: &'a str,
    /// The formatted `from <sender>: <text>` line.
    pub line: &'a [u8],
}

impl Record<'_> {
    /// The recipients one by one.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.names.split_terminator(',')
    }
}

/// Appends a record to `out` (the broker's buffer for one node).
pub fn write_record<'n>(
    out: &mut Vec<u8>,
    conn: u64,
    everyone: bool,
    names: impl Iterator<Item = &'n str>,
    line: &[u8],
) {
    out.extend_from_slice(&conn.to_be_bytes());
    out.push(u8::from(everyone));
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(b',');
    }
    let names_len = out.len() - len_at - 4;
    out[len_at..len_at + 4].copy_from_slice(&(names_len as u32).to_be_bytes());
    put_bytes(out, line);
}

/// The records of a [`Frame::Lines`], in order; stops at the first
/// malformed one.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = Result<Record<'_>, Malformed>> {
    let mut r = Reader(bytes);
    std::iter::from_fn(move || {
        if r.0.is_empty() {
            return None;
        }
        let record = (|| {
            Ok(Record {
                conn: r.u64()?,
                everyone: r.u8()? != 0,
                names: r.str32()?,
                line: r.bytes32()?,
            })
        })();
        if record.is_err() {
            r.0 = &[];
        }
        Some(record)
    })
}

/// `<cluster>.beat`: a node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat<'a> {
    /// The node.
    pub from: &'a str,
    /// Its roster's generation: the number of its last [`Presence`].
    pub generation: u64,
    /// The node is shutting down: take its users off now.
    pub leaving: bool,
}

impl Beat<'_> {
    /// Encodes the beat.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.from.len() + 10);
        put_str8(&mut out, self.from);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.push(u8::from(self.leaving));
        out
    }

    /// Decodes a beat.
    pub fn parse(bytes: &[u8]) -> Result<Beat<'_>, Malformed> {
        let mut r = Reader(bytes);
        Ok(Beat {
            from: r.str8()?,
            generation: r.u64()?,
            leaving: r.u8()? != 0,
        })
    }
}

/// `<cluster>.presence`: names that came online and went offline on a
/// node, in the order they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence<'a> {
    /// The node.
    pub from: &'a str,
    /// Generation: one more than the node's previous `Presence`.
    pub generation: u64,
    /// `(joined, name)` in order.
    pub changes: Vec<(bool, &'a str)>,
}

impl Presence<'_> {
    /// Encodes the changes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_str8(&mut out, self.from);
        out.extend_from_slice(&self.generation.to_be_bytes());
        put_u32(&mut out, self.changes.len());
        for (joined, name) in &self.changes {
            out.push(u8::from(*joined));
            put_str8(&mut out, name);
        }
        out
    }

    /// Decodes changes.
    pub fn parse(bytes: &[u8]) -> Result<Presence<'_>, Malformed> {
        let mut r = Reader(bytes);
        let from = r.str8()?;
        let generation = r.u64()?;
        let n = r.u32()?;
        if n > r.0.len() / 2 {
            return Err(Malformed("count past the end"));
        }
        let changes = (0..n)
            .map(|_| Ok((r.u8()? != 0, r.str8()?)))
            .collect::<Result<_, Malformed>>()?;
        Ok(Presence {
            from,
            generation,
            changes,
        })
    }
}

/// One part of a node's whole roster, the answer to a roster request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster<'a> {
    /// The roster's generation.
    pub generation: u64,
    /// This part's number, from 0.
    pub part: u32,
    /// How many parts there are.
    pub parts: u32,
    /// Names in this part.
    pub names: Vec<&'a str>,
}

impl Roster<'_> {
    /// Encodes the part.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.generation.to_be_bytes());
        put_u32(&mut out, self.part as usize);
        put_u32(&mut out, self.parts as usize);
        put_u32(&mut out, self.names.len());
        for name in &self.names {
            put_str8(&mut out, name);
        }
        out
    }

    /// Decodes a part.
    pub fn parse(bytes: &[u8]) -> Result<Roster<'_>, Malformed> {
        let mut r = Reader(bytes);
        let generation = r.u64()?;
        let part = r.u32()? as u32;
        let parts = r.u32()? as u32;
        let n = r.u32()?;
        if n > r.0.len() {
            return Err(Malformed("count past the end"));
        }
        let names = (0..n).map(|_| r.str8()).collect::<Result<_, _>>()?;
        Ok(Roster {
            generation,
            part,
            parts,
            names,
        })
    }

    /// Splits `names` into parts of at most `max_bytes` each (at least one
    /// name per part, and one part even for no names).
    pub fn split<'n>(generation: u64, names: &[&'n str], max_bytes: usize) -> Vec<Roster<'n>> {
        let mut parts: Vec<Vec<&str>> = vec![Vec::new()];
        let mut bytes = 0;
        for &name in names {
            let cost = name.len() + 1;
            if bytes + cost > max_bytes && parts.last().is_some_and(|p| !p.is_empty()) {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += cost;
            if let Some(last) = parts.last_mut() {
                last.push(name);
            }
        }
        let count = parts.len() as u32;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, names)| Roster {
                generation,
                part: i as u32,
                parts: count,
                names,
            })
            .collect()
    }
}

fn header(out: &mut Vec<u8>, kind: u8, from: &str) {
    out.push(kind);
    put_str8(out, from);
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    // Node ids and names are at most 128 bytes (32 characters of 4 bytes).
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A cursor over received bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, Malformed> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b) as usize)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn str8(&mut self) -> Result<&'a str, Malformed> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| Malformed("not UTF-8"))
    }

    fn bytes32(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()?;
        self.take(n)
    }

    fn str32(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes32()?).map_err(|_| Malformed("not UTF-8"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conn {} to {}: {}",
            self.conn,
            if self.everyone { "*" } else { self.names },
            String::from_utf8_lossy(self.line).trim_end()
        )
    }
}

#[cfg(test)]
mod tests;
