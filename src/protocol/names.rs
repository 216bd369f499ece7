//! What a login name may be.
//!
//! A name is what others type to reach you (`alice: hi`), so it may hold
//! nothing that has a meaning in a chat line, and nothing that cannot be
//! typed or seen: no whitespace, no control or format characters, no
//! blank-looking fillers, at least one visible character, and none of the
//! words the server's own lines start with.
//!
//! A name that passes is a [`LoginName`]: its spelling (NFC) and its folded
//! form ([`super::fold`]), computed once, in the session, so the broker
//! never folds a name at login.

use std::sync::{Arc, LazyLock};

use super::fold::{Folded, spelling};
use super::text::{is_invisible, is_visible};

/// Names a client may not take, compared folded (so `Server` and `ѕerver`
/// with a Cyrillic ѕ are reserved too): the server's own lines start with
/// them (`server: ...`, `error: ...`, `from ...`), so a peer by that name
/// could be mistaken for the server.
pub const RESERVED_NAMES: [&str; 3] = ["server", "error", "from"];

/// [`RESERVED_NAMES`] folded, computed once.
static RESERVED_FOLDED: LazyLock<[Folded; 3]> = LazyLock::new(|| RESERVED_NAMES.map(Folded::of));

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

/// A login name that passed the naming rules: how it is spelled and what
/// it is the same name as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName {
    spelling: Arc<str>,
    folded: Folded,
}

impl LoginName {
    /// Checks `typed` (already trimmed) against the naming rules; the
    /// rules apply to its NFC spelling, the one kept and shown, so `zoë`
    /// counts three characters however it was typed.
    pub fn new(typed: &str) -> Result<Self, NameError> {
        let spelling = spelling(typed);
        check_characters(&spelling)?;
        let folded = Folded::of(&spelling);
        // Nothing survives folding (only default-ignorables, say): it
        // would be the same name as every other such name, and no key.
        if folded.as_str().is_empty() {
            return Err(NameError::NothingVisible);
        }
        if let Some(i) = RESERVED_FOLDED.iter().position(|r| *r == folded) {
            return Err(NameError::Reserved(RESERVED_NAMES[i].to_owned()));
        }
        Ok(LoginName {
            spelling: Arc::from(spelling),
            folded,
        })
    }

    /// The name as it is kept and shown: as typed, in NFC.
    pub fn spelling(&self) -> &Arc<str> {
        &self.spelling
    }

    /// What the name is unique by.
    pub fn folded(&self) -> &Folded {
        &self.folded
    }
}

/// Checks a login name (already trimmed) against the naming rules (see
/// [`LoginName::new`], which also gives its spelling and folded form).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    LoginName::new(name).map(drop)
}

/// The rules on the characters of a name (its spelling).
fn check_characters(name: &str) -> Result<(), NameError> {
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
        // Folded, not only ASCII case: Cyrillic ѕ, fullwidth, look-alikes.
        for name in [
            "\u{0455}erver",
            "\u{FF25}RROR",
            "fr\u{043E}m",
            "frorn",
            "err\u{03BF}r",
        ] {
            assert!(
                matches!(validate_name(name), Err(NameError::Reserved(_))),
                "{name}"
            );
        }
        assert_eq!(
            validate_name("\u{0455}erver"),
            Err(NameError::Reserved("server".into()))
        );
        assert_eq!(
            NameError::Reserved("server".into()).to_string(),
            "the name 'server' is reserved for the server"
        );
    }
}

#[cfg(test)]
mod login_names {
    use super::*;

    #[test]
    fn a_login_name_is_kept_in_nfc_and_unique_by_its_fold() {
        let composed = LoginName::new("zo\u{00EB}").unwrap();
        let decomposed = LoginName::new("zoe\u{0308}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(&**decomposed.spelling(), "zo\u{00EB}");
        let alice = LoginName::new("Alice").unwrap();
        assert_eq!(&**alice.spelling(), "Alice");
        for same in ["alice", "ALICE", "\u{0430}lice", "\u{FF21}lice"] {
            assert_eq!(
                LoginName::new(same).unwrap().folded(),
                alice.folded(),
                "{same}"
            );
        }
        assert_ne!(LoginName::new("zoe").unwrap().folded(), composed.folded());
    }

    #[test]
    fn the_length_limit_counts_the_nfc_spelling() {
        // 32 characters composed, 64 as typed (e + combining diaeresis).
        let typed = "e\u{0308}".repeat(32);
        assert_eq!(validate_name(&typed), Ok(()));
        assert_eq!(
            validate_name(&"e\u{0308}".repeat(33)),
            Err(NameError::TooLong(33))
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
