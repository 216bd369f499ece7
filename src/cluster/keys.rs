//! Names and ids as NATS key tokens.
//!
//! A JetStream key-value key (a subject token, here) may hold only
//! `[-/_=.A-Za-z0-9]`, and `.` separates tokens, while a login name may be
//! any visible Unicode (`zoë`, `黒`). So a name is stored encoded: bytes
//! `[A-Za-z0-9_-]` as they are, every other byte of its UTF-8 as `=XX`
//! (uppercase hex). `=` itself is encoded, so the encoding is injective
//! (two names never share a key), and a plain ASCII name stays readable in
//! the server's tools. Cluster names and node ids are not encoded: they
//! are chosen by operators, so they are simply held to the same safe
//! alphabet ([`validate_id`]).

/// The longest cluster name or node id, in characters (bytes: they are
/// ASCII).
pub const MAX_ID_CHARS: usize = 64;

/// Whether `byte` stands for itself in an encoded name (and may appear in
/// an id).
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `name` as one key token: `[A-Za-z0-9_-]` kept, every other UTF-8 byte
/// as `=XX`; `zoë` becomes `zo=C3=AB`. The empty name gives the empty
/// string (not a valid token: names are never empty).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

/// The value of an uppercase hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The name [`encode_name`] made `token` from, or `None` if no name
/// encodes to it (a stray byte, lowercase or short hex, an `=XX` for a
/// plain byte, or bytes that are not UTF-8): keys are only ever written by
/// `encode_name`, so every other spelling is refused, which keeps the
/// mapping one-to-one both ways.
pub fn decode_name(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if is_plain(byte) {
            out.push(byte);
            i += 1;
        } else if byte == b'=' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            let decoded = (high << 4) | low;
            if is_plain(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a cluster name or node id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// It is empty.
    #[error("an id needs at least one character")]
    Empty,
    /// It is longer than [`MAX_ID_CHARS`].
    #[error("an id has at most {MAX_ID_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// It holds a character outside `[A-Za-z0-9_-]`.
    #[error("an id may hold only A-Z, a-z, 0-9, '_' and '-', not {0:?}")]
    Forbidden(char),
}

/// Checks a cluster name or node id: 1 to [`MAX_ID_CHARS`] characters of
/// `[A-Za-z0-9_-]`, so it can be put in a subject, a stream name and a
/// key as it is.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if let Some(c) = id.chars().find(|&c| !u8::try_from(c).is_ok_and(is_plain)) {
        return Err(IdError::Forbidden(c));
    }
    match id.len() {
        0 => Err(IdError::Empty),
        n if n > MAX_ID_CHARS => Err(IdError::TooLong(n)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_stay_as_they_are() {
        assert_eq!(encode_name("alice_B-52"), "alice_B-52");
    }

    #[test]
    fn other_bytes_become_hex() {
        assert_eq!(encode_name("zoë"), "zo=C3=AB");
        assert_eq!(encode_name("a.b"), "a=2Eb");
        assert_eq!(encode_name("=2E"), "=3D2E");
        assert_eq!(decode_name("zo=C3=AB").as_deref(), Some("zoë"));
    }

    #[test]
    fn only_what_encode_writes_decodes() {
        for token in ["a.b", "=2e", "=4", "=", "=41", "=FF", "a b"] {
            assert_eq!(decode_name(token), None, "{token:?}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(validate_id("node-1_a"), Ok(()));
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_id(&"a".repeat(65)), Err(IdError::TooLong(65)));
        assert_eq!(validate_id("a.b"), Err(IdError::Forbidden('.')));
        assert_eq!(validate_id("zoë"), Err(IdError::Forbidden('ë')));
    }

    proptest! {
        #[test]
        fn round_trip(name in any::<String>()) {
            let token = encode_name(&name);
            prop_assert!(token.bytes().all(|b| is_plain(b) || b == b'='));
            prop_assert_eq!(decode_name(&token), Some(name));
        }

        #[test]
        fn decode_is_one_to_one(token in "[A-Za-z0-9_=-]{0,12}") {
            if let Some(name) = decode_name(&token) {
                prop_assert_eq!(encode_name(&name), token);
            }
        }
    }
}
