//! What a login name may be.
//!
//! A name is what others type to reach you (`alice: hi`), so it may hold
//! nothing that has a meaning in a chat line, and nothing that cannot be
//! typed or seen: no whitespace, no control or format characters, no
//! blank-looking fillers, at least one visible character, and none of the
//! words the server's own lines start with.

use super::text::{is_invisible, is_visible};

/// Names a client may not take, compared without regard to ASCII case:
/// the server's own lines start with them (`server: ...`, `error: ...`,
/// `from ...`), so a peer by that name could be mistaken for the server.
pub const RESERVED_NAMES: [&str; 3] = ["server", "error", "from"];

/// A login name may be at most this many characters (not bytes) long.
pub const MAX_NAME_CHARS: usize = 32;

/// Characters a name may not contain besides whitespace and control
/// characters: each of them has a meaning in a chat line.
pub const FORBIDDEN_NAME_CHARS: [char; 4] = [',', ':', '*', '/'];

/// Why a login name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("a name needs at least one character")]
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`].
    #[error("a name has at most {MAX_NAME_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// The name contains whitespace inside it.
    #[error("a name may not contain spaces or other whitespace")]
    Whitespace,
    /// The name contains a control character.
    #[error("a name may not contain control characters")]
    Control,
    /// The name contains one of [`FORBIDDEN_NAME_CHARS`].
    #[error("a name may not contain '{0}' (names may not contain , : * or /)")]
    Forbidden(char),
    /// The name contains a character that shows as nothing or as blank.
    #[error("a name may not contain U+{:04X} (it cannot be seen)", u32::from(*.0))]
    Invisible(char),
    /// The name has nothing a reader can see (only combining marks, say).
    #[error("a name needs at least one visible character")]
    NothingVisible,
    /// The name is one of [`RESERVED_NAMES`].
    #[error("the name '{0}' is reserved for the server")]
    Reserved(String),
}

/// Checks a login name (already trimmed) against the naming rules.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let mut chars = 0;
    for c in name.chars() {
        chars += 1;
        if c.is_whitespace() {
            return Err(NameError::Whitespace);
        }
        if c.is_control() {
            return Err(NameError::Control);
        }
        if FORBIDDEN_NAME_CHARS.contains(&c) {
            return Err(NameError::Forbidden(c));
        }
        if is_invisible(c) {
            return Err(NameError::Invisible(c));
        }
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    if chars == 0 {
        return Err(NameError::Empty);
    }
    // Marks alone (a lone U+0301) show as nothing: a visible base is needed.
    if !name.chars().any(|c| is_visible(c) && !is_mark(c)) {
        return Err(NameError::NothingVisible);
    }
    if let Some(reserved) = RESERVED_NAMES.iter().find(|r| name.eq_ignore_ascii_case(r)) {
        return Err(NameError::Reserved((*reserved).to_owned()));
    }
    Ok(())
}

fn is_mark(c: char) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};
    c.general_category_group() == GeneralCategoryGroup::Mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "alice",
            "Zoë",
            "日本語",
            "a-b_c.d",
            &"x".repeat(32),
            "😀",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn too_long_names_count_characters_not_bytes() {
        assert_eq!(validate_name(&"é".repeat(32)), Ok(()));
        assert_eq!(validate_name(&"é".repeat(33)), Err(NameError::TooLong(33)));
        assert_eq!(validate_name(&"x".repeat(33)), Err(NameError::TooLong(33)));
    }

    #[test]
    fn names_with_forbidden_characters() {
        assert_eq!(validate_name("bob smith"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\tsmith"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\u{a0}x"), Err(NameError::Whitespace));
        assert_eq!(validate_name("bob\u{7}"), Err(NameError::Control));
        assert_eq!(validate_name("bob\u{9b}"), Err(NameError::Control));
        for c in [',', ':', '*', '/'] {
            assert_eq!(
                validate_name(&format!("a{c}b")),
                Err(NameError::Forbidden(c))
            );
        }
        assert_eq!(validate_name(""), Err(NameError::Empty));
    }

    #[test]
    fn names_that_cannot_be_seen_are_refused() {
        for c in [
            '\u{2800}', '\u{3164}', '\u{115F}', '\u{FFA0}', '\u{200B}', '\u{200D}', '\u{202E}',
        ] {
            assert_eq!(
                validate_name(&format!("al{c}ice")),
                Err(NameError::Invisible(c)),
                "{c:?}"
            );
            assert_eq!(
                validate_name(&c.to_string()),
                Err(NameError::Invisible(c)),
                "{c:?}"
            );
        }
        assert_eq!(
            validate_name("\u{0301}\u{0301}"),
            Err(NameError::NothingVisible)
        );
        assert_eq!(validate_name("e\u{0301}"), Ok(()));
    }

    #[test]
    fn the_servers_words_are_reserved() {
        for name in ["server", "Server", "ERROR", "from"] {
            assert!(
                matches!(validate_name(name), Err(NameError::Reserved(_))),
                "{name}"
            );
        }
        assert_eq!(validate_name("servers"), Ok(()));
        assert_eq!(
            NameError::Reserved("server".into()).to_string(),
            "the name 'server' is reserved for the server"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_name_that_validates_has_no_forbidden_character(name in any::<String>()) {
            if validate_name(&name).is_ok() {
                let chars = name.chars().count();
                prop_assert!((1..=MAX_NAME_CHARS).contains(&chars));
                prop_assert!(!name.chars().any(|c| c.is_whitespace()
                    || c.is_control()
                    || FORBIDDEN_NAME_CHARS.contains(&c)));
            }
        }
    }
}
