//! Answering the password prompt of a registered name
//! (`server: '<name>' is registered: send its password`) without the
//! password showing anywhere.
//!
//! Where the password comes from, in this order ([`choose_source`]):
//! `--password-file FILE` (its first line, trimmed), the `ACHAT_PASSWORD`
//! environment variable (if set and not empty), or, when standard input is
//! a terminal, the keyboard with nothing echoed. Without any of them a
//! `--name` login ends with exit 3 and a line saying how to give one.
//!
//! At the keyboard the password is read key by key with crossterm, in raw
//! mode: the terminal echoes nothing, and [`HiddenLine`]
//! prints nothing either (not even `*`, which would tell its length). Raw
//! mode rather than echo-off line mode (what `rpassword` does) because in
//! raw mode Ctrl-C is a key, not a SIGINT that would kill the client with
//! echo still off; and because terminal mode reads its keys through
//! crossterm too, so one reader serves both. The line never enters the line
//! editor, so it is neither drawn on the screen nor kept in its history.
//!
//! A password is held in a [`Password`], which is wiped from memory when
//! dropped and whose `Debug` does not show it; it is never printed or
//! logged.

use std::fmt;
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::path::Path;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use crate::error::ClientError;
use crate::terminal::next_signal;

/// The environment variable a password may be given in.
pub(crate) const PASSWORD_ENV: &str = "ACHAT_PASSWORD";

/// The most of a password file read: far more than the longest password a
/// server takes, and a wrong path (a log, `/dev/zero`) is not read whole.
const MAX_PASSWORD_FILE_LINE: u64 = 4096;

/// A password on its way to the server: wiped when dropped, never shown by
/// `Debug`.
pub(crate) struct Password(Zeroizing<String>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// The line to send: the password and its `\n`, wiped when dropped.
    pub(crate) fn line(&self) -> Zeroizing<Vec<u8>> {
        let mut line = Zeroizing::new(Vec::with_capacity(self.0.len() + 1));
        line.extend_from_slice(self.0.as_bytes());
        line.push(b'\n');
        line
    }
}

/// Where a `--name` login takes the password from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source<'a> {
    /// `--password-file FILE`.
    File(&'a Path),
    /// `ACHAT_PASSWORD`.
    Env,
    /// Typed at the terminal, unechoed.
    Terminal,
    /// Nowhere: the login cannot go on.
    Nowhere,
}

/// The first of the ways to give a password that is there: a file asked
/// for on the command line outranks the environment (it was named for
/// this run), and both outrank asking, so scripts never block on a prompt.
/// An empty `ACHAT_PASSWORD` counts as unset.
pub(crate) fn choose_source<'a>(
    file: Option<&'a Path>,
    env_set: bool,
    stdin_is_terminal: bool,
) -> Source<'a> {
    match (file, env_set, stdin_is_terminal) {
        (Some(file), _, _) => Source::File(file),
        (None, true, _) => Source::Env,
        (None, false, true) => Source::Terminal,
        (None, false, false) => Source::Nowhere,
    }
}

/// A password given on one line (a file's first line, the environment
/// variable): trimmed, since a password has no surrounding whitespace;
/// `where_` says where it came from, for the error.
pub(crate) fn one_line(text: &str, where_: &str) -> Result<Password, ClientError> {
    let trimmed = text.trim();
    if trimmed.contains(['\n', '\r']) {
        return Err(ClientError::Usage(format!(
            "{where_} holds a line break: a password is one line"
        )));
    }
    if trimmed.is_empty() {
        return Err(ClientError::Usage(format!("{where_} holds no password")));
    }
    Ok(Password(Zeroizing::new(trimmed.to_owned())))
}

