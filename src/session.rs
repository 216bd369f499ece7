//! The session: one actor per TCP connection.
//!
//! A session owns its socket, both directions. It reads lines, handles the
//! login itself, and turns every later read into one [`Route`] batch for the
//! broker. It writes what the broker [`Deliver`]s.
//!
//! Reading and writing are two small [`ActorFuture`]s spawned into the
//! actor's context (`ReadInput` and `WriteOutput`), which poll the socket
//! through the actor's own fields. This is what actix's `StreamHandler` and
//! `FramedWrite` would do, with three differences that matter here:
//! - **Flow control.** A session reads only with a [`Credit`] in hand (two
//!   per session) and sends it along with the batch; the broker drops it
//!   once the batch is handled. A client that floods is read at the
//!   broker's pace and TCP pushes back on it; its lines never pile up in
//!   memory. (A `StreamHandler` reads as fast as the socket allows.)
//! - **No idle buffers.** Reads go into one buffer per worker thread,
//!   borrowed for the length of one read; the output buffer exists only
//!   while there is output. An idle connection holds neither.
//! - **A capped outbox, and back-pressure to senders.** `FramedWrite`'s
//!   high-water mark never triggers on tokio sockets, which return `Pending`
//!   rather than `WouldBlock`; here the broker counts each session's
//!   unwritten bytes ([`Backlog`]) and evicts the session when they pass
//!   `--max-outbox-bytes`. Past half of that, the broker hands the session
//!   the credits of the senders filling it ([`Deliver::held`]); the session
//!   holds them until it has written its way back below half, so a flooder
//!   slows to its reader's pace. A session that holds credits and writes
//!   nothing at all for [`STALL_LIMIT`] is not reading: it cuts itself off,
//!   which frees its senders.
//!
//! Who writes what, so lines never overtake each other: before login the
//! session writes its own answers (nothing else writes to a connection that
//! is not logged in). From the login on, everything goes through the broker,
//! even the session's own error lines (as [`Op::Echo`](crate::messages::Op)),
//! because the broker's mailbox is the one place where all of a connection's
//! output is put in order.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{self, Poll, ready};
use std::time::Duration;

use actix::dev::RecipientRequest;
use actix::prelude::*;
use log::{debug, info, warn};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::line_reader::{Frame, LineReader};
use crate::messages::{
    Backlog, Batch, BrokerLink, ConnId, Connect, Control, Credit, DELIVER_OVERHEAD, Deliver,
    DrainGuard, Drained, Leave, LoginError, Name, NewPeer, Route, SessionLink,
};
use crate::protocol::{self, Command, Request};

/// Size of the per-thread read buffer: one read takes at most this much.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long a session may hold up senders (holding their credits, its
/// outbox more than half full) while writing nothing at all to its socket.
/// A reader that reads, however slowly, makes progress well within this;
/// one that does not is cut off as a slow consumer, so its senders are
/// held up no longer.
pub const STALL_LIMIT: Duration = Duration::from_millis(500);

/// Batches a session may have at the broker at once (see [`Credit`]): two,
/// so the next read overlaps the broker's work on the last one, while a
/// flooding client still has at most two reads' worth of input (128 KiB)
/// in the server.
const BATCHES_IN_FLIGHT: usize = 2;

thread_local! {
    /// The read buffer of this worker thread. Sessions on one arbiter run
    /// one at a time, and none holds it across an `.await`, so one buffer
    /// serves them all and an idle connection holds none.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_BYTES]);
}

/// Allocates this thread's read buffer now. Called once per worker at
/// start, so the buffer is part of the server's fixed footprint rather
/// than appearing with the first connection.
pub fn prepare_worker_thread() {
    READ_BUFFER.with_borrow(|buffer| debug_assert_eq!(buffer.len(), READ_BUFFER_BYTES));
}

/// The limits a session enforces; shared by all sessions of a server.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Longest accepted line, in bytes, terminator excluded.
    pub max_line_bytes: usize,
    /// Cap on output waiting to be written (pre-login; after login the
    /// broker enforces it).
    pub max_outbox_bytes: usize,
    /// How long a connection may take to log in.
    pub login_timeout: Duration,
    /// How long closing may take: flushing the last output and waiting
    /// for the client to close its side.
    pub close_timeout: Duration,
}

/// Held by a session for as long as it lives; dropping it frees the
/// connection's slot under `--max-connections` and tells the server one
/// session fewer is alive (the server waits for all of them at shutdown).
pub struct Permit {
    /// The slot under `--max-connections`.
    pub slot: tokio::sync::OwnedSemaphorePermit,
    /// A clone of the server's "sessions alive" sender.
    pub alive: tokio::sync::mpsc::Sender<()>,
}

