//! SQL text for the node's SQLite service.
//!
//! The node binds a string parameter that happens to decode as base64 as a BLOB, so text values are
//! written as quoted SQL literals instead of parameters. [`text`] is the one way to do that.

/// A SQL string literal for `s`: single quotes doubled, NUL refused by replacing it with U+FFFD
/// (SQLite literals have no other escapes).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `NULL` or the literal of `s`.
pub fn opt_text(s: Option<&str>) -> String {
    s.map(text).unwrap_or_else(|| "NULL".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_nul_replaced() {
        assert_eq!(text("alice.os"), "'alice.os'");
        assert_eq!(text("o'brien"), "'o''brien'");
        assert_eq!(text("'); DROP TABLE x; --"), "'''); DROP TABLE x; --'");
        assert_eq!(text("a\0b"), "'a\u{FFFD}b'");
        assert_eq!(opt_text(None), "NULL");
    }
}
