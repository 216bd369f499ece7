//! Every line the server writes: relayed messages ([`write_message`]), the
//! answer to `/who` ([`write_who`]) and each `server:` and `error:` text
//! ([`Reply`]).
//!
//! This is the one place those texts are spelled, so rewording one is one
//! edit here (and one in `docs/PROTOCOL.md`, which quotes them all). The
//! session, the broker and the accept loop only choose which [`Reply`] to
//! write.

use std::fmt;
use std::time::Duration;

use super::names::NameError;
use super::request::{RequestError, printable};

/// Appends the relayed-message line `from <sender>: <text>\n` to `out`.
pub fn write_message(out: &mut Vec<u8>, sender: &str, text: &str) {
    out.reserve(sender.len() + text.len() + 8);
    out.extend_from_slice(b"from ");
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// The answer to `/help`, one `server:` line per entry.
pub const HELP: &[&str] = &[
    "send a message: name: text   (e.g. 'bob: hi')",
    "several recipients: name1, name2: text",
    "everyone online but you: *: text",
    "/who lists who is online, /quit leaves, /help shows this",
    "/register PASSWORD protects your name with a password (at least 8 characters, no spaces)",
    "/password OLD NEW changes it, /unregister PASSWORD frees the name again",
];

/// The word a welcome starts with; [`super::parse_server_line`] reads it
/// back for clients.
pub(super) const WELCOME: &str = "welcome ";

/// How the password prompt ends, after `'<name>`; read back by
/// [`super::parse_server_line`], so a client that answers the prompt with a
/// password (and hides it) sees the prompt as long as the server sends it.
pub(super) const PASSWORD_WANTED_END: &str = "' is registered: send its password";

/// A `server:` or `error:` line (or, for help, a few) that the server
/// writes on its own account. Each variant is one text of
/// `docs/PROTOCOL.md`; [`Reply::write_to`] spells them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `server: welcome <name> (<n> online, /help for help)`: logged in.
    Welcome {
        /// The name now registered.
        name: &'a str,
        /// Peers online, the new one included.
        online: usize,
    },
    /// `/help` before login: how to log in, then [`HELP`].
    LoginHelp,
    /// `/help` after login: [`HELP`].
    Help,
    /// `server: bye`: the answer to `/quit`.
    Bye,
    /// `server: shutting down`: the last line of every connection at
    /// shutdown, and of one that arrives during it.
    ShuttingDown,
    /// `error: invalid name: ...; send another name`.
    InvalidName(NameError),
    /// `error: the name '<name>' is taken, choose another`.
    NameTaken(&'a str),
    /// `error: the name '<name>' is taken (it is the same name as
    /// '<online>'), choose another`: the same name in another spelling
    /// (case, look-alike letters) is online.
    NameTakenAs {
        /// The spelling asked for.
        name: &'a str,
        /// The spelling online.
        online: &'a str,
    },
    /// `error: the server is shutting down`: a login refused because the
    /// server is stopping.
    LoginsClosed,
    /// `error: log in first: send your name`: a command other than `/help`
    /// or `/quit` before login.
    LogInFirst,
    /// `error: no login within <duration>, closing`.
    LoginTimeout(Duration),
    /// `error: line too long (the limit is <n> bytes), ignored`.
    LineTooLong {
        /// `--max-line-bytes`.
        limit: usize,
    },
    /// `error: line is not valid UTF-8, ignored`.
    NotUtf8,
    /// `error: <why>`: a line after login that asks for nothing valid.
    BadRequest(RequestError),
    /// `error: not online: <names> (message not delivered to them|those)`.
    NotOnline(&'a [&'a str]),
    /// `error: no one else is online, message not delivered`: `*` alone,
    /// with nobody to reach.
    NobodyElseOnline,
    /// `error: server full (<n> connections), try again later`.
    ServerFull {
        /// `--max-connections`.
        max_connections: usize,
    },
    /// `error: too many connections from your address`: over
    /// `--max-connections-per-ip`.
    TooManyFromAddress,
    /// `error: names cannot be checked right now (the cluster's name
    /// service is unavailable), try again in a moment`: a login in cluster
    /// mode that could not be decided.
    NamesUnavailable,
    /// `error: the name '<name>' is held by a node that stopped answering;
    /// it is free again within <n> seconds`.
    NameHeldByLostNode {
        /// The name asked for.
        name: &'a str,
        /// The bound on its release.
        within_secs: u64,
    },
    /// `error: lost between nodes, may not have reached: <names>; send it
    /// again`: a line relayed to another node that was not confirmed
    /// (`*` stands for everyone on that node).
    Undelivered(&'a [&'a str]),
    /// `server: this node lost contact with the cluster, disconnecting;
    /// log in again in a moment`: the last line of every user of a node
    /// cut off from its cluster.
    CutOff,
    /// `server: '<name>' is registered: send its password`: the next line
    /// is taken as the password.
    PasswordWanted(&'a str),
    /// `error: wrong password; send a name to log in`: back at the name
    /// prompt.
    WrongPassword,
    /// `error: too many wrong passwords: try again in <n> s`: refused
    /// without checking, the name or the address is backing off.
    TooManyWrongPasswords(Duration),
    /// `error: too many login attempts from your address: try again in
    /// <n> s`.
    TooManyLogins(Duration),
    /// `error: passwords cannot be checked right now, try again in a
    /// moment`: the accounts are busy or their store failed.
    AccountsUnavailable,
    /// `error: registration is off on this server`.
    RegistrationOff,
    /// `server: '<name>' is registered: logging in with it now asks for
    /// the password`.
    Registered(&'a str),
    /// `error: '<name>' is already registered`.
    AlreadyRegistered(&'a str),
    /// `error: '<name>' is not registered`.
    NotRegistered(&'a str),
    /// `server: password changed`.
    PasswordChanged,
    /// `server: '<name>' is no longer registered`.
    Unregistered(&'a str),
    /// `error: wrong password, nothing changed`: `/password` or
    /// `/unregister` with a wrong password.
    WrongPasswordNothingChanged,
}

impl Reply<'_> {
    /// Appends the line(s) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Welcome { name, online } => server(
                out,
                format_args!("{WELCOME}{name} ({online} online, /help for help)"),
            ),
            Reply::LoginHelp => {
                server(out, "first send your name to log in");
                Reply::Help.write_to(out);
            }
            Reply::Help => {
                for line in HELP {
                    server(out, line);
                }
            }
            Reply::Bye => server(out, "bye"),
            Reply::ShuttingDown => server(out, "shutting down"),
            Reply::InvalidName(why) => {
                error(out, format_args!("invalid name: {why}; send another name"))
            }
            Reply::NameTaken(name) => error(
                out,
                format_args!("the name '{name}' is taken, choose another"),
            ),
            Reply::NameTakenAs { name, online } => error(
                out,
                format_args!(
                    "the name '{name}' is taken (it is the same name as '{online}'), choose another"
                ),
            ),
            Reply::LoginsClosed => error(out, "the server is shutting down"),
            Reply::LogInFirst => error(out, "log in first: send your name"),
            Reply::LoginTimeout(limit) => error(
                out,
                format_args!("no login within {}, closing", Humanized(*limit)),
            ),
            Reply::LineTooLong { limit } => error(
                out,
                format_args!("line too long (the limit is {limit} bytes), ignored"),
            ),
            Reply::NotUtf8 => error(out, "line is not valid UTF-8, ignored"),
            Reply::BadRequest(why) => error(out, why),
            Reply::NotOnline(names) => error(
                out,
                format_args!(
                    "not online: {} (message not delivered to {})",
                    printable(&names.join(", ")),
                    if names.len() == 1 { "them" } else { "those" }
                ),
            ),
            Reply::NobodyElseOnline => error(out, "no one else is online, message not delivered"),
            Reply::ServerFull { max_connections } => error(
                out,
                format_args!("server full ({max_connections} connections), try again later"),
            ),
            Reply::TooManyFromAddress => error(out, "too many connections from your address"),
            Reply::NamesUnavailable => error(
                out,
                "names cannot be checked right now (the cluster's name service is \
                 unavailable), try again in a moment",
            ),
            Reply::NameHeldByLostNode { name, within_secs } => error(
                out,
                format_args!(
                    "the name '{name}' is held by a node that stopped answering; it is free \
                     again within {within_secs} seconds"
                ),
            ),
            Reply::Undelivered(names) => error(
                out,
                format_args!(
                    "lost between nodes, may not have reached: {}; send it again",
                    printable(&names.join(", "))
                ),
            ),
            Reply::CutOff => server(
                out,
                "this node lost contact with the cluster, disconnecting; log in again in a moment",
            ),
            Reply::PasswordWanted(name) => {
                server(out, format_args!("'{name}{PASSWORD_WANTED_END}"))
            }
            Reply::WrongPassword => error(out, "wrong password; send a name to log in"),
            Reply::TooManyWrongPasswords(wait) => error(
                out,
                format_args!(
                    "too many wrong passwords: try again in {} s",
                    ceil_secs(*wait)
                ),
            ),
            Reply::TooManyLogins(wait) => error(
                out,
                format_args!(
                    "too many login attempts from your address: try again in {} s",
                    ceil_secs(*wait)
                ),
            ),
            Reply::AccountsUnavailable => error(
                out,
                "passwords cannot be checked right now, try again in a moment",
            ),
            Reply::RegistrationOff => error(out, "registration is off on this server"),
            Reply::Registered(name) => server(
                out,
                format_args!(
                    "'{name}' is registered: logging in with it now asks for the password"
                ),
            ),
            Reply::AlreadyRegistered(name) => {
                error(out, format_args!("'{name}' is already registered"))
            }
            Reply::NotRegistered(name) => error(out, format_args!("'{name}' is not registered")),
            Reply::PasswordChanged => server(out, "password changed"),
            Reply::Unregistered(name) => {
                server(out, format_args!("'{name}' is no longer registered"))
            }
            Reply::WrongPasswordNothingChanged => error(out, "wrong password, nothing changed"),
        }
    }

    /// The line(s) as bytes (tests and one-off writes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// `/who` shows at most this many names per line ...
pub const WHO_NAMES_PER_LINE: usize = 50;
/// ... and at most this many names in all; the rest are counted, not listed.
pub const WHO_MAX_NAMES: usize = 500;

/// Appends the answer to `/who` to `out`: a count, then the names sorted,
/// [`WHO_NAMES_PER_LINE`] to a line, cut after [`WHO_MAX_NAMES`] (saying so).
///
/// `online` is how many peers are online; `names` yields at least the first
/// [`WHO_MAX_NAMES`] of them (any order; they are sorted here).
pub fn write_who<'a>(out: &mut Vec<u8>, online: usize, names: impl Iterator<Item = &'a str>) {
    let mut shown: Vec<&str> = names.take(WHO_MAX_NAMES).collect();
    shown.sort_unstable();
    server(
        out,
        format_args!("{online} online{}", if online > 0 { ":" } else { "" }),
    );
    for chunk in shown.chunks(WHO_NAMES_PER_LINE) {
        server(out, chunk.join(", "));
    }
    if online > shown.len() {
        server(
            out,
            format_args!(
                "list cut: {} more not shown (at most {WHO_MAX_NAMES})",
                online - shown.len()
            ),
        );
    }
}

/// Appends `server: <text>\n` to `out`.
fn server(out: &mut Vec<u8>, text: impl fmt::Display) {
    line(out, "server: ", text);
}

/// Appends `error: <text>\n` to `out`.
fn error(out: &mut Vec<u8>, text: impl fmt::Display) {
    line(out, "error: ", text);
}

fn line(out: &mut Vec<u8>, prefix: &str, text: impl fmt::Display) {
    use std::io::Write as _;
    out.extend_from_slice(prefix.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{text}");
    out.push(b'\n');
}

/// Whole seconds to wait, rounded up and at least one: "try again in
/// 0 s" would invite a retry that is refused again.
fn ceil_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// A duration as a person writes it: `30s`, `1.5s` or `500ms`.
struct Humanized(Duration);

impl fmt::Display for Humanized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d < Duration::from_secs(1) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{:.1}s", d.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests;
