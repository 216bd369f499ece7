//! What a line sent after login asks for: a chat line
//! (`bob, carol: hi`), a command (`/who`), or nothing (a blank line).

use std::collections::HashSet;

use super::account::{AccountCommand, AccountCommandError, parse_account_command};
use super::text::{MAX_BLANK_COLUMNS, TextProblem, check_text};

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
    /// `/register`, `/password` or `/unregister`, with its password(s).
    Account(AccountCommand<'a>),
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
    /// An account command with the wrong words, or a new password that
    /// breaks the rule.
    #[error(transparent)]
    Account(AccountCommandError),
    /// The text holds control characters (escape sequences and the like),
    /// which could take over the terminal of a recipient using `nc`.
    #[error("a message may not contain control characters (only tabs), not delivered")]
    ControlCharacters,
    /// The text holds a character that breaks, reorders or hides text
    /// (see [`super::text`]).
    #[error(
        "a message may not contain U+{:04X} (it breaks, reorders or hides text), not delivered",
        u32::from(*.0)
    )]
    InvisibleCharacter(char),
    /// The text holds a run of blank space wide enough to push what follows
    /// onto a row of its own.
    #[error(
        "a message may not contain more than {MAX_BLANK_COLUMNS} columns of blank space in a row, not delivered"
    )]
    LongBlank,
}

/// Recipient lists longer than this are deduplicated with a hash set
/// instead of a scan of the names before each, so a 4 KiB line of
/// `a,a,a,...` costs time linear in its length.
const LINEAR_DEDUP_LIMIT: usize = 16;

/// Parses one line sent after login.
pub fn parse_request(line: &str) -> Result<Request<'_>, RequestError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Request::Blank);
    }
    if let Some(rest) = line.strip_prefix('/') {
        let (word, args) = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .unwrap_or((rest, ""));
        if let Some(account) = parse_account_command(word, args) {
            return account.map(Request::Account).map_err(RequestError::Account);
        }
        // Only the first word counts: "/who please" is "/who".
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
    check_text(text).map_err(|problem| match problem {
        TextProblem::Invisible(c) => RequestError::InvisibleCharacter(c),
        TextProblem::LongBlank => RequestError::LongBlank,
    })?;
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
    let mut seen: HashSet<&str, foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(names.len(), Default::default());
    names.retain(|name| seen.insert(*name));
}

/// The first `max` characters of `s`, with `...` when cut; for echoing a
/// client's words back inside an error without echoing a whole 4 KiB line.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

/// Parses `line`, which must be a chat line (tests only).
#[cfg(test)]
pub(crate) fn parse_chat(line: &str) -> ChatLine<'_> {
    match parse_request(line) {
        Ok(Request::Chat(chat)) => chat,
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = parse_chat("bob: hello there");
        assert_eq!(c.names[..], ["bob"]);
        assert_eq!(c.text, "hello there");
        assert!(!c.everyone);
    }

    #[test]
    fn recipients_are_trimmed_empty_skipped_and_deduplicated() {
        let c = parse_chat(" bob ,, carol,bob , dave ,carol:  hi : there  ");
        assert_eq!(c.names[..], ["bob", "carol", "dave"]);
        assert_eq!(c.text, "hi : there");
    }

    #[test]
    fn many_duplicates_are_deduplicated_in_order() {
        let line = format!("{}: x", ["b", "a", "c", "a", "b"].repeat(400).join(","));
        assert_eq!(parse_chat(&line).names[..], ["b", "a", "c"]);
    }

    #[test]
    fn everyone() {
        let c = parse_chat("*: hi all");
        assert!(c.everyone);
        assert!(c.names.is_empty());
        let c = parse_chat("alice, * , bob: hi");
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
        assert_eq!(parse_chat("bob: a\tb").text, "a\tb");
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
        assert_eq!(parse_chat("bob:").text, "");
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
    fn truncation_for_echoes() {
        assert_eq!(truncate_chars("abc", 5), "abc");
        assert_eq!(truncate_chars("abcdef", 3), "abc...");
        assert_eq!(truncate_chars("ééé", 2), "éé...");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::protocol::validate_name;
    use proptest::prelude::*;

    /// Names that pass validation (and some that nearly do).
    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.é日ß-]{1,32}"
    }

    proptest! {
        #[test]
        fn parsing_never_panics(line in any::<String>()) {
            let _ = parse_request(&line);
        }

        #[test]
        fn a_valid_name_can_always_be_addressed(
            name in name(),
            others in proptest::collection::vec(name(), 0..4),
            text in "[^\\p{Cc}]{0,40}",
        ) {
            prop_assume!(validate_name(&name).is_ok());
            prop_assume!(check_text(text.trim()).is_ok());
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
        fn control_characters_are_found_by_bytes_as_by_chars(text in any::<String>()) {
            prop_assert_eq!(
                has_control_characters(&text),
                text.chars().any(|c| c.is_control() && c != '\t')
            );
        }
    }
}
