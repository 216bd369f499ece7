//! Terminal mode (standard input and output are both terminals): a line
//! editor with history (`rustyline-async`); lines that arrive while the
//! person types are printed above the prompt and the half-typed line is
//! redrawn below them. Ctrl-D and Ctrl-C send `/quit`, print the server's
//! last words (bounded by [`QUIT_WAIT`]) and exit 0; so do SIGTERM and
//! SIGHUP, which would otherwise leave the terminal in raw mode.
//!
//! The editor is async, so one task waits on the keyboard and the socket
//! at once: when the server goes away, the client notices at once (not at
//! the next key press), prints every line the server sent before it went,
//! restores the terminal and exits.
//!
//! # Passwords
//!
//! When the server asks for a registered name's password, the editor is
//! set aside for one line: the prompt becomes `password for <name> (not
//! shown): `, the keys go to a [`HiddenLine`] that draws nothing (the
//! terminal is in raw mode, so it echoes nothing either), and the line is
//! sent without entering the editor's history or the transcript. Ctrl-C
//! or Ctrl-D there closes the connection without a `/quit`, which the
//! server would take for the password. While a line sent at login waits
//! for its answer (at most [`LOGIN_ANSWER_WAIT`]), the editor reads no
//! keys, so a password typed ahead of the server's prompt is read hidden
//! too. Lines of `/register`, `/password` and `/unregister` are kept out
//! of the history (they are shown as typed, like any line).

use std::io::Write as _;
use std::time::Duration;

use achat::protocol::{Request, RequestError, ServerLine, parse_request, parse_server_line};
use crossterm::event::EventStream;
use futures_util::StreamExt as _;
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;

use crate::connection::{Connection, read_piece, send};
use crate::error::ClientError;
use crate::login::{LOGIN_ANSWER_WAIT, PASSWORD_ANSWER_WAIT};
use crate::password::{self, HiddenLine, Typed};
use crate::quit::is_quit;
use crate::render::{Look, Printer, sanitize, terminal_columns};

/// After `/quit` (or Ctrl-D, Ctrl-C) at a terminal, how long the client
/// waits for the server's last lines and its close before leaving anyway.
pub(crate) const QUIT_WAIT: Duration = Duration::from_secs(3);

/// The prompt at a terminal: the name once known.
pub(crate) fn prompt(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name}> "),
        None => "> ".to_owned(),
    }
}

/// The signals that end a terminal session like Ctrl-C.
struct Signals {
    /// SIGTERM, if its handler could be set up.
    terminate: Option<Signal>,
    /// SIGHUP (the terminal went away), if its handler could be set up.
    hangup: Option<Signal>,
}

/// Where the login stands: it decides what reads the keys.
enum Phase {
    /// Not logged in: the line typed is a name (or a command).
    Name,
    /// A line went out at login and its answer is awaited until the
    /// deadline; the keys stay unread meanwhile (they may be a password).
    Answer(Instant),
    /// The server asked for a password: the keys make a hidden line.
    Password {
        /// The prompt shown, for the transcript.
        prompt: String,
        /// What was typed.
        line: HiddenLine,
    },
    /// Logged in, or a server that never answers a login.
    Chat,
}

impl Phase {
    /// Whether the editor reads the keys.
    fn edits(&self) -> bool {
        matches!(self, Phase::Name | Phase::Chat)
    }

    /// The phase after a server line that starts with `line`, or `None`
    /// to stay. The server asks for a password only at login, and answers
    /// a login with a welcome, an `error:` or `server:` line; a tutorial
    /// server answers nothing, so any other line means logged in.
    fn after(&self, line: &ServerLine<'_>) -> Option<Phase> {
        match line {
            ServerLine::PasswordWanted { name } => Some(Phase::Password {
                prompt: password::prompt(&sanitize(name)),
                line: HiddenLine::default(),
            }),
            ServerLine::Welcome { .. } => Some(Phase::Chat),
            _ if !matches!(self, Phase::Answer(_)) => None,
            ServerLine::Error(_) | ServerLine::Server(_) => Some(Phase::Name),
            ServerLine::Message { .. } | ServerLine::Other(_) => Some(Phase::Chat),
        }
    }
}

/// Whether a line typed carries a password (`/register`, `/password`,
/// `/unregister`, as the server reads them, well-formed or not): such a
/// line is not kept in the history.
pub(crate) fn carries_password(line: &str) -> bool {
    matches!(
        parse_request(line),
        Ok(Request::Account(_)) | Err(RequestError::Account(_))
    )
}

