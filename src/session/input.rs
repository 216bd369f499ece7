//! A session's input: reading the socket with a credit in hand, handing
//! what was read to the login exchange (`login.rs`) or to the batch for
//! the broker (`chat.rs`), the shutdown's drain, and the end of input.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{self, Poll, ready};

use actix::prelude::*;
use log::debug;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use super::credits::Credits;
use super::turn::Turn;
use super::{Phase, Session};
use crate::line_reader::LineReader;
use crate::messages::{DrainGuard, Drained, LeaveReason};
use crate::protocol::Reply;

/// Size of the per-thread read buffer: one read takes at most this much.
pub(super) const READ_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    /// The read buffer of this worker thread. Sessions on one arbiter run
    /// one at a time, and none holds it across an `.await`, so one buffer
    /// serves them all and an idle connection holds none.
    pub(super) static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_BYTES]);
}

/// Allocates this thread's read buffer now. Called once per worker at
/// start, so the buffer is part of the server's fixed footprint rather
/// than appearing with the first connection.
pub fn prepare_worker_thread() {
    READ_BUFFER.with_borrow(|buffer| debug_assert_eq!(buffer.len(), READ_BUFFER_BYTES));
}

/// The input side's state: what has been read and not handled, the
/// credits, and whether input goes on.
pub(super) struct Input {
    /// Splits input into lines; holds an unfinished line between reads.
    pub(super) lines: LineReader,
    /// Input read but not handled yet: what came behind a name (it waits
    /// for the login's answer), or what did not fit in the last batch.
    unread: Unread,
    pub(super) credits: Credits,
    state: InputState,
    /// Set when the session gave up its turn on the worker; it reads again
    /// once the turn has come round.
    turn: Option<Turn>,
}

/// Whether input goes on, and if not, why.
enum InputState {
    /// Reading the socket as data arrives.
    Open,
    /// Shutdown, phase one: reading what is waiting in the socket, at most
    /// `budget` more bytes, then stopping.
    Draining { guard: DrainGuard, budget: usize },
    /// Input has ended; acted on ([`Session::end_input`]) once nothing is
    /// in flight. A drain guard, if one was held, goes back after that.
    Ended {
        why: InputEnd,
        guard: Option<DrainGuard>,
    },
    /// Nothing more is read.
    Over,
}

/// Why input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InputEnd {
    /// End of stream from the client.
    Eof,
    /// `/quit`.
    Quit,
    /// Shutdown: drained what was waiting.
    Drained,
}

/// Bytes read but not handled yet, from `from` on.
#[derive(Default)]
struct Unread {
    bytes: Vec<u8>,
    from: usize,
}

impl Input {
    pub(super) fn new(max_line_bytes: usize) -> Self {
        Input {
            lines: LineReader::new(max_line_bytes),
            unread: Unread::default(),
            credits: Credits::new(),
            state: InputState::Open,
            turn: None,
        }
    }

    /// Input has ended for `why`: remembered, with the drain guard if one
    /// is held, to be acted on once nothing is in flight.
    pub(super) fn end(&mut self, why: InputEnd) {
        let guard = match std::mem::replace(&mut self.state, InputState::Over) {
            InputState::Draining { guard, .. } => Some(guard),
            InputState::Ended { guard, .. } => guard,
            InputState::Open | InputState::Over => None,
        };
        self.state = InputState::Ended { why, guard };
    }

    /// Nothing more is read (the session closes); a drain guard goes back.
    pub(super) fn stop(&mut self) {
        self.state = InputState::Over;
    }

    /// Shutdown, phase one, for this session: read what is waiting, then
    /// stop. Whatever arrived before now fits in the socket's receive
    /// buffer; more than that arrived after the signal. A session whose
    /// input has already ended drops the guard at once.
    /// (A WebSocket, with no socket of its own, drains a read buffer's
    /// worth.)
    pub(super) fn drain(&mut self, guard: DrainGuard, stream: Option<&TcpStream>) {
        if matches!(self.state, InputState::Open) {
            let budget = stream
                .and_then(|tcp| socket2::SockRef::from(tcp).recv_buffer_size().ok())
                .unwrap_or(READ_BUFFER_BYTES);
            self.state = InputState::Draining { guard, budget };
        }
    }
}

