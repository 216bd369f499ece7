//! After login: each read becomes one [`Batch`] of requests, sent to the
//! broker as a [`Route`] with the credit taken before the read.
//!
//! A batch is priced as it is filled ([`Cost`]), so that a line costs the
//! sender what it costs to deliver: a batch is closed once the output it
//! gives any one peer reaches [`Session::batch_limit`], or once the bytes
//! it delivers in all, every copy counted, reach [`DELIVERY_BUDGET`]. A
//! line to everyone online is priced at one copy per peer online (the
//! broker publishes the count, [`RosterGauge`]), and `/who` at the length
//! of its answer. With two batches at the broker at most, a sender whose
//! lines fan out widely is read correspondingly slower, and the broker's
//! work on any one batch is bounded, so nobody's message waits behind much
//! of anyone else's.
//!
//! What a line means is decided by [`on_frame`], a pure function tested at
//! the bottom.

use super::account::{CommandKind, request_for};
use super::input::{InputEnd, READ_BUFFER_BYTES};
use super::{Phase, Session};
use crate::batch::Batch;
use crate::line_reader::Frame;
use crate::messages::accounts::AccountOp;
use crate::messages::{RosterGauge, Route};
use crate::protocol::{self, Command, Reply, Request};

/// The bytes one batch may deliver in all, each copy to each recipient
/// counted (with 16 bytes more per copy, for the copying): about two
/// milliseconds of the broker's time, the most a bystander's line waits
/// behind at the broker. One line is always let through, so a line to
/// twenty thousand peers travels alone. Not smaller: every batch wakes each
/// of its recipients' sessions once, for a write of its own, and those
/// wake-ups are what a broadcast to thousands costs; with 5,000 readers of
/// `*: x` lines a delivery cost the server 2.2 µs of CPU at 256 KiB, 1.5 µs
/// at 1 MiB, 0.96 µs at 2 MiB; 4 MiB (0.57 µs) put the bystanders' p99 at
/// 16 ms, 2 MiB at 11.5 ms (docs/BENCHMARKS.md, "Hostile clients"). The
/// wake-ups go out in slices (`broker/slices.rs`), so the batch's size does
/// not set how long others wait on the workers.
pub const DELIVERY_BUDGET: usize = 2 * 1024 * 1024;

/// What one copy of a line costs the broker besides its bytes.
const DELIVERY_OVERHEAD: usize = 16;

/// What the requests in a batch so far will cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cost {
    /// Output to any one peer at most: each relayed line (a peer gets at
    /// most one copy) and everything that comes back to the sender.
    per_peer: usize,
    /// Bytes delivered in all, every copy counted.
    delivered: usize,
}

/// What the broker's side of things costs right now (from the
/// [`RosterGauge`]).
#[derive(Debug, Clone, Copy)]
struct Prices {
    online: usize,
    who_bytes: usize,
}

impl Prices {
    fn now(gauge: &RosterGauge) -> Self {
        Prices {
            online: gauge.online(),
            who_bytes: gauge.who_bytes(),
        }
    }
}

impl Session {
    /// [`Session::consume`] after login: one batch for the broker.
    pub(super) fn consume_online(&mut self, input: &[u8]) -> usize {
        let batch_limit = self.batch_limit();
        let max_line_bytes = self.env.limits.max_line_bytes;
        let prices = Prices::now(&self.env.gauge);
        let accounts_on = self.env.accounts.is_some();
        let Phase::Online { name, .. } = &self.phase else {
            return 0;
        };
        let mut batch = Batch::for_input(input.len().min(batch_limit));
        let mut cost = Cost::default();
        let mut rest = input;
        let mut command = None;
        while let Some(frame) = self.input.lines.next_frame(&mut rest) {
            let line = on_frame(frame, name, max_line_bytes, accounts_on, &mut batch);
            match line {
                Ok(added) => cost.add(added, prices),
                Err(Stop::End(end)) => {
                    self.input.end(end);
                    rest = &[];
                    break;
                }
                // What follows waits for the command's answer.
                Err(Stop::Account(kind, op)) => {
                    command = Some((kind, op));
                    break;
                }
            }
            if cost.per_peer >= batch_limit || cost.delivered >= DELIVERY_BUDGET {
                break;
            }
        }
        if !batch.is_empty() {
            self.env.broker.route.do_send(Route {
                from: self.id,
                batch,
                credit: self.input.credits.take(),
            });
        }
        if let Some((kind, op)) = command {
            self.start_command(kind, op);
        }
        input.len() - rest.len()
    }

