//! Free text that crosses a trust boundary (halt reasons, checklist notes, operator names):
//! checked on the way in, escaped on the way out.
//!
//! One-line fields refuse every **control character** — Unicode category `Cc`: C0 (NUL to
//! US, including TAB, LF, CR, BEL and ESC), DEL and C1 (U+0080 to U+009F) — so that what an
//! operator typed cannot forge lines, colours or cursor moves on a terminal, in a log or in
//! a Prometheus label. Text that is already stored (an old journal) is printed through
//! [`escape_control`], which makes the same characters visible instead.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a free-text field was refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty, or only whitespace, where text is required.
    #[error("{field} must not be empty")]
    Empty {
        /// The field (`reason`, `note`, …).
        field: &'static str,
    },
    /// Longer than the field allows, counted in characters (Unicode scalar values).
    #[error("{field} must be at most {max} characters (got {chars})")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit, in characters.
        max: usize,
        /// The length of the text, in characters.
        chars: usize,
    },
    /// A control character (C0 incl. TAB/CR/LF/ESC, DEL or C1).
    #[error(
        "{field} contains the control character U+{code:04X} at character {position}; control characters (C0 incl. tab, CR, LF and ESC, DEL, C1) are not allowed"
    )]
    Control {
        /// The field.
        field: &'static str,
        /// The character's code point.
        code: u32,
        /// Its position, counted in characters from 1.
        position: usize,
    },
}

impl TextError {
    /// The field the error is about.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            TextError::Empty { field }
            | TextError::TooLong { field, .. }
            | TextError::Control { field, .. } => field,
        }
    }
}

/// Checks a one-line field: at most `max_chars` characters, no control character and, when
/// `required`, not empty or only whitespace.
///
/// # Errors
/// [`TextError`] naming `field`: the first control character found, else the length, else
/// emptiness.
pub fn check_line(
    field: &'static str,
    text: &str,
    max_chars: usize,
    required: bool,
) -> Result<(), TextError> {
    if let Some((i, c)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(TextError::Control {
            field,
            code: u32::from(c),
            position: i + 1,
        });
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(TextError::TooLong {
            field,
            max: max_chars,
            chars,
        });
    }
    if required && text.trim().is_empty() {
        return Err(TextError::Empty { field });
    }
    Ok(())
}

/// `text` with every control character made visible: `\n`, `\r` and `\t` as written here,
/// any other as `\u{1b}`. Text without control characters is returned as is (borrowed).
#[must_use]
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_field_and_checks_come_in_order() {
        assert_eq!(
            check_line("operator", "   ", 10, true),
            Err(TextError::Empty { field: "operator" })
        );
        check_line("note", "", 10, false).unwrap();
        let long = check_line("reason", "abcdef", 5, true).unwrap_err();
        assert_eq!(
            long,
            TextError::TooLong {
                field: "reason",
                max: 5,
                chars: 6
            }
        );
        // Characters, not bytes: five two-byte characters fit in five.
        check_line("reason", "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", 5, true).unwrap();
        // A control character is reported before the length.
        let control = check_line("label", "abcdef\u{7}", 5, true).unwrap_err();
        assert!(matches!(control, TextError::Control { position: 7, .. }));
        for err in [TextError::Empty { field: "operator" }, long, control] {
            assert!(err.to_string().starts_with(err.field()), "{err}");
        }
        assert_eq!(TextError::Empty { field: "x" }.field(), "x");
        assert_eq!(
            TextError::TooLong {
                field: "y",
                max: 1,
                chars: 2
            }
            .field(),
            "y"
        );
    }

    #[test]
    fn every_c0_del_and_c1_character_is_refused_naming_the_field() {
        let controls = (0u32..0x20).chain([0x7f]).chain(0x80..0xa0);
        for code in controls {
            let c = char::from_u32(code).unwrap();
            let text = format!("ab{c}cd");
            let err = check_line("reason", &text, 500, true).unwrap_err();
            assert_eq!(
                err,
                TextError::Control {
                    field: "reason",
                    code,
                    position: 3
                },
                "U+{code:04X}"
            );
            assert!(err.to_string().starts_with("reason contains"), "{err}");
        }
    }

    #[test]
    fn printable_text_passes_and_length_counts_characters() {
        check_line("reason", "drawdown 16 % > 15 % — ÿ €", 500, true).unwrap();
        let euro = "€".repeat(500);
        assert_eq!(euro.len(), 1500, "three bytes each");
        check_line("reason", &euro, 500, true).unwrap();
        let err = check_line("reason", &format!("{euro}€"), 500, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reason must be at most 500 characters (got 501)"
        );
        assert_eq!(
            check_line("note", "  ", 10, true).unwrap_err(),
            TextError::Empty { field: "note" }
        );
        check_line("note", "", 10, false).unwrap();
    }

    #[test]
    fn escaping_makes_controls_visible_and_leaves_other_text_alone() {
        assert!(matches!(escape_control("plain — ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control("a\x1b[31mred\r\nfake line\x07\0\u{9b}\t"),
            "a\\u{1b}[31mred\\r\\nfake line\\u{7}\\u{0}\\u{9b}\\t"
        );
        assert!(
            !escape_control("\x1b\x7f\u{85}")
                .chars()
                .any(char::is_control)
        );
    }
}
