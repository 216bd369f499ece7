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
];

/// The word a welcome starts with; [`super::parse_server_line`] reads it
/// back for clients.
pub(super) const WELCOME: &str = "welcome ";

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
mod tests {
    use super::*;

    fn text(reply: Reply<'_>) -> String {
        String::from_utf8(reply.to_bytes()).unwrap()
    }

    #[test]
    fn a_message() {
        let mut out = Vec::new();
        write_message(&mut out, "alice", "hi: there");
        assert_eq!(out, b"from alice: hi: there\n");
    }

    #[test]
    fn every_reply_is_whole_lines_with_a_known_prefix() {
        for reply in as_documented() {
            let text = text(reply.clone());
            assert!(text.ends_with('\n'), "{reply:?}");
            for line in text.lines() {
                assert!(
                    line.starts_with("server: ") || line.starts_with("error: "),
                    "{reply:?}: {line:?}"
                );
            }
        }
    }

    #[test]
    fn the_texts_of_docs_protocol() {
        assert_eq!(
            text(Reply::Welcome {
                name: "alice",
                online: 1
            }),
            "server: welcome alice (1 online, /help for help)\n"
        );
        assert_eq!(
            text(Reply::NameTaken("alice")),
            "error: the name 'alice' is taken, choose another\n"
        );
        assert_eq!(
            text(Reply::NotOnline(&["carol"])),
            "error: not online: carol (message not delivered to them)\n"
        );
        assert_eq!(
            text(Reply::NotOnline(&["carol", "d\u{1b}ve"])),
            "error: not online: carol, d\u{fffd}ve (message not delivered to those)\n"
        );
        assert_eq!(
            text(Reply::BadRequest(RequestError::NotAChatLine)),
            "error: expected 'name1, name2: message' (or '/help')\n"
        );
        assert_eq!(
            text(Reply::LineTooLong { limit: 4096 }),
            "error: line too long (the limit is 4096 bytes), ignored\n"
        );
        assert_eq!(
            text(Reply::ServerFull {
                max_connections: 10
            }),
            "error: server full (10 connections), try again later\n"
        );
        let login_help = text(Reply::LoginHelp);
        assert!(login_help.starts_with("server: first send your name to log in\n"));
        assert_eq!(login_help.lines().count(), 1 + HELP.len());
    }

    /// Every reply, with the example values `docs/PROTOCOL.md` uses.
    fn as_documented() -> Vec<Reply<'static>> {
        vec![
            Reply::Welcome {
                name: "alice",
                online: 1,
            },
            Reply::LoginHelp,
            Reply::Help,
            Reply::Bye,
            Reply::ShuttingDown,
            Reply::InvalidName(NameError::Whitespace),
            Reply::InvalidName(NameError::Invisible('\u{200B}')),
            Reply::InvalidName(NameError::NothingVisible),
            Reply::InvalidName(NameError::Reserved("server".into())),
            Reply::NameTaken("alice"),
            Reply::LoginsClosed,
            Reply::LogInFirst,
            Reply::LoginTimeout(Duration::from_secs(30)),
            Reply::LineTooLong { limit: 4096 },
            Reply::NotUtf8,
            Reply::BadRequest(RequestError::NotAChatLine),
            Reply::BadRequest(RequestError::UnknownCommand("<word>".into())),
            Reply::BadRequest(RequestError::ControlCharacters),
            Reply::BadRequest(RequestError::InvisibleCharacter('\u{202E}')),
            Reply::BadRequest(RequestError::LongBlank),
            Reply::NotOnline(&["carol"]),
            Reply::NotOnline(&["carol", "dave"]),
            Reply::NobodyElseOnline,
            Reply::ServerFull {
                max_connections: 19936,
            },
            Reply::TooManyFromAddress,
            Reply::NamesUnavailable,
            Reply::NameHeldByLostNode {
                name: "alice",
                within_secs: 30,
            },
            Reply::Undelivered(&["bob", "*"]),
            Reply::CutOff,
        ]
    }

    /// Rewording a line here without rewording it in the protocol's
    /// documentation fails this test.
    #[test]
    fn docs_protocol_quotes_every_reply_as_written() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        for reply in as_documented() {
            for line in text(reply.clone()).lines() {
                assert!(
                    doc.contains(&format!("`{line}`")) || doc.contains(&format!("\n{line}\n")),
                    "docs/PROTOCOL.md does not quote {line:?} ({reply:?})"
                );
            }
        }
    }

    #[test]
    fn login_timeouts_read_as_typed() {
        let timeout = |d| text(Reply::LoginTimeout(d));
        assert_eq!(
            timeout(Duration::from_secs(30)),
            "error: no login within 30s, closing\n"
        );
        assert_eq!(
            timeout(Duration::from_millis(500)),
            "error: no login within 500ms, closing\n"
        );
        assert_eq!(
            timeout(Duration::from_millis(1500)),
            "error: no login within 1.5s, closing\n"
        );
    }

    #[test]
    fn who_lists_sorted_and_counts() {
        let mut out = Vec::new();
        write_who(&mut out, 3, ["carol", "alice", "bob"].into_iter());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "server: 3 online:\nserver: alice, bob, carol\n"
        );
    }

    #[test]
    fn who_cuts_a_long_list() {
        let names: Vec<String> = (0..WHO_MAX_NAMES + 7).map(|i| format!("n{i:04}")).collect();
        let mut out = Vec::new();
        write_who(&mut out, names.len(), names.iter().map(String::as_str));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("server: {} online:", WHO_MAX_NAMES + 7));
        assert_eq!(lines.len(), 1 + WHO_MAX_NAMES / WHO_NAMES_PER_LINE + 1);
        assert!(lines.last().unwrap().contains("7 more not shown"));
        assert!(lines.iter().all(|l| l.starts_with("server: ")));
    }
}