/// Reads the password in the first line of `path`.
pub(crate) fn from_file(path: &Path) -> Result<Password, ClientError> {
    let where_ = format!("the password file {}", path.display());
    let unreadable = |e: io::Error| ClientError::Usage(format!("cannot read {where_}: {e}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut first = Zeroizing::new(Vec::new());
    io::BufReader::new(file.take(MAX_PASSWORD_FILE_LINE))
        .read_until(b'\n', &mut first)
        .map_err(unreadable)?;
    let text = std::str::from_utf8(&first)
        .map_err(|_| ClientError::Usage(format!("{where_} is not UTF-8 text")))?;
    one_line(text.split('\n').next().unwrap_or_default(), &where_)
}

/// Reads the password in `ACHAT_PASSWORD`, if it is set and not empty.
pub(crate) fn from_env() -> Result<Option<Password>, ClientError> {
    match std::env::var_os(PASSWORD_ENV) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            let value =
                Zeroizing::new(value.into_string().map_err(|_| {
                    ClientError::Usage(format!("{PASSWORD_ENV} is not valid UTF-8"))
                })?);
            one_line(&value, PASSWORD_ENV).map(Some)
        }
    }
}

/// The prompt shown while a password is typed.
pub(crate) fn prompt(name: &str) -> String {
    format!("password for {name} (not shown): ")
}

/// What a key did to a password being typed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    /// Nothing to do yet.
    More,
    /// Enter: the password is complete.
    Done,
    /// Ctrl-C or Ctrl-D: the person gave up.
    Cancelled,
}

/// A password being typed, fed one terminal event at a time. Pure, so its
/// keys are tested without a terminal.
#[derive(Default)]
pub(crate) struct HiddenLine {
    /// What was typed so far; wiped when dropped.
    typed: Zeroizing<String>,
}

impl HiddenLine {
    /// Takes one event. Nothing is ever echoed: the caller prints nothing
    /// for [`Typed::More`].
    pub(crate) fn feed(&mut self, event: &Event) -> Typed {
        let key = match event {
            Event::Key(key) => key,
            Event::Paste(text) => {
                self.typed.push_str(text);
                return Typed::More;
            }
            _ => return Typed::More,
        };
        let KeyEvent {
            code,
            modifiers,
            kind,
            ..
        } = *key;
        if kind == KeyEventKind::Release {
            return Typed::More;
        }
        // AltGr arrives as Ctrl+Alt on some terminals: its letters are
        // characters, not control keys.
        let control =
            modifiers.contains(KeyModifiers::CONTROL) && !modifiers.contains(KeyModifiers::ALT);
        match code {
            KeyCode::Enter => return Typed::Done,
            KeyCode::Char('c' | 'd') if control => return Typed::Cancelled,
            KeyCode::Char('u') if control => self.typed.clear(),
            KeyCode::Char(_) if control => {}
            KeyCode::Char(c) => self.typed.push(c),
            KeyCode::Backspace => {
                self.typed.pop();
            }
            _ => {}
        }
        Typed::More
    }

    /// The password typed, once [`Typed::Done`].
    pub(crate) fn into_password(self) -> Password {
        Password(self.typed)
    }
}

/// Turns raw mode off when dropped, so every way out of a prompt gives the
/// terminal back as it was.
struct RawMode;

