//! A WebSocket as the byte stream a session reads and writes: text frames
//! in become lines, lines out become text frames.
//!
//! This is what lets one [`Session`](crate::Session) serve `nc` and a
//! browser alike: the session reads bytes and cuts them into lines, writes
//! whole lines, and never learns that there were frames. The rules (the
//! WebSocket transport in docs/PROTOCOL.md):
//! - **in**: each text message is one line; a `\n` is added unless it ends
//!   with one (so a message holding `\n`s is several lines, as it would be
//!   over TCP). Fragmented messages are joined. The session's line limit
//!   then applies as over TCP (`error: line too long ...`); a frame past
//!   [`max_frame`] is not buffered at all: the connection is closed with
//!   1009 (message too big). A binary message is closed with 1003
//!   (unsupported data): the protocol is text.
//! - **out**: each line the session writes is one text frame, without its
//!   `\n`. The session writes whole lines only, so a write is cut at its
//!   last `\n`.
//! - **control**: a ping is answered with a pong; the server pings every
//!   [`PING_INTERVAL`] so that proxies see traffic on an idle chat, and a
//!   client that has sent nothing at all for [`SILENCE_LIMIT`] (browsers
//!   answer pings by themselves) is taken as gone: end of input. A close
//!   frame ends input and is answered; shutting the stream down sends a
//!   close frame (1000) and ends the response.
//!
//! Bytes come from actix-web's request payload (after the upgrade, the
//! connection's bytes) and go out through a bounded channel that is the
//! 101 response's body: a full channel makes a write wait, so a browser
//! that does not read pushes back on the session exactly like a TCP
//! socket with a full send buffer, and the session's outbox cap and stall
//! clock do the rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::Payload;
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, OpCode, Parser, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::codec::Decoder;
use tokio_util::sync::PollSender;

/// How often the server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long a client may send nothing, not even a pong, before it is taken
/// as gone: two pings unanswered, and some.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);

/// Chunks of frames the response body holds before a write waits.
pub const OUTPUT_CHUNKS: usize = 4;

/// At most this much of a write is framed at once: bounds one chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// The largest frame accepted, for a line limit of `max_line_bytes`: room
/// for a line past the limit to be told `error: line too long` as over
/// TCP, and never less than actix's default of 64 KiB.
pub fn max_frame(max_line_bytes: usize) -> usize {
    max_line_bytes.saturating_add(2).max(64 * 1024)
}

/// The output side of a WebSocket: the channel the 101 response's body is
/// read from. Made with [`channel`].
pub type Frames = mpsc::Receiver<Bytes>;

/// A channel for a WebSocket's output: the sender goes to
/// [`WebSocket::new`], the receiver becomes the response's body.
pub fn channel() -> (mpsc::Sender<Bytes>, Frames) {
    mpsc::channel(OUTPUT_CHUNKS)
}

/// A WebSocket connection after the handshake, as a byte stream of lines.
pub struct WebSocket {
    payload: Payload,
    codec: Codec,
    /// Bytes from the client not yet decoded into frames.
    incoming: BytesMut,
    /// Text decoded and not yet read by the session, lines `\n`-ended.
    text: BytesMut,
    /// Frames encoded and not yet handed to the response body.
    outgoing: BytesMut,
    out: PollSender<Bytes>,
    /// No more input: the client closed, broke the protocol, or went
    /// silent. Reads give end of stream once `text` is read.
    input_over: bool,
    close_sent: bool,
    ping: Interval,
    last_heard: Instant,
}

impl WebSocket {
    /// Wraps an upgraded connection: its payload (the bytes after the
    /// upgrade, `web::Payload::into_inner`), and the sender of the
    /// response body's channel ([`channel`]).
    pub fn new(payload: Payload, out: mpsc::Sender<Bytes>, max_line_bytes: usize) -> Self {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        WebSocket {
            payload,
            codec: Codec::new().max_size(max_frame(max_line_bytes)),
            incoming: BytesMut::new(),
            text: BytesMut::new(),
            outgoing: BytesMut::new(),
            out: PollSender::new(out),
            input_over: false,
            close_sent: false,
            ping,
            last_heard: Instant::now(),
        }
    }