/// How the editing loop ended.
enum EditEnd {
    /// The person left (`/quit`, Ctrl-D, Ctrl-C).
    Quit,
    /// The server closed the connection.
    ServerClosed,
}

/// Terminal mode: a line editor, the server's lines above the prompt.
/// `printer` has printed the login's answer, if any; `name` is the one
/// logged in with, for the prompt.
pub(crate) async fn terminal_session(
    mut connection: Connection,
    mut printer: Printer,
    name: Option<&str>,
) -> Result<(), ClientError> {
    let look = printer.look();
    // Without these handlers a kill would leave the terminal in raw mode;
    // they are in place before the editor sets raw mode. If one cannot be
    // set up, that signal keeps its default action.
    let mut signals = Signals {
        terminate: signal(SignalKind::terminate()).ok(),
        hangup: signal(SignalKind::hangup()).ok(),
    };
    let (mut editor, mut screen) =
        Readline::new(prompt(name)).map_err(|e| ClientError::Terminal(e.to_string()))?;
    // Keep the lines typed on screen, as a transcript; Ctrl-C leaves, so
    // its half-typed line goes.
    editor.should_print_line_on(true, false);
    // Logged in already if `--name` was given (the login is done before).
    let phase = if name.is_some() {
        Phase::Chat
    } else {
        Phase::Name
    };
    let ended = edit(
        &mut connection,
        &mut editor,
        &mut screen,
        &mut signals,
        look,
        phase,
        prompt(name),
    )
    .await;
    // Print what the editor still holds, erase the prompt, and give the
    // terminal back before anything else is printed.
    let flushed = editor.flush();
    drop(screen);
    drop(editor);
    flushed.map_err(|e| ClientError::Terminal(e.to_string()))?;
    match ended? {
        EditEnd::ServerClosed => Err(ClientError::Closed),
        EditEnd::Quit => {
            let _ = connection.writer.shutdown().await;
            last_words(&mut connection, &mut printer).await
        }
    }
}

/// The editing loop: typed lines to the server, the server's lines to the
/// screen, until one side ends. `shown` is the editor's prompt.
async fn edit(
    connection: &mut Connection,
    editor: &mut Readline,
    screen: &mut SharedWriter,
    signals: &mut Signals,
    look: Look,
    mut phase: Phase,
    mut shown: String,
) -> Result<EditEnd, ClientError> {
    // The keys of a hidden line come from an event stream of its own,
    // polled only while the editor's is not, so each key goes to one.
    let mut keys = EventStream::new();
    let mut buf = Vec::new();
    let mut at_line_start = true;
    loop {
        let editing = phase.edits();
        let hidden = matches!(phase, Phase::Password { .. });
        let deadline = match phase {
            Phase::Answer(deadline) => Some(deadline),
            _ => None,
        };
        tokio::select! {
            // The editor first: polling it prints what was queued for the
            // screen, so its queue is empty before another line is added.
            biased;
            event = editor.readline(), if editing => match event {
                Ok(ReadlineEvent::Line(line)) => {
                    if !line.trim().is_empty() && !carries_password(&line) {
                        editor.add_history_entry(line.clone());
                    }
                    let quit = is_quit(line.as_bytes());
                    let mut bytes = line.into_bytes();
                    bytes.push(b'\n');
                    send(&mut connection.writer, &bytes).await?;
                    if quit {
                        return Ok(EditEnd::Quit);
                    }
                    if matches!(phase, Phase::Name) {
                        phase = Phase::Answer(Instant::now() + LOGIN_ANSWER_WAIT);
                    }
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) => return leave(connection).await,
                Err(e) => return Err(ClientError::Terminal(e.to_string())),
            },
            event = keys.next(), if hidden => {
                let Phase::Password { prompt, line } = &mut phase else {
                    continue;
                };
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => return Err(ClientError::Terminal(e.to_string())),
                    None => return Ok(EditEnd::Quit),
                };
                match line.feed(&event) {
                    Typed::More => {}
                    // A /quit would be taken for the password: the close
                    // says it.
                    Typed::Cancelled => return Ok(EditEnd::Quit),
                    Typed::Done => {
                        let password = std::mem::take(line).into_password();
                        send(&mut connection.writer, &password.line()).await?;
                        drop(password);
                        // The prompt stays in the transcript, with nothing
                        // after it.
                        let _ = screen.write(format!("{prompt}\n").as_bytes());
                        let _ = editor.update_prompt(&shown);
                        phase = Phase::Answer(Instant::now() + PASSWORD_ANSWER_WAIT);
                    }
                }
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                // No answer: a server of the tutorial's kind, which took
                // the name.
                phase = Phase::Chat;
            },
            () = next_signal(&mut signals.terminate) => return leave_from(connection, &phase).await,
            () = next_signal(&mut signals.hangup) => return leave_from(connection, &phase).await,
            read = read_piece(&mut connection.reader, &mut buf) => match read {
                Ok(true) => {
                    let mut next = None;
                    if at_line_start {
                        let text = String::from_utf8_lossy(&buf);
                        let line = parse_server_line(text.trim_end());
                        if let ServerLine::Welcome { name } = line {
                            shown = prompt(Some(&sanitize(name)));
                            let _ = editor.update_prompt(&shown);
                        }
                        next = phase.after(&line);
                    }
                    // The writer queues whole lines for the editor; it
                    // refuses one only when its queue is full, and then
                    // keeps it to send with the next line.
                    let _ = screen.write(&look.render(&buf, at_line_start, terminal_columns()));
                    at_line_start = buf.ends_with(b"\n");
                    buf.clear();
                    if let Some(next) = next {
                        if let Phase::Password { prompt, .. } = &next {
                            // The editor is not polled while the password
                            // is typed: show the server's prompt now.
                            editor.flush().map_err(|e| ClientError::Terminal(e.to_string()))?;
                            let _ = editor.update_prompt(prompt);
                        }
                        phase = next;
                    }
                }
                Ok(false) => return Ok(EditEnd::ServerClosed),
                Err(e) => return Err(ClientError::Lost(e)),
            },
        }
    }
}

