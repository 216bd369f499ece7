//! What is printed, and how.
//!
//! Standard output carries what the server sent. When it is not a terminal
//! the bytes are copied exactly. When it is a terminal, control characters
//! in a line are shown in caret notation (`^[`), so a peer cannot move the
//! cursor or clear the screen with a message, and, unless `NO_COLOR` is set
//! to a non-empty value, `from <name>:`, `server:` and `error:` lines get
//! colours of their own. The client's own messages go to standard error,
//! one line each, prefixed `achat-client:` ([`say`]).
//!
//! Deciding what a piece looks like ([`Look`], [`sanitize`], [`paint`]) is
//! pure and tested here; [`Printer`] and [`say`] do the writing.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, IsTerminal as _, Write as _};

use achat::protocol::{ServerLine, parse_server_line};
use anstyle::{AnsiColor, Style};

use crate::error::ClientError;

/// How output is shown: copied exactly, or made safe (and maybe coloured)
/// for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    /// Standard output is a terminal: control characters are neutralised.
    pub(crate) terminal: bool,
    /// Lines are coloured by kind.
    pub(crate) colour: bool,
}

impl Look {
    /// The look for an output, given whether it is a terminal and the value
    /// of `NO_COLOR` (colour only on a terminal and when `NO_COLOR` is unset
    /// or empty, as no-color.org asks).
    pub(crate) fn new(terminal: bool, no_color: Option<&OsStr>) -> Look {
        Look {
            terminal,
            colour: terminal && no_color.is_none_or(OsStr::is_empty),
        }
    }

    /// The look for this process's standard output.
    pub(crate) fn detect() -> Look {
        Look::new(
            io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// What to write for a piece of the server's output. `at_line_start`
    /// says whether the piece begins a line (only then is it classified).
    pub(crate) fn render<'a>(&self, piece: &'a [u8], at_line_start: bool) -> Cow<'a, [u8]> {
        if !self.terminal {
            return Cow::Borrowed(piece);
        }
        let text = String::from_utf8_lossy(piece);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body.strip_suffix('\r').unwrap_or(body), true),
            None => (&*text, false),
        };
        let clean = sanitize(body);
        let mut out = if self.colour && at_line_start {
            paint(&clean)
        } else {
            clean.into_owned()
        };
        if newline {
            out.push('\n');
        }
        Cow::Owned(out.into_bytes())
    }
}

/// Replaces control characters (all but tab) with visible stand-ins:
/// caret notation for ASCII ones (`^[` for escape), U+FFFD for the C1
/// range. Text from peers must not drive the terminal.
pub(crate) fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Colours one line (without its line ending) by its kind.
pub(crate) fn paint(line: &str) -> String {
    let sender_style = Style::new().bold().fg_color(Some(AnsiColor::Cyan.into()));
    let server_style = Style::new().fg_color(Some(AnsiColor::Green.into()));
    let error_style = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let mut out = String::with_capacity(line.len() + 16);
    // Writing to a String cannot fail.
    let _ = match parse_server_line(line) {
        ServerLine::Message { from: sender, .. } => {
            let head = "from ".len() + sender.len() + ':'.len_utf8();
            let (head, rest) = line.split_at(head);
            write!(
                out,
                "{}{head}{}{rest}",
                sender_style.render(),
                sender_style.render_reset()
            )
        }
        ServerLine::Welcome { .. } | ServerLine::Server(_) => write!(
            out,
            "{}{line}{}",
            server_style.render(),
            server_style.render_reset()
        ),
        ServerLine::Error(_) => write!(
            out,
            "{}{line}{}",
            error_style.render(),
            error_style.render_reset()
        ),
        ServerLine::Other(_) => write!(out, "{line}"),
    };
    out
}

/// Writes the server's output to standard output, in the pieces it is read
/// in, remembering where lines start (only a line's first piece is
/// coloured by kind).
pub(crate) struct Printer {
    /// How pieces are shown.
    look: Look,
    /// Whether the next piece begins a line.
    at_line_start: bool,
}

impl Printer {
    /// A printer at the start of a line.
    pub(crate) fn new(look: Look) -> Printer {
        Printer {
            look,
            at_line_start: true,
        }
    }

    /// How this printer shows pieces.
    pub(crate) fn look(&self) -> Look {
        self.look
    }

    /// Shows one piece of the server's output, flushed at once so that a
    /// reader of the pipe sees each line as it comes.
    pub(crate) fn print(&mut self, piece: &[u8]) -> Result<(), ClientError> {
        let shown = self.look.render(piece, self.at_line_start);
        self.at_line_start = piece.ends_with(b"\n");
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(&shown)
            .and_then(|()| stdout.flush())
            .map_err(ClientError::Output)
    }
}

/// Says something on standard error (the client's own voice).
pub(crate) fn say(message: std::fmt::Arguments<'_>) {
    // Nothing useful is left to do if standard error is gone.
    let _ = writeln!(io::stderr(), "achat-client: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert_eq!(
            Look::new(true, None),
            Look {
                terminal: true,
                colour: true
            }
        );
        assert!(Look::new(true, Some(OsStr::new(""))).colour);
        assert!(!Look::new(true, Some(OsStr::new("1"))).colour);
        assert_eq!(
            Look::new(false, None),
            Look {
                terminal: false,
                colour: false
            }
        );
    }

    #[test]
    fn a_pipe_gets_the_bytes_exactly() {
        let look = Look::new(false, None);
        let piece = b"from bob: \x1b[2J\xff\r\n";
        assert!(matches!(look.render(piece, true), Cow::Borrowed(p) if p == piece));
    }

    #[test]
    fn a_terminal_gets_no_control_characters() {
        let look = Look::new(true, Some(OsStr::new("1")));
        assert_eq!(
            &*look.render(b"from bob: \x1b[2J\x07\tok\x7f\xc2\x9b\r\n", true),
            "from bob: ^[[2J^G\tok^?\u{fffd}\n".as_bytes()
        );
        assert_eq!(
            &*look.render(b"from bob: \xff", true),
            "from bob: \u{fffd}".as_bytes()
        );
        assert_eq!(sanitize("plain"), Cow::Borrowed("plain"));
    }

    #[test]
    fn kinds_get_their_colours() {
        let look = Look::new(true, None);
        let from = String::from_utf8(look.render(b"from bob: hi\n", true).into_owned()).unwrap();
        assert_eq!(from, "\u{1b}[1m\u{1b}[36mfrom bob:\u{1b}[0m hi\n");
        let server = paint("server: bye");
        assert!(server.starts_with("\u{1b}[32mserver: bye"), "{server:?}");
        let error = paint("error: no");
        assert!(
            error.contains("\u{1b}[31m") && error.contains("error: no"),
            "{error:?}"
        );
        assert_eq!(paint("hello"), "hello");
        // A piece that continues a line is not classified.
        assert_eq!(&*look.render(b"server: x\n", false), b"server: x\n");
    }
}
