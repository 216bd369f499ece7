//! `achat-client`'s logic: a chat client that is pleasant at a prompt and
//! exact in a pipe.
//!
//! It exists so that people need not reach for `nc`: it speaks the
//! tutorial's protocol (`docs/PROTOCOL.md`), and works against any server
//! that does, including the tutorial's own, which sends nothing but
//! `from <name>: <text>` lines.
//!
//! # Two modes
//!
//! - **Pipe mode** (standard input or standard output is not a terminal):
//!   every line read from standard input is sent as it is; a last line
//!   without a `\n` gets one, since a server only acts on complete lines.
//!   At the end of the input the client half-closes its socket, so
//!   everything it sent is still delivered and answered, and goes on
//!   printing what the server sends until the server closes; then it exits
//!   0. A `/quit` line ends the session too: lines after it are not sent.
//! - **Terminal mode** (both are terminals): a line editor with history
//!   (`rustyline-async`); lines that arrive while the person types are
//!   printed above the prompt and the half-typed line is redrawn below
//!   them. Ctrl-D and Ctrl-C send `/quit`, print the server's last words
//!   (bounded by [`QUIT_WAIT`]) and exit 0; so do SIGTERM and SIGHUP,
//!   which would otherwise leave the terminal in raw mode.
//!
//! The editor is async, so one task waits on the keyboard and the socket
//! at once: when the server goes away, the client notices at once (not at
//! the next key press), prints every line the server sent before it went,
//! restores the terminal and exits.
//!
//! # What is printed, and how
//!
//! Standard output carries what the server sent. When it is not a terminal
//! the bytes are copied exactly. When it is a terminal, control characters
//! in a line are shown in caret notation (`^[`), so a peer cannot move the
//! cursor or clear the screen with a message, and, unless `NO_COLOR` is set
//! to a non-empty value, `from <name>:`, `server:` and `error:` lines get
//! colours of their own. The client's own messages go to standard error,
//! one line each, prefixed `achat-client:`.
//!
//! # Logging in with `--name`
//!
//! The client sends the name and waits at most [`LOGIN_ANSWER_WAIT`] for
//! the first line that answers it:
//! - `server: welcome ...`: logged in; the line is printed;
//! - `error: ...`: the login was refused (taken, invalid, or the server
//!   turned the connection away); the client exits 3 with the server's text;
//! - other `server:` lines are printed and the wait goes on;
//! - anything else (a `from` line, say) means a server of the tutorial's
//!   kind, which has no welcome: logged in;
//! - nothing within the wait: the same conclusion, said on standard error.
//!   The tutorial's server answers a login with silence, so silence is
//!   taken for success rather than hanging or refusing.
//!
//! # Exit statuses
//!
//! | status | meaning |
//! |---|---|
//! | 0 | normal end: input ended (pipe mode), `/quit`, Ctrl-D or Ctrl-C, and the server closed after answering |
//! | 1 | connection or I/O problem: no server at the address, the server closed the connection on its own or dropped it, standard input or output failed |
//! | 2 | usage error: a bad flag, address or name (clap's own status) |
//! | 3 | the server refused the `--name` login |
//!
//! Pure parts (classifying and colouring lines, the command line, framing
//! the input, deciding how a session ended) are plain functions, tested at
//! the bottom; the I/O is in [`run`] and the private functions it calls.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use clap::Parser;
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::protocol::{ServerLine, parse_server_line};

/// The address the client connects to when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// How long `--name` waits for the server to answer the login before
/// concluding that the server is of the tutorial's kind (which never
/// answers a login).
pub const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long connecting may take: an address that drops packets would
/// otherwise hang the client for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After `/quit` (or Ctrl-D, Ctrl-C) at a terminal, how long the client
/// waits for the server's last lines and its close before leaving anyway.
pub const QUIT_WAIT: Duration = Duration::from_secs(3);

/// The longest piece of a line handled at once, in either direction: a
/// longer line is passed on in pieces, so a peer or a file without line
/// breaks cannot make the client's memory grow.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Exit status: normal end.
pub const EXIT_OK: u8 = 0;
/// Exit status: no server, the connection closed or dropped, I/O failed.
pub const EXIT_CONNECTION: u8 = 1;
/// Exit status: a bad command line (clap exits with it).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the server refused the `--name` login.
pub const EXIT_LOGIN_REFUSED: u8 = 3;

