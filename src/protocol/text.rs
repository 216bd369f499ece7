//! What a message's text may contain: nothing that could make it pass for
//! another line on a recipient's screen.
//!
//! Every line the server writes starts with `from <name>:`, `server:` or
//! `error:`, and a reader trusts those first words. A text could forge one
//! in three ways, each refused here (with an `error:` line, as control
//! characters are):
//! - **a line break in disguise**: control characters (`\r`, escape
//!   sequences), and the Unicode line and paragraph separators
//!   (U+2028, U+2029), which some terminals and most web pages break on;
//! - **characters that reorder or hide text**: the format characters
//!   (Unicode category Cf): bidirectional embeddings, overrides and
//!   isolates (U+202A..U+202E, U+2066..U+2069), marks (U+200E, U+200F,
//!   U+061C), zero-width spaces and joiners, the byte-order mark, tags.
//!   Two of them are needed by real text and allowed where they do that
//!   work, between two visible characters: the zero-width joiner (U+200D,
//!   emoji sequences such as 👩‍💻) and non-joiner (U+200C, Persian);
//! - **the wrap trick**: `hi` + 70 spaces + `from bob: ...` wraps, in an
//!   80-column terminal, into what looks like a line from bob. A run of
//!   blank space wider than [`MAX_BLANK_COLUMNS`] is refused (a tab counts
//!   8 columns, a wide blank 2; blank-looking fillers such as U+3164 count
//!   as blank). Visible padding (`hi.....from bob`) cannot be told from
//!   text and is not refused: `achat-client` marks the rows a long line
//!   wraps onto, so they cannot pass for lines of their own.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// The widest run of blank space a text may hold, in terminal columns.
pub const MAX_BLANK_COLUMNS: usize = 16;

/// Characters that show as blank space, or as nothing, but are neither
/// whitespace nor format characters: the Hangul fillers and the blank
/// Braille pattern.
pub const BLANK_LOOKALIKES: [char; 5] =
    ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];

/// Why a text is refused (besides control characters, see
/// [`RequestError`](super::RequestError)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    /// A character that breaks, reorders or hides text.
    Invisible(char),
    /// A run of blank space wider than [`MAX_BLANK_COLUMNS`].
    LongBlank,
}

/// Whether `c` is one of the characters that may not appear in a name at
/// all, and in a text only where [`check_text`] allows it: format
/// characters, line and paragraph separators, blank lookalikes.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    ) || BLANK_LOOKALIKES.contains(&c)
}

/// Checks a text (control characters aside, which the caller has checked
/// already) for the problems described in the module documentation.
pub fn check_text(text: &str) -> Result<(), TextProblem> {
    if is_plain(text.as_bytes()) {
        return Ok(());
    }
    if text.is_ascii() {
        return check_ascii_blanks(text.as_bytes());
    }
    let mut blank_columns = 0;
    let mut previous: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let blank = blank_width(c);
        if let Some(width) = blank {
            blank_columns += width;
            if blank_columns > MAX_BLANK_COLUMNS {
                return Err(TextProblem::LongBlank);
            }
        } else {
            blank_columns = 0;
        }
        if blank.is_none() && is_invisible(c) {
            let joins_two_visible = matches!(c, '\u{200C}' | '\u{200D}')
                && previous.is_some_and(is_visible)
                && chars.peek().copied().is_some_and(is_visible);
            if !joins_two_visible {
                return Err(TextProblem::Invisible(c));
            }
        }
        previous = Some(c);
    }
    Ok(())
}

/// Whether `bytes` are ASCII with no two blanks in a row: then nothing in
/// them can be a problem (a blank run wider than 16 columns needs two
/// blanks side by side), which is what almost every line is. One pass
/// with no early exit and no dependency from byte to byte, so the
/// compiler vectorizes it: every line is checked, and this keeps the
/// check to a fraction of a nanosecond per byte.
fn is_plain(bytes: &[u8]) -> bool {
    let non_ascii = bytes.iter().fold(false, |seen, &b| seen | (b >= 0x80));
    let blank = |b: u8| (b == b' ') | (b == b'\t');
    let tail = bytes.get(1..).unwrap_or_default();
    let blank_pair = bytes
        .iter()
        .zip(tail)
        .fold(false, |seen, (&a, &b)| seen | (blank(a) & blank(b)));
    !non_ascii && !blank_pair
}

