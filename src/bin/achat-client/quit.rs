//! Recognising `/quit`, the line after which the server says `bye` and
//! closes: both modes must know when the person has ended the session, so
//! that the server's close is taken for a normal end, not a failure.

/// Whether a line is the `/quit` command, by the server's rule: the first
/// non-blank character is `/` and the first word is `quit`. Bytes, not
/// text: piped input need not be valid UTF-8.
pub(crate) fn is_quit(line: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
