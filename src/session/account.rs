//! After login, the account commands: `/register`, `/password` and
//! `/unregister` go to the accounts actor, and input waits for the
//! answer, as a login waits for the broker's.
//!
//! The answer arrives after the lines before the command have gone to
//! the broker, and it goes there too, as a batch of one
//! [`Op::Echo`](crate::batch::Op): after login every line a connection
//! gets is put in order by the broker (see the session module), so the
//! answer is written after everything the command followed, and before
//! anything that follows it.

use std::pin::Pin;
use std::task::{self, Poll};

use actix::dev::RecipientRequest;

use super::login::AccountReply;
use super::{Phase, Session};
use crate::accounts::Password;
use crate::batch::Batch;
use crate::messages::accounts::{AccountError, AccountOp, AccountRequest};
use crate::messages::{Credit, Route};
use crate::protocol::{AccountCommand, Reply};

/// Which command is being carried out: the answer's wording depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommandKind {
    Register,
    Change,
    Unregister,
}

/// An account command sent to the accounts actor, awaiting its answer.
pub(super) struct PendingCommand {
    kind: CommandKind,
    answer: Pin<Box<RecipientRequest<AccountRequest>>>,
}

impl PendingCommand {
    pub(super) fn poll(&mut self, task_cx: &mut task::Context<'_>) -> Poll<AccountReply> {
        self.answer.as_mut().poll(task_cx)
    }

    pub(super) fn kind(&self) -> CommandKind {
        self.kind
    }
}

/// The request for a parsed command, and which it is. The passwords
/// leave the line here, wrapped so no log line can show them.
pub(super) fn request_for(command: &AccountCommand<'_>) -> (CommandKind, AccountOp) {
    match *command {
        AccountCommand::Register(password) => (
            CommandKind::Register,
            AccountOp::Register(Password::new(password)),
        ),
        AccountCommand::Password { old, new } => (
            CommandKind::Change,
            AccountOp::Change {
                old: Password::new(old),
                new: Password::new(new),
            },
        ),
        AccountCommand::Unregister(password) => (
            CommandKind::Unregister,
            AccountOp::Unregister(Password::new(password)),
        ),
    }
}

impl Session {
    /// Sends an account command for the name logged in with; input waits
    /// for the answer. (Only called when registration is on: with it
    /// off the command is answered in the batch.)
    pub(super) fn start_command(&mut self, kind: CommandKind, op: AccountOp) {
        let Phase::Online { name, command } = &mut self.phase else {
            return;
        };
        let Some(accounts) = &self.env.accounts else {
            return;
        };
        let answer = accounts.actor.send(AccountRequest {
            from: self.peer,
            name: name.to_string(),
            op,
        });
        *command = Some(PendingCommand {
            kind,
            answer: Box::pin(answer),
        });
    }

    /// Routes the answer to an account command through the broker.
    pub(super) fn on_command_answer(&mut self, kind: CommandKind, answer: AccountReply) {
        let Phase::Online { name, .. } = &self.phase else {
            return;
        };
        let reply = command_reply(kind, name, answer);
        let mut batch = Batch::new();
        batch.push_reply(&reply);
        self.env.broker.route.do_send(Route {
            from: self.id,
            batch,
            // One answer per command, and one command at a time: nothing
            // to pace.
            credit: Credit::unlimited(),
        });
    }
}

/// The line that answers an account command.
fn command_reply(kind: CommandKind, name: &str, answer: AccountReply) -> Reply<'_> {
    match (kind, answer) {
        (CommandKind::Register, Ok(Ok(_))) => Reply::Registered(name),
        (CommandKind::Change, Ok(Ok(_))) => Reply::PasswordChanged,
        (CommandKind::Unregister, Ok(Ok(_))) => Reply::Unregistered(name),
        (_, Ok(Err(AccountError::AlreadyRegistered))) => Reply::AlreadyRegistered(name),
        (_, Ok(Err(AccountError::NotRegistered))) => Reply::NotRegistered(name),
        (_, Ok(Err(AccountError::WrongPassword))) => Reply::WrongPasswordNothingChanged,
        (_, Ok(Err(AccountError::TooManyFailures(wait)))) => Reply::TooManyWrongPasswords(wait),
        (_, Ok(Err(AccountError::Unavailable)) | Err(_)) => Reply::AccountsUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::accounts::AccountAnswer;
    use std::time::Duration;

    #[test]
    fn each_answer_has_its_line() {
        let text = |kind, answer| {
            String::from_utf8(command_reply(kind, "Alice", answer).to_bytes()).unwrap()
        };
        assert!(
            text(CommandKind::Register, Ok(Ok(AccountAnswer::Done)))
                .starts_with("server: 'Alice' is registered")
        );
        assert_eq!(
            text(CommandKind::Change, Ok(Ok(AccountAnswer::Done))),
            "server: password changed\n"
        );
        assert!(
            text(CommandKind::Unregister, Ok(Ok(AccountAnswer::Done)))
                .starts_with("server: 'Alice' is no longer registered")
        );
        assert_eq!(
            text(
                CommandKind::Change,
                Ok(Err(AccountError::TooManyFailures(Duration::from_millis(
                    1500
                ))))
            ),
            "error: too many wrong passwords: try again in 2 s\n"
        );
        assert!(
            text(CommandKind::Register, Err(actix::MailboxError::Closed)).starts_with("error: ")
        );
    }

    #[test]
    fn requests_carry_the_passwords_hidden() {
        let (kind, op) = request_for(&AccountCommand::Password {
            old: "old-secret",
            new: "new-secret",
        });
        assert_eq!(kind, CommandKind::Change);
        let shown = format!("{op:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