const LONG_ABOUT: &str = "\
Chat with an achat server (or any server speaking the a-chat tutorial's protocol).

At a terminal: a line editor with history; messages that arrive while you type
are printed above the prompt. Ctrl-D or Ctrl-C leaves (sends /quit).

In a pipe: every line of standard input is sent as it is; at the end of the
input the client half-closes the connection and prints what the server sends
until it closes, so `printf 'alice\\nbob: hi\\n' | achat-client` always delivers.

Without --name, the first line you send is your login name.

Exit status:
  0  normal end (input ended, /quit, Ctrl-D or Ctrl-C)
  1  no server at ADDR, the server closed or dropped the connection, or I/O failed
  2  usage error
  3  the server refused the --name login (name taken or invalid)";

/// `achat-client`: the command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "achat-client",
    version,
    about = "A chat client for achat: pleasant at a prompt, exact in a pipe.",
    long_about = LONG_ABOUT
)]
pub struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(value_name = "ADDR", default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub addr: String,

    /// Log in with this name before anything else; exit 3 if the server refuses it.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,
}

/// Checks that an address has the shape `HOST:PORT` with a usable port.
pub fn parse_addr(addr: &str) -> Result<String, String> {
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

/// Checks a `--name` enough for it to be sent as one line; returns it
/// trimmed. The server judges everything else, so the client works with
/// servers whose rules differ.
pub fn parse_name(name: &str) -> Result<String, String> {
    if name.contains(['\n', '\r']) {
        return Err("a name cannot contain a line break".to_owned());
    }
    let name = name.trim();
    if name.is_empty() {
        // A server skips blank lines before the name: it would wait forever.
        return Err("a name cannot be blank".to_owned());
    }
    Ok(name.to_owned())
}

/// Why the client stopped before a normal end.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("cannot connect to {addr} (is the server running?): {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What went wrong.
        source: io::Error,
    },
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
    /// The server answered the `--name` login with an `error:` line.
    #[error("login refused by the server: {0}")]
    LoginRefused(String),
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
    /// The process exit status for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::LoginRefused(_) => EXIT_LOGIN_REFUSED,
            _ => EXIT_CONNECTION,
        }
    }
}

/// How the first lines after a `--name` answer the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAnswer<'a> {
    /// `server: welcome ...`.
    Welcome,
    /// `error: <text>`.
    Refused(&'a str),
    /// Another `server:` line: not the answer yet.
    Notice,
    /// Anything else: a server with no welcome, which took the name.
    Other,
}

/// Reads one line (without its line ending) as an answer to a login.
pub fn login_answer(line: &str) -> LoginAnswer<'_> {
    match parse_server_line(line) {
        ServerLine::Welcome { .. } => LoginAnswer::Welcome,
        ServerLine::Server(_) => LoginAnswer::Notice,
        ServerLine::Error(text) => LoginAnswer::Refused(text),
        ServerLine::Message { .. } | ServerLine::Other(_) => LoginAnswer::Other,
    }
}

/// The name in a `server: welcome <name> ...` line, if it is one.
pub fn welcomed_name(line: &str) -> Option<&str> {
    match parse_server_line(line) {
        ServerLine::Welcome { name } => Some(name),
        _ => None,
    }
}

/// The prompt at a terminal: the name once known.
pub fn prompt(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name}> "),
        None => "> ".to_owned(),
    }
}

/// Whether a line is the `/quit` command, by the server's rule: the first
/// non-blank character is `/` and the first word is `quit`.
pub fn is_quit(line: &[u8]) -> bool {
    let Some(start) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    let Some(command) = line[start..].strip_prefix(b"/") else {
        return false;
    };
    let end = command
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(command.len());
    &command[..end] == b"quit"
}

