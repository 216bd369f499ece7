//! The harness of the `client` tests: the achat-client binary run with
//! piped standard streams ([`run_client`], [`Running`]) or in a
//! pseudo-terminal whose screen a terminal emulator keeps ([`Tty`]).

use std::io::Read as _;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::util::WAIT;

pub(crate) const CLIENT: &str = env!("CARGO_BIN_EXE_achat-client");

/// What a finished client left behind.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    pub(crate) fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {:?}", self.status))
    }

    /// The client's own voice: at most one line, never a panic.
    pub(crate) fn assert_one_clean_line(&self) {
        assert!(
            self.stderr.lines().count() <= 1,
            "more than one line on stderr: {:?}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
    }
}

pub(crate) fn client(args: &[&str]) -> Command {
    let mut command = Command::new(CLIENT);
    command
        .args(args)
        .env_remove("NO_COLOR")
        // Hermetic: a password only where a test gives one.
        .env_remove("ACHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs the client with `input` on its standard input (then closed) and
/// waits for it to exit.
pub(crate) async fn run_client(args: &[&str], input: &[u8]) -> Finished {
    run_command(client(args), input).await
}

/// [`run_client`] for a command set up by the caller (with [`client`]).
pub(crate) async fn run_command(mut command: Command, input: &[u8]) -> Finished {
    let mut child = command.spawn().expect("run achat-client");
    let mut stdin = child.stdin.take().unwrap();
    // The client may exit without reading (a refused login): a broken
    // pipe here is fine.
    let _ = stdin.write_all(input).await;
    drop(stdin);
    finish(child).await
}

pub(crate) async fn finish(child: Child) -> Finished {
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the client did not exit in time")
        .unwrap();
    Finished {
        status: output.status,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A client left running, its input open.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    pub(crate) fn spawn(args: &[&str]) -> Running {
        let mut child = client(args).spawn().expect("run achat-client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Running {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) async fn expect_prefix(&mut self, prefix: &str) {
        let line = tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .expect("the client printed nothing in time")
            .unwrap()
            .expect("the client's output ended");
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}..., got {line:?}"
        );
    }

    /// Waits for the exit; what is left of stdout comes after the lines
    /// already read.
    pub(crate) async fn finish(mut self) -> Finished {
        let mut stderr = self.child.stderr.take().unwrap();
        let rest = async {
            let mut out = String::new();
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                out.push_str(&line);
                out.push('\n');
            }
            let mut err = String::new();
            stderr.read_to_string(&mut err).await.unwrap();
            let status = self.child.wait().await.unwrap();
            drop(self.stdin);
            Finished {
                status,
                stdout: out,
                stderr: err,
            }
        };
        tokio::time::timeout(WAIT, rest)
            .await
            .expect("the client did not exit in time")
    }
}

pub(crate) fn addr_arg(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The client in a pseudo-terminal, its output fed to a terminal emulator
/// (vt100) so the test sees the screen a person would.
pub(crate) struct Tty {
    pub(crate) session: expectrl::session::OsSession,
    pub(crate) output: std::sync::mpsc::Receiver<Vec<u8>>,
    pub(crate) screen: vt100::Parser,
    pub(crate) ended: bool,
}

impl Tty {
    pub(crate) const ROWS: u16 = 24;
    pub(crate) const COLS: u16 = 80;

    pub(crate) fn spawn(args: &[&str]) -> Tty {
        let mut command = std::process::Command::new(CLIENT);
        command
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("ACHAT_PASSWORD")
            .env("TERM", "xterm-256color");
        let mut session = expectrl::Session::spawn(command).expect("spawn in a pty");
        session
            .get_process_mut()
            .set_window_size(Self::COLS, Self::ROWS)
            .unwrap();
        let mut pty = session.get_process().get_raw_handle().unwrap();
        let (tx, output) = std::sync::mpsc::channel();
        // A blocking reader on its own thread; the test waits on the
        // channel with a deadline. It ends when the client has exited.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pty.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Tty {
            session,
            output,
            screen: vt100::Parser::new(
                NonZeroU16::new(Self::ROWS).unwrap(),
                NonZeroU16::new(Self::COLS).unwrap(),
                0,
            ),
            ended: false,
        }
    }

    pub(crate) fn type_keys(&mut self, keys: &str) {
        use expectrl::Expect as _;
        self.session.send(keys).unwrap();
    }

    pub(crate) fn rows(&self) -> Vec<String> {
        self.screen.screen().rows(0, Self::COLS).collect()
    }

    /// Feeds output to the emulator until `done` holds for the screen.
    pub(crate) fn wait_for(&mut self, what: &str, done: impl Fn(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self.screen.screen()) {
            if self.ended {
                panic!(
                    "the client exited before {what}; screen:\n{}",
                    self.screen.screen().contents()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.screen.process(&bytes),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for {what}; screen:\n{}",
                    self.screen.screen().contents()
                ),
            }
        }
    }

    /// Marks the terminal's settings while the client has it in raw mode
    /// (echo on: the pty starts without echo, raw mode has none), so that
    /// [`Tty::assert_terminal_restored`] can tell they were put back.
    pub(crate) fn mark_raw_mode(&mut self) {
        self.session.get_process_mut().set_echo(true, None).unwrap();
    }

    /// The settings the client found are back: the mark is gone.
    pub(crate) fn assert_terminal_restored(&self) {
        assert!(
            !self.session.get_process().get_echo().unwrap(),
            "the client did not restore the terminal's settings"
        );
    }

    /// Waits for the client to exit (its output ends), returns its status.
    pub(crate) fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.screen.process(&bytes),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the client did not exit; screen:\n{}",
                    self.screen.screen().contents()
                ),
            }
        }
        match self.session.get_process().wait().unwrap() {
            expectrl::process::unix::WaitStatus::Exited(_, code) => code,
            other => panic!("the client did not exit normally: {other:?}"),
        }
    }
}

/// The row the cursor is on, and the cursor's column.
pub(crate) fn cursor_row(screen: &vt100::Screen) -> (String, u16) {
    let (row, col) = screen.cursor_position();
    let text = screen
        .rows(0, Tty::COLS)
        .nth(usize::from(row))
        .unwrap_or_default();
    (text, col)
}
