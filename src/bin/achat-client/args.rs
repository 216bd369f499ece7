//! The command line: what `achat-client` accepts, the checks clap runs on
//! each value, and the exit statuses it promises (`--help` prints them).
//!
//! The checks are only those the client can make on its own: an address
//! must have the shape `HOST:PORT`, and a name must fit on one line, not be
//! blank and not start with `/` (which starts a command). The server judges
//! the rest of a name, so the client works with servers whose rules differ.

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::error::ClientError;

/// The address the client connects to when none is given.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Exit status: normal end.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit status: no server, the connection closed or dropped, I/O failed.
pub(crate) const EXIT_CONNECTION: u8 = 1;
/// Exit status: a bad command line (clap exits with it too).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status: the server refused the `--name` login.
pub(crate) const EXIT_LOGIN_REFUSED: u8 = 3;

/// `--help`'s text: the two modes and the exit statuses, for people who
/// will not read the README.
const LONG_ABOUT: &str = "\
Chat with an achat server (or any server speaking the a-chat tutorial's protocol).

At a terminal: a line editor with history; messages that arrive while you type
are printed above the prompt. Ctrl-D or Ctrl-C leaves (sends /quit).

In a pipe: every line of standard input is sent as it is; at the end of the
input the client half-closes the connection and prints what the server sends
until it closes, so `printf 'alice\\nbob: hi\\n' | achat-client` always delivers.

Without --name, the first line you send is your login name.

Registered names: when the server asks for the password of a --name, the
client sends the first line of --password-file FILE, or else the environment
variable ACHAT_PASSWORD, or else (if standard input is a terminal) asks for it
with nothing echoed; with none of them it exits 3. At the terminal without
--name, the line typed after the server's password prompt is read the same
way: not shown, not kept in the history. In a pipe the password is a line of
the input like any other.

Exit status:
  0  normal end (input ended, /quit, Ctrl-D or Ctrl-C)
  1  no server at ADDR, the TLS handshake failed (an untrusted certificate, say),
     the server closed or dropped the connection, or I/O failed
  2  usage error (a bad flag, ADDR or --name)
  3  the --name login did not happen: the server refused it (it answered with
     anything but a welcome, a wrong password included), or the name is registered
     and no password was given";

/// `achat-client`: the command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "achat-client",
    version,
    about = "A chat client for achat: pleasant at a prompt, exact in a pipe.",
    long_about = LONG_ABOUT
)]
pub(crate) struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(value_name = "ADDR", default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub(crate) addr: String,

    /// Log in with this name before anything else (not blank, not starting with '/');
    /// exit 3 if the server refuses it.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: Option<String>,

    /// With --name: the password of a registered name is the first line of this file
    /// (keep it readable by you only). Without it: ACHAT_PASSWORD, or a prompt at a terminal.
    #[arg(long, value_name = "FILE", requires = "name")]
    pub(crate) password_file: Option<std::path::PathBuf>,

    /// Connect with TLS, checking the server's certificate against the system's roots
    /// (or --ca) and the host of ADDR (or --server-name).
    #[arg(long)]
    pub(crate) tls: bool,

    /// With --tls: trust the CA certificate(s) in this PEM file instead of the system's roots
    /// (a private CA, or a self-signed server certificate).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca: Option<std::path::PathBuf>,

    /// With --tls: the name the server's certificate must carry [default: the host of ADDR].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub(crate) server_name: Option<String>,
}

impl ClientArgs {
    /// Reads this process's command line. `--help` and `--version` print
    /// and exit here, and so do the usage errors clap explains with the
    /// usage (an unknown flag, an argument too many); a bad ADDR or
    /// `--name` comes back as [`ClientError::Usage`], to be said in one
    /// line like the client's other messages.
    pub(crate) fn from_command_line() -> Result<ClientArgs, ClientError> {
        ClientArgs::try_parse().map_err(|error| match bad_value(&error) {
            Some(message) => ClientError::Usage(message),
            None => error.exit(),
        })
    }
}

/// The one line saying what is wrong with a value clap refused (ADDR or
/// `--name`), or `None` for any other outcome of parsing. The value is
/// quoted with escapes, so a line break in it cannot make a second line.
pub(crate) fn bad_value(error: &clap::Error) -> Option<String> {
    if error.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let reason = std::error::Error::source(error)?;
    Some(format!("invalid value {value:?} for '{arg}': {reason}"))
}

