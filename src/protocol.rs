//! The wire protocol's grammar: what a line means and what the server writes
//! back. No I/O happens here, so every rule of `docs/PROTOCOL.md` is tested
//! on plain strings (see the tests at the bottom).
//!
//! Cutting the byte stream into lines is a separate concern and lives in
//! [`crate::line_reader`]; this module starts from one complete, valid UTF-8
//! line.
//!
//! Every line the server writes starts with one of three prefixes, so a
//! client (or a script) tells them apart by the first word:
//! `from <sender>: <text>`, `server: <text>` and `error: <text>`.

use std::fmt;

/// A login name may be at most this many characters (not bytes) long.
pub const MAX_NAME_CHARS: usize = 32;

/// Characters a name may not contain besides whitespace and control
/// characters: each of them has a meaning in a chat line.
pub const FORBIDDEN_NAME_CHARS: [char; 4] = [',', ':', '*', '/'];

/// Why a login name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("a name needs at least one character")]
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`].
    #[error("a name has at most {MAX_NAME_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// The name contains whitespace inside it.
    #[error("a name may not contain spaces or other whitespace")]
    Whitespace,
    /// The name contains a control character.
    #[error("a name may not contain control characters")]
    Control,
    /// The name contains one of [`FORBIDDEN_NAME_CHARS`].
    #[error("a name may not contain '{0}' (names may not contain , : * or /)")]
    Forbidden(char),
}

/// Checks a login name (already trimmed) against the naming rules.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let mut chars = 0;
    for c in name.chars() {
        chars += 1;
        if c.is_whitespace() {
            return Err(NameError::Whitespace);
        }
        if c.is_control() {
            return Err(NameError::Control);
        }
        if FORBIDDEN_NAME_CHARS.contains(&c) {
            return Err(NameError::Forbidden(c));
        }
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    if chars == 0 {
        return Err(NameError::Empty);
    }
    Ok(())
}

/// A command: a line whose first non-blank character is `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `/who`: list the peers online.
    Who,
    /// `/quit`: say goodbye and close the connection.
    Quit,
    /// `/help`: explain the syntax.
    Help,
}

/// What a line sent after login asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// An empty or all-whitespace line: ignored.
    Blank,
    /// A command such as `/who`.
    Command(Command),
    /// `<recipients>: <text>`.
    Chat(ChatLine<'a>),
}

/// A chat line split into its recipients and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine<'a> {
    /// Whether `*` (everyone online but the sender) was among the recipients.
    pub everyone: bool,
    /// The named recipients: trimmed, without empty entries, without `*`,
    /// each name once, in the order they were first listed.
    pub names: Names<'a>,
    /// Everything after the first `:`, trimmed.
    pub text: &'a str,
}

/// The recipients of a chat line. Most lines name one to four people, so
/// up to four are kept inline: parsing a line allocates nothing.
pub type Names<'a> = smallvec::SmallVec<[&'a str; 4]>;

/// Why a line sent after login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The line has no `:`, or no recipient before it.
    #[error("expected 'name1, name2: message' (or '/help')")]
    NotAChatLine,
    /// The line starts with `/` but is not a known command.
    #[error("unknown command '/{0}', try /help")]
    UnknownCommand(String),
    /// The text holds control characters (escape sequences and the like),
    /// which could take over the terminal of a recipient using `nc`.
    #[error("a message may not contain control characters (only tabs), not delivered")]
    ControlCharacters,
}

/// Lines in a recipient list longer than this are deduplicated with a sort
/// instead of a quadratic scan, so a 4 KiB line of `a,a,a,...` costs
/// O(n log n), not O(n^2).
const LINEAR_DEDUP_LIMIT: usize = 16;

/// Parses one line sent after login.
pub fn parse_request(line: &str) -> Result<Request<'_>, RequestError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Request::Blank);
    }
    if let Some(rest) = line.strip_prefix('/') {
        // Only the first word counts: "/who please" is "/who".
        let word = rest.split_whitespace().next().unwrap_or("");
        return match word {
            "who" => Ok(Request::Command(Command::Who)),
            "quit" => Ok(Request::Command(Command::Quit)),
            "help" => Ok(Request::Command(Command::Help)),
            other => Err(RequestError::UnknownCommand(printable(&truncate_chars(
                other, 32,
            )))),
        };
    }
    let (list, text) = line.split_once(':').ok_or(RequestError::NotAChatLine)?;
    let mut everyone = false;
    let mut names = Names::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "*" {
            everyone = true;
        } else {
            names.push(name);
        }
    }
    if names.is_empty() && !everyone {
        return Err(RequestError::NotAChatLine);
    }
    let text = text.trim();
    if has_control_characters(text) {
        return Err(RequestError::ControlCharacters);
    }
    dedup_keep_order(&mut names);
    Ok(Request::Chat(ChatLine {
        everyone,
        names,
        text,
    }))
}