    /// The most output one batch may produce for one recipient: a sender
    /// has up to two batches at the broker (`BATCHES_IN_FLIGHT`), and they
    /// must fit, several senders' worth, in the half of a recipient's outbox
    /// above the point where senders are held up. (Output can be ten times
    /// the input: `b:x` becomes `from <a 32-character name>: x`.)
    fn batch_limit(&self) -> usize {
        (self.env.limits.max_outbox_bytes / 8).clamp(1, READ_BUFFER_BYTES)
    }
}

/// What one line added to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    /// Nothing (a blank line).
    Nothing,
    /// A line of `bytes` to relay to `names` peers, and to everyone online
    /// if `everyone`.
    Send {
        bytes: usize,
        names: usize,
        everyone: bool,
    },
    /// A `/who`.
    Who,
    /// `bytes` for the sender itself.
    Echo { bytes: usize },
}

impl Cost {
    fn add(&mut self, added: Added, prices: Prices) {
        let (per_peer, copies, bytes) = match added {
            Added::Nothing => return,
            Added::Send {
                bytes,
                names,
                everyone,
            } => {
                let copies = names + if everyone { prices.online } else { 0 };
                (bytes, copies, bytes)
            }
            Added::Who => (prices.who_bytes, 1, prices.who_bytes),
            Added::Echo { bytes } => (bytes, 1, bytes),
        };
        self.per_peer += per_peer;
        self.delivered += copies * (bytes + DELIVERY_OVERHEAD);
    }
}

/// Why a frame closes the batch without being added to it.
#[derive(Debug)]
enum Stop {
    /// Input ends (`/quit`).
    End(InputEnd),
    /// An account command, for the accounts actor (its password is kept
    /// out of the batch, which the broker may log).
    Account(CommandKind, AccountOp),
}

