//! The login exchange: before login, the session answers for itself.
//!
//! A name line takes a token from the address's login rate
//! ([`crate::accounts::LoginRate`]); then, when registration is on, the
//! accounts actor is asked whether the name is registered. If it is, the
//! next line is its password, checked by the accounts actor; a right one
//! (or an unregistered name) goes to the broker as a [`NewPeer`]. While an
//! answer is awaited, input waits. The password line is never logged,
//! echoed or kept: it goes into the request and nowhere else.
//!
//! What a line before login means is decided by [`login_step`], a pure
//! function tested at the bottom.

use std::pin::Pin;
use std::task::{self, Poll, ready};

use actix::dev::RecipientRequest;
use actix::prelude::*;

use super::input::InputEnd;
use super::{Phase, Session};
use crate::accounts::Password;
use crate::line_reader::Frame;
use crate::messages::accounts::{AccountAnswer, AccountError, AccountOp, AccountRequest};
use crate::messages::{LoginError, NewPeer};
use crate::metrics::LoginRefusal;
use crate::protocol::{self, Command, LoginName, Reply, Request};

/// Where a login is.
pub(super) enum Login {
    /// Waiting for a name.
    Name,
    /// The name (as typed) is registered: the next line is its password.
    Password(LoginName),
    /// An answer about the name is awaited; input waits.
    Asked(Asked),
}

/// A question about the name `name`, awaiting its answer. Boxed: the
/// requests are not `Unpin`.
pub(super) struct Asked {
    name: LoginName,
    answer: Question,
}

enum Question {
    /// Is the name registered (the accounts actor)?
    Lookup(Pin<Box<RecipientRequest<AccountRequest>>>),
    /// Is this its password (the accounts actor)?
    Password(Pin<Box<RecipientRequest<AccountRequest>>>),
    /// May the connection take it (the broker)?
    Broker(Pin<Box<RecipientRequest<NewPeer>>>),
}

/// The accounts actor's answer, or its absence.
pub(super) type AccountReply = Result<Result<AccountAnswer, AccountError>, MailboxError>;

/// An answer to a [`Question`].
enum Answer {
    Lookup(AccountReply),
    Password(AccountReply),
    Broker(Result<Result<(), LoginError>, MailboxError>),
}

impl Asked {
    fn poll(&mut self, task_cx: &mut task::Context<'_>) -> Poll<Answer> {
        Poll::Ready(match &mut self.answer {
            Question::Lookup(answer) => Answer::Lookup(ready!(answer.as_mut().poll(task_cx))),
            Question::Password(answer) => Answer::Password(ready!(answer.as_mut().poll(task_cx))),
            Question::Broker(answer) => Answer::Broker(ready!(answer.as_mut().poll(task_cx))),
        })
    }
}

impl Session {
    /// [`Session::consume`] before login: the session answers for itself.
    pub(super) fn consume_login(&mut self, input: &[u8], ctx: &mut Context<Self>) -> usize {
        let max_line_bytes = self.env.limits.max_line_bytes;
        let mut rest = input;
        while let Some(frame) = self.input.lines.next_frame(&mut rest) {
            if let Phase::LoggingIn { login, .. } = &mut self.phase
                && let Login::Password(name) = login
            {
                match frame {
                    Frame::Line(line) => {
                        let name = name.clone();
                        // Trimmed: a password has no whitespace, a line
                        // may end in `\r` or stray blanks.
                        let password = Password::new(line.trim());
                        self.ask_accounts(name, AccountOp::LogIn(password));
                        break;
                    }
                    Frame::TooLong => self.reply(
                        &Reply::LineTooLong {
                            limit: max_line_bytes,
                        },
                        ctx,
                    ),
                    Frame::NotUtf8 => self.reply(&Reply::NotUtf8, ctx),
                }
                continue;
            }
            match login_step(frame, max_line_bytes) {
                LoginStep::Nothing => {}
                LoginStep::Reply(reply) => {
                    if matches!(reply, Reply::InvalidName(_)) {
                        self.counts.login_refused(LoginRefusal::InvalidName);
                    }
                    self.reply(&reply, ctx);
                }
                LoginStep::Quit => {
                    self.input.end(InputEnd::Quit);
                    return input.len();
                }
                LoginStep::Ask(name) => {
                    if let Err(wait) = self.env.login_rate.attempt(self.peer) {
                        self.counts.login_refused(LoginRefusal::TooMany);
                        self.reply(&Reply::TooManyLogins(wait), ctx);
                    } else if let Some(accounts) = &self.env.accounts {
                        match &accounts.registered {
                            // Known here: no question to the actor.
                            Some(registered) if registered.contains(name.folded().as_str()) => {
                                self.reply(&Reply::PasswordWanted(name.spelling()), ctx);
                                self.set_login(Login::Password(name));
                                continue;
                            }
                            Some(_) => self.ask_broker(name),
                            None => self.ask_accounts(name, AccountOp::Lookup),
                        }
                        break;
                    } else {
                        self.ask_broker(name);
                        break;
                    }
                }
            }
            if matches!(self.phase, Phase::Closing(_)) {
                return input.len();
            }
        }
        input.len() - rest.len()
    }

