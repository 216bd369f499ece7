//! Fuzzes the line reader and the parsers together, the way a session uses
//! them: bytes cut into reads, frames parsed as login names, then as chat
//! lines and commands, and every server line a client would parse.
//!
//! The first byte chooses the line limit, the next few where the input is
//! cut into reads. Besides "never panics", it checks that the cut makes no
//! difference (the frames equal those of reading the input whole), and that
//! no more than the limit (+1 for a `\r`) is ever held.

#![no_main]

use achat::line_reader::{Frame, LineReader, OwnedFrame};
use achat::protocol::{self, Request};
use libfuzzer_sys::fuzz_target;

fn read(max: usize, chunks: &[&[u8]]) -> Vec<OwnedFrame> {
    let mut reader = LineReader::new(max);
    let mut frames = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(frame) = reader.next_frame(&mut input) {
            if let Frame::Line(line) = frame {
                assert!(line.len() <= max);
                exercise_parsers(line);
            }
            frames.push(OwnedFrame::from(frame));
        }
        assert!(input.is_empty());
    }
    frames
}

fn exercise_parsers(line: &str) {
    let _ = protocol::validate_name(line.trim());
    match protocol::parse_request(line) {
        Ok(Request::Chat(chat)) => {
            // What the session would send on: names are trimmed, non-empty,
            // without '*' or ',', and distinct.
            for (i, name) in chat.names.iter().enumerate() {
                assert!(!name.is_empty() && name.trim() == *name);
                assert!(*name != "*" && !name.contains(','));
                assert!(!chat.names[..i].contains(name));
            }
            let mut out = Vec::new();
            protocol::write_message(&mut out, "fuzz", chat.text);
            let formatted = std::str::from_utf8(&out).expect("formatting keeps UTF-8");
            let formatted = formatted.strip_suffix('\n').expect("one line");
            assert_eq!(
                protocol::parse_server_line(formatted),
                protocol::ServerLine::Message { from: "fuzz", text: chat.text }
            );
        }
        Ok(_) | Err(_) => {}
    }
    let _ = protocol::parse_server_line(line);
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit % 64) + 1;
    let (cuts, input) = rest.split_at(rest.len().min(4));
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (input.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&input[start..point]);
        start = point;
    }
    chunks.push(&input[start..]);
    let whole = read(max, &[input]);
    let split = read(max, &chunks);
    assert_eq!(whole, split);
});
