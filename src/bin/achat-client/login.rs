//! Logging in with `--name`: send the name, then read the server's answer.
//!
//! The client sends the name and waits at most [`LOGIN_ANSWER_WAIT`] for
//! the first line that answers it:
//! - `server: welcome ...`: logged in; the line is printed;
//! - `server: '<name>' is registered: send its password`: the client sends
//!   the password (from `--password-file`, `ACHAT_PASSWORD` or the
//!   keyboard: [`crate::password`]), without printing the prompt, and
//!   reads the answer to it as it read the answer to the name (but waits
//!   up to [`PASSWORD_ANSWER_WAIT`], and silence is an error: only an
//!   achat server asks for a password). A wrong password is an `error:`
//!   line, so exit 3;
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

use std::path::Path;
use std::time::Duration;

use achat::protocol::{ServerLine, parse_server_line};

use crate::connection::{Connection, read_piece, send};
use crate::error::ClientError;
use crate::password::{self, Password, Source, choose_source};
use crate::render::{Printer, sanitize, say};

/// How long `--name` waits for the server to answer the login before
/// concluding that the server is of the tutorial's kind (which never
/// answers a login).
pub(crate) const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long the client waits for the answer to a password: checking one
/// takes a server tens of milliseconds of hashing, more when many logins
/// queue for it.
pub(crate) const PASSWORD_ANSWER_WAIT: Duration = Duration::from_secs(15);

/// Where a password for a registered `--name` may come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PasswordFrom<'a> {
    /// `--password-file`.
    pub(crate) file: Option<&'a Path>,
    /// Whether standard input is a terminal, to type the password at.
    pub(crate) stdin_is_terminal: bool,
}

/// What the first line after a `--name` says about the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginAnswer<'a> {
    /// `server: welcome ...`: logged in.
    Welcome,
    /// `server: '<name>' is registered: send its password`.
    PasswordWanted,
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
        ServerLine::PasswordWanted { .. } => LoginAnswer::PasswordWanted,
        ServerLine::Server(text) | ServerLine::Error(text) => LoginAnswer::Refused(text),
        ServerLine::Message { .. } | ServerLine::Other(_) => LoginAnswer::Other,
    }
}

/// Sends `name` and waits for the server's answer (see the module docs).
pub(crate) async fn log_in(
    connection: &mut Connection,
    name: &str,
    passwords: PasswordFrom<'_>,
    printer: &mut Printer,
) -> Result<(), ClientError> {
    let mut line = name.as_bytes().to_vec();
    line.push(b'\n');
    send(&mut connection.writer, &line).await?;
    let Some(answer) = read_answer(connection, LOGIN_ANSWER_WAIT).await? else {
        say(format_args!(
            "no answer to the login within {}s (a tutorial-style server never answers); \
             going on as {name}",
            LOGIN_ANSWER_WAIT.as_secs()
        ));
        return Ok(());
    };
    if login_answer(answer_line(&answer)) != LoginAnswer::PasswordWanted {
        return accept(&answer, printer);
    }
    let password = get_password(name, passwords).await?;
    send(&mut connection.writer, &password.line()).await?;
    drop(password);
    match read_answer(connection, PASSWORD_ANSWER_WAIT).await? {
        Some(answer) => accept(&answer, printer),
        None => Err(ClientError::NoPasswordAnswer(
            PASSWORD_ANSWER_WAIT.as_secs(),
        )),
    }
}

/// Reads the first piece of the server's answer: `None` if nothing came
/// within `wait`. The first line decides, and its first piece (all of it,
/// but for a line longer than MAX_CHUNK) shows what kind of line it is.
async fn read_answer(
    connection: &mut Connection,
    wait: Duration,
) -> Result<Option<Vec<u8>>, ClientError> {
    let mut buf = Vec::new();
    match tokio::time::timeout(wait, read_piece(&mut connection.reader, &mut buf)).await {
        Err(_elapsed) => Ok(None),
        Ok(Err(e)) => Err(ClientError::Lost(e)),
        Ok(Ok(false)) => Err(ClientError::ClosedAtLogin),
        Ok(Ok(true)) => Ok(Some(buf)),
    }
}

/// A piece of the answer as a line, without its line ending.
fn answer_line(answer: &[u8]) -> &str {
    // The kinds of line are told apart by ASCII prefixes: a piece that is
    // not UTF-8 is of none of them.
    std::str::from_utf8(answer)
        .unwrap_or_default()
        .trim_end_matches(['\n', '\r'])
}

/// A welcome (or a tutorial server's line) is printed; anything else is a
/// refusal, with the server's words. A second password prompt cannot
/// come from an achat server, so it is taken for a refusal too.
fn accept(answer: &[u8], printer: &mut Printer) -> Result<(), ClientError> {
    let text = String::from_utf8_lossy(answer);
    let line = text.trim_end_matches(['\n', '\r']);
    match login_answer(line) {
        LoginAnswer::Refused(reason) => {
            Err(ClientError::LoginRefused(sanitize(reason).into_owned()))
        }
        LoginAnswer::PasswordWanted => Err(ClientError::LoginRefused(sanitize(line).into_owned())),
        LoginAnswer::Welcome | LoginAnswer::Other => printer.print(answer),
    }
}

/// The password for `name`, from the first place that has one.
async fn get_password(name: &str, from: PasswordFrom<'_>) -> Result<Password, ClientError> {
    // The environment is only looked at when no file was named: a bad
    // ACHAT_PASSWORD left in it does not stop a run that does not use it.
    let env = match from.file {
        Some(_) => None,
        None => password::from_env()?,
    };
    match choose_source(from.file, env.is_some(), from.stdin_is_terminal) {
        Source::File(path) => password::from_file(path),
        Source::Env => env.ok_or_else(|| ClientError::NoPassword(name.to_owned())),
        Source::Terminal => password::ask(name)
            .await?
            .ok_or(ClientError::PasswordCancelled),
        Source::Nowhere => Err(ClientError::NoPassword(name.to_owned())),
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
        assert_eq!(
            login_answer("server: 'alice' is registered: send its password"),
            LoginAnswer::PasswordWanted
        );
        assert_eq!(
            login_answer("error: wrong password; send a name to log in"),
            LoginAnswer::Refused("wrong password; send a name to log in")
        );
        // The rest: a server of the tutorial's kind, which took it.
        assert_eq!(login_answer("from bob: hi"), LoginAnswer::Other);
        assert_eq!(login_answer("from server: welcome x"), LoginAnswer::Other);
        assert_eq!(login_answer("hello"), LoginAnswer::Other);
        assert_eq!(login_answer(""), LoginAnswer::Other);
    }
}