/// Everything a session needs from the server besides its socket.
#[derive(Clone)]
pub struct SessionContext {
    /// The broker.
    pub broker: Arc<BrokerLink>,
    /// The limits.
    pub limits: Arc<SessionLimits>,
}

/// The session actor. See the module documentation.
pub struct Session {
    id: ConnId,
    stream: TcpStream,
    cx: SessionContext,
    /// Splits input into lines; holds an unfinished line between reads.
    lines: LineReader,
    state: State,
    /// What the input waits for, if anything.
    waiting: Option<Waiting>,
    /// Permits for batches at the broker ([`BATCHES_IN_FLIGHT`] in all).
    credit: Arc<Semaphore>,
    /// A permit taken for the next batch: held before reading, so input is
    /// only read when its batch may go out.
    permit: Option<OwnedSemaphorePermit>,
    /// Input read but not handled yet, from `unread_from` on: what came
    /// behind a name (it waits for the login's answer), or what did not fit
    /// in the last batch.
    unread: Vec<u8>,
    unread_from: usize,
    /// Why input ends, once it does (acted on when nothing is in flight).
    input_end: Option<InputEnd>,
    /// Whether [`ReadInput`] still runs.
    reading: bool,
    /// Set while draining input for shutdown, with how many more bytes the
    /// drain may read.
    drain: Option<(DrainGuard, usize)>,
    /// Output not yet written, from `written` on.
    outbox: Vec<u8>,
    written: usize,
    /// Whether [`WriteOutput`] runs.
    writing: bool,
    backlog: Backlog,
    /// Credits of senders held up until the backlog falls below half the
    /// cap, and the timer that cuts this session off if it takes too long.
    held_senders: Vec<Credit>,
    stall_timer: Option<SpawnHandle>,
    /// Closing: input stopped; flush, send FIN, wait for the client's.
    closing: bool,
    fin_sent: bool,
    /// Whether [`Leave`] was sent (it must be sent exactly once).
    left: bool,
    _permit: Permit,
}

enum State {
    LoggingIn { timer: SpawnHandle },
    Online { name: Name },
}

/// What the input waits for. Boxed: these futures are not `Unpin`.
enum Waiting {
    /// The broker's answer to a login (the name asked for).
    Login(Pin<Box<RecipientRequest<NewPeer>>>, String),
    /// A batch's credit to come back from the broker.
    Credit(Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>>>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputEnd {
    /// End of stream from the client.
    Eof,
    /// `/quit`.
    Quit,
    /// Shutdown: drained what was waiting.
    Drained,
}

impl Session {
    /// Starts a session for an accepted connection, on the current arbiter.
    ///
    /// The socket arrives as a `std` stream because a tokio socket stays
    /// tied to the runtime that registered it: it is registered here, on
    /// the worker that will own it.
    pub fn start(
        stream: std::net::TcpStream,
        peer: SocketAddr,
        id: ConnId,
        cx: SessionContext,
        permit: Permit,
    ) -> io::Result<Addr<Session>> {
        let stream = TcpStream::from_std(stream)?;
        // Output is batched already; Nagle would only add latency.
        stream.set_nodelay(true)?;
        info!("conn {id}: connected from {peer}");
        Ok(Session::create(move |ctx| {
            let timer = ctx.run_later(cx.limits.login_timeout, Session::login_timed_out);
            Session {
                id,
                stream,
                lines: LineReader::new(cx.limits.max_line_bytes),
                cx,
                state: State::LoggingIn { timer },
                waiting: None,
                credit: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT)),
                permit: None,
                unread: Vec::new(),
                unread_from: 0,
                input_end: None,
                reading: true,
                drain: None,
                outbox: Vec::new(),
                written: 0,
                writing: false,
                backlog: Backlog::default(),
                held_senders: Vec::new(),
                stall_timer: None,
                closing: false,
                fin_sent: false,
                left: false,
                _permit: permit,
            }
        }))
    }

    // ----- input -------------------------------------------------------

