//! Every way the client can stop before a normal end, each with the one
//! line `main` prints for it and the exit status it maps to, so the two
//! cannot drift apart.

use std::io;

use crate::args::{EXIT_CONNECTION, EXIT_LOGIN_REFUSED, EXIT_USAGE};

/// Why the client stopped before a normal end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// A value on the command line is wrong (see [`crate::args::bad_value`]).
    #[error("{0}")]
    Usage(String),
    /// Connecting failed.
    #[error("cannot connect to {addr} (is the server running?): {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The TLS handshake failed: most often the server's certificate is
    /// not trusted (signed by another CA, expired) or is for another name.
    #[error("TLS handshake with {addr} failed: {source}{hint}")]
    Handshake {
        /// The address connected to.
        addr: String,
        /// rustls' reason.
        source: io::Error,
        /// What to try, when there is something ("" otherwise).
        hint: &'static str,
    },
    /// TLS could not be set up (no root certificates to trust).
    #[error("TLS: {0}")]
    TlsSetup(String),
    /// The server closed the connection although the client had not ended
    /// the session.
    #[error("the server closed the connection")]
    Closed,
    /// The server closed the connection before it answered `--name`.
    #[error("the server closed the connection before answering the login")]
    ClosedAtLogin,
    /// The connection broke (reset, timed out...).
    #[error("lost the connection to the server: {0}")]
    Lost(io::Error),
    /// The server answered the `--name` login with anything but a welcome:
    /// an `error:` line, or another `server:` line.
    #[error("login refused by the server: {0}")]
    LoginRefused(String),
    /// A `--name` that is registered, and no password to answer with.
    #[error(
        "'{0}' is registered and asks for a password: give it with --password-file FILE \
         or in the environment variable ACHAT_PASSWORD, or run at a terminal to type it"
    )]
    NoPassword(String),
    /// Ctrl-C or Ctrl-D at the `--name` password prompt.
    #[error("no password given (cancelled at the prompt)")]
    PasswordCancelled,
    /// The server did not answer the password within the wait.
    #[error("no answer to the password within {0}s")]
    NoPasswordAnswer(u64),
    /// Reading standard input failed.
    #[error("cannot read standard input: {0}")]
    Input(io::Error),
    /// Writing standard output failed (a closed pipe, say).
    #[error("cannot write to standard output: {0}")]
    Output(io::Error),
    /// The terminal could not be set up or read.
    #[error("terminal error: {0}")]
    Terminal(String),
    /// The client could not start (no runtime, no thread).
    #[error("cannot start: {0}")]
    Start(io::Error),
}

impl ClientError {
    /// The process exit status for this error (see the table in `main`'s
    /// docs).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => EXIT_USAGE,
            ClientError::LoginRefused(_)
            | ClientError::NoPassword(_)
            | ClientError::PasswordCancelled => EXIT_LOGIN_REFUSED,
            _ => EXIT_CONNECTION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::EXIT_OK;

    #[test]
    fn exit_codes() {
        assert_eq!(
            ClientError::LoginRefused("taken".into()).exit_code(),
            EXIT_LOGIN_REFUSED
        );
        assert_eq!(
            ClientError::NoPassword("alice".into()).exit_code(),
            EXIT_LOGIN_REFUSED
        );
        assert_eq!(ClientError::Closed.exit_code(), EXIT_CONNECTION);
        assert_eq!(ClientError::Usage("bad".into()).exit_code(), EXIT_USAGE);
        assert_ne!(EXIT_OK, EXIT_CONNECTION);
    }
}
