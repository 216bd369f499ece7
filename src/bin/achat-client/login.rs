//! Logging in with `--name`: send the name, then read the server's answer.
//!
//! The client sends the name and waits at most [`LOGIN_ANSWER_WAIT`] for
//! the first line that answers it:
//! - `server: welcome ...`: logged in; the line is printed;
//! - `error: ...`: the login was refused (taken, invalid, or the server
//!   turned the connection away); the client exits 3 with the server's text;
//! - other `server:` lines are printed and the wait goes on;
//! - anything else (a `from` line, say) means a server of the tutorial's
//!   kind, which has no welcome: logged in;
//! - nothing within the wait: the same conclusion, said on standard error.
//!   The tutorial's server answers a login with silence, so silence is
//!   taken for success rather than hanging or refusing.
//!
//! Reading an answer ([`login_answer`]) is pure and tested here; [`log_in`]
//! does the exchange.

use std::time::Duration;

use achat::protocol::{ServerLine, parse_server_line};
use tokio::io::AsyncWriteExt;

use crate::connection::{Connection, read_piece};
use crate::error::ClientError;
use crate::render::{Printer, sanitize, say};

/// How long `--name` waits for the server to answer the login before
/// concluding that the server is of the tutorial's kind (which never
/// answers a login).
pub(crate) const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How the first lines after a `--name` answer the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginAnswer<'a> {
    /// `server: welcome ...`.
    Welcome,
    /// `error: <text>`.
    Refused(&'a str),
    /// Another `server:` line: not the answer yet.
    Notice,
    /// Anything else: a server with no welcome, which took the name.
    Other,
}

/// Reads one line (without its line ending) as an answer to a login.
pub(crate) fn login_answer(line: &str) -> LoginAnswer<'_> {
    match parse_server_line(line) {
        ServerLine::Welcome { .. } => LoginAnswer::Welcome,
        ServerLine::Server(_) => LoginAnswer::Notice,
        ServerLine::Error(text) => LoginAnswer::Refused(text),
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
    connection
        .writer
        .write_all(&line)
        .await
        .map_err(ClientError::Lost)?;
    let deadline = tokio::time::Instant::now() + LOGIN_ANSWER_WAIT;
    let mut buf = Vec::new();
    loop {
        let read =
            tokio::time::timeout_at(deadline, read_piece(&mut connection.reader, &mut buf)).await;
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
                return Err(ClientError::LoginRefused(sanitize(reason).into_owned()));
            }
            LoginAnswer::Notice => {
                printer.print(&buf)?;
                buf.clear();
            }
            LoginAnswer::Welcome | LoginAnswer::Other => {
                printer.print(&buf)?;
                return Ok(());
            }
        }
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
        assert_eq!(login_answer("server: shutting down"), LoginAnswer::Notice);
        assert_eq!(login_answer("from bob: hi"), LoginAnswer::Other);
        assert_eq!(
            welcomed_name("server: welcome alice (1 online, /help for help)"),
            Some("alice")
        );
        assert_eq!(welcomed_name("server: bye"), None);
        assert_eq!(welcomed_name("from server: welcome x"), None);
    }
}
