//! Names that cannot be mistaken for each other.
//!
//! A name is kept as its owner typed it (NFC-normalised, so `é` typed as
//! one character or as `e` plus a combining accent is the same spelling),
//! but two names are *the same name* when their folded forms are equal.
//! The fold is what ergo (an IRC server) does for its nick skeletons:
//!
//! 1. NFKC: compatibility forms fold to their plain letter (fullwidth
//!    `ａ`, ligature `ﬁ`, superscript `²`);
//! 2. Unicode full case folding (`Alice`, `ALICE`, `Straße`/`STRASSE`);
//! 3. the UTS #39 confusables skeleton: letters that look alike map to one
//!    prototype (Cyrillic `а` to Latin `a`, Greek `ο` to `o`, `0` to `O`,
//!    `1` to `l`, `m` to `rn`);
//! 4. case folding once more, since a prototype can be a capital.
//!
//! So `alice`, `Alice`, `ALICE` and `аlice` (Cyrillic а) fold to one form
//! and are one name; `zoë` and `日本語` are names of their own, as is any
//! mix of scripts that does not look like another name.
//!
//! Pure functions; the broker keys its names by [`Folded`], the cluster
//! claims folded names, the accounts store is keyed by them.
//!
//! The tables are the crates': `unicode-normalization` and
//! `unicode-security` (confusables) carry Unicode 18.0, `caseless` 16.0.
//! Every node of a cluster must run the same build: a fold that changes
//! between versions changes which names are one.

use std::fmt;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

/// The spelling a name is kept and shown in: what the user typed, in NFC.
pub fn spelling(name: &str) -> String {
    name.nfc().collect()
}

/// The folded form of a name: two names are the same name when these are
/// equal. See the module documentation for the steps.
pub fn fold_name(name: &str) -> String {
    // ASCII names (most of them) fold character by character through a
    // table: the broker folds every recipient name it did not find as
    // typed, and a flood of lines to a name that is not online would
    // otherwise pay the three Unicode passes per line.
    if name.is_ascii() {
        let table = ascii_folds();
        let mut out = String::with_capacity(name.len() + 4);
        for byte in name.bytes() {
            match &table[usize::from(byte)] {
                Some(folded) => out.push_str(folded),
                None => return fold_unicode(name),
            }
        }
        return out;
    }
    fold_unicode(name)
}

/// The fold of each ASCII character on its own, where that is plain
/// ASCII. For ASCII text every step works character by character (NFKC
/// and NFD leave ASCII alone, case folding and the confusables map are
/// per character), so the fold of an ASCII name is the concatenation of
/// its characters' folds as long as those are plain ASCII too (no
/// combining mark that normalisation could reorder across characters).
/// A character whose fold is not is `None`: names with it take the long
/// way.
fn ascii_folds() -> &'static [Option<String>; 128] {
    static TABLE: std::sync::OnceLock<[Option<String>; 128]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|byte| {
            let c = char::from(u8::try_from(byte).unwrap_or(0));
            let folded = fold_unicode(c.encode_utf8(&mut [0; 4]));
            folded.is_ascii().then_some(folded)
        })
    })
}

/// [`fold_name`] the long way: the three Unicode passes.
fn fold_unicode(name: &str) -> String {
    let compatible: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&compatible);
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    caseless::default_case_fold_str(&skeleton)
}

/// Whether two names are the same name.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || fold_name(a) == fold_name(b)
}

/// A name's folded form ([`fold_name`]), as a type of its own so that a
/// table keyed by folded names cannot be looked up by a spelling by
/// mistake (it deliberately does not borrow as `str`). Shared without
/// copying.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Folded(Arc<str>);

impl Folded {
    /// The folded form of `name`.
    pub fn of(name: &str) -> Self {
        Folded(Arc::from(fold_name(name)))
    }

    /// A folded form as another node of the cluster sent it (it asks
    /// whether this node holds it) or the name service lists it: made by
    /// [`Folded::of`] there, so taken as it is (folding is not
    /// idempotent for every string, so it is not folded again).
    pub fn from_key(key: &str) -> Self {
        Folded(Arc::from(key))
    }

    /// The folded text (what the cluster's name service is keyed by).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Folded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Folded({:?})", &*self.0)
    }
}

impl fmt::Display for Folded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_does_not_make_a_new_name() {
        for name in ["Alice", "ALICE", "aLiCe"] {
            assert!(same_name("alice", name), "{name}");
        }
        assert!(same_name("straße", "STRASSE"));
        assert!(same_name("ΣΊΣΥΦΟΣ", "σίσυφος"));
    }

    #[test]
    fn confusable_letters_do_not_make_a_new_name() {
        // Cyrillic а, Greek ο, Cyrillic е and о.
        assert!(same_name("alice", "\u{0430}lice"));
        assert!(same_name("bob", "b\u{03BF}b"));
        assert!(same_name("peter", "p\u{0435}ter"));
        assert!(same_name("bob", "b0b"));
        assert!(same_name("bill", "bi11"));
        assert!(same_name("modern", "rnodern"));
    }

    #[test]
    fn compatibility_and_composed_forms_are_the_same_name() {
        // Fullwidth letters; e + combining acute against é.
        assert!(same_name(
            "alice",
            "\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}"
        ));
        assert!(same_name("zoe\u{0301}", "zo\u{00E9}"));
        assert!(same_name("\u{FB01}sh", "fish"));
    }

    #[test]
    fn different_names_stay_different() {
        for (a, b) in [
            ("alice", "alicia"),
            ("zoë", "zoe"),
            ("日本語", "日本"),
            ("bob", "rob"),
            ("ана", "anna"),
        ] {
            assert!(!same_name(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn the_spelling_is_nfc_and_keeps_case() {
        assert_eq!(spelling("Zoe\u{0301}"), "Zo\u{00E9}");
        assert_eq!(spelling("Alice"), "Alice");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn folding_never_panics(name in "\\PC{1,32}") {
            let folded = fold_name(&name);
            prop_assert_eq!(fold_name(&spelling(&name)), folded);
        }

        #[test]
        fn the_ascii_table_folds_as_the_long_way_does(name in "[ -~]{0,40}") {
            prop_assert_eq!(fold_name(&name), fold_unicode(&name));
        }

        #[test]
        fn case_never_matters_in_latin_names(name in "[a-zA-Z0-9\u{C0}-\u{FF}]{1,32}") {
            prop_assert_eq!(fold_name(&name.to_uppercase()), fold_name(&name));
        }
    }
}
