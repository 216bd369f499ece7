//! Pipe mode (standard input or standard output is not a terminal): exact,
//! so that scripts can rely on it.
//!
//! Every line read from standard input is sent as it is; a last line
//! without a `\n` gets one, since a server only acts on complete lines. At
//! the end of the input the client half-closes its socket, so everything
//! it sent is still delivered and answered, and goes on printing what the
//! server sends until the server closes; then it exits 0. A `/quit` line
//! ends the session too: lines after it are not sent.
//!
//! Two tasks share the connection: one sends the input, one prints the
//! server's output, so a server that answers while the input is still
//! coming is never held up. [`Framer`] and [`judge_close`] are the pure
//! parts, tested here.

use std::io::{self, BufRead as _, Read as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::connection::{Connection, MAX_CHUNK, WriteHalf, read_piece};
use crate::error::ClientError;
use crate::quit::is_quit;
use crate::render::Printer;

/// Tracks the line structure of the input sent in pipe mode, which comes in
/// pieces of at most [`MAX_CHUNK`] bytes: whether a `/quit` was sent, and
/// whether the last line still needs its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Framer {
    /// Whether the next piece begins a line (only then can it be `/quit`).
    at_line_start: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            at_line_start: true,
        }
    }
}

impl Framer {
    /// Takes note of a piece about to be sent; returns whether it is a
    /// `/quit` line (after which nothing more is sent).
    pub(crate) fn feed(&mut self, piece: &[u8]) -> bool {
        if piece.is_empty() {
            return false;
        }
        let quit = self.at_line_start && is_quit(piece);
        self.at_line_start = piece.ends_with(b"\n");
        quit
    }

    /// What to send at the end of the input: a `\n` if the last line has
    /// none (a server only acts on complete lines).
    pub(crate) fn finish(&self) -> &'static [u8] {
        if self.at_line_start { b"" } else { b"\n" }
    }
}

/// Judges the server's close: normal if the client had ended the session
/// (`/quit` sent, or its input ended and was half-closed), an error
/// otherwise.
pub(crate) fn judge_close(quit_sent: bool, input_closed: bool) -> Result<(), ClientError> {
    if quit_sent || input_closed {
        Ok(())
    } else {
        Err(ClientError::Closed)
    }
}

/// What the client has done to end the session, shared between the task
/// sending the input and the one reading the server.
#[derive(Debug, Default)]
struct Ending {
    /// A `/quit` line went out.
    quit_sent: AtomicBool,
    /// The input ended and the socket was half-closed.
    input_closed: AtomicBool,
}

/// Pipe mode: send standard input, print the server, until the server
/// closes. `printer` has printed the login's answer, if any.
pub(crate) async fn pipe_session(
    mut connection: Connection,
    mut printer: Printer,
) -> Result<(), ClientError> {
    let (lines_tx, lines_rx) = mpsc::channel(64);
    // A thread of its own: a blocking read of standard input must not hold
    // up the runtime, and it is left behind when the session ends.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_input(&lines_tx))
        .map_err(ClientError::Start)?;
    let ending = Arc::new(Ending::default());
    let sender = tokio::spawn(send_input(lines_rx, connection.writer, ending.clone()));

    let mut buf = Vec::new();
    loop {
        match read_piece(&mut connection.reader, &mut buf).await {
            Ok(true) => {
                printer.print(&buf)?;
                buf.clear();
            }
            Ok(false) => break,
            Err(e) => {
                sender.abort();
                return Err(ClientError::Lost(e));
            }
        }
    }
    if sender.is_finished() {
        // A failed read of standard input outranks the close it caused.
        if let Ok(Err(e @ ClientError::Input(_))) = sender.await {
            return Err(e);
        }
    } else {
        sender.abort();
    }
    judge_close(
        ending.quit_sent.load(Ordering::SeqCst),
        ending.input_closed.load(Ordering::SeqCst),
    )
}

/// Reads standard input in pieces of at most [`MAX_CHUNK`] bytes, each
/// ending at a `\n` where there is one; dropping the sender says "end of
/// input".
fn read_input(lines: &mpsc::Sender<io::Result<Vec<u8>>>) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut piece = Vec::new();
        match (&mut stdin)
            .take(MAX_CHUNK as u64)
            .read_until(b'\n', &mut piece)
        {
            Ok(0) => return,
            Ok(_) => {
                if lines.blocking_send(Ok(piece)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = lines.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Sends the input to the server, then half-closes (at the end of input, a
/// `/quit`, or a failed read of standard input, so the server closes in
/// every case and the reading side learns how it ended).
async fn send_input(
    mut lines: mpsc::Receiver<io::Result<Vec<u8>>>,
    writer: WriteHalf,
    ending: Arc<Ending>,
) -> Result<(), ClientError> {
    let mut writer = BufWriter::new(writer);
    let mut framer = Framer::default();
    let mut failed = None;
    'input: while let Some(first) = lines.recv().await {
        // Everything already read goes out in one write.
        let mut next = Some(first);
        while let Some(piece) = next.take() {
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    failed = Some(ClientError::Input(e));
                    break 'input;
                }
            };
            let quit = framer.feed(&piece);
            if quit {
                ending.quit_sent.store(true, Ordering::SeqCst);
            }
            writer.write_all(&piece).await.map_err(ClientError::Lost)?;
            if quit {
                break 'input;
            }
            next = lines.try_recv().ok();
        }
        writer.flush().await.map_err(ClientError::Lost)?;
    }
    if failed.is_none() && !ending.quit_sent.load(Ordering::SeqCst) {
        writer
            .write_all(framer.finish())
            .await
            .map_err(ClientError::Lost)?;
    }
    writer.flush().await.map_err(ClientError::Lost)?;
    writer.shutdown().await.map_err(ClientError::Lost)?;
    ending.input_closed.store(true, Ordering::SeqCst);
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_adds_the_missing_last_newline_only() {
        let mut framer = Framer::default();
        assert_eq!(framer.finish(), b"");
        assert!(!framer.feed(b"alice\n"));
        assert_eq!(framer.finish(), b"");
        assert!(!framer.feed(b"bob: hi"));
        assert_eq!(framer.finish(), b"\n");
        // A long line comes in pieces: "/quit" inside one is not a command.
        let mut framer = Framer::default();
        assert!(!framer.feed(b"bob: aaaa"));
        assert!(!framer.feed(b"/quit\n"));
        assert!(framer.feed(b"/quit\n"));
        assert!(!framer.feed(b""));
    }

    #[test]
    fn a_close_is_normal_only_after_the_client_ended_the_session() {
        assert!(judge_close(true, false).is_ok());
        assert!(judge_close(false, true).is_ok());
        assert!(matches!(
            judge_close(false, false),
            Err(ClientError::Closed)
        ));
    }
}