    /// Reads what can be read without waiting (for the shutdown drain):
    /// `WouldBlock` when nothing is waiting, `Ok(0)` at end of stream.
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut read = ReadBuf::new(buf);
        match Pin::new(self).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) => Ok(read.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Decodes the frames `incoming` holds; false once input is over.
    fn decode(&mut self) -> bool {
        while !self.input_over {
            match Decoder::decode(&mut self.codec, &mut self.incoming) {
                Ok(Some(frame)) => self.take(frame),
                Ok(None) => return true,
                Err(e) => {
                    let code = match e {
                        ProtocolError::Overflow => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    };
                    self.close_input(code, &e.to_string());
                }
            }
        }
        false
    }

    fn take(&mut self, frame: Frame) {
        self.last_heard = Instant::now();
        match frame {
            Frame::Text(text) => self.push_line(&text, true),
            Frame::Continuation(Item::FirstText(text) | Item::Continue(text)) => {
                self.push_line(&text, false)
            }
            Frame::Continuation(Item::Last(text)) => self.push_line(&text, true),
            Frame::Binary(_) | Frame::Continuation(Item::FirstBinary(_)) => self.close_input(
                CloseCode::Unsupported,
                "binary frames are not part of the protocol: send lines as text",
            ),
            Frame::Ping(payload) => {
                Parser::write_message(&mut self.outgoing, payload, OpCode::Pong, true, false)
            }
            Frame::Pong(_) => {}
            Frame::Close(reason) => {
                // Echo the client's code, as RFC 6455 asks.
                let code = reason.map_or(CloseCode::Normal, |r| r.code);
                self.close_input(code, "");
            }
        }
    }

    /// Appends text from the client; `ends` a message (and so a line).
    fn push_line(&mut self, text: &[u8], ends: bool) {
        self.text.extend_from_slice(text);
        if ends && !text.ends_with(b"\n") {
            self.text.extend_from_slice(b"\n");
        }
    }

    /// Input is over; the close frame saying why goes out first thing.
    fn close_input(&mut self, code: CloseCode, why: &str) {
        self.input_over = true;
        self.queue_close(code, why);
    }

    fn queue_close(&mut self, code: CloseCode, why: &str) {
        if !self.close_sent {
            self.close_sent = true;
            let description = (!why.is_empty()).then(|| why.to_owned());
            Parser::write_close(
                &mut self.outgoing,
                Some(CloseReason { code, description }),
                false,
            );
        }
    }

    /// Hands the encoded frames to the response body; `Ready` once all
    /// are handed over.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.outgoing.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
        if std::task::ready!(self.out.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(gone()));
        }
        let chunk = self.outgoing.split().freeze();
        self.out.send_item(chunk).map_err(|_| gone())?;
        Poll::Ready(Ok(()))
    }

    /// Pings when it is time; ends input after a long silence.
    fn poll_ping(&mut self, cx: &mut Context<'_>) {
        while self.ping.poll_tick(cx).is_ready() {
            if self.last_heard.elapsed() >= SILENCE_LIMIT {
                self.close_input(CloseCode::Away, "no answer to pings");
                return;
            }
            Parser::write_message(&mut self.outgoing, b"", OpCode::Ping, true, false);
        }
    }
}

impl AsyncRead for WebSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.text.is_empty() {
                let n = this.text.len().min(buf.remaining());
                buf.put_slice(&this.text[..n]);
                this.text.advance(n);
                // Pongs and close frames the client is owed go out as
                // soon as they can; the writer may be idle.
                let _ = this.poll_push(cx);
                return Poll::Ready(Ok(()));
            }
            if !this.decode() {
                let _ = this.poll_push(cx);
                return Poll::Ready(Ok(()));
            }
            if !this.text.is_empty() {
                continue;
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.incoming.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    this.input_over = true;
                    return Poll::Ready(Err(io::Error::other(e.to_string())));
                }
                // The TCP connection closed under the WebSocket.
                Poll::Ready(None) => this.input_over = true,
                Poll::Pending => {
                    this.poll_ping(cx);
                    let _ = this.poll_push(cx);
                    if this.input_over {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for WebSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Frames the whole lines of `bufs` (up to 64 KiB of frames), once the
    /// frames of the last write are handed over.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_push(cx))?;
        let mut taken = 0;
        'slices: for buf in bufs {
            let mut rest: &[u8] = buf;
            while let Some(end) = memchr::memchr(b'\n', rest) {
                Parser::write_message(&mut this.outgoing, &rest[..end], OpCode::Text, true, false);
                taken += end + 1;
                rest = &rest[end + 1..];
                if this.outgoing.len() >= CHUNK_BYTES {
                    break 'slices;
                }
            }
            if !rest.is_empty() {
                // Not a whole line: the session writes none such; taken
                // up to here, the rest comes with the next write.
                break;
            }
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a WebSocket carries whole lines",
            )));
        }
        let _ = this.poll_push(cx)?;
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_push(cx)
    }

    /// Sends the close frame (1000, normal) behind all output.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close(CloseCode::Normal, "");
        this.poll_push(cx)
    }
}

/// The frames that turn a connection away before it has a session: the
/// `error:` line, then a close frame (1013, try again later).
pub fn refusal(line: &[u8]) -> Bytes {
    let mut frames = BytesMut::new();
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    Parser::write_message(&mut frames, line, OpCode::Text, true, false);
    Parser::write_close(
        &mut frames,
        Some(CloseReason {
            code: CloseCode::Again,
            description: None,
        }),
        false,
    );
    frames.freeze()
}

#[cfg(test)]
mod tests;
