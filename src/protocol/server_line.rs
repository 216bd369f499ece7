//! Reading the server's lines back: what a client needs to tell a relayed
//! message from a notice, an error, the welcome that ends a login, or the
//! prompt that asks for a registered name's password (a client hides the
//! line that answers it).

use super::reply::{PASSWORD_WANTED_END, WELCOME};

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
    /// `server: welcome <name> ...`: the answer to a successful login.
    Welcome {
        /// The name the server registered.
        name: &'a str,
    },
    /// `server: '<name>' is registered: send its password`: the next line
    /// the client sends is taken as the password.
    PasswordWanted {
        /// The name as the client typed it.
        name: &'a str,
    },
    /// Any other `server: <text>`.
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
        let text = after_colon(text);
        if let Some(name) = text
            .strip_prefix(WELCOME)
            .and_then(|rest| rest.split_whitespace().next())
        {
            return ServerLine::Welcome { name };
        }
        if let Some(name) = text
            .strip_prefix('\'')
            .and_then(|rest| rest.strip_suffix(PASSWORD_WANTED_END))
            .filter(|name| !name.is_empty())
        {
            return ServerLine::PasswordWanted { name };
        }
        return ServerLine::Server(text);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Reply, write_message};

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
    fn the_welcome_the_server_writes_reads_back_with_its_name() {
        let welcome = Reply::Welcome {
            name: "zoë",
            online: 3,
        }
        .to_bytes();
        let line = std::str::from_utf8(&welcome).unwrap().trim_end();
        assert_eq!(parse_server_line(line), ServerLine::Welcome { name: "zoë" });
        assert_eq!(
            parse_server_line("server: welcomes you"),
            ServerLine::Server("welcomes you")
        );
        assert_eq!(
            parse_server_line("from server: welcome x"),
            ServerLine::Message {
                from: "server",
                text: "welcome x"
            }
        );
    }

    #[test]
    fn the_password_prompt_the_server_writes_reads_back_with_its_name() {
        for name in ["alice", "Zoë", "o'brien"] {
            let prompt = Reply::PasswordWanted(name).to_bytes();
            let line = std::str::from_utf8(&prompt).unwrap().trim_end();
            assert_eq!(
                parse_server_line(line),
                ServerLine::PasswordWanted { name },
                "{line}"
            );
        }
        // Its neighbours are other server lines: only the prompt is
        // answered with a hidden line.
        let registered = Reply::Registered("alice").to_bytes();
        let registered = std::str::from_utf8(&registered).unwrap().trim_end();
        assert!(matches!(
            parse_server_line(registered),
            ServerLine::Server(_)
        ));
        for other in [
            "server: '' is registered: send its password",
            "server: 'alice' is registered: send its password now",
            "error: 'alice' is registered: send its password",
            "from alice: 'alice' is registered: send its password",
        ] {
            assert!(
                !matches!(parse_server_line(other), ServerLine::PasswordWanted { .. }),
                "{other}"
            );
        }
    }

    #[test]
    fn a_formatted_message_parses_back() {
        let mut out = Vec::new();
        write_message(&mut out, "alice", "hi: there");
        let line = std::str::from_utf8(&out).unwrap().trim_end_matches('\n');
        assert_eq!(
            parse_server_line(line),
            ServerLine::Message {
                from: "alice",
                text: "hi: there"
            }
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::protocol::{validate_name, write_message};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(line in any::<String>()) {
            let _ = parse_server_line(&line);
        }

        #[test]
        fn a_formatted_message_parses_back(name in "[a-zA-Z0-9_.é日ß-]{1,32}", text in "[^\n]{0,60}") {
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
    }
}
