//! Logging in with `--name`: send the name, then read the server's answer.
//!
//! The client sends the name and waits at most [`LOGIN_ANSWER_WAIT`] for
//! the first line that answers it:
//! - `server: welcome ...`: logged in; the line is printed;
//! - `error: ...` or any other `server: ...` line: the login was refused
//!   (the name is taken or invalid, the server is shutting down or turned
//!   the connection away); the client exits 3 with the server's text. An
//!   achat server answers a name it takes with the welcome before anything
//!   else, so whatever else it says first means it did not take the name;
//! - anything else (a `from` line, say) means a server of the tutorial's
//!   kind, which has no welcome: logged in; the line is printed;
//! - nothing within the wait: the same conclusion, said on standard error.
//!   The tutorial's server answers a login with silence, so silence is
//!   taken for success rather than hanging or refusing.
//!
//! A `--name` that cannot be a name (blank, with a line break, starting
//! with `/`) never gets this far: [`crate::args::parse_name`] refuses it.
//!
//! Reading an answer ([`login_answer`]) is pure and tested here; [`log_in`]
//! does the exchange.

use std::time::Duration;

use achat::protocol::{ServerLine, parse_server_line};

use crate::connection::{Connection, read_piece, send};
use crate::error::ClientError;
use crate::render::{Printer, sanitize, say};

/// How long `--name` waits for the server to answer the login before
/// concluding that the server is of the tutorial's kind (which never
/// answers a login).
pub(crate) const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What the first line after a `--name` says about the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginAnswer<'a> {
    /// `server: welcome ...`: logged in.
    Welcome,
    /// `error: <text>`, or `server: <text>` other than the welcome: the
    /// server did not take the name, and says why.
    Refused(&'a str),
    /// Anything else: a server with no welcome, which took the name.
    Other,
}

/// Reads one line (without its line ending) as an answer to a login.
pub(crate) fn login_answer(line: &str) -> LoginAnswer<'_> {
    match parse_server_line(line) {
        ServerLine::Welcome { .. } => LoginAnswer::Welcome,
        ServerLine::Server(text) | ServerLine::Error(text) => LoginAnswer::Refused(text),
        ServerLine::Message { .. } | ServerLine::Other(_) => LoginAnswer::Other,
    }
}

/// The name in a `server: welcome <name> ...` line, if it is one.
pub(crate) fn welcomed_name(line: &str) -> Option<&str> {
    match parse_server_line(line) {
        ServerLine::Welcome { name } => Some(name),
        _ => None,
    }
}

/// Sends `name` and waits for the server's answer (see the module docs).
pub(crate) async fn log_in(
    connection: &mut Connection,
    name: &str,
    printer: &mut Printer,
) -> Result<(), ClientError> {
    let mut line = name.as_bytes().to_vec();
    line.push(b'\n');
    send(&mut connection.writer, &line).await?;
    // The first line decides, and its first piece (all of it, but for a
    // line longer than MAX_CHUNK) shows what kind of line it is: one read.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        LOGIN_ANSWER_WAIT,
        read_piece(&mut connection.reader, &mut buf),
    )
    .await;
    match read {
        Err(_elapsed) => {
            say(format_args!(
                "no answer to the login within {}s (a tutorial-style server never answers); \
                 going on as {name}",
                LOGIN_ANSWER_WAIT.as_secs()
            ));
            return Ok(());
        }
        Ok(Err(e)) => return Err(ClientError::Lost(e)),
        Ok(Ok(false)) => return Err(ClientError::ClosedAtLogin),
        Ok(Ok(true)) => {}
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.trim_end_matches(['\n', '\r']);
    match login_answer(line) {
        LoginAnswer::Refused(reason) => {
            Err(ClientError::LoginRefused(sanitize(reason).into_owned()))
        }
        LoginAnswer::Welcome | LoginAnswer::Other => printer.print(&buf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_answers() {
        assert_eq!(
            login_answer("server: welcome alice (1 online, /help for help)"),
            LoginAnswer::Welcome
        );
        assert_eq!(
            login_answer("error: the name 'alice' is taken, choose another"),
            LoginAnswer::Refused("the name 'alice' is taken, choose another")
        );
        // Any other server line: an achat server that did not take the name.
        assert_eq!(
            login_answer("server: first send your name to log in"),
            LoginAnswer::Refused("first send your name to log in")
        );
        assert_eq!(
            login_answer("server: shutting down"),
            LoginAnswer::Refused("shutting down")
        );
        assert_eq!(login_answer("server: bye"), LoginAnswer::Refused("bye"));
        // The rest: a server of the tutorial's kind, which took it.
        assert_eq!(login_answer("from bob: hi"), LoginAnswer::Other);
        assert_eq!(login_answer("from server: welcome x"), LoginAnswer::Other);
        assert_eq!(login_answer("hello"), LoginAnswer::Other);
        assert_eq!(login_answer(""), LoginAnswer::Other);
        assert_eq!(
            welcomed_name("server: welcome alice (1 online, /help for help)"),
            Some("alice")
        );
        assert_eq!(welcomed_name("server: bye"), None);
        assert_eq!(welcomed_name("from server: welcome x"), None);
    }
}
