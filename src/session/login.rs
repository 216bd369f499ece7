//! The login exchange: before login, the session answers for itself;
//! the first line that is a valid name goes to the broker as a [`NewPeer`],
//! and input waits for the answer.
//!
//! What a line means before login is decided by [`login_step`], a pure
//! function tested at the bottom.

use std::pin::Pin;
use std::sync::Arc;

use actix::dev::RecipientRequest;
use actix::prelude::*;

use super::input::InputEnd;
use super::{Phase, Session};
use crate::line_reader::Frame;
use crate::messages::{LoginError, NewPeer};
use crate::protocol::{self, Command, LoginName, Reply, Request};

/// A login the broker is deciding on: its answer, and the name asked for.
/// Boxed: the request is not `Unpin`.
pub(super) struct PendingLogin {
    pub(super) answer: Pin<Box<RecipientRequest<NewPeer>>>,
    pub(super) name: String,
}

impl Session {
    /// [`Session::consume`] before login: the session answers for itself.
    pub(super) fn consume_login(&mut self, input: &[u8], ctx: &mut Context<Self>) -> usize {
        let max_line_bytes = self.env.limits.max_line_bytes;
        let mut rest = input;
        while let Some(frame) = self.input.lines.next_frame(&mut rest) {
            match login_step(frame, max_line_bytes) {
                LoginStep::Nothing => {}
                LoginStep::Reply(reply) => self.reply(&reply, ctx),
                LoginStep::Quit => {
                    self.input.end(InputEnd::Quit);
                    return input.len();
                }
                LoginStep::Ask(name) => {
                    let spelling = name.spelling().to_string();
                    let answer = self.env.broker.new_peer.send(NewPeer { id: self.id, name });
                    if let Phase::LoggingIn { asked, .. } = &mut self.phase {
                        *asked = Some(PendingLogin {
                            answer: Box::pin(answer),
                            name: spelling,
                        });
                    }
                    break;
                }
            }
            if matches!(self.phase, Phase::Closing(_)) {
                return input.len();
            }
        }
        input.len() - rest.len()
    }

    pub(super) fn on_login_answer(
        &mut self,
        answer: Result<Result<(), LoginError>, MailboxError>,
        name: String,
        ctx: &mut Context<Self>,
    ) {
        match answer {
            Ok(Ok(())) => {
                let Phase::LoggingIn { timer, .. } = &self.phase else {
                    return;
                };
                ctx.cancel_future(*timer);
                self.phase = Phase::Online {
                    name: Arc::from(name),
                };
            }
            Ok(Err(LoginError::Taken(name))) => self.reply(&Reply::NameTaken(&name), ctx),
            Ok(Err(LoginError::TakenAs { name, online })) => self.reply(
                &Reply::NameTakenAs {
                    name: &name,
                    online: &online,
                },
                ctx,
            ),
            Ok(Err(LoginError::ShuttingDown)) => self.reply(&Reply::LoginsClosed, ctx),
            Ok(Err(LoginError::Unavailable)) => self.reply(&Reply::NamesUnavailable, ctx),
            Ok(Err(LoginError::HeldByLostNode(within_secs))) => self.reply(
                &Reply::NameHeldByLostNode {
                    name: &name,
                    within_secs,
                },
                ctx,
            ),
            Err(_) => ctx.stop(),
        }
    }
}

/// What a line before login asks the session to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LoginStep {
    /// Nothing (a blank line).
    Nothing,
    /// Answer it.
    Reply(Reply<'static>),
    /// `/quit`.
    Quit,
    /// Ask the broker for this name.
    Ask(LoginName),
}

/// Decides what a frame before login means.
fn login_step(frame: Frame<'_>, max_line_bytes: usize) -> LoginStep {
    let line = match frame {
        Frame::Line(line) => line.trim(),
        Frame::TooLong => {
            return LoginStep::Reply(Reply::LineTooLong {
                limit: max_line_bytes,
            });
        }
        Frame::NotUtf8 => return LoginStep::Reply(Reply::NotUtf8),
    };
    if line.is_empty() {
        return LoginStep::Nothing;
    }
    // A name cannot contain '/', so these are commands, not names.
    if line.starts_with('/') {
        return match protocol::parse_request(line) {
            Ok(Request::Command(Command::Quit)) => LoginStep::Quit,
            Ok(Request::Command(Command::Help)) => LoginStep::Reply(Reply::LoginHelp),
            _ => LoginStep::Reply(Reply::LogInFirst),
        };
    }
    match LoginName::new(line) {
        Ok(name) => LoginStep::Ask(name),
        Err(why) => LoginStep::Reply(Reply::InvalidName(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NameError;

    fn step(line: &str) -> LoginStep {
        login_step(Frame::Line(line), 4096)
    }

    #[test]
    fn before_login_a_name_is_asked_for_trimmed() {
        let ask = |name| LoginStep::Ask(LoginName::new(name).unwrap());
        assert_eq!(step("  alice \t"), ask("alice"));
        assert_eq!(step("Zoë"), ask("Zoë"));
        // Kept in NFC: an e and a combining diaeresis are one ë.
        assert_eq!(step("Zoe\u{0308}"), ask("Zo\u{00EB}"));
    }

    #[test]
    fn before_login_blank_lines_are_skipped() {
        assert_eq!(step(""), LoginStep::Nothing);
        assert_eq!(step("   "), LoginStep::Nothing);
    }

    #[test]
    fn before_login_commands_are_not_names() {
        assert_eq!(step("/quit"), LoginStep::Quit);
        assert_eq!(step(" /help me"), LoginStep::Reply(Reply::LoginHelp));
        assert_eq!(step("/who"), LoginStep::Reply(Reply::LogInFirst));
        assert_eq!(step("/nick bob"), LoginStep::Reply(Reply::LogInFirst));
    }

    #[test]
    fn before_login_bad_names_and_bad_frames_are_answered() {
        assert_eq!(
            step("bob smith"),
            LoginStep::Reply(Reply::InvalidName(NameError::Whitespace))
        );
        assert_eq!(
            login_step(Frame::TooLong, 100),
            LoginStep::Reply(Reply::LineTooLong { limit: 100 })
        );
        assert_eq!(
            login_step(Frame::NotUtf8, 100),
            LoginStep::Reply(Reply::NotUtf8)
        );
    }
}
