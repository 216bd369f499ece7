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

use std::io::Write as _;
use std::time::Duration;

use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::connection::{Connection, read_piece, send};
use crate::error::ClientError;
use crate::login::welcomed_name;
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
    let ended = edit(
        &mut connection,
        &mut editor,
        &mut screen,
        &mut signals,
        look,
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
/// screen, until one side ends.
async fn edit(
    connection: &mut Connection,
    editor: &mut Readline,
    screen: &mut SharedWriter,
    signals: &mut Signals,
    look: Look,
) -> Result<EditEnd, ClientError> {
    let mut buf = Vec::new();
    let mut at_line_start = true;
    loop {
        tokio::select! {
            // The editor first: polling it prints what was queued for the
            // screen, so its queue is empty before another line is added.
            biased;
            event = editor.readline() => match event {
                Ok(ReadlineEvent::Line(line)) => {
                    if !line.trim().is_empty() {
                        editor.add_history_entry(line.clone());
                    }
                    let quit = is_quit(line.as_bytes());
                    let mut bytes = line.into_bytes();
                    bytes.push(b'\n');
                    send(&mut connection.writer, &bytes).await?;
                    if quit {
                        return Ok(EditEnd::Quit);
                    }
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) => return leave(connection).await,
                Err(e) => return Err(ClientError::Terminal(e.to_string())),
            },
            () = next_signal(&mut signals.terminate) => return leave(connection).await,
            () = next_signal(&mut signals.hangup) => return leave(connection).await,
            read = read_piece(&mut connection.reader, &mut buf) => match read {
                Ok(true) => {
                    if at_line_start {
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(name) = welcomed_name(text.trim_end()) {
                            let _ = editor.update_prompt(&prompt(Some(&sanitize(name))));
                        }
                    }
                    // The writer queues whole lines for the editor; it
                    // refuses one only when its queue is full, and then
                    // keeps it to send with the next line.
                    let _ = screen.write(&look.render(&buf, at_line_start, terminal_columns()));
                    at_line_start = buf.ends_with(b"\n");
                    buf.clear();
                }
                Ok(false) => return Ok(EditEnd::ServerClosed),
                Err(e) => return Err(ClientError::Lost(e)),
            },
        }
    }
}

/// Says `/quit` to the server, for Ctrl-D, Ctrl-C and signals.
async fn leave(connection: &mut Connection) -> Result<EditEnd, ClientError> {
    send(&mut connection.writer, b"/quit\n").await?;
    Ok(EditEnd::Quit)
}

/// The next delivery of a signal; never, for one that has no handler.
async fn next_signal(signal: &mut Option<Signal>) {
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
    fn the_prompt_shows_the_name_once_known() {
        assert_eq!(prompt(Some("alice")), "alice> ");
        assert_eq!(prompt(None), "> ");
    }
}