/// `s` with control characters replaced by `\u{fffd}`, for echoing a
/// client's words back (in an error) without echoing escape sequences.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Whether `text` holds a control character other than tab. Scans bytes:
/// in UTF-8 the C0 controls and DEL are single bytes, and the C1 controls
/// (U+0080 to U+009F) are `0xC2` followed by `0x80..=0x9F`; no other
/// character's encoding contains those sequences.
fn has_control_characters(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Every line is checked, and messages can be long: first a pass that
    // only looks for bytes that may start a control character, written so
    // the compiler vectorizes it (no early exit inside a chunk).
    let suspect = bytes.chunks(64).any(|chunk| {
        chunk.iter().fold(false, |seen, &b| {
            seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
        })
    });
    suspect
        && bytes.iter().enumerate().any(|(i, &b)| {
            (b < 0x20 && b != b'\t')
                || b == 0x7f
                || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
        })
}

/// Removes repeated names, keeping each name's first position.
fn dedup_keep_order(names: &mut Names<'_>) {
    if names.len() <= LINEAR_DEDUP_LIMIT {
        let mut i = 0;
        while i < names.len() {
            if names[..i].contains(&names[i]) {
                names.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let mut distinct: Vec<&str> = names.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut kept = vec![false; distinct.len()];
    names.retain(|name| match distinct.binary_search(name) {
        Ok(i) => !std::mem::replace(&mut kept[i], true),
        Err(_) => false,
    });
}

/// The first `max` characters of `s`, with `...` when cut; for echoing a
/// client's words back inside an error without echoing a whole 4 KiB line.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

/// Appends the relayed-message line `from <sender>: <text>\n` to `out`.
pub fn write_message(out: &mut Vec<u8>, sender: &str, text: &str) {
    out.reserve(sender.len() + text.len() + 8);
    out.extend_from_slice(b"from ");
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// Appends `server: <text>\n` to `out`.
pub fn write_server(out: &mut Vec<u8>, text: impl fmt::Display) {
    write_line(out, "server: ", text);
}

/// Appends `error: <text>\n` to `out`.
pub fn write_error(out: &mut Vec<u8>, text: impl fmt::Display) {
    write_line(out, "error: ", text);
}

fn write_line(out: &mut Vec<u8>, prefix: &str, text: impl fmt::Display) {
    use std::io::Write as _;
    out.extend_from_slice(prefix.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{text}");
    out.push(b'\n');
}

/// A line written by the server, as a client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLine<'a> {
    /// `from <sender>: <text>`: a relayed message.
    Message {
        /// Who sent it.
        from: &'a str,
        /// What they wrote.
        text: &'a str,
    },
    /// `server: <text>`.
    Server(&'a str),
    /// `error: <text>`.
    Error(&'a str),
    /// Anything else (a server that is not achat may send anything).
    Other(&'a str),
}

/// Tells the kinds of server lines apart (for clients; the line is given
/// without its line ending). A sender's name cannot contain `:`, so the
/// first `:` after `from ` ends it, and the text comes back exactly as
/// written. One space after the `:` is expected but not required, so lines
/// from other servers of the tutorial's protocol read the same.
pub fn parse_server_line(line: &str) -> ServerLine<'_> {
    if let Some((from, text)) = line
        .strip_prefix("from ")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(from, _)| !from.is_empty())
    {
        return ServerLine::Message {
            from,
            text: after_colon(text),
        };
    }
    if let Some(text) = line.strip_prefix("server:") {
        return ServerLine::Server(after_colon(text));
    }
    if let Some(text) = line.strip_prefix("error:") {
        return ServerLine::Error(after_colon(text));
    }
    ServerLine::Other(line)
}

/// What follows a line's `:`, without the one space expected there.
fn after_colon(text: &str) -> &str {
    text.strip_prefix(' ').unwrap_or(text)
}

/// The answer to `/help`, one `server:` line per entry.
pub const HELP: &[&str] = &[
    "send a message: name: text   (e.g. 'bob: hi')",
    "several recipients: name1, name2: text",
    "everyone online but you: *: text",
    "/who lists who is online, /quit leaves, /help shows this",
];

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
    write_server(
        out,
        format_args!("{online} online{}", if online > 0 { ":" } else { "" }),
    );
    for chunk in shown.chunks(WHO_NAMES_PER_LINE) {
        write_server(out, chunk.join(", "));
    }
    if online > shown.len() {
        write_server(
            out,
            format_args!(
                "list cut: {} more not shown (at most {WHO_MAX_NAMES})",
                online - shown.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(line: &str) -> ChatLine<'_> {
        match parse_request(line) {
            Ok(Request::Chat(c)) => c,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "alice",
            "Zoë",
            "日本語",
            "a-b_c.d",
            &"x".repeat(32),
            "😀",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn too_long_names_count_characters_not_bytes() {
        assert_eq!(validate_name(&"é".repeat(32)), Ok(()));
        assert_eq!(validate_name(&"é".repeat(33)), Err(NameError::TooLong(33)));
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong(33)));
    }

    #[test]
    fn names_with_forbidden_characters() {
        assert_eq!(validate_name("bob smith"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\tsmith"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\u{a0}x"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\u{7}"), Err(NameError::Control));
        assert_eq!(validate_name("bob\u{9b}"), Err(NameError::Control));
        for c in [',', ':', '*', '/'] {
            assert_eq!(
                validate_name(&format!("a{c}b")),
                Err(NameError::Forbidden(c))
            );
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
    }

    #[test]
    fn blank_lines() {
        assert_eq!(parse_request(""), Ok(Request::Blank));
        assert_eq!(parse_request("  \t "), Ok(Request::Blank));
    }

    #[test]
    fn commands() {
        assert_eq!(parse_request("/who"), Ok(Request::Command(Command::Who)));
        assert_eq!(
            parse_request(" /quit "),
            Ok(Request::Command(Command::Quit))
        );
        assert_eq!(
            parse_request("/help me"),
            Ok(Request::Command(Command::Help))
        );
        assert_eq!(
            parse_request("/nick bob"),
            Err(RequestError::UnknownCommand("nick".into()))
        );
        assert_eq!(
            parse_request("/"),
            Err(RequestError::UnknownCommand("".into()))
        );
        // A name cannot contain '/', so "/x: hi" is never a chat line.
        assert_eq!(
            parse_request("/x: hi"),
            Err(RequestError::UnknownCommand("x:".into()))
        );
    }

    #[test]
    fn a_chat_line() {
        let c = chat("bob: hello there");
        assert_eq!(c.names[..], ["bob"]);
        assert_eq!(c.text, "hello there");
        assert!(!c.everyone);
    }

    #[test]
    fn recipients_are_trimmed_empty_skipped_and_deduplicated() {
        let c = chat(" bob ,, carol,bob , dave ,carol:  hi : there  ");
        assert_eq!(c.names[..], ["bob", "carol", "dave"]);
        assert_eq!(c.text, "hi : there");
    }

    #[test]
    fn many_duplicates_are_deduplicated_in_order() {
        let line = format!("{}: x", ["b", "a", "c", "a", "b"].repeat(400).join(","));
        assert_eq!(chat(&line).names[..], ["b", "a", "c"]);
    }

    #[test]
    fn everyone() {
        let c = chat("*: hi all");
        assert!(c.everyone);
        assert!(c.names.is_empty());
        let c = chat("alice, * , bob: hi");
        assert!(c.everyone);
        assert_eq!(c.names[..], ["alice", "bob"]);
    }

    #[test]
    fn control_characters_in_the_text_are_refused_but_tabs_are_fine() {
        for text in ["\u{1b}[2J", "a\u{7}b", "x\ry", "\u{9b}31m", "\u{7f}"] {
            assert_eq!(
                parse_request(&format!("bob: {text}")),
                Err(RequestError::ControlCharacters),
                "{text:?}"
            );
        }
        assert_eq!(chat("bob: a\tb").text, "a\tb");
    }

    #[test]
    fn echoes_are_printable() {
        assert_eq!(printable("a\u{1b}[1mb"), "a\u{fffd}[1mb");
        assert_eq!(
            parse_request("/\u{1b}[2J"),
            Err(RequestError::UnknownCommand("\u{fffd}[2J".into()))
        );
    }

    #[test]
    fn empty_text_is_allowed() {
        assert_eq!(chat("bob:").text, "");
    }

    #[test]
    fn lines_that_are_not_chat_lines() {
        for line in ["hello", ": hi", " , ,: hi", "bob hi"] {
            assert_eq!(
                parse_request(line),
                Err(RequestError::NotAChatLine),
                "{line}"
            );
        }
    }

    #[test]
    fn formatting() {
        let mut out = Vec::new();
        write_message(&mut out, "alice", "hi there");
        write_server(&mut out, "bye");
        write_error(&mut out, RequestError::NotAChatLine);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "from alice: hi there\nserver: bye\nerror: expected 'name1, name2: message' (or '/help')\n"
        );
    }

    #[test]
    fn a_formatted_message_parses_back() {
        let mut out = Vec::new();
        write_message(&mut out, "alice", "hi: there");
        let line = std::str::from_utf8(&out).unwrap().trim_end_matches('\n');
        let (prefix, text) = line.split_once(": ").unwrap();
        assert_eq!(prefix, "from alice");
        assert_eq!(text, "hi: there");
    }

    #[test]
    fn server_lines_are_told_apart_by_their_first_word() {
        let message = |from, text| ServerLine::Message { from, text };
        assert_eq!(
            parse_server_line("from alice: hi: there"),
            message("alice", "hi: there")
        );
        assert_eq!(
            parse_server_line("from alice:  spaced"),
            message("alice", " spaced")
        );
        // Other servers of the tutorial's protocol may skip the space.
        assert_eq!(parse_server_line("from alice:"), message("alice", ""));
        assert_eq!(parse_server_line("from alice:x"), message("alice", "x"));
        assert_eq!(parse_server_line("server: bye"), ServerLine::Server("bye"));
        assert_eq!(
            parse_server_line("error: not online: bob"),
            ServerLine::Error("not online: bob")
        );
        for other in ["from : x", "from nobody", "hello", "servers: x"] {
            assert_eq!(parse_server_line(other), ServerLine::Other(other));
        }
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

    #[test]
    fn truncation_for_echoes() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abcdef", 3), "abc...");
        assert_eq!(truncate_chars("ééé", 2), "éé...");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Names that pass validation (and some that nearly do).
    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.é日ß-]{1,32}"
    }

    proptest! {
        #[test]
        fn parsing_never_panics(line in any::<String>()) {
            let _ = parse_request(&line);
            let _ = validate_name(line.trim());
            let _ = parse_server_line(&line);
        }

        #[test]
        fn a_valid_name_can_always_be_addressed(
            name in name(),
            others in proptest::collection::vec(name(), 0..4),
            text in "[^\\p{Cc}]{0,40}",
        ) {
            prop_assume!(validate_name(&name).is_ok());
            let mut list = others.clone();
            list.push(name.clone());
            let line = format!("{}: {text}", list.join(" , "));
            match parse_request(&line) {
                Ok(Request::Chat(chat)) => {
                    prop_assert!(chat.names.contains(&name.as_str()));
                    prop_assert!(!chat.everyone);
                    prop_assert_eq!(chat.text, text.trim());
                }
                other => prop_assert!(false, "{:?} parsed as {:?}", line, other),
            }
        }

        #[test]
        fn a_formatted_message_parses_back(name in name(), text in "[^\n]{0,60}") {
            prop_assume!(validate_name(&name).is_ok());
            let mut out = Vec::new();
            write_message(&mut out, &name, &text);
            let line = std::str::from_utf8(&out).unwrap();
            let line = line.strip_suffix('\n').unwrap();
            prop_assert_eq!(
                parse_server_line(line),
                ServerLine::Message { from: &name, text: &text }
            );
        }

        #[test]
        fn control_characters_are_found_by_bytes_as_by_chars(text in any::<String>()) {
            prop_assert_eq!(
                has_control_characters(&text),
                text.chars().any(|c| c.is_control() && c != '\t')
            );
        }

        #[test]
        fn a_name_that_validates_has_no_forbidden_character(name in any::<String>()) {
            if validate_name(&name).is_ok() {
                let chars = name.chars().count();
                prop_assert!((1..=MAX_NAME_CHARS).contains(&chars));
                prop_assert!(!name.chars().any(|c| c.is_whitespace()
                    || c.is_control()
                    || FORBIDDEN_NAME_CHARS.contains(&c)));
            }
        }
    }
}