/// Tracks the line structure of the input sent in pipe mode, which comes in
/// pieces of at most [`MAX_CHUNK`] bytes: whether a `/quit` was sent, and
/// whether the last line still needs its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framer {
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
    pub fn feed(&mut self, piece: &[u8]) -> bool {
        if piece.is_empty() {
            return false;
        }
        let quit = self.at_line_start && is_quit(piece);
        self.at_line_start = piece.ends_with(b"\n");
        quit
    }

    /// What to send at the end of the input: a `\n` if the last line has
    /// none (a server only acts on complete lines).
    pub fn finish(&self) -> &'static [u8] {
        if self.at_line_start { b"" } else { b"\n" }
    }
}

/// How output is shown: copied exactly, or made safe (and maybe coloured)
/// for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Standard output is a terminal: control characters are neutralised.
    pub terminal: bool,
    /// Lines are coloured by kind.
    pub colour: bool,
}

impl Look {
    /// The look for an output, given whether it is a terminal and the value
    /// of `NO_COLOR` (colour only on a terminal and when `NO_COLOR` is unset
    /// or empty, as no-color.org asks).
    pub fn new(terminal: bool, no_color: Option<&OsStr>) -> Look {
        Look {
            terminal,
            colour: terminal && no_color.is_none_or(OsStr::is_empty),
        }
    }

    /// The look for this process's standard output.
    pub fn detect() -> Look {
        Look::new(
            io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// What to write for a piece of the server's output. `at_line_start`
    /// says whether the piece begins a line (only then is it classified).
    pub fn render<'a>(&self, piece: &'a [u8], at_line_start: bool) -> Cow<'a, [u8]> {
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
pub fn sanitize(text: &str) -> Cow<'_, str> {
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
pub fn paint(line: &str) -> String {
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

/// The two ways the client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lines from standard input, sent as they are.
    Pipe,
    /// A line editor at a terminal.
    Terminal,
}

impl Mode {
    /// Terminal mode needs a terminal on both sides: with output to a file
    /// the editor's prompt would end up in the file.
    pub fn choose(stdin_is_terminal: bool, stdout_is_terminal: bool) -> Mode {
        if stdin_is_terminal && stdout_is_terminal {
            Mode::Terminal
        } else {
            Mode::Pipe
        }
    }
}

/// Judges the server's close: normal if the client had ended the session
/// (`/quit` sent, or its input ended and was half-closed), an error
/// otherwise.
pub fn judge_close(quit_sent: bool, input_closed: bool) -> Result<(), ClientError> {
    if quit_sent || input_closed {
        Ok(())
    } else {
        Err(ClientError::Closed)
    }
}

/// Runs the client to the end of the session; the caller turns an error
/// into a message and [`ClientError::exit_code`].
pub fn run(args: ClientArgs) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Start)?;
    let mode = Mode::choose(io::stdin().is_terminal(), io::stdout().is_terminal());
    let look = Look::detect();
    let result = runtime.block_on(async {
        let conn = Conn::open(&args.addr).await?;
        match mode {
            Mode::Pipe => pipe_session(conn, look, args.name.as_deref()).await,
            Mode::Terminal => terminal_session(conn, look, args.name.as_deref()).await,
        }
    });
    // The thread reading standard input may be blocked in a read: do not
    // wait for it.
    runtime.shutdown_background();
    result
}

/// The connection: a buffered reading half, a writing half.
struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, ClientError> {
        let connect_error = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
        // Typed lines go out at once; pipe mode batches its own writes.
        stream.set_nodelay(true).map_err(ClientError::Lost)?;
        let (reader, writer) = stream.into_split();
        Ok(Conn {
            reader: BufReader::new(reader),
            writer,
        })
    }
}

/// Reads the next piece of the server's output into `buf`: a line with its
/// `\n`, or [`MAX_CHUNK`] bytes of a longer one, or the unterminated rest
/// before the end. Returns `false` at the end of the stream.
///
/// Cancel-safe: bytes read before a cancellation stay in `buf`, and the
/// next call goes on from there.
async fn read_piece<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    let room = MAX_CHUNK.saturating_sub(buf.len()).max(1);
    let n = (&mut *reader)
        .take(room as u64)
        .read_until(b'\n', buf)
        .await?;
    Ok(n > 0 || !buf.is_empty())
}

/// Writes the server's output to standard output.
struct Printer {
    look: Look,
    at_line_start: bool,
}

impl Printer {
    fn new(look: Look) -> Printer {
        Printer {
            look,
            at_line_start: true,
        }
    }

