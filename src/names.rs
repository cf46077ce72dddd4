//! What may appear in a name: the one rule for session names, tags, shared-context keys and
//! the other short texts that name something (issue 19 item 7).
//!
//! A name is shown in lists, log lines and terminals, so two kinds of character are refused
//! in it wherever it is taken (create, update, clone, import):
//! - the C0 and C1 controls, DEL included ([`char::is_control`]): a newline or a tab forges
//!   a log line or a table cell, ESC drives a terminal, NUL cuts a C string;
//! - the Unicode bidirectional formatting characters ([`is_bidi_control`]): an override,
//!   isolate or mark makes a name read differently from what it is (`U+202E` shows
//!   `cod.exe` as `exe.doc`).
//!
//! Agent names are stricter still (`[A-Za-z0-9._-]`, see `agent::is_agent_name`); free text
//! (a description) may hold newlines and tabs. Paths report the same bidi characters as a
//! `bidi_control_characters` warning (`paths::policy`).

/// Whether `c` is a Unicode bidirectional formatting character: the embeddings and
/// overrides U+202A–U+202E, the isolates U+2066–U+2069, and the marks U+200E (LRM),
/// U+200F (RLM) and U+061C (ALM).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

/// Whether `c` is refused in a name: a C0 or C1 control character (newline, tab, ESC, NUL
/// and DEL included) or a bidirectional formatting character.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// The first character of `name` that a name may not hold, if any.
pub fn forbidden_character(name: &str) -> Option<char> {
    name.chars().find(|&c| is_forbidden_in_name(c))
}

/// What to tell a client about a refused character, e.g. `must not contain control or
/// text-direction characters, got \u{202e}` (escaped: the character itself would do what it
/// is refused for).
pub fn refusal(c: char) -> String {
    format!(
        "must not contain control or text-direction characters, got {}",
        c.escape_unicode()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_characters_are_refused_and_ordinary_text_is_not() {
        let refused = [
            '\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{202a}',
            '\u{202e}', '\u{2066}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}',
        ];
        for c in refused {
            assert!(is_forbidden_in_name(c), "{}", c.escape_unicode());
            assert_eq!(forbidden_character(&format!("ab{c}cd")), Some(c));
        }
        for name in [
            "My Project Session",
            "déjà vu – ünïcödé",
            "日本語のセッション",
            "مرحبا",
            "emoji 🚀",
            "zero\u{200d}width joiner",
        ] {
            assert_eq!(forbidden_character(name), None, "{name}");
        }
        assert!(refusal('\u{202e}').ends_with("\\u{202e}"));
    }
}
