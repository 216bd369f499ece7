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
//! A line wider than the terminal is broken by the client, not by the
//! terminal, and every row after the first starts with [`CONTINUATION`]
//! (`↳ `): a text padded to the edge of the screen cannot make its tail
//! look like a line of its own.
//!
//! Deciding what a piece looks like ([`Look`], [`sanitize`], [`paint`],
//! [`wrap`]) is pure and tested here; [`Printer`] and [`say`] do the
//! writing.

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
    /// says whether the piece begins a line (only then is it classified);
    /// `columns` is the terminal's width, if known: a line wider than that
    /// is broken by the client, each further row marked (see [`wrap`]).
    pub(crate) fn render<'a>(
        &self,
        piece: &'a [u8],
        at_line_start: bool,
        columns: Option<usize>,
    ) -> Cow<'a, [u8]> {
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
        if let Some(columns) = columns {
            out = wrap(&out, columns);
        }
        if newline {
            out.push('\n');
        }
        Cow::Owned(out.into_bytes())
    }
}

/// The width of this process's terminal, if standard output is one.
pub(crate) fn terminal_columns() -> Option<usize> {
    crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| usize::from(columns))
        .filter(|&columns| columns > CONTINUATION.len() + 8)
}

/// Starts every row a long line is broken onto, so that the rest of a line
/// can never pass for a line of its own: a peer's text padded out to the
/// edge of the screen (`hi.....from bob: ...`) would otherwise show a
/// genuine-looking `from bob:` at the start of a row.
pub(crate) const CONTINUATION: &str = "\u{21B3} ";

/// Breaks `line` (one line, no line break in it) into rows of fewer than
/// `columns` columns, starting each row after the first with
/// [`CONTINUATION`]. Columns are counted as a terminal does: wide
/// characters two, combining marks none, a tab to the next multiple of
/// eight; the colour sequences [`paint`] adds take none.
pub(crate) fn wrap(line: &str, columns: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    // One column spare: some terminals wrap on the last column already.
    let room = columns.saturating_sub(1).max(1);
    let mut out = String::with_capacity(line.len() + 8);
    let mut column = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // A colour sequence: ESC '[' parameters and a final letter.
            out.push(c);
            while let Some(&next) = chars.peek() {
                out.push(next);
                chars.next();
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        let width = if c == '\t' {
            8 - column % 8
        } else {
            c.width().unwrap_or(0)
        };
        if column + width > room && column > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
            column = CONTINUATION.chars().count();
        }
        out.push(c);
        column += if c == '\t' { 8 - column % 8 } else { width };
    }
    out
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
        ServerLine::Welcome { .. } | ServerLine::PasswordWanted { .. } | ServerLine::Server(_) => {
            write!(
                out,
                "{}{line}{}",
                server_style.render(),
                server_style.render_reset()
            )
        }
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
        let columns = if self.look.terminal {
            terminal_columns()
        } else {
            None
        };
        let shown = self.look.render(piece, self.at_line_start, columns);
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
        assert!(matches!(look.render(piece, true, None), Cow::Borrowed(p) if p == piece));
    }

    #[test]
    fn a_terminal_gets_no_control_characters() {
        let look = Look::new(true, Some(OsStr::new("1")));
        assert_eq!(
            &*look.render(b"from bob: \x1b[2J\x07\tok\x7f\xc2\x9b\r\n", true, None),
            "from bob: ^[[2J^G\tok^?\u{fffd}\n".as_bytes()
        );
        assert_eq!(
            &*look.render(b"from bob: \xff", true, None),
            "from bob: \u{fffd}".as_bytes()
        );
        assert_eq!(sanitize("plain"), Cow::Borrowed("plain"));
    }

    #[test]
    fn kinds_get_their_colours() {
        let look = Look::new(true, None);
        let from =
            String::from_utf8(look.render(b"from bob: hi\n", true, None).into_owned()).unwrap();
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
        assert_eq!(&*look.render(b"server: x\n", false, None), b"server: x\n");
    }

    #[test]
    fn a_line_wider_than_the_terminal_has_its_rows_marked() {
        let forged = format!("from alice: hi{}from bob: the key is 42", ".".repeat(66));
        let shown = wrap(&forged, 80);
        let rows: Vec<&str> = shown.lines().collect();
        assert_eq!(rows.len(), 2, "{shown:?}");
        assert_eq!(rows[0].chars().count(), 79);
        assert!(rows[1].starts_with(CONTINUATION), "{rows:?}");
        assert!(!rows[1].starts_with("from"));
        // What fits is left alone; colour sequences take no room.
        assert_eq!(wrap("from bob: hi", 80), "from bob: hi");
        let painted = paint("server: bye");
        assert_eq!(wrap(&painted, 12), painted);
    }

    #[test]
    fn wide_characters_and_tabs_count_as_a_terminal_shows_them() {
        let rows: Vec<String> = wrap(&"日".repeat(10), 11)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(rows[0], "日".repeat(5));
        assert!(rows[1].starts_with(CONTINUATION));
        assert_eq!(wrap("a\tb", 12), "a\tb");
        assert!(wrap("a\t\tb", 12).contains('\n'));
    }

    #[test]
    fn a_terminal_wraps_what_it_renders_and_a_pipe_does_not() {
        let line = format!("from bob: {}\n", "x".repeat(100));
        let terminal = Look::new(true, Some(OsStr::new("1")));
        let shown = String::from_utf8(
            terminal
                .render(line.as_bytes(), true, Some(40))
                .into_owned(),
        )
        .unwrap();
        assert!(
            shown
                .lines()
                .skip(1)
                .all(|row| row.starts_with(CONTINUATION)),
            "{shown:?}"
        );
        assert!(shown.ends_with('\n'));
        let pipe = Look::new(false, None);
        assert_eq!(
            &*pipe.render(line.as_bytes(), true, Some(40)),
            line.as_bytes()
        );
    }
}
