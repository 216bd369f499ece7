//! The messages between the sessions and the accounts actor
//! ([`crate::accounts::Accounts`]): is a name registered, is this its
//! password, register, change, unregister.
//!
//! One message, [`AccountRequest`], with the operation inside: a session
//! holds one `Recipient` for all of them, and has at most one request
//! out at a time (its input waits for the answer, as a login waits for
//! the broker), so a client cannot queue work at the accounts actor
//! faster than it is done.

use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::accounts::Password;

/// Session → accounts: do `op` for the name `name`, asked from `from`.
#[derive(Debug, Message)]
#[rtype(result = "Result<AccountAnswer, AccountError>")]
pub struct AccountRequest {
    /// The client's address: failures are counted per address too.
    pub from: IpAddr,
    /// The name as the user typed it (before login) or logged in with.
    pub name: String,
    /// What to do.
    pub op: AccountOp,
}

/// What an [`AccountRequest`] asks for.
#[derive(Debug)]
pub enum AccountOp {
    /// Before login: is the name registered?
    Lookup,
    /// Before login: is this the name's password?
    LogIn(Password),
    /// `/register PASSWORD`.
    Register(Password),
    /// `/password OLD NEW`.
    Change {
        /// The password now.
        old: Password,
        /// The one wanted.
        new: Password,
    },
    /// `/unregister PASSWORD`.
    Unregister(Password),
}

impl AccountOp {
    /// Whether it checks a password (and so counts towards the back-off).
    pub fn checks_password(&self) -> bool {
        matches!(
            self,
            AccountOp::LogIn(_) | AccountOp::Change { .. } | AccountOp::Unregister(_)
        )
    }
}

/// A request that went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAnswer {
    /// [`AccountOp::Lookup`]: registered; the password is needed.
    Registered,
    /// Not registered: log in as usual. (Also the answer to a
    /// [`AccountOp::LogIn`] for a name unregistered meanwhile.)
    NotRegistered,
    /// Done: the password was right, or the change is on disk.
    Done,
}

/// A request that did not go through. The session chooses the line the
/// user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The password given is not the name's.
    #[error("wrong password")]
    WrongPassword,
    /// Too many wrong passwords for this name or from this address lately:
    /// refused without checking; try again after this long.
    #[error("too many wrong passwords")]
    TooManyFailures(Duration),
    /// `/register` of a name already registered.
    #[error("already registered")]
    AlreadyRegistered,
    /// `/password` or `/unregister` of a name not registered.
    #[error("not registered")]
    NotRegistered,
    /// Too many password checks waiting already, or the store failed:
    /// nothing was changed.
    #[error("accounts unavailable")]
    Unavailable,
}
