//! Text that reaches the generated file's comments or a one-line refusal comes from untrusted
//! input (names, values, flags). YAML ends a comment at any line break, and YAML 1.1 parsers
//! (kustomize's among them) also break lines at NEL, LS and PS: such a character in a name would
//! turn the rest of the name into live configuration. Everything shown is escaped here.

/// Whether `c` may stand in a YAML comment or a one-line message as it is: printable, not a
/// line break in any YAML version, not a byte order mark.
fn shown_as_is(c: char) -> bool {
    c == '\t' || !(c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
}

/// `s` with every character that could end a line or is not printable written as an escape
/// (`\n`, `\r`, `\u{2028}`, ...); a backslash is doubled only where it would read as such an
/// escape, so ordinary text is unchanged.
pub fn escape(s: &str) -> String {
    if s.chars().all(shown_as_is) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if shown_as_is(c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
}

/// Whether `s` holds a character that [`escape`] would change.
pub fn has_control(s: &str) -> bool {
    !s.chars().all(shown_as_is)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_of_every_yaml_version_are_escaped() {
        assert_eq!(escape("main\nnamePrefix: pwned-"), "main\\nnamePrefix: pwned-");
        assert_eq!(escape("a\rb\u{85}c\u{2028}d\u{2029}e\u{feff}\0"), "a\\rb\\u{85}c\\u{2028}d\\u{2029}e\\u{feff}\\0");
        assert_eq!(escape("plain: vllm.v1 (uses nvidia.com/gpu)\tü"), "plain: vllm.v1 (uses nvidia.com/gpu)\tü");
        assert!(has_control("x\u{7f}") && !has_control("x y"));
    }
}