    fn print(&mut self, piece: &[u8]) -> Result<(), ClientError> {
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
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "achat-client: {message}");
}

/// Sends `name` and waits for the server's answer (see the module docs).
async fn login(conn: &mut Conn, name: &str, printer: &mut Printer) -> Result<(), ClientError> {
    let mut line = name.as_bytes().to_vec();
    line.push(b'\n');
    conn.writer
        .write_all(&line)
        .await
        .map_err(ClientError::Lost)?;
    let deadline = tokio::time::Instant::now() + LOGIN_ANSWER_WAIT;
    let mut buf = Vec::new();
    loop {
        let read = tokio::time::timeout_at(deadline, read_piece(&mut conn.reader, &mut buf)).await;
        match read {
            Err(_elapsed) => {
                say(format_args!(
                    "no answer to the login within {}s (a tutorial-style server never answers); \
                     going on as {name}",
                    LOGIN_ANSWER_WAIT.as_secs()
                ));
                return Ok(());
            }
            Ok(Err(e)) => return Err(ClientError::Lost(e)),
            Ok(Ok(false)) => return Err(ClientError::ClosedAtLogin),
            Ok(Ok(true)) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        match login_answer(line) {
            LoginAnswer::Refused(reason) => {
                return Err(ClientError::LoginRefused(sanitize(reason).into_owned()));
            }
            LoginAnswer::Notice => {
                printer.print(&buf)?;
                buf.clear();
            }
            LoginAnswer::Welcome | LoginAnswer::Other => {
                printer.print(&buf)?;
                return Ok(());
            }
        }
    }
}

/// What the client has done to end the session, shared between the task
/// sending the input and the one reading the server.
#[derive(Debug, Default)]
struct Ending {
    quit_sent: AtomicBool,
    input_closed: AtomicBool,
}

/// Pipe mode: send standard input, print the server, until the server
/// closes.
async fn pipe_session(mut conn: Conn, look: Look, name: Option<&str>) -> Result<(), ClientError> {
    let mut printer = Printer::new(look);
    if let Some(name) = name {
        login(&mut conn, name, &mut printer).await?;
    }
    let (lines_tx, lines_rx) = mpsc::channel(64);
    // A thread of its own: a blocking read of standard input must not hold
    // up the runtime, and it is left behind when the session ends.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_input(&lines_tx))
        .map_err(ClientError::Start)?;
    let ending = Arc::new(Ending::default());
    let sender = tokio::spawn(send_input(lines_rx, conn.writer, ending.clone()));

    let mut buf = Vec::new();
    loop {
        match read_piece(&mut conn.reader, &mut buf).await {
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
    writer: OwnedWriteHalf,
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

/// The signals that end a terminal session like Ctrl-C.
struct Signals {
    terminate: Option<Signal>,
    hangup: Option<Signal>,
}

/// How the editing loop ended.
enum Leave {
    /// The person left (`/quit`, Ctrl-D, Ctrl-C).
    Quit,
    /// The server closed the connection.
    ServerClosed,
}

/// Terminal mode: a line editor, the server's lines above the prompt.
async fn terminal_session(
    mut conn: Conn,
    look: Look,
    name: Option<&str>,
) -> Result<(), ClientError> {
    let mut printer = Printer::new(look);
    if let Some(name) = name {
        login(&mut conn, name, &mut printer).await?;
    }
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
    let left = edit(&mut conn, &mut editor, &mut screen, &mut signals, look).await;
    // Print what the editor still holds, erase the prompt, and give the
    // terminal back before anything else is printed.
    let flushed = editor.flush();
    drop(screen);
    drop(editor);
    flushed.map_err(|e| ClientError::Terminal(e.to_string()))?;
    match left? {
        Leave::ServerClosed => Err(ClientError::Closed),
        Leave::Quit => {
            let _ = conn.writer.shutdown().await;
            last_words(&mut conn, &mut printer).await
        }
    }
}

/// The editing loop: typed lines to the server, the server's lines to the
/// screen, until one side ends.
async fn edit(
    conn: &mut Conn,
    editor: &mut Readline,
    screen: &mut SharedWriter,
    signals: &mut Signals,
    look: Look,
) -> Result<Leave, ClientError> {
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
                    conn.writer.write_all(&bytes).await.map_err(ClientError::Lost)?;
                    if quit {
                        return Ok(Leave::Quit);
                    }
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) => return leave(conn).await,
                Err(e) => return Err(ClientError::Terminal(e.to_string())),
            },
            () = next_signal(&mut signals.terminate) => return leave(conn).await,
            () = next_signal(&mut signals.hangup) => return leave(conn).await,
            read = read_piece(&mut conn.reader, &mut buf) => match read {
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
                    let _ = screen.write(&look.render(&buf, at_line_start));
                    at_line_start = buf.ends_with(b"\n");
                    buf.clear();
                }
                Ok(false) => return Ok(Leave::ServerClosed),
                Err(e) => return Err(ClientError::Lost(e)),
            },
        }
    }
}

