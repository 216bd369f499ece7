//! `achat-client`: a chat client that is pleasant at a prompt and exact in
//! a pipe.
//!
//! It exists so that people need not reach for `nc`: it speaks the
//! tutorial's protocol (`docs/PROTOCOL.md`), and works against any server
//! that does, including the tutorial's own, which sends nothing but
//! `from <name>: <text>` lines. Of the `achat` library it uses only
//! [`achat::protocol`], to read the server's lines; the server's actors
//! are no part of it.
//!
//! # Two modes
//!
//! - **Pipe mode** ([`pipe`], when standard input or standard output is not
//!   a terminal): every input line is sent as it is, and at the end of the
//!   input the client half-closes and prints what the server sends until
//!   it closes.
//! - **Terminal mode** ([`terminal`], when both are terminals): a line
//!   editor with history; lines that arrive while the person types are
//!   printed above the prompt.
//!
//! # Map
//!
//! Each module keeps its pure parts (plain functions and values, tested in
//! the module) apart from the I/O that uses them:
//! - [`args`]: the command line, and the exit statuses;
//! - [`error`]: [`ClientError`], every way the client stops early, and the
//!   exit status of each;
//! - [`connection`]: connecting, and reading the server's output in pieces
//!   of bounded size;
//! - [`tls`]: `--tls`: the certificates trusted, the handshake;
//! - [`login`]: the `--name` login, and how an answer to it is read;
//! - [`password`]: answering a registered name's password prompt, with the
//!   password never shown, logged or kept;
//! - [`quit`]: recognising `/quit` as the server does;
//! - [`render`]: what is printed, and how: the server's lines on standard
//!   output, the client's own on standard error;
//! - [`pipe`] and [`terminal`]: the two modes.
//!
//! # Exit statuses
//!
//! | status | meaning |
//! |---|---|
//! | 0 | normal end: input ended (pipe mode), `/quit`, Ctrl-D or Ctrl-C, and the server closed after answering |
//! | 1 | connection or I/O problem: no server at the address, a failed TLS handshake (an untrusted certificate, or one for another name), the server closed the connection on its own or dropped it, standard input or output failed |
//! | 2 | usage error: a bad flag, an address that is not `HOST:PORT`, or a `--name` that cannot be a name (blank, with a line break, or starting with `/`, which starts a command); a bad address or name is said in one line, like the client's other messages, anything else in clap's words, with the usage |
//! | 3 | the `--name` login did not happen: the server's answer to the name (or to its password) was an `error:` line, or a `server:` line other than the welcome; or the name is registered and no password was given (none in `--password-file` or `ACHAT_PASSWORD`, no terminal to type it at, or Ctrl-C at the prompt) |

mod args;
mod connection;
mod error;
mod login;
mod password;
mod pipe;
mod quit;
mod render;
mod terminal;
mod tls;

use std::io::{self, IsTerminal as _};
use std::process::ExitCode;

use crate::args::{ClientArgs, EXIT_OK};
use crate::connection::Connection;
use crate::error::ClientError;
use crate::login::{PasswordFrom, log_in};
use crate::pipe::pipe_session;
use crate::render::{Look, Printer, say};
use crate::terminal::terminal_session;
use crate::tls::TlsSettings;

/// Parses the command line, runs the client, and turns the way it ended
/// into one line on standard error and an exit status.
fn main() -> ExitCode {
    match ClientArgs::from_command_line().and_then(run) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            say(format_args!("{e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the client to the end of the session; the caller turns an error
/// into a message and [`ClientError::exit_code`].
fn run(args: ClientArgs) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Start)?;
    let stdin_is_terminal = io::stdin().is_terminal();
    let mode = Mode::choose(stdin_is_terminal, io::stdout().is_terminal());
    let passwords = PasswordFrom {
        file: args.password_file.as_deref(),
        stdin_is_terminal,
    };
    let name = args.name.as_deref();
    let tls = args
        .tls
        .then(|| TlsSettings::new(&args.addr, args.ca.as_deref(), args.server_name.as_deref()))
        .transpose()?;
    let result = runtime.block_on(async {
        let mut connection = Connection::open(&args.addr, tls.as_ref()).await?;
        // The login is the same in both modes, and done before either
        // starts: a refusal ends the client before it reads a key or a
        // line of input.
        let mut printer = Printer::new(Look::detect());
        if let Some(name) = name {
            log_in(&mut connection, name, passwords, &mut printer).await?;
        }
        match mode {
            Mode::Pipe => pipe_session(connection, printer).await,
            Mode::Terminal => terminal_session(connection, printer, name).await,
        }
    });
    // The thread reading standard input may be blocked in a read: do not
    // wait for it.
    runtime.shutdown_background();
    result
}

/// The two ways the client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Lines from standard input, sent as they are.
    Pipe,
    /// A line editor at a terminal.
    Terminal,
}

impl Mode {
    /// Terminal mode needs a terminal on both sides: with output to a file
    /// the editor's prompt would end up in the file.
    fn choose(stdin_is_terminal: bool, stdout_is_terminal: bool) -> Mode {
        if stdin_is_terminal && stdout_is_terminal {
            Mode::Terminal
        } else {
            Mode::Pipe
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_mode_needs_a_terminal_on_both_sides() {
        assert_eq!(Mode::choose(true, true), Mode::Terminal);
        assert_eq!(Mode::choose(true, false), Mode::Pipe);
        assert_eq!(Mode::choose(false, true), Mode::Pipe);
        assert_eq!(Mode::choose(false, false), Mode::Pipe);
    }
}