/// Leaves on a signal: with `/quit`, but for a password being typed,
/// where the server would take `/quit` for the password (closing says it).
async fn leave_from(connection: &mut Connection, phase: &Phase) -> Result<EditEnd, ClientError> {
    match phase {
        Phase::Password { .. } => Ok(EditEnd::Quit),
        _ => leave(connection).await,
    }
}

/// Says `/quit` to the server, for Ctrl-D, Ctrl-C and signals.
async fn leave(connection: &mut Connection) -> Result<EditEnd, ClientError> {
    send(&mut connection.writer, b"/quit\n").await?;
    Ok(EditEnd::Quit)
}

/// The next delivery of a signal; never, for one that has no handler.
pub(crate) async fn next_signal(signal: &mut Option<Signal>) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// After the person left: print what the server still sends (its `bye`)
/// until it closes, for at most [`QUIT_WAIT`].
async fn last_words(connection: &mut Connection, printer: &mut Printer) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + QUIT_WAIT;
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, read_piece(&mut connection.reader, &mut buf)).await
        {
            Ok(Ok(true)) => {
                printer.print(&buf)?;
                buf.clear();
            }
            // Closed, dropped or slow: the person asked to leave, and has.
            Ok(Ok(false) | Err(_)) | Err(_) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_commands_are_kept_out_of_the_history() {
        for line in [
            "/register hunter2hunter2",
            " /password old-one new-one",
            "/unregister hunter2hunter2",
            "/register",
            "/register short",
        ] {
            assert!(carries_password(line), "{line}");
        }
        for line in [
            "bob: /register x",
            "/who",
            "/quit",
            "alice",
            "/registered x",
        ] {
            assert!(!carries_password(line), "{line}");
        }
    }

    #[test]
    fn the_login_phase_follows_the_servers_answers() {
        let answer = Phase::Answer(Instant::now());
        let prompt = ServerLine::PasswordWanted { name: "alice" };
        for phase in [Phase::Name, Phase::Answer(Instant::now()), Phase::Chat] {
            assert!(matches!(
                phase.after(&prompt),
                Some(Phase::Password { prompt, .. }) if prompt == "password for alice (not shown): "
            ));
        }
        let welcome = ServerLine::Welcome { name: "alice" };
        assert!(matches!(answer.after(&welcome), Some(Phase::Chat)));
        let wrong = ServerLine::Error("wrong password; send a name to log in");
        assert!(matches!(answer.after(&wrong), Some(Phase::Name)));
        assert!(matches!(
            answer.after(&ServerLine::Other("hi")),
            Some(Phase::Chat)
        ));
        // Outside a login's answer, only a prompt or a welcome changes it.
        assert!(Phase::Chat.after(&wrong).is_none());
        assert!(Phase::Name.after(&ServerLine::Server("bye")).is_none());
        assert!(Phase::Name.edits() && Phase::Chat.edits() && !answer.edits());
    }

    #[test]
    fn the_prompt_shows_the_name_once_known() {
        assert_eq!(prompt(Some("alice")), "alice> ");
        assert_eq!(prompt(None), "> ");
    }
}
