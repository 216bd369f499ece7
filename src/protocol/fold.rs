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
//! Pure functions; the broker keys its names by [`fold_name`], the cluster
//! claims folded names, the accounts store is keyed by them.

use unicode_normalization::UnicodeNormalization;

/// The spelling a name is kept and shown in: what the user typed, in NFC.
pub fn spelling(name: &str) -> String {
    name.nfc().collect()
}

/// The folded form of a name: two names are the same name when these are
/// equal. See the module documentation for the steps.
pub fn fold_name(name: &str) -> String {
    let compatible: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&compatible);
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    caseless::default_case_fold_str(&skeleton)
}

/// Whether two names are the same name.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || fold_name(a) == fold_name(b)
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
        fn case_never_matters_in_latin_names(name in "[a-zA-Z0-9\u{C0}-\u{FF}]{1,32}") {
            prop_assert_eq!(fold_name(&name.to_uppercase()), fold_name(&name));
        }
    }
}
