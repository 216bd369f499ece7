//! After login: each read becomes one [`Batch`] of requests, sent to the
//! broker as a [`Route`] with the credit taken before the read.
//!
//! What a line means is decided by [`on_frame`], a pure function tested at
//! the bottom.

use super::input::{InputEnd, READ_BUFFER_BYTES};
use super::{Phase, Session};
use crate::batch::Batch;
use crate::line_reader::Frame;
use crate::messages::Route;
use crate::protocol::{self, Command, Reply, Request};

impl Session {
    /// [`Session::consume`] after login: one batch for the broker.
    pub(super) fn consume_online(&mut self, input: &[u8]) -> usize {
        let batch_limit = self.batch_limit();
        let max_line_bytes = self.env.limits.max_line_bytes;
        let Phase::Online { name } = &self.phase else {
            return 0;
        };
        let mut batch = Batch::for_input(input.len().min(batch_limit));
        let mut rest = input;
        while let Some(frame) = self.input.lines.next_frame(&mut rest) {
            if let Some(end) = on_frame(frame, name, max_line_bytes, &mut batch) {
                self.input.end(end);
                rest = &[];
                break;
            }
            if batch.output_len() >= batch_limit {
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

/// Handles a frame after login: adds it to the batch. Returns how input
/// ends if it does (`/quit`).
fn on_frame(
    frame: Frame<'_>,
    name: &str,
    max_line_bytes: usize,
    batch: &mut Batch,
) -> Option<InputEnd> {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong => {
            batch.push_reply(&Reply::LineTooLong {
                limit: max_line_bytes,
            });
            return None;
        }
        Frame::NotUtf8 => {
            batch.push_reply(&Reply::NotUtf8);
            return None;
        }
    };
    match protocol::parse_request(line) {
        Ok(Request::Blank) => {}
        Ok(Request::Chat(chat)) => batch.push_chat(name, &chat),
        Ok(Request::Command(Command::Who)) => batch.push_who(),
        Ok(Request::Command(Command::Help)) => batch.push_reply(&Reply::Help),
        Ok(Request::Command(Command::Quit)) => return Some(InputEnd::Quit),
        Err(why) => batch.push_reply(&Reply::BadRequest(why)),
    }
    None
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
            end = on_frame(frame.clone(), "alice", 4096, &mut batch);
            if end.is_some() {
                break;
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
    fn after_login_help_is_echoed() {
        let (ops, _) = after_login(&[Frame::Line("/help")]);
        assert_eq!(ops.len(), 1);
        assert!(ops[0].starts_with("echo server: "), "{ops:?}");
    }
}