    fn set_login(&mut self, to: Login) {
        if let Phase::LoggingIn { login, .. } = &mut self.phase {
            *login = to;
        }
    }

    /// Asks the accounts actor about `name` (a lookup, or its password).
    fn ask_accounts(&mut self, name: LoginName, op: AccountOp) {
        let Some(accounts) = &self.env.accounts else {
            return self.ask_broker(name);
        };
        let lookup = matches!(op, AccountOp::Lookup);
        let answer = Box::pin(accounts.actor.send(AccountRequest {
            from: self.peer,
            name: name.spelling().to_string(),
            op,
        }));
        let answer = if lookup {
            Question::Lookup(answer)
        } else {
            Question::Password(answer)
        };
        self.set_login(Login::Asked(Asked { name, answer }));
    }

    /// Asks the broker for `name`.
    fn ask_broker(&mut self, name: LoginName) {
        let answer = self.env.broker.new_peer.send(NewPeer {
            id: self.id,
            name: name.clone(),
        });
        self.set_login(Login::Asked(Asked {
            name,
            answer: Question::Broker(Box::pin(answer)),
        }));
    }

    /// Whether input waits for an answer (a login step, or an account
    /// command after login).
    pub(super) fn awaiting_answer(&self) -> bool {
        match &self.phase {
            Phase::LoggingIn { login, .. } => matches!(login, Login::Asked(_)),
            Phase::Online { command, .. } => command.is_some(),
            Phase::Closing(_) => false,
        }
    }

    /// Polls the answer input waits for, if any: `Ready(true)` once one
    /// has been acted on, `Ready(false)` if none is awaited.
    pub(super) fn poll_answer(
        &mut self,
        ctx: &mut Context<Self>,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<bool> {
        match &mut self.phase {
            Phase::LoggingIn { login, .. } => {
                let Login::Asked(asked) = login else {
                    return Poll::Ready(false);
                };
                let answer = ready!(asked.poll(task_cx));
                let Login::Asked(Asked { name, .. }) = std::mem::replace(login, Login::Name) else {
                    return Poll::Ready(false);
                };
                self.on_login_answer(answer, name, ctx);
            }
            Phase::Online { command, .. } => {
                let Some(pending) = command else {
                    return Poll::Ready(false);
                };
                let answer = ready!(pending.poll(task_cx));
                let kind = pending.kind();
                *command = None;
                self.on_command_answer(kind, answer);
            }
            Phase::Closing(_) => return Poll::Ready(false),
        }
        Poll::Ready(true)
    }

    fn on_login_answer(&mut self, answer: Answer, name: LoginName, ctx: &mut Context<Self>) {
        let unavailable = || Reply::AccountsUnavailable;
        match answer {
            Answer::Lookup(Ok(Ok(AccountAnswer::Registered))) => {
                self.reply(&Reply::PasswordWanted(name.spelling()), ctx);
                self.set_login(Login::Password(name));
            }
            Answer::Lookup(Ok(Ok(_))) | Answer::Password(Ok(Ok(_))) => self.ask_broker(name),
            Answer::Password(Ok(Err(AccountError::WrongPassword))) => {
                self.counts.login_refused(LoginRefusal::WrongPassword);
                self.reply(&Reply::WrongPassword, ctx);
            }
            Answer::Password(Ok(Err(AccountError::TooManyFailures(wait)))) => {
                self.counts.login_refused(LoginRefusal::TooMany);
                self.reply(&Reply::TooManyWrongPasswords(wait), ctx);
            }
            Answer::Lookup(_) | Answer::Password(_) => {
                self.counts.login_refused(LoginRefusal::Unavailable);
                self.reply(&unavailable(), ctx);
            }
            Answer::Broker(answer) => self.on_broker_answer(answer, name, ctx),
        }
    }

    fn on_broker_answer(
        &mut self,
        answer: Result<Result<(), LoginError>, MailboxError>,
        name: LoginName,
        ctx: &mut Context<Self>,
    ) {
        if let Ok(Err(refused)) = &answer {
            self.counts.login_refused(match refused {
                LoginError::Taken(_) | LoginError::TakenAs { .. } => LoginRefusal::Taken,
                LoginError::ShuttingDown => LoginRefusal::ShuttingDown,
                LoginError::Unavailable | LoginError::HeldByLostNode(_) => {
                    LoginRefusal::Unavailable
                }
            });
        }
        match answer {
            Ok(Ok(())) => {
                let Phase::LoggingIn { timer, .. } = &self.phase else {
                    return;
                };
                ctx.cancel_future(*timer);
                self.counts.logins.add(1);
                self.phase = Phase::Online {
                    name: name.spelling().clone(),
                    command: None,
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
                    name: name.spelling(),
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
    /// Ask for this name.
    Ask(LoginName),
}

/// Decides what a frame before login means (the password line excepted:
/// it is taken as it is).
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
        // Account commands need a login, and their words are not echoed.
        assert_eq!(
            step("/register hunter2hunter2"),
            LoginStep::Reply(Reply::LogInFirst)
        );
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