/// Checks that an address has the shape `HOST:PORT` with a usable port.
pub(crate) fn parse_addr(addr: &str) -> Result<String, String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT (such as {DEFAULT_ADDR})"));
    };
    if host.is_empty() || host == "[]" {
        return Err(format!(
            "no host before ':' (expected HOST:PORT, such as {DEFAULT_ADDR})"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to".to_owned()),
        Ok(_) => Ok(addr.to_owned()),
        Err(_) => Err(format!("'{port}' is not a port number (1 to 65535)")),
    }
}

/// Checks that a `--name` can be a name at all: one line, not blank, not a
/// command; returns it trimmed. The server judges everything else, so the
/// client works with servers whose rules differ.
pub(crate) fn parse_name(name: &str) -> Result<String, String> {
    if name.contains(['\n', '\r']) {
        return Err("a name cannot contain a line break".to_owned());
    }
    let name = name.trim();
    if name.is_empty() {
        // A server skips blank lines before the name: it would wait forever.
        return Err("a name cannot be blank".to_owned());
    }
    if name.starts_with('/') {
        // A server reads such a line as a command, at login too: it would
        // answer `/help` or `/quit`, and never take it for a name.
        return Err("a name cannot start with '/' (the server reads that as a command)".to_owned());
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_defaults_and_is_checked() {
        let args = ClientArgs::try_parse_from(["achat-client"]).unwrap();
        assert_eq!(args.addr, DEFAULT_ADDR);
        assert_eq!(args.name, None);
        let args = ClientArgs::try_parse_from(["achat-client", "[::1]:9000", "--name", " alice "])
            .unwrap();
        assert_eq!(args.addr, "[::1]:9000");
        assert_eq!(args.name.as_deref(), Some("alice"));
        for bad in [
            "localhost",
            ":8080",
            "host:",
            "host:0",
            "host:99999",
            "host:http",
        ] {
            let err = ClientArgs::try_parse_from(["achat-client", bad]).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{bad}");
        }
    }

    #[test]
    fn names_that_cannot_be_one_line_are_usage_errors() {
        assert_eq!(parse_name("  bob "), Ok("bob".to_owned()));
        assert!(parse_name("").is_err());
        assert!(parse_name("   ").is_err());
        assert!(parse_name("alice\nbob: hi").is_err());
        assert!(parse_name("alice\r").is_err());
        // The server judges the rest.
        assert_eq!(parse_name("bob,carol"), Ok("bob,carol".to_owned()));
        let err = ClientArgs::try_parse_from(["achat-client", "--name", ""]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn names_that_are_commands_are_usage_errors() {
        for command in ["/help", "/quit", " /who", "\t/who now", "/"] {
            assert_eq!(
                parse_name(command),
                Err("a name cannot start with '/' (the server reads that as a command)".to_owned()),
                "{command:?}"
            );
        }
        // Only a leading '/' makes a command: the server judges the rest.
        assert_eq!(parse_name("a/b"), Ok("a/b".to_owned()));
        let err = ClientArgs::try_parse_from(["achat-client", "--name", "/quit"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn a_bad_value_is_said_in_one_line() {
        let said = |args: &[&str]| {
            let err = ClientArgs::try_parse_from(args).unwrap_err();
            bad_value(&err)
        };
        assert_eq!(
            said(&["achat-client", "--name", "alice\nbob: hi"]).as_deref(),
            Some(
                "invalid value \"alice\\nbob: hi\" for '--name <NAME>': \
                 a name cannot contain a line break"
            )
        );
        assert_eq!(
            said(&["achat-client", "localhost"]).as_deref(),
            Some(
                "invalid value \"localhost\" for '[ADDR]': \
                 expected HOST:PORT (such as 127.0.0.1:8080)"
            )
        );
        // Clap's own words, with the usage, for the rest.
        for args in [
            &["achat-client", "--bogus"][..],
            &["achat-client", "a:1", "b:2"],
            &["achat-client", "--help"],
        ] {
            assert_eq!(said(args), None, "{args:?}");
        }
    }
}
