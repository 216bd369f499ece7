//! The wire protocol: what a line means, and every line the server writes.
//! No I/O happens here, so every rule of `docs/PROTOCOL.md` is tested on
//! plain strings.
//!
//! Cutting the byte stream into lines is a separate concern and lives in
//! [`crate::line_reader`]; this module starts from one complete, valid UTF-8
//! line.
//!
//! Every line the server writes starts with one of three prefixes, so a
//! client (or a script) tells them apart by the first word:
//! `from <sender>: <text>`, `server: <text>` and `error: <text>`.
//!
//! - [`names`]: what a login name may be;
//! - [`fold`]: when two names are the same name (case, look-alike
//!   letters, Unicode forms);
//! - [`account`]: the account commands and what a password may be;
//! - [`request`]: what a line sent after login asks for (chat lines,
//!   commands);
//! - [`text`]: what a message's text may contain: nothing that could pass
//!   for another line;
//! - [`reply`]: what the server writes: relayed messages and every
//!   `server:` and `error:` text, each in one place;
//! - [`server_line`]: reading the server's lines back, for clients.

pub mod account;
pub mod fold;
pub mod names;
pub mod reply;
pub mod request;
pub mod server_line;
pub mod text;

pub use account::{AccountCommand, AccountCommandError, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
pub use fold::{Folded, fold_name, same_name, spelling};
pub use names::{
    FORBIDDEN_NAME_CHARS, LoginName, MAX_NAME_CHARS, NameError, RESERVED_NAMES, validate_name,
};
pub use reply::{HELP, Reply, WHO_MAX_NAMES, WHO_NAMES_PER_LINE, write_message, write_who};
pub use request::{
    ChatLine, Command, Names, Request, RequestError, parse_request, printable, truncate_chars,
};
pub use server_line::{ServerLine, parse_server_line};