/// [`check_text`] for ASCII text, where only runs of spaces and tabs can
/// be a problem: jumps from blank to blank, so ordinary text costs little.
fn check_ascii_blanks(bytes: &[u8]) -> Result<(), TextProblem> {
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b' ', b'\t', &bytes[at..]) {
        let mut columns = 0;
        let mut end = at + found;
        while let Some(&b) = bytes.get(end) {
            columns += match b {
                b' ' => 1,
                b'\t' => 8,
                _ => break,
            };
            end += 1;
        }
        if columns > MAX_BLANK_COLUMNS {
            return Err(TextProblem::LongBlank);
        }
        at = end;
    }
    Ok(())
}

/// The columns a blank character takes, or `None` for a character that is
/// not blank.
fn blank_width(c: char) -> Option<usize> {
    match c {
        '\t' => Some(8),
        // Ideographic space and the wide Hangul filler take two columns.
        '\u{3000}' | '\u{3164}' => Some(2),
        // The line and paragraph separators are whitespace too, but they
        // break lines: not blank space, refused as invisible.
        '\u{2028}' | '\u{2029}' => None,
        c if c.is_whitespace() || BLANK_LOOKALIKES.contains(&c) => Some(1),
        _ => None,
    }
}

/// Whether `c` is something a reader sees: a letter, mark, number,
/// punctuation or symbol, and not a blank lookalike.
pub fn is_visible(c: char) -> bool {
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Mark
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    ) && !BLANK_LOOKALIKES.contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes() {
        for text in [
            "hi",
            "see you at 10:30, ok?",
            "a\tb",
            "indented:        sixteen",
            "Zoë, 日本語, Ελληνικά, עברית, العربية",
            "👩\u{200D}💻 at work",
            "می\u{200C}خواهم",
            "",
        ] {
            assert_eq!(check_text(text), Ok(()), "{text:?}");
        }
    }

    #[test]
    fn separators_and_format_characters_are_refused() {
        for c in [
            '\u{2028}',
            '\u{2029}',
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            let text = format!("hi {c}there");
            assert_eq!(check_text(&text), Err(TextProblem::Invisible(c)), "{c:?}");
        }
    }

    #[test]
    fn joiners_only_between_visible_characters() {
        assert_eq!(
            check_text("\u{200D}hi"),
            Err(TextProblem::Invisible('\u{200D}'))
        );
        assert_eq!(
            check_text("hi\u{200D}"),
            Err(TextProblem::Invisible('\u{200D}'))
        );
        assert_eq!(
            check_text("a \u{200C}b"),
            Err(TextProblem::Invisible('\u{200C}'))
        );
        assert_eq!(
            check_text("a\u{200D}\u{200D}b"),
            Err(TextProblem::Invisible('\u{200D}'))
        );
    }

    #[test]
    fn the_wrap_trick_is_refused() {
        let forged = format!("hi{}from bob: the deploy key is ...", " ".repeat(64));
        assert_eq!(check_text(&forged), Err(TextProblem::LongBlank));
        assert_eq!(check_text(&"\t".repeat(3)), Err(TextProblem::LongBlank));
        assert_eq!(
            check_text(&format!("x{}y", " ".repeat(17))),
            Err(TextProblem::LongBlank)
        );
        assert_eq!(check_text(&format!("x{}y", " ".repeat(16))), Ok(()));
        let fillers = format!("x{}from bob: hi", "\u{3164}".repeat(9));
        assert_eq!(check_text(&fillers), Err(TextProblem::LongBlank));
        let wide = format!("é{}y", "\u{3000}".repeat(9));
        assert_eq!(check_text(&wide), Err(TextProblem::LongBlank));
    }

    #[test]
    fn blank_lookalikes_are_invisible_but_letters_are_not() {
        for c in BLANK_LOOKALIKES {
            assert!(is_invisible(c) && !is_visible(c), "{c:?}");
        }
        for c in ['a', 'é', '日', '😀', '1', '!', '\u{0301}'] {
            assert!(!is_invisible(c) && is_visible(c), "{c:?}");
        }
    }
}