impl RawMode {
    fn on() -> Result<RawMode, ClientError> {
        crossterm::terminal::enable_raw_mode().map_err(|e| ClientError::Terminal(e.to_string()))?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Asks for `name`'s password at the terminal (the prompt on standard
/// error, so that standard output keeps only the server's lines), with
/// nothing echoed; `None` if the person pressed Ctrl-C or Ctrl-D.
pub(crate) async fn ask(name: &str) -> Result<Option<Password>, ClientError> {
    // A kill in raw mode would leave the terminal raw: SIGTERM and SIGHUP
    // cancel the prompt instead, their handlers in place before raw mode
    // is (a signal whose handler cannot be set up keeps its default).
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    let _raw = RawMode::on()?;
    let mut stderr = io::stderr();
    let _ = write!(stderr, "{}", prompt(name));
    let _ = stderr.flush();
    // Read with crossterm's blocking `read` on a thread of its own, not an
    // `EventStream`: a stream leaves a thread behind that waits for the
    // next key after the stream is gone, and under load the editor started
    // after the login lost the first key it should have had (a Ctrl-D
    // typed at the `alice>` prompt never reached it). This thread ends
    // with the Enter (or Ctrl-C/Ctrl-D) that ends the line.
    let keys = tokio::task::spawn_blocking(|| {
        let mut line = HiddenLine::default();
        loop {
            match crossterm::event::read() {
                Ok(event) => match line.feed(&event) {
                    Typed::More => {}
                    done => return Ok((done, line)),
                },
                Err(e) => return Err(ClientError::Terminal(e.to_string())),
            }
        }
    });
    let (typed, line) = tokio::select! {
        keys = keys => match keys {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return Err(e),
            Err(_) => (Typed::Cancelled, HiddenLine::default()),
        },
        () = next_signal(&mut terminate) => (Typed::Cancelled, HiddenLine::default()),
        () = next_signal(&mut hangup) => (Typed::Cancelled, HiddenLine::default()),
    };
    // Raw mode: a line break is "\r\n".
    let _ = write!(stderr, "\r\n");
    let _ = stderr.flush();
    Ok((typed == Typed::Done).then(|| line.into_password()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    fn typed(line: &mut HiddenLine, text: &str) {
        for c in text.chars() {
            assert_eq!(
                line.feed(&key(KeyCode::Char(c), KeyModifiers::NONE)),
                Typed::More
            );
        }
    }

    #[test]
    fn a_file_outranks_the_environment_which_outranks_asking() {
        let file = Path::new("pw");
        assert_eq!(choose_source(Some(file), true, true), Source::File(file));
        assert_eq!(choose_source(None, true, true), Source::Env);
        assert_eq!(choose_source(None, false, true), Source::Terminal);
        assert_eq!(choose_source(None, false, false), Source::Nowhere);
    }

    #[test]
    fn a_password_on_one_line_is_trimmed_and_not_empty() {
        let password = one_line("  hunter2hunter2 \n", "x").unwrap();
        assert_eq!(&*password.line(), b"hunter2hunter2\n");
        assert!(matches!(one_line(" \t", "x"), Err(ClientError::Usage(_))));
        assert!(matches!(one_line("a\nb", "x"), Err(ClientError::Usage(_))));
        assert_eq!(format!("{password:?}"), "Password(..)");
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "correct-horse\r\nnot this\n").unwrap();
        assert_eq!(&*from_file(&path).unwrap().line(), b"correct-horse\n");
        std::fs::write(&path, "\nhunter2hunter2\n").unwrap();
        assert!(matches!(from_file(&path), Err(ClientError::Usage(_))));
        let missing = from_file(&dir.path().join("missing")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read the password file ")
        );
    }

    #[test]
    fn keys_make_a_password_and_control_keys_edit_or_cancel() {
        let mut line = HiddenLine::default();
        typed(&mut line, "hunter2");
        let shift = key(KeyCode::Char('X'), KeyModifiers::SHIFT);
        assert_eq!(line.feed(&shift), Typed::More);
        assert_eq!(
            line.feed(&key(KeyCode::Backspace, KeyModifiers::NONE)),
            Typed::More
        );
        typed(&mut line, "hunter2");
        // Control keys other than the editing ones add nothing.
        assert_eq!(
            line.feed(&key(KeyCode::Char('a'), KeyModifiers::CONTROL)),
            Typed::More
        );
        // AltGr letters are letters.
        let altgr = KeyModifiers::CONTROL | KeyModifiers::ALT;
        assert_eq!(line.feed(&key(KeyCode::Char('@'), altgr)), Typed::More);
        assert_eq!(
            line.feed(&key(KeyCode::Enter, KeyModifiers::NONE)),
            Typed::Done
        );
        assert_eq!(&*line.into_password().line(), b"hunter2hunter2@\n");

        let mut line = HiddenLine::default();
        typed(&mut line, "wrong");
        line.feed(&key(KeyCode::Char('u'), KeyModifiers::CONTROL));
        typed(&mut line, "right");
        line.feed(&Event::Paste("-pasted".into()));
        assert_eq!(&*line.into_password().line(), b"right-pasted\n");

        for cancel in ['c', 'd'] {
            let mut line = HiddenLine::default();
            typed(&mut line, "half");
            let event = key(KeyCode::Char(cancel), KeyModifiers::CONTROL);
            assert_eq!(line.feed(&event), Typed::Cancelled);
        }
    }
}
