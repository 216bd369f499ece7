//! Cutting a byte stream into lines, with the protocol's limits applied.
//!
//! A TCP read returns whatever bytes have arrived: half a line, or fifty
//! lines and the start of the next. [`LineReader`] turns such chunks into
//! [`Frame`]s. It is pure (no I/O), so the property "any split of the input
//! gives the same frames" is tested without sockets.
//!
//! Why it is hand-written rather than tokio-util's `LinesCodec`: the session
//! reads into a buffer it borrows for the length of one read (so an idle
//! connection holds no read buffer), and lines that arrive whole are handed
//! out as slices of that buffer without being copied. Only the unfinished
//! tail of a chunk is kept, in a buffer that is freed as soon as its line is
//! complete.

/// One unit of input found by [`LineReader::next_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` and without a `\r` right before it.
    Line(&'a str),
    /// A line passed the limit. It is reported as soon as that is certain;
    /// its remaining bytes, up to and including the next `\n`, are skipped
    /// without being stored.
    TooLong,
    /// A complete line that is not valid UTF-8; it was dropped.
    NotUtf8,
}

/// A [`Frame`] that owns its line: for keeping frames past the next read,
/// as the tests and the fuzz target do when they compare whole sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedFrame {
    /// [`Frame::Line`].
    Line(String),
    /// [`Frame::TooLong`].
    TooLong,
    /// [`Frame::NotUtf8`].
    NotUtf8,
}

impl From<Frame<'_>> for OwnedFrame {
    fn from(frame: Frame<'_>) -> Self {
        match frame {
            Frame::Line(line) => OwnedFrame::Line(line.to_owned()),
            Frame::TooLong => OwnedFrame::TooLong,
            Frame::NotUtf8 => OwnedFrame::NotUtf8,
        }
    }
}

/// Splits chunks of bytes into lines of at most `max_line_bytes` bytes
/// (terminator excluded).
#[derive(Debug)]
pub struct LineReader {
    max_line_bytes: usize,
    /// The start of a line whose `\n` has not arrived yet; never longer than
    /// `max_line_bytes + 1` (room for a `\r` that may precede the `\n`).
    partial: Vec<u8>,
    /// Set after `partial` was handed out as a complete line: the next call
    /// empties it (it could not be emptied while the caller borrowed it).
    handed_out: bool,
    /// Inside an overlong line that was already reported: skip to `\n`.
    discarding: bool,
}

impl LineReader {
    /// A reader for lines of at most `max_line_bytes` bytes.
    pub fn new(max_line_bytes: usize) -> Self {
        LineReader {
            max_line_bytes,
            partial: Vec::new(),
            handed_out: false,
            discarding: false,
        }
    }

    /// Returns the next frame in `input` and advances `input` past it, or
    /// `None` once `input` is used up (an unfinished line is then kept
    /// inside the reader, to be completed by later input).
    ///
    /// Lines that lie whole inside `input` are borrowed from it, not copied.
    pub fn next_frame<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Option<Frame<'s>> {
        if self.handed_out {
            self.handed_out = false;
            // Freed rather than cleared: most connections are idle most of
            // the time, and an idle connection should hold no buffer.
            self.partial = Vec::new();
        }
        loop {
            if input.is_empty() {
                return None;
            }
            let newline = memchr::memchr(b'\n', input);
            if self.discarding {
                match newline {
                    Some(i) => {
                        *input = &input[i + 1..];
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        *input = &[];
                        return None;
                    }
                }
            }
            let Some(i) = newline else {
                // No end of line in sight: keep the bytes, unless they make
                // the line too long whatever comes next.
                if self.cannot_fit(input) {
                    self.partial = Vec::new();
                    self.discarding = true;
                    *input = &[];
                    return Some(Frame::TooLong);
                }
                self.partial.extend_from_slice(input);
                *input = &[];
                return None;
            };
            let line = &input[..i];
            *input = &input[i + 1..];
            if self.partial.is_empty() {
                return Some(classify(line, self.max_line_bytes));
            }
            if self.partial.len() + line.len() > self.max_line_bytes + 1 {
                self.partial = Vec::new();
                return Some(Frame::TooLong);
            }
            self.partial.extend_from_slice(line);
            self.handed_out = true;
            return Some(classify(&self.partial, self.max_line_bytes));
        }
    }

    /// Whether bytes of an unfinished line are held (or being skipped).
    pub fn is_mid_line(&self) -> bool {
        self.discarding || (!self.partial.is_empty() && !self.handed_out)
    }

    /// Whether appending `more` (which holds no `\n`) to the unfinished line
    /// makes it too long however it ends. A line of `max + 1` bytes may
    /// still be valid if its last byte is the `\r` of a `\r\n`.
    fn cannot_fit(&self, more: &[u8]) -> bool {
        let len = self.partial.len() + more.len();
        let limit = self.max_line_bytes;
        len > limit + 1 || (len == limit + 1 && more.last() != Some(&b'\r'))
    }
}