    /// Drives the input: takes a credit, reads, handles what was read, and
    /// again, until input ends. Polled by [`ReadInput`].
    ///
    /// Completes only when the session closes. After input has ended it
    /// stays pending on purpose: actix stops an actor whose spawned futures
    /// are all done and whose mailbox has no senders, and it checks that
    /// before looking at messages already queued. The broker drops its link
    /// right after queueing `Close`, so a finished reader would let the
    /// session stop with its last output and `Close` unread.
    fn poll_input(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        loop {
            if self.closing {
                return Poll::Ready(());
            }
            if !self.reading {
                return Poll::Pending;
            }
            if let Some(waiting) = &mut self.waiting {
                match waiting {
                    Waiting::Login(request, name) => {
                        let answer = ready!(request.as_mut().poll(task));
                        let name = std::mem::take(name);
                        self.waiting = None;
                        self.on_login_answer(answer, name, ctx);
                    }
                    Waiting::Credit(acquire) => {
                        let permit = ready!(acquire.as_mut().poll(task));
                        self.waiting = None;
                        match permit {
                            Ok(permit) => self.permit = Some(permit),
                            // Never closed while the session lives.
                            Err(_) => ctx.stop(),
                        }
                    }
                }
                continue;
            }
            if let Some(end) = self.input_end {
                self.end_input(end, ctx);
                continue;
            }
            if self.permit.is_none() {
                match self.credit.clone().try_acquire_owned() {
                    Ok(permit) => self.permit = Some(permit),
                    Err(_) => {
                        // Both batches are at the broker: wait for one.
                        let acquire = self.credit.clone().acquire_owned();
                        self.waiting = Some(Waiting::Credit(Box::pin(acquire)));
                    }
                }
                continue;
            }
            if self.unread_from < self.unread.len() {
                let unread = std::mem::take(&mut self.unread);
                let used = self.consume(&unread[self.unread_from..], ctx);
                self.unread_from += used;
                if self.unread_from < unread.len() {
                    self.unread = unread;
                } else {
                    self.unread_from = 0;
                }
                continue;
            }
            if self.drain.is_some() {
                self.drain_socket(ctx);
                continue;
            }
            let read = READ_BUFFER.with_borrow_mut(|buffer| {
                let mut buf = ReadBuf::new(buffer);
                let result = ready!(Pin::new(&mut self.stream).poll_read(task, &mut buf));
                let n = buf.filled().len();
                Poll::Ready(result.map(|()| {
                    self.consume_read(&buffer[..n], ctx);
                    n
                }))
            });
            match ready!(read) {
                Ok(0) => self.input_end = Some(InputEnd::Eof),
                Ok(_) => {}
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
    /// Reads at most the socket's receive buffer size, so a client that
    /// keeps sending cannot hold the shutdown up. Returns to
    /// [`Session::poll_input`] whenever it needs a credit or a login answer.
    fn drain_socket(&mut self, ctx: &mut Context<Self>) {
        let result = READ_BUFFER.with_borrow_mut(|buffer| {
            loop {
                let budget = self.drain.as_ref().map_or(0, |(_, budget)| *budget);
                if budget == 0 {
                    self.input_end = Some(InputEnd::Drained);
                }
                if self.permit.is_none()
                    || self.waiting.is_some()
                    || self.input_end.is_some()
                    || self.unread_from < self.unread.len()
                {
                    return Ok(());
                }
                let want = budget.min(buffer.len());
                let read = (&*socket2::SockRef::from(&self.stream)).read(&mut buffer[..want]);
                match read {
                    Ok(0) => self.input_end = Some(InputEnd::Eof),
                    Ok(n) => {
                        if let Some((_, budget)) = &mut self.drain {
                            *budget -= n;
                        }
                        self.consume_read(&buffer[..n], ctx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.input_end = Some(InputEnd::Drained);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        if let Err(e) = result {
            debug!("conn {}: read error while draining: {e}", self.id);
            self.input_end = Some(InputEnd::Drained);
        }
    }

    /// Handles a chunk fresh from the socket; what it cannot handle now is
    /// kept in `unread` (the read buffer is shared by the worker's sessions).
    fn consume_read(&mut self, input: &[u8], ctx: &mut Context<Self>) {
        let used = self.consume(input, ctx);
        if used < input.len() {
            self.unread.clear();
            self.unread.extend_from_slice(&input[used..]);
            self.unread_from = 0;
        }
    }

    /// Handles input (with a credit in hand) and returns how much of it was
    /// used. Stops early when a login request goes out (what follows the
    /// name waits for the answer), when the batch is full (a batch's output
    /// is bounded, see [`Session::batch_limit`]), or when input ends
    /// (`/quit`: the rest is dropped, so it counts as used).
    fn consume(&mut self, input: &[u8], ctx: &mut Context<Self>) -> usize {
        let mut rest = input;
        // Taken out for the loop: frames borrow it while `self` changes.
        let mut lines = std::mem::replace(&mut self.lines, LineReader::new(0));
        let batch_limit = self.batch_limit();
        let mut batch = match self.state {
            State::Online { .. } => Batch::for_input(input.len().min(batch_limit)),
            State::LoggingIn { .. } => Batch::new(),
        };
        while let Some(frame) = lines.next_frame(&mut rest) {
            match &self.state {
                State::LoggingIn { .. } => {
                    if self.on_login_frame(frame, ctx) {
                        break;
                    }
                }
                State::Online { name } => {
                    let limit = self.cx.limits.max_line_bytes;
                    if let Some(end) = on_frame(frame, name, limit, &mut batch) {
                        self.input_end = Some(end);
                        rest = &[];
                        break;
                    }
                    if batch.output_len() >= batch_limit {
                        break;
                    }
                }
            }
            if self.input_end.is_some() || self.closing {
                rest = &[];
                break;
            }
        }
        self.lines = lines;
        if !batch.is_empty() {
            // The permit taken before the read goes with the batch; the
            // next read takes a new one.
            let credit = self
                .permit
                .take()
                .map_or_else(Credit::unlimited, Credit::new);
            self.cx.broker.route.do_send(Route {
                from: self.id,
                batch,
                credit,
            });
        }
        input.len() - rest.len()
    }

    /// The most output one batch may produce for one recipient: a sender
    /// has up to [`BATCHES_IN_FLIGHT`] batches at the broker, and they must
    /// fit, several senders' worth, in the half of a recipient's outbox
    /// above the point where senders are held up. (Output can be ten times
    /// the input: `b:x` becomes `from <a 32-character name>: x`.)
    fn batch_limit(&self) -> usize {
        (self.cx.limits.max_outbox_bytes / 8).clamp(1, READ_BUFFER_BYTES)
    }

    /// Handles a frame before login. Returns whether a login request went
    /// out.
    fn on_login_frame(&mut self, frame: Frame<'_>, ctx: &mut Context<Self>) -> bool {
        let line = match frame {
            Frame::Line(line) => line.trim(),
            Frame::TooLong => {
                self.reply_error(too_long(self.cx.limits.max_line_bytes), ctx);
                return false;
            }
            Frame::NotUtf8 => {
                self.reply_error(NOT_UTF8, ctx);
                return false;
            }
        };
        if line.is_empty() {
            return false;
        }
        // A name cannot contain '/', so these are commands, not names.
        if line.starts_with('/') {
            match protocol::parse_request(line) {
                Ok(Request::Command(Command::Quit)) => self.input_end = Some(InputEnd::Quit),
                Ok(Request::Command(Command::Help)) => {
                    self.reply(ctx, |out| {
                        protocol::write_server(out, "first send your name to log in");
                        for line in protocol::HELP {
                            protocol::write_server(out, line);
                        }
                    });
                }
                _ => self.reply_error("log in first: send your name", ctx),
            }
            return false;
        }
        match protocol::validate_name(line) {
            Ok(()) => {
                let name = line.to_owned();
                let request = self.cx.broker.new_peer.send(NewPeer {
                    id: self.id,
                    name: name.clone(),
                });
                self.waiting = Some(Waiting::Login(Box::pin(request), name));
                true
            }
            Err(e) => {
                self.reply_error(format_args!("invalid name: {e}; send another name"), ctx);
                false
            }
        }
    }

    fn on_login_answer(
        &mut self,
        answer: Result<Result<(), LoginError>, MailboxError>,
        name: String,
        ctx: &mut Context<Self>,
    ) {
        match answer {
            Ok(Ok(())) => {
                let State::LoggingIn { timer } = &self.state else {
                    return;
                };
                ctx.cancel_future(*timer);
                self.state = State::Online {
                    name: Arc::from(name),
                };
            }
            Ok(Err(refused)) => self.reply_error(refused, ctx),
            Err(_) => ctx.stop(),
        }
    }

    /// Acts on the end of input. Messages to the broker arrive in the
    /// order they were sent, so what follows comes after every batch read
    /// before it.
    fn end_input(&mut self, end: InputEnd, ctx: &mut Context<Self>) {
        self.reading = false;
        if end == InputEnd::Drained {
            // Shutdown phase one done for this session; `Goodbye` follows.
            if let Some((guard, _)) = self.drain.take() {
                self.cx.broker.drained.do_send(Drained { guard });
            }
            return;
        }
        if matches!(self.state, State::Online { .. }) {
            // The broker removes the peer and answers `Close`, behind the
            // last output it has for us.
            self.leave(if end == InputEnd::Quit {
                Some("bye")
            } else {
                None
            });
        } else {
            if end == InputEnd::Quit {
                self.reply(ctx, |out| protocol::write_server(out, "bye"));
            }
            self.begin_close(ctx);
        }
    }

    fn leave(&mut self, farewell: Option<&'static str>) {
        if !self.left {
            self.left = true;
            self.cx.broker.leave.do_send(Leave {
                id: self.id,
                farewell,
            });
        }
    }

    fn login_timed_out(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let timeout = self.cx.limits.login_timeout;
        info!("conn {}: no login within {timeout:?}, closing", self.id);
        self.reply_error(
            format_args!("no login within {}, closing", humanize(timeout)),
            ctx,
        );
        self.begin_close(ctx);
    }

    // ----- output ------------------------------------------------------

    /// Writes a line of the session's own (before login only: afterwards
    /// all output goes through the broker, in order).
    fn reply(&mut self, ctx: &mut Context<Self>, write: impl FnOnce(&mut Vec<u8>)) {
        let before = self.outbox.len();
        write(&mut self.outbox);
        let total = self.backlog.add(self.outbox.len() - before);
        if total > self.cx.limits.max_outbox_bytes {
            info!(
                "conn {}: disconnected as a slow consumer before login ({total} bytes unwritten)",
                self.id
            );
            ctx.stop();
            return;
        }
        self.start_writing(ctx);
    }

    fn reply_error(&mut self, text: impl std::fmt::Display, ctx: &mut Context<Self>) {
        self.reply(ctx, |out| protocol::write_error(out, text));
    }

    fn start_writing(&mut self, ctx: &mut Context<Self>) {
        if !self.writing {
            self.writing = true;
            ctx.spawn(WriteOutput);
        }
    }

    /// Writes the outbox; when closing, then sends FIN and waits for the
    /// client's. Polled by [`WriteOutput`].
    fn poll_output(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        while self.written < self.outbox.len() {
            let unwritten = &self.outbox[self.written..];
            match ready!(Pin::new(&mut self.stream).poll_write(task, unwritten)) {
                Ok(n) => {
                    self.written += n;
                    self.backlog.sub(n);
                    self.release_held(ctx);
                }
                Err(e) => {
                    debug!("conn {}: write error: {e}", self.id);
                    ctx.stop();
                    return Poll::Ready(());
                }
            }
        }
        // All written: drop the buffer, an idle connection holds none.
        self.outbox = Vec::new();
        self.written = 0;
        if !self.closing {
            self.writing = false;
            return Poll::Ready(());
        }
        if !self.fin_sent {
            // Errors here mean the client is gone already: stop below.
            let _ = ready!(Pin::new(&mut self.stream).poll_shutdown(task));
            self.fin_sent = true;
        }
        // Read until the client closes too. Closing a socket with unread
        // input makes the kernel send a reset, which can destroy the last
        // lines on their way to the client.
        let read = READ_BUFFER.with_borrow_mut(|buffer| {
            loop {
                let mut buf = ReadBuf::new(buffer);
                match ready!(Pin::new(&mut self.stream).poll_read(task, &mut buf)) {
                    Ok(()) if !buf.filled().is_empty() => continue,
                    _ => return Poll::Ready(()),
                }
            }
        });
        ready!(read);
        ctx.stop();
        Poll::Ready(())
    }

    /// After the socket took some output: lets held-up senders go once the
    /// backlog is below half the cap, or else restarts the stall clock
    /// (this session is reading, only slowly: it is not cut off for that).
    fn release_held(&mut self, ctx: &mut Context<Self>) {
        if self.held_senders.is_empty() {
            return;
        }
        if self.backlog.get() < self.cx.limits.max_outbox_bytes / 2 {
            self.held_senders.clear();
            if let Some(timer) = self.stall_timer.take() {
                ctx.cancel_future(timer);
            }
        } else {
            self.start_stall_clock(ctx);
        }
    }

    /// Holds senders' credits (see [`Deliver::held`]), and starts the clock
    /// on how long this session may hold them without writing anything.
    fn hold(&mut self, credits: Vec<Credit>, ctx: &mut Context<Self>) {
        if credits.is_empty() {
            return;
        }
        self.held_senders.extend(credits);
        if self.stall_timer.is_none() {
            self.start_stall_clock(ctx);
        }
    }

    /// (Re)starts the clock: a session that holds senders up and writes
    /// nothing for [`STALL_LIMIT`] has stopped reading, and is cut off.
    fn start_stall_clock(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.stall_timer.take() {
            ctx.cancel_future(timer);
        }
        self.stall_timer = Some(ctx.run_later(STALL_LIMIT, |session, ctx| {
            session.stall_timer = None;
            if !session.held_senders.is_empty() {
                warn!(
                    "conn {}: disconnected as a slow consumer (held up its senders and wrote nothing \
                     for {STALL_LIMIT:?}, {} bytes unwritten)",
                    session.id,
                    session.backlog.get()
                );
                ctx.stop();
            }
        }));
    }

    /// Stops input, flushes output, closes (bounded by `close_timeout`).
    fn begin_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.reading = false;
        self.drain = None;
        // A writer that is running sees `closing` when it has written all.
        self.start_writing(ctx);
        ctx.run_later(self.cx.limits.close_timeout, |session, ctx| {
            debug!("conn {}: close timed out", session.id);
            ctx.stop();
        });
    }
}

/// Handles a frame after login: adds it to the batch. Returns how input
/// ends if it does (`/quit`).
fn on_frame(
    frame: Frame<'_>,
    name: &str,
    max_line_bytes: usize,
    batch: &mut Batch,
) -> Option<InputEnd> {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::TooLong => {
            batch.push_echo(|out| protocol::write_error(out, too_long(max_line_bytes)));
            return None;
        }
        Frame::NotUtf8 => {
            batch.push_echo(|out| protocol::write_error(out, NOT_UTF8));
            return None;
        }
    };
    match protocol::parse_request(line) {
        Ok(Request::Blank) => {}
        Ok(Request::Chat(chat)) => batch.push_chat(name, &chat),
        Ok(Request::Command(Command::Who)) => batch.push_who(),
        Ok(Request::Command(Command::Help)) => batch.push_echo(|out| {
            for line in protocol::HELP {
                protocol::write_server(out, line);
            }
        }),
        Ok(Request::Command(Command::Quit)) => return Some(InputEnd::Quit),
        Err(e) => batch.push_echo(|out| protocol::write_error(out, e)),
    }
    None
}

const NOT_UTF8: &str = "line is not valid UTF-8, ignored";

fn too_long(limit: usize) -> String {
    format!("line too long (the limit is {limit} bytes), ignored")
}

/// `30s`, `1.5s` or `500ms`.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.cx.broker.connect.do_send(Connect {
            id: self.id,
            session: SessionLink::new(&ctx.address()),
            backlog: self.backlog.clone(),
        });
        ctx.spawn(ReadInput);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Every way a session ends passes here, so the broker always hears.
        self.leave(None);
        debug!("conn {}: closed", self.id);
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.backlog.sub(DELIVER_OVERHEAD);
        let Deliver { bytes, held } = msg;
        self.hold(held, ctx);
        if self.outbox.is_empty() {
            self.outbox = bytes;
            self.written = 0;
        } else {
            if self.written > self.outbox.len() / 2 {
                // Reclaim the written front before growing.
                self.outbox.drain(..self.written);
                self.written = 0;
            }
            self.outbox.extend_from_slice(&bytes);
        }
        self.start_writing(ctx);
    }
}

impl Handler<Control> for Session {
    type Result = ();

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) {
        match msg {
            Control::Evict => ctx.stop(),
            Control::Close => self.begin_close(ctx),
            Control::Drain(guard) => {
                if self.reading && !self.closing {
                    // Whatever arrived before now fits in the receive
                    // buffer; more than that arrived after the signal.
                    let socket = socket2::SockRef::from(&self.stream);
                    let budget = socket.recv_buffer_size().unwrap_or(READ_BUFFER_BYTES);
                    self.drain = Some((guard, budget));
                }
            }
            Control::Goodbye => {
                self.reply(ctx, |out| protocol::write_server(out, "shutting down"));
                self.begin_close(ctx);
            }
        }
    }
}

/// The input side of a session, as a future of the actor's context.
struct ReadInput;

impl ActorFuture<Session> for ReadInput {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        session: &mut Session,
        ctx: &mut Context<Session>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        session.poll_input(ctx, task)
    }
}

/// The output side of a session, as a future of the actor's context.
struct WriteOutput;

impl ActorFuture<Session> for WriteOutput {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        session: &mut Session,
        ctx: &mut Context<Session>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        session.poll_output(ctx, task)
    }
}
