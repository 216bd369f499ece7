//! Bytes on the wire: the buffered line reader every connection reads
//! through, what a server line is (`from`, `server:`, `error:`), and the
//! payload the generator puts in a message's text.
//!
//! The payload is `<sender> <seq> <sent_ns>`, three decimal numbers (the
//! sender's client index, its sequence number on this flow, and the send
//! time in nanoseconds since the run's shared start `Instant`), optionally
//! followed by a space and padding. Both servers relay it unchanged, so the
//! receiver gets one-way latency, ordering and exactly-once from it without
//! any lookup.

use std::io;
use std::time::Duration;

use memchr::memchr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A read buffer cut into lines: one `read` fills it, then
/// [`LineReader::next_line`] hands out the complete lines in it.
pub(crate) struct LineReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pace: Option<Pace>,
}

/// A reader's pace ([`LineReader::paced`]): one read of at most
/// `per_read` bytes every `interval`, sleeping in between. A read that
/// finds less does not carry the rest over: the pace is a ceiling.
struct Pace {
    per_read: usize,
    interval: Duration,
    next: Option<tokio::time::Instant>,
}

impl LineReader {
    /// A reader with `capacity` bytes of buffer, starting with `leftover`
    /// (bytes a previous reader had read past its last line).
    pub(crate) fn new(capacity: usize, leftover: &[u8]) -> Self {
        let mut buf = vec![0; capacity.max(leftover.len() * 2).max(256)];
        buf[..leftover.len()].copy_from_slice(leftover);
        LineReader {
            buf,
            start: 0,
            end: leftover.len(),
            pace: None,
        }
    }

    /// This reader, reading at most `rate` bytes per second: one read
    /// every `interval`, with a real pause between reads.
    pub(crate) fn paced(mut self, rate: u64, interval: Duration) -> Self {
        let per_read = (rate as f64 * interval.as_secs_f64()).max(1.0) as usize;
        self.pace = Some(Pace {
            per_read,
            interval,
            next: None,
        });
        self
    }

    /// The bytes read but not yet handed out as lines.
    pub(crate) fn leftover(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// One `read` from `source` into the free part of the buffer (moving the
    /// incomplete tail to the front first, growing the buffer when a single
    /// line fills it). `Ok(0)` is end of stream.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(&mut self, source: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let mut free = self.buf.len() - self.end;
        if let Some(pace) = &mut self.pace {
            let due = pace.next.unwrap_or_else(tokio::time::Instant::now);
            tokio::time::sleep_until(due).await;
            // A late read does not buy a burst of reads to catch up.
            pace.next = Some((due + pace.interval).max(tokio::time::Instant::now()));
            free = free.min(pace.per_read);
        }
        let n = source
            .read(&mut self.buf[self.end..self.end + free])
            .await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete line, without its `\n` (nor a `\r` before it).
    pub(crate) fn next_line(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..self.end];
        let at = memchr(b'\n', pending)?;
        let mut line = &pending[..at];
        self.start += at + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        Some(line)
    }
}

/// What a line from the server is.
pub(crate) enum Line<'a> {
    /// `from <name>: <text>`
    From { name: &'a [u8], text: &'a [u8] },
    /// `server: <text>` (achat only)
    Server(&'a [u8]),
    /// `error: <text>` (achat only)
    Error(&'a [u8]),
    /// Anything else.
    Other,
}

/// Tells a server line's kind.
pub(crate) fn classify(line: &[u8]) -> Line<'_> {
    if let Some(rest) = line.strip_prefix(b"from ") {
        if let Some(colon) = memchr(b':', rest) {
            let text = &rest[colon + 1..];
            let text = text.strip_prefix(b" ").unwrap_or(text);
            return Line::From {
                name: &rest[..colon],
                text,
            };
        }
        return Line::Other;
    }
    if let Some(rest) = line.strip_prefix(b"server: ") {
        return Line::Server(rest);
    }
    if let Some(rest) = line.strip_prefix(b"error: ") {
        return Line::Error(rest);
    }
    Line::Other
}

/// The numbers in a message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Payload {
    pub(crate) sender: u32,
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
}

/// Parses `<sender> <seq> <sent_ns>[ padding]`.
pub(crate) fn parse_payload(text: &[u8]) -> Option<Payload> {
    let (sender, rest) = parse_u64(text)?;
    let rest = rest.strip_prefix(b" ")?;
    let (seq, rest) = parse_u64(rest)?;
    let rest = rest.strip_prefix(b" ")?;
    let (sent_ns, rest) = parse_u64(rest)?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    Some(Payload {
        sender: u32::try_from(sender).ok()?,
        seq,
        sent_ns,
    })
}

fn parse_u64(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &text[..digits] {
        n = n * 10 + u64::from(b - b'0');
    }
    Some((n, &text[digits..]))
}

/// Appends `n` in decimal (no allocation).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one message line: `<prefix><sender> <seq> <sent_ns>[ <pad>]\n`,
/// where `prefix` is the recipient list with its `: `, and the padding
/// brings the text to `text_len` bytes when it is longer than the numbers.
pub(crate) fn push_message(out: &mut Vec<u8>, prefix: &[u8], payload: Payload, text_len: usize) {
    out.extend_from_slice(prefix);
    let text_start = out.len();
    push_u64(out, u64::from(payload.sender));
    out.push(b' ');
    push_u64(out, payload.seq);
    out.push(b' ');
    push_u64(out, payload.sent_ns);
    let written = out.len() - text_start;
    if text_len > written + 1 {
        out.push(b' ');
        out.resize(out.len() + (text_len - written - 1), b'x');
    }
    out.push(b'\n');
}
