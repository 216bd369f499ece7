//! A session's output: the [`Outbox`] of bytes not yet written, the
//! credits of senders it holds up, writing to the socket, and closing.
//!
//! This mirrors the broker's side of the same bytes
//! ([`Outbound`](crate::broker)): the broker queues output for a peer and
//! counts it in the peer's [`Backlog`]; the session writes it and counts
//! it out again.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{self, Poll, ready};
use std::time::Duration;

use actix::prelude::*;
use log::{debug, info, warn};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::input::READ_BUFFER;
use super::{CloseStep, Phase, Session, WRITE_OUTPUT};
use crate::messages::{Backlog, Credit, DELIVER_OVERHEAD};
use crate::metrics::CutOff;
use crate::protocol::Reply;

/// How long a session may hold up senders (holding their credits, its
/// outbox more than half full) while writing nothing at all to its socket.
/// A reader that reads, however slowly, makes progress well within this;
/// one that does not is cut off as a slow consumer, so its senders are
/// held up no longer.
pub const STALL_LIMIT: Duration = Duration::from_millis(500);

/// How long a closing session waits, after its last byte is written and
/// its FIN sent, for the client to close its side. Closing with input
/// unread makes the kernel send a reset, which can destroy the last lines
/// on their way; waiting for the client's FIN avoids that. A client that
/// keeps its side open (`nc` at a prompt, say) is closed after this.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The bytes handed to a session and not yet written, with their
/// accounting.
#[derive(Default)]
pub(super) struct Outbox {
    /// Output not yet written, in the pieces it came in, the first from
    /// `written` on. Pieces, not one growing buffer: a reader that stops
    /// then costs what it was sent, not up to twice that (a growing
    /// buffer doubles its capacity), and nothing is copied to append.
    chunks: VecDeque<Vec<u8>>,
    written: usize,
    /// Bytes handed to this session and not yet written, shared with the
    /// broker, which checks it against the cap.
    backlog: Backlog,
    /// Credits of senders held up until the backlog falls below half the
    /// cap, and the timer that cuts this session off if it takes too long.
    held: Vec<Credit>,
    stall_timer: Option<SpawnHandle>,
    /// Bytes written to the socket in all, and of those, how many the
    /// client had acknowledged when the stall clock was last started: the
    /// reader's progress (see `Session::start_stall_clock`).
    written_total: u64,
    acknowledged_seen: u64,
    /// Whether a `WRITE_OUTPUT` future is running.
    writer_running: bool,
}

impl Outbox {
    /// The accounting shared with the broker.
    pub(super) fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Appends output from the broker (counted in the backlog already).
    pub(super) fn append(&mut self, bytes: Vec<u8>) {
        self.backlog.sub(DELIVER_OVERHEAD);
        self.push(bytes);
    }

    /// Appends a reply of the session's own; returns the backlog with it.
    fn push_reply(&mut self, reply: &Reply<'_>) -> usize {
        let bytes = reply.to_bytes();
        let total = self.backlog.add(bytes.len());
        self.push(bytes);
        total
    }

    /// Queues a piece. A small one is copied onto the last piece while
    /// that is short: a reader sent thousands of one-line deliveries (a
    /// broadcast's copies) would otherwise be written [`WRITE_SLICES`]
    /// lines per system call.
    fn push(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(back) = self.chunks.back_mut()
            && bytes.len() < SMALL_PIECE
            && back.len() < COALESCE_UP_TO
        {
            back.extend_from_slice(&bytes);
            return;
        }
        self.chunks.push_back(bytes);
    }

    /// Up to [`WRITE_SLICES`] of the unwritten pieces, for one `writev`.
    fn unwritten(&self) -> ([IoSlice<'_>; WRITE_SLICES], usize) {
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let mut count = 0;
        for (i, chunk) in self.chunks.iter().take(WRITE_SLICES).enumerate() {
            let from = if i == 0 { self.written } else { 0 };
            slices[i] = IoSlice::new(chunk.get(from..).unwrap_or_default());
            count = i + 1;
        }
        (slices, count)
    }

    /// Counts `n` more bytes as written, letting go of written pieces.
    fn advance(&mut self, mut n: usize) {
        self.written_total += n as u64;
        self.backlog.sub(n);
        while let Some(front) = self.chunks.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.chunks.pop_front();
        }
    }
}

/// The most pieces one write hands the kernel.
const WRITE_SLICES: usize = 16;
/// Pieces shorter than this are copied onto the last one ([`Outbox::push`])...
const SMALL_PIECE: usize = 2048;
/// ...while that is shorter than this: a grown piece's spare capacity
/// stays under its length, and sixteen pieces fill a send buffer.
const COALESCE_UP_TO: usize = 16 * 1024;

impl Session {
    /// Writes a reply of the session's own (before login only: afterwards
    /// all output goes through the broker, in order; and the goodbye,
    /// which the broker sends behind all else).
    pub(super) fn reply(&mut self, reply: &Reply<'_>, ctx: &mut Context<Self>) {
        let backlog = self.outbox.push_reply(reply);
        if backlog > self.env.limits.max_outbox_bytes {
            info!(
                "conn {}: disconnected as a slow consumer before login ({backlog} bytes unwritten)",
                self.id
            );
            self.cut_off(CutOff::OutboxFull, ctx);
            return;
        }
        self.start_writing(ctx);
    }

    pub(super) fn start_writing(&mut self, ctx: &mut Context<Self>) {
        if !self.outbox.writer_running {
            self.outbox.writer_running = true;
            ctx.spawn(WRITE_OUTPUT);
        }
    }