/// Says `/quit` to the server, for Ctrl-D, Ctrl-C and signals.
async fn leave(conn: &mut Conn) -> Result<Leave, ClientError> {
    conn.writer
        .write_all(b"/quit\n")
        .await
        .map_err(ClientError::Lost)?;
    Ok(Leave::Quit)
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
async fn last_words(conn: &mut Conn, printer: &mut Printer) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + QUIT_WAIT;
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, read_piece(&mut conn.reader, &mut buf)).await {
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
    fn login_answers() {
        assert_eq!(
            login_answer("server: welcome alice (1 online, /help for help)"),
            LoginAnswer::Welcome
        );
        assert_eq!(
            login_answer("error: the name 'alice' is taken, choose another"),
            LoginAnswer::Refused("the name 'alice' is taken, choose another")
        );
        assert_eq!(login_answer("server: shutting down"), LoginAnswer::Notice);
        assert_eq!(login_answer("from bob: hi"), LoginAnswer::Other);
        assert_eq!(
            welcomed_name("server: welcome alice (1 online, /help for help)"),
            Some("alice")
        );
        assert_eq!(welcomed_name("server: bye"), None);
        assert_eq!(welcomed_name("from server: welcome x"), None);
        assert_eq!(prompt(Some("alice")), "alice> ");
        assert_eq!(prompt(None), "> ");
    }

    #[test]
    fn quit_is_recognised_as_the_server_does() {
        for quit in [&b"/quit\n"[..], b"  /quit now\n", b"/quit", b"\t/quit\r\n"] {
            assert!(is_quit(quit), "{quit:?}");
        }
        for other in [
            &b"/quitter\n"[..],
            b"bob: /quit\n",
            b"quit\n",
            b"/who\n",
            b"",
            b"  \n",
        ] {
            assert!(!is_quit(other), "{other:?}");
        }
    }

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

    #[test]
    fn terminal_mode_needs_a_terminal_on_both_sides() {
        assert_eq!(Mode::choose(true, true), Mode::Terminal);
        assert_eq!(Mode::choose(true, false), Mode::Pipe);
        assert_eq!(Mode::choose(false, true), Mode::Pipe);
        assert_eq!(Mode::choose(false, false), Mode::Pipe);
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

    #[test]
    fn exit_codes() {
        assert_eq!(
            ClientError::LoginRefused("taken".into()).exit_code(),
            EXIT_LOGIN_REFUSED
        );
        assert_eq!(ClientError::Closed.exit_code(), EXIT_CONNECTION);
        assert_ne!(EXIT_OK, EXIT_CONNECTION);
    }

    #[tokio::test]
    async fn pieces_end_at_newlines_or_at_the_cap() {
        let mut input = Vec::new();
        input.extend_from_slice(b"one\n");
        input.extend(std::iter::repeat_n(b'x', MAX_CHUNK + 10));
        input.extend_from_slice(b"\ntail");
        let mut reader = BufReader::new(&input[..]);
        let mut buf = Vec::new();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf, b"one\n");
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf.len(), MAX_CHUNK);
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf.len(), 11);
        buf.clear();
        assert!(read_piece(&mut reader, &mut buf).await.unwrap());
        assert_eq!(buf, b"tail");
        buf.clear();
        assert!(!read_piece(&mut reader, &mut buf).await.unwrap());
    }
}