impl Session {
    /// Drives the input: takes a credit, reads, handles what was read, and
    /// again, until input ends. Polled by `READ_INPUT`.
    ///
    /// Completes only when the session closes. After input has ended it
    /// stays pending on purpose: actix stops an actor whose spawned futures
    /// are all done and whose mailbox has no senders, and it checks that
    /// before looking at messages already queued. The broker drops its link
    /// right after queueing `Close`, so a finished reader would let the
    /// session stop with its last output and `Close` unread.
    pub(super) fn poll_input(
        &mut self,
        ctx: &mut Context<Self>,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        let mut turn_budget = READ_BUFFER_BYTES;
        loop {
            if matches!(self.phase, Phase::Closing(_)) {
                return Poll::Ready(());
            }
            if matches!(self.input.state, InputState::Over) {
                return Poll::Pending;
            }
            if let Some(turn) = &self.input.turn {
                if !turn.has_come() {
                    return Poll::Pending;
                }
                self.input.turn = None;
            }
            // A login step or an account command being decided: what
            // follows waits for its answer.
            if ready!(self.poll_answer(ctx, task_cx)) {
                continue;
            }
            if matches!(self.input.state, InputState::Ended { .. }) {
                self.end_input(ctx);
                continue;
            }
            if ready!(self.input.credits.poll_ready(task_cx)).is_err() {
                ctx.stop();
                return Poll::Ready(());
            }
            if self.input.unread.from < self.input.unread.bytes.len() {
                let unread = std::mem::take(&mut self.input.unread.bytes);
                let from = self.input.unread.from;
                let used = self.consume(&unread[from..], ctx);
                if from + used < unread.len() {
                    self.input.unread = Unread {
                        bytes: unread,
                        from: from + used,
                    };
                } else {
                    self.input.unread = Unread::default();
                }
                continue;
            }
            if matches!(self.input.state, InputState::Draining { .. }) {
                self.drain_socket(ctx);
                continue;
            }
            let read = READ_BUFFER.with_borrow_mut(|buffer| {
                let mut buf = ReadBuf::new(buffer);
                let result = ready!(Pin::new(&mut self.stream).poll_read(task_cx, &mut buf));
                let n = buf.filled().len();
                self.count_read(n);
                Poll::Ready(result.map(|()| {
                    self.consume_read(&buffer[..n], ctx);
                    n
                }))
            });
            match ready!(read) {
                Ok(0) => self.input.end(InputEnd::Eof),
                Ok(n) => {
                    // A buffer's worth handled in this turn: the worker's
                    // other sessions have theirs first (see `turn.rs`).
                    turn_budget = turn_budget.saturating_sub(n);
                    if turn_budget == 0 {
                        self.input.turn = Some(Turn::give_up(task_cx));
                        return Poll::Pending;
                    }
                }
                Err(e) => {
                    debug!("conn {}: read error: {e}", self.id);
                    ctx.stop();
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Shutdown, phase one: read what is waiting in the socket right now,
    /// with real system calls (tokio's cached readiness could miss bytes
    /// that arrived since the reactor last looked), then stop reading.
    /// Reads at most the budget, so a client that keeps sending cannot hold
    /// the shutdown up. Returns to [`Session::poll_input`] whenever it
    /// needs a credit or a login answer.
    fn drain_socket(&mut self, ctx: &mut Context<Self>) {
        let result = READ_BUFFER.with_borrow_mut(|buffer| {
            loop {
                let InputState::Draining { budget, .. } = self.input.state else {
                    return Ok(());
                };
                if budget == 0 {
                    self.input.end(InputEnd::Drained);
                    return Ok(());
                }
                if !self.input.credits.is_held()
                    || self.awaiting_answer()
                    || self.input.unread.from < self.input.unread.bytes.len()
                {
                    return Ok(());
                }
                let want = budget.min(buffer.len());
                let read = self.stream.read_now(&mut buffer[..want]);
                match read {
                    Ok(0) => self.input.end(InputEnd::Eof),
                    Ok(n) => {
                        self.count_read(n);
                        if let InputState::Draining { budget, .. } = &mut self.input.state {
                            *budget -= n;
                        }
                        self.consume_read(&buffer[..n], ctx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.input.end(InputEnd::Drained);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        if let Err(e) = result {
            debug!("conn {}: read error while draining: {e}", self.id);
            self.input.end(InputEnd::Drained);
        }
    }

    /// Counts `n` bytes read (for `/metrics`).
    fn count_read(&self, n: usize) {
        self.counts
            .bytes_read
            .of(self.stream.transport())
            .add(n as u64);
    }

    /// Handles a chunk fresh from the socket; what it cannot handle now is
    /// kept as unread (the read buffer is shared by the worker's sessions).
    fn consume_read(&mut self, input: &[u8], ctx: &mut Context<Self>) {
        let used = self.consume(input, ctx);
        if used < input.len() {
            self.input.unread = Unread {
                bytes: input[used..].to_vec(),
                from: 0,
            };
        }
    }

    /// Handles input (with a credit in hand) and returns how much of it was
    /// used: all of it, or up to where a login request went out (what
    /// follows the name waits for the answer), or up to where the batch was
    /// full (see [`Session::batch_limit`]). What follows the end of input
    /// (`/quit`) is dropped, so it counts as used.
    fn consume(&mut self, input: &[u8], ctx: &mut Context<Self>) -> usize {
        match self.phase {
            Phase::Online { .. } => self.consume_online(input),
            Phase::LoggingIn { .. } => self.consume_login(input, ctx),
            Phase::Closing(_) => input.len(),
        }
    }

    /// Acts on the end of input. Messages to the broker arrive in the
    /// order they were sent, so what follows comes after every batch read
    /// before it.
    fn end_input(&mut self, ctx: &mut Context<Self>) {
        let InputState::Ended { why, guard } =
            std::mem::replace(&mut self.input.state, InputState::Over)
        else {
            return;
        };
        match (why, &self.phase) {
            // Shutdown phase one done for this session; `Goodbye` follows.
            (InputEnd::Drained, _) => {}
            // The broker removes the peer and answers `Close`, behind the
            // last output it has for us.
            (InputEnd::Quit, Phase::Online { .. }) => self.leave(LeaveReason::Quit),
            (InputEnd::Eof, Phase::Online { .. }) => self.leave(LeaveReason::Gone),
            (InputEnd::Quit, _) => {
                self.reply(&Reply::Bye, ctx);
                self.begin_close(ctx);
            }
            (InputEnd::Eof, _) => self.begin_close(ctx),
        }
        // Behind everything the session sent about its input.
        if let Some(guard) = guard {
            self.env.broker.drained.do_send(Drained { guard });
        }
    }
}