/// Turns the bytes of a complete line (without `\n`) into a frame.
fn classify(line: &[u8], max_line_bytes: usize) -> Frame<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max_line_bytes {
        return Frame::TooLong;
    }
    match std::str::from_utf8(line) {
        Ok(text) => Frame::Line(text),
        Err(_) => Frame::NotUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut LineReader, mut input: &[u8], out: &mut Vec<OwnedFrame>) {
        while let Some(frame) = reader.next_frame(&mut input) {
            out.push(OwnedFrame::from(frame));
        }
    }

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<OwnedFrame> {
        let mut reader = LineReader::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            feed(&mut reader, chunk, &mut out);
        }
        out
    }

    fn line(s: &str) -> OwnedFrame {
        OwnedFrame::Line(s.to_owned())
    }

    #[test]
    fn lines_in_one_chunk() {
        assert_eq!(
            frames(10, &[b"a\nbc\n\nd"]),
            [line("a"), line("bc"), line("")]
        );
    }

    #[test]
    fn a_line_split_over_chunks() {
        assert_eq!(
            frames(10, &[b"he", b"ll", b"o\nwo", b"rld\n"]),
            [line("hello"), line("world")]
        );
    }

    #[test]
    fn carriage_return_before_newline_is_dropped() {
        assert_eq!(
            frames(10, &[b"a\r\nb\r", b"\nc\rd\n"]),
            [line("a"), line("b"), line("c\rd")]
        );
    }

    #[test]
    fn only_one_carriage_return_is_dropped() {
        assert_eq!(frames(10, &[b"a\r\r\n"]), [line("a\r")]);
    }

    #[test]
    fn limit_is_exclusive_of_the_terminator() {
        assert_eq!(frames(3, &[b"abc\n"]), [line("abc")]);
        assert_eq!(frames(3, &[b"abc\r\n"]), [line("abc")]);
        assert_eq!(frames(3, &[b"ab", b"c\r", b"\n"]), [line("abc")]);
        assert_eq!(frames(3, &[b"abcd\n"]), [OwnedFrame::TooLong]);
        assert_eq!(frames(3, &[b"abc\r\r\n"]), [OwnedFrame::TooLong]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_skipped() {
        let expected = [line("a"), OwnedFrame::TooLong, line("b")];
        assert_eq!(frames(3, &[b"a\n0123456789\nb\n"]), expected);
        assert_eq!(frames(3, &[b"a\n01", b"2345", b"6789", b"\nb\n"]), expected);
    }

    #[test]
    fn an_overlong_line_is_reported_before_its_end_arrives() {
        let mut reader = LineReader::new(3);
        let mut out = Vec::new();
        feed(&mut reader, b"0123456", &mut out);
        assert_eq!(out, [OwnedFrame::TooLong]);
        assert!(reader.is_mid_line());
        feed(&mut reader, &[b'x'; 1000], &mut out);
        assert_eq!(out, [OwnedFrame::TooLong]);
        assert!(reader.partial.is_empty(), "skipped bytes are not stored");
        feed(&mut reader, b"x\nok\n", &mut out);
        assert_eq!(out, [OwnedFrame::TooLong, line("ok")]);
        assert!(!reader.is_mid_line());
    }

    #[test]
    fn invalid_utf8_drops_only_that_line() {
        assert_eq!(
            frames(10, &[b"a\n\xff\xfe\nb\n"]),
            [line("a"), OwnedFrame::NotUtf8, line("b")]
        );
        // A multi-byte character split over two reads is fine.
        assert_eq!(
            frames(
                10,
                &["é\n".as_bytes()[..1].as_ref(), &"é\n".as_bytes()[1..]]
            ),
            [line("é")]
        );
    }

    #[test]
    fn idle_reader_holds_no_buffer() {
        let mut reader = LineReader::new(100);
        let mut out = Vec::new();
        feed(&mut reader, b"abc", &mut out);
        feed(&mut reader, b"def\n", &mut out);
        assert_eq!(out, [line("abcdef")]);
        let mut empty: &[u8] = &[];
        assert_eq!(reader.next_frame(&mut empty), None);
        assert_eq!(reader.partial.capacity(), 0);
    }

    #[test]
    fn every_split_gives_the_same_frames() {
        let input: &[u8] = b"alice\r\nbob: hi\n\xff\n0123456789abcdef\nx\r\n\nlast";
        let whole = frames(8, &[input]);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let split = frames(8, &[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(split, whole, "split at {i}, {j}");
            }
        }
    }
}

#[cfg(test)]
mod properties {
    //! The line reader against a model: the whole input cut into lines by
    //! the rules of `docs/PROTOCOL.md`, written as plainly as possible.

    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one after the other; returns the frames and the final
    /// state (mid-line or not, bytes held).
    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<OwnedFrame>, bool, usize) {
        let mut reader = LineReader::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input = *chunk;
            while let Some(frame) = reader.next_frame(&mut input) {
                out.push(OwnedFrame::from(frame));
            }
            assert!(input.is_empty(), "a chunk was not used up");
            assert!(
                reader.partial.len() <= max + 1,
                "held {} bytes for a limit of {max}",
                reader.partial.len()
            );
        }
        let held = if reader.is_mid_line() {
            reader.partial.len()
        } else {
            0
        };
        (out, reader.is_mid_line(), held)
    }

    /// The rules, applied to the whole input at once.
    fn model(max: usize, input: &[u8]) -> Vec<OwnedFrame> {
        let mut out = Vec::new();
        let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let unfinished = pieces.pop().unwrap_or_default();
        for piece in pieces {
            let line = piece.strip_suffix(b"\r").unwrap_or(piece);
            out.push(if line.len() > max {
                OwnedFrame::TooLong
            } else {
                match std::str::from_utf8(line) {
                    Ok(s) => OwnedFrame::Line(s.to_owned()),
                    Err(_) => OwnedFrame::NotUtf8,
                }
            });
        }
        // An unfinished line is reported once it cannot fit any more.
        let len = unfinished.len();
        if len > max + 1 || (len == max + 1 && unfinished.last() != Some(&b'\r')) {
            out.push(OwnedFrame::TooLong);
        }
        out
    }

    /// Bytes rich in the characters that matter: newlines, carriage
    /// returns, bytes that break UTF-8, and multi-byte characters.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(b'a'),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => Just(0xff_u8),
            1 => Just(0xc3_u8),
            1 => Just(0xa9_u8),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..200)
    }

    /// Cut points for splitting an input of length `len` into reads.
    fn splits(input: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        let len = input.len();
        (Just(input), proptest::collection::vec(0..=len, 0..12))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_split_gives_the_same_frames_and_state(
            (input, mut cuts) in input().prop_flat_map(splits),
            max in 1usize..12,
        ) {
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&input[start..cut]);
                start = cut;
            }
            chunks.push(&input[start..]);
            let whole = run(max, &[&input]);
            let split = run(max, &chunks);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(whole.0, model(max, &input));
        }

        #[test]
        fn byte_at_a_time_matches_the_model(input in input(), max in 1usize..12) {
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(run(max, &bytes).0, model(max, &input));
        }
    }
}
