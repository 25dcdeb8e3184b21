//! Terminal output of text read from files (names of runs, tensors, metrics,
//! user metadata, error messages quoting them).

use std::borrow::Cow;

/// `s` with its control characters, and the bidirectional-text controls that
/// reorder what a terminal shows, written as Rust escapes (`\u{1b}`, `\n`,
/// `\u{202e}`), so a name read from a file cannot move the cursor, recolour or
/// clear the screen, or disguise the rest of its line.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `escape` of anything displayed (an error, a path).
pub fn escaped(x: impl std::fmt::Display) -> String {
    escape(&x.to_string()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape("fc1.weight é ∞"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\ny\r\t\u{7f}"), "x\\ny\\r\\t\\u{7f}");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escaped(format_args!("{}", "\u{9b}31m")), "\\u{9b}31m");
    }
}
