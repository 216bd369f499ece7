//! The texts of every reply, checked against `docs/PROTOCOL.md`.

use super::*;
use crate::protocol::AccountCommandError;

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
        text(Reply::NameTakenAs {
            name: "ALICE",
            online: "Alice"
        }),
        "error: the name 'ALICE' is taken (it is the same name as 'Alice'), choose another\n"
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
        Reply::NameTakenAs {
            name: "ALICE",
            online: "Alice",
        },
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
        Reply::PasswordWanted("alice"),
        Reply::WrongPassword,
        Reply::TooManyWrongPasswords(Duration::from_secs(8)),
        Reply::TooManyLogins(Duration::from_secs(1)),
        Reply::AccountsUnavailable,
        Reply::RegistrationOff,
        Reply::Registered("alice"),
        Reply::AlreadyRegistered("alice"),
        Reply::NotRegistered("alice"),
        Reply::PasswordChanged,
        Reply::Unregistered("alice"),
        Reply::WrongPasswordNothingChanged,
        Reply::BadRequest(RequestError::Account(AccountCommandError::Usage(
            "/register PASSWORD",
        ))),
        Reply::BadRequest(RequestError::Account(AccountCommandError::TooShort)),
        Reply::BadRequest(RequestError::Account(AccountCommandError::TooLong)),
    ]
}

/// Rewording a line here without rewording it in the protocol's
/// documentation fails this test.
#[test]
fn docs_protocol_quotes_every_reply_as_written() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
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
fn waits_are_whole_seconds_rounded_up() {
    let wait = |ms| text(Reply::TooManyLogins(Duration::from_millis(ms)));
    assert!(wait(1).ends_with("try again in 1 s\n"));
    assert!(wait(1000).ends_with("try again in 1 s\n"));
    assert!(wait(1001).ends_with("try again in 2 s\n"));
    assert!(wait(0).ends_with("try again in 1 s\n"));
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