/// Handles a frame after login: adds it to the batch and says what it
/// added, or why it stops the batch (`/quit`, an account command;
/// `accounts_on`: whether registration is on).
fn on_frame(
    frame: Frame<'_>,
    name: &str,
    max_line_bytes: usize,
    accounts_on: bool,
    batch: &mut Batch,
) -> Result<Added, Stop> {
    let before = batch.output_len();
    let echo = |batch: &mut Batch, reply: &Reply<'_>| {
        batch.push_reply(reply);
        Added::Echo {
            bytes: batch.output_len() - before,
        }
    };
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong => {
            let limit = max_line_bytes;
            return Ok(echo(batch, &Reply::LineTooLong { limit }));
        }
        Frame::NotUtf8 => return Ok(echo(batch, &Reply::NotUtf8)),
    };
    Ok(match protocol::parse_request(line) {
        Ok(Request::Blank) => Added::Nothing,
        Ok(Request::Chat(chat)) => {
            batch.push_chat(name, &chat);
            Added::Send {
                bytes: batch.output_len() - before,
                names: chat.names.len(),
                everyone: chat.everyone,
            }
        }
        Ok(Request::Command(Command::Who)) => {
            batch.push_who();
            Added::Who
        }
        Ok(Request::Command(Command::Help)) => echo(batch, &Reply::Help),
        Ok(Request::Command(Command::Quit)) => return Err(Stop::End(InputEnd::Quit)),
        Ok(Request::Account(command)) if accounts_on => {
            let (kind, op) = request_for(&command);
            return Err(Stop::Account(kind, op));
        }
        Ok(Request::Account(_)) => echo(batch, &Reply::RegistrationOff),
        Err(why) => echo(batch, &Reply::BadRequest(why)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Op;
    use crate::protocol::RequestError;

    /// What `on_frame` made of some lines: the batch's operations with
    /// their bytes, and how input ended.
    fn after_login(frames: &[Frame<'_>]) -> (Vec<String>, Option<InputEnd>) {
        let mut batch = Batch::new();
        let mut end = None;
        for frame in frames {
            match on_frame(frame.clone(), "alice", 4096, false, &mut batch) {
                Err(Stop::End(ended)) => {
                    end = Some(ended);
                    break;
                }
                Err(Stop::Account(..)) => panic!("registration is off here"),
                Ok(_) => {}
            }
        }
        let ops = batch
            .ops()
            .iter()
            .map(|op| match op {
                Op::Send {
                    everyone,
                    names,
                    line,
                } => format!(
                    "send{} {:?} {}",
                    if *everyone { " *" } else { "" },
                    batch.names(names.clone()).collect::<Vec<_>>(),
                    String::from_utf8_lossy(batch.bytes(line.clone())).trim_end()
                ),
                Op::Who => "who".to_owned(),
                Op::Echo(range) => format!(
                    "echo {}",
                    String::from_utf8_lossy(batch.bytes(range.clone())).trim_end()
                ),
            })
            .collect();
        (ops, end)
    }

    #[test]
    fn after_login_chat_lines_become_sends_formatted_once() {
        let (ops, end) = after_login(&[Frame::Line("bob, carol: hi"), Frame::Line("*: all")]);
        assert_eq!(
            ops,
            [
                r#"send ["bob", "carol"] from alice: hi"#,
                r#"send * [] from alice: all"#
            ]
        );
        assert_eq!(end, None);
    }

    #[test]
    fn after_login_commands_and_errors_keep_their_place() {
        let (ops, end) = after_login(&[
            Frame::Line("/who"),
            Frame::Line("hello"),
            Frame::Line(""),
            Frame::TooLong,
            Frame::NotUtf8,
            Frame::Line("bob: \u{1b}[2J"),
        ]);
        let bad = |why: RequestError| {
            let reply = Reply::BadRequest(why).to_bytes();
            format!("echo {}", String::from_utf8_lossy(&reply).trim_end())
        };
        assert_eq!(
            ops,
            [
                "who".to_owned(),
                bad(RequestError::NotAChatLine),
                "echo error: line too long (the limit is 4096 bytes), ignored".to_owned(),
                "echo error: line is not valid UTF-8, ignored".to_owned(),
                bad(RequestError::ControlCharacters),
            ]
        );
        assert_eq!(end, None);
    }

    #[test]
    fn after_login_quit_ends_input_and_nothing_after_it_counts() {
        let (ops, end) = after_login(&[
            Frame::Line("bob: first"),
            Frame::Line(" /quit now"),
            Frame::Line("bob: never"),
        ]);
        assert_eq!(ops, [r#"send ["bob"] from alice: first"#]);
        assert_eq!(end, Some(InputEnd::Quit));
    }

    #[test]
    fn account_commands_stay_out_of_the_batch() {
        let mut batch = Batch::new();
        let stop = on_frame(
            Frame::Line("/register hunter2hunter2"),
            "alice",
            4096,
            true,
            &mut batch,
        );
        assert!(matches!(stop, Err(Stop::Account(CommandKind::Register, _))));
        assert!(batch.is_empty());
        // Off: answered in place, the password nowhere in the batch.
        let (ops, _) = after_login(&[Frame::Line("/register hunter2hunter2")]);
        assert_eq!(ops, ["echo error: registration is off on this server"]);
        // A bad command is answered without its words.
        let (ops, _) = after_login(&[Frame::Line("/password onlyone")]);
        assert_eq!(ops, ["echo error: usage: /password OLD NEW"]);
    }

    #[test]
    fn after_login_help_is_echoed() {
        let (ops, _) = after_login(&[Frame::Line("/help")]);
        assert_eq!(ops.len(), 1);
        assert!(ops[0].starts_with("echo server: "), "{ops:?}");
    }

    #[test]
    fn a_line_is_priced_at_what_it_delivers() {
        let prices = Prices {
            online: 1000,
            who_bytes: 5000,
        };
        let mut batch = Batch::new();
        let mut priced = |line: &str| {
            let mut cost = Cost::default();
            cost.add(
                on_frame(Frame::Line(line), "alice", 4096, false, &mut batch).unwrap(),
                prices,
            );
            cost
        };
        // "from alice: hi\n" is 15 bytes.
        assert_eq!(
            priced("bob: hi"),
            Cost {
                per_peer: 15,
                delivered: 15 + DELIVERY_OVERHEAD
            }
        );
        assert_eq!(
            priced("bob, carol: hi").delivered,
            2 * (15 + DELIVERY_OVERHEAD)
        );
        assert_eq!(priced("*: hi").delivered, 1000 * (15 + DELIVERY_OVERHEAD));
        assert_eq!(
            priced("*, bob: hi").delivered,
            1001 * (15 + DELIVERY_OVERHEAD)
        );
        assert_eq!(
            priced("/who"),
            Cost {
                per_peer: 5000,
                delivered: 5000 + DELIVERY_OVERHEAD
            }
        );
        assert_eq!(priced("").delivered, 0);
        assert!(priced("hello").per_peer > 0);
    }

    #[test]
    fn a_broadcast_to_many_fills_a_batch_alone() {
        let prices = Prices {
            online: 20_000,
            who_bytes: 0,
        };
        // 20,000 copies of a 100-byte text: past the budget in one line.
        let line = format!("*: {}", "x".repeat(100));
        let mut batch = Batch::new();
        let mut cost = Cost::default();
        cost.add(
            on_frame(Frame::Line(&line), "alice", 4096, false, &mut batch).unwrap(),
            prices,
        );
        assert!(cost.delivered >= DELIVERY_BUDGET);
    }
}