    /// Writes the outbox; when closing, then sends FIN and waits for the
    /// client's. Polled by `WRITE_OUTPUT`.
    pub(super) fn poll_output(
        &mut self,
        ctx: &mut Context<Self>,
        task_cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        while !self.outbox.chunks.is_empty() {
            let (slices, count) = self.outbox.unwritten();
            let write = Pin::new(&mut self.stream).poll_write_vectored(task_cx, &slices[..count]);
            match ready!(write) {
                Ok(n) => {
                    self.counts
                        .bytes_written
                        .of(self.stream.transport())
                        .add(n as u64);
                    self.outbox.advance(n);
                    self.release_held(ctx);
                }
                Err(e) => {
                    debug!("conn {}: write error: {e}", self.id);
                    ctx.stop();
                    return Poll::Ready(());
                }
            }
        }
        // A TLS write may return having only buffered the bytes in rustls;
        // they go out here (a no-op for plain TCP).
        if let Err(e) = ready!(Pin::new(&mut self.stream).poll_flush(task_cx)) {
            debug!("conn {}: write error: {e}", self.id);
            ctx.stop();
            return Poll::Ready(());
        }
        // All written: drop the queue's buffer, an idle connection holds none.
        self.outbox.chunks = VecDeque::new();
        self.outbox.written = 0;
        let Phase::Closing(step) = &mut self.phase else {
            self.outbox.writer_running = false;
            return Poll::Ready(());
        };
        if *step == CloseStep::Flushing {
            // Errors here mean the client is gone already: stop below.
            let _ = ready!(Pin::new(&mut self.stream).poll_shutdown(task_cx));
            *step = CloseStep::Lingering;
            ctx.run_later(CLOSE_LINGER, |session, ctx| {
                debug!(
                    "conn {}: the client kept its side open {CLOSE_LINGER:?} after the last line; closing",
                    session.id
                );
                ctx.stop();
            });
        }
        // Read (and drop) until the client closes too, so that closing
        // leaves no unread input behind to turn into a reset.
        let read = READ_BUFFER.with_borrow_mut(|buffer| {
            loop {
                let mut buf = ReadBuf::new(buffer);
                match ready!(Pin::new(&mut self.stream).poll_read(task_cx, &mut buf)) {
                    Ok(()) if !buf.filled().is_empty() => continue,
                    _ => return Poll::Ready(()),
                }
            }
        });
        ready!(read);
        ctx.stop();
        Poll::Ready(())
    }

    /// Whether the backlog is past half the cap: senders filling it are
    /// held up, and this session is on the stall clock.
    fn over_half(&self) -> bool {
        self.outbox.backlog.get() >= self.env.limits.max_outbox_bytes / 2
    }

    /// Whether this session belongs on the stall clock: it holds senders
    /// up, or its backlog is past half the cap.
    fn on_stall_watch(&self) -> bool {
        !self.outbox.held.is_empty() || self.over_half()
    }

    /// After the socket took some output: once the backlog is below half
    /// the cap, held-up senders go and the stall clock stops; otherwise
    /// the clock restarts (this session is reading, if slowly: it is not
    /// cut off for that).
    fn release_held(&mut self, ctx: &mut Context<Self>) {
        if self.outbox.held.is_empty() && self.outbox.stall_timer.is_none() {
            return;
        }
        if self.over_half() {
            self.start_stall_clock(ctx);
        } else {
            self.outbox.held.clear();
            if let Some(timer) = self.outbox.stall_timer.take() {
                ctx.cancel_future(timer);
            }
        }
    }

    /// After output arrived: holds the senders' credits that came with it
    /// (see [`Deliver::held`](crate::messages::Deliver)), and past half the
    /// cap starts the stall clock if it is not running. Every session past
    /// half its cap is on the clock, not only the one holding a sender's
    /// credit: when a line to many fills many stuck readers at once, all of
    /// them are cut within the limit, instead of one after the other, each
    /// holding the sender for the limit in turn.
    pub(super) fn hold(&mut self, credits: Vec<Credit>, ctx: &mut Context<Self>) {
        self.outbox.held.extend(credits);
        if self.outbox.stall_timer.is_none() && self.on_stall_watch() {
            self.start_stall_clock(ctx);
        }
    }

    /// (Re)starts the clock: a session past half its cap (or holding
    /// senders up) whose client reads nothing at all for [`STALL_LIMIT`]
    /// has stopped reading, and is cut off.
    ///
    /// "Reads nothing" is judged by what the client acknowledged, not by
    /// whether the socket took more: a socket's send buffer becomes
    /// writable again only once a good part of it has drained, which for a
    /// reader at a modest rate can take longer than the limit although it
    /// reads all along.
    fn start_stall_clock(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.outbox.stall_timer.take() {
            ctx.cancel_future(timer);
        }
        self.outbox.acknowledged_seen = self.acknowledged();
        self.outbox.stall_timer = Some(ctx.run_later(STALL_LIMIT, |session, ctx| {
            session.outbox.stall_timer = None;
            if !session.on_stall_watch() {
                return;
            }
            if session.acknowledged() > session.outbox.acknowledged_seen {
                session.start_stall_clock(ctx);
                return;
            }
            warn!(
                "conn {}: disconnected as a slow consumer (read nothing for {STALL_LIMIT:?} \
                 with its output past half its cap, {} bytes unwritten)",
                session.id,
                session.outbox.backlog.get()
            );
            session.cut_off(CutOff::Stalled, ctx);
        }));
    }

    /// How much of the output written so far the client has acknowledged.
    /// Where the kernel cannot say (not Linux), none, so that only writes
    /// count as progress there.
    fn acknowledged(&self) -> u64 {
        match self.stream.tcp().map(crate::tcp::unsent_bytes) {
            Some(Ok(unsent)) => self.outbox.written_total.saturating_sub(unsent as u64),
            // A WebSocket: its socket is actix-web's.
            Some(Err(_)) | None => 0,
        }
    }
}
