//! The SQL server's read-only classifier (`switchboard_sql::guard`) on arbitrary text. Besides
//! never panicking, it must keep its contract:
//! - anything it accepts is, token for token, one statement (no `;` followed by another
//!   token), starts with a read keyword, holds no data-changing keyword (bar `FOR [NO KEY]
//!   UPDATE`), no `INTO` and no call to a denied function;
//! - the verdict does not change when a line break and a `;` are appended (an open comment or
//!   literal swallows them, a closed statement may end with `;`);
//! - text inside a quoted literal, a quoted identifier, a dollar quote or a comment never
//!   becomes a token, whatever it contains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sql::guard::{
    DENIED_FUNCTIONS, READ_STARTS, Token, WRITE_KEYWORDS, called_functions, check_read_only,
    tokenize,
};

fn word(w: &str) -> Token {
    Token::Word(w.to_string())
}

/// The contract of an accepted statement, checked on its tokens.
fn assert_accepted_is_one_read(sql: &str, tokens: &[Token]) {
    let mut seen_semicolon = false;
    for token in tokens {
        match token {
            Token::Semicolon => seen_semicolon = true,
            other => assert!(
                !seen_semicolon,
                "{sql:?}: accepted with {other:?} after a `;`"
            ),
        }
    }
    let first = tokens.iter().find(|t| **t != Token::Punct('('));
    assert!(
        matches!(first, Some(Token::Word(w)) if READ_STARTS.contains(&w.as_str())),
        "{sql:?}: accepted starting with {first:?}"
    );
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(w) = token else { continue };
        assert!(w != "INTO", "{sql:?}: accepted with INTO");
        if WRITE_KEYWORDS.contains(&w.as_str()) {
            let lock = w == "UPDATE"
                && i > 0
                && matches!(&tokens[i - 1], Token::Word(p) if p == "FOR" || p == "KEY");
            assert!(lock, "{sql:?}: accepted with {w}");
        }
    }
    for name in called_functions(sql) {
        assert!(
            !DENIED_FUNCTIONS.contains(&name.as_str()),
            "{sql:?}: accepted calling {name}()"
        );
    }
}

/// Whatever `text` holds, once quoted (or commented out) after a `SELECT` it is inert.
fn assert_quoted_text_is_inert(text: &str) {
    let literal = || vec![word("SELECT"), Token::Literal];
    let one_literal = |sql: String| {
        assert_eq!(tokenize(&sql), literal(), "{sql:?}");
        assert!(check_read_only(&sql).is_ok(), "{sql:?}");
    };
    // Backslash escapes count inside literals (MySQL, `E''`), so both are escaped.
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    one_literal(format!("SELECT '{escaped}'"));
    one_literal(format!("SELECT E'{escaped}'"));
    if format!("{text}$q$").find("$q$") == Some(text.len()) {
        one_literal(format!("SELECT $q${text}$q$"));
    }
    if !text.contains('\n') {
        one_literal(format!("SELECT 1 -- {text}"));
        one_literal(format!("SELECT 1 # {text}"));
    }
    if !text.contains("/*") && !text.contains("*/") {
        one_literal(format!("SELECT 1 /* {text} */"));
    }
    for quote in ['"', '`'] {
        let doubled = text.replace(quote, &format!("{quote}{quote}"));
        let sql = format!("SELECT {quote}{doubled}{quote}");
        assert_eq!(
            tokenize(&sql),
            vec![word("SELECT"), Token::QuotedIdent(text.to_string())],
            "{sql:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = tokenize(sql);
    assert!(
        tokens.iter().filter(|t| **t == Token::Semicolon).count() <= sql.matches(';').count(),
        "{sql:?}: more `;` tokens than `;` characters"
    );
    for token in &tokens {
        match token {
            Token::Word(w) => assert!(
                !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == ';'),
                "{sql:?}: word {w:?}"
            ),
            Token::Punct(c) => assert!(*c != ';' && !c.is_whitespace(), "{sql:?}: {c:?}"),
            _ => {}
        }
    }
    let accepted = check_read_only(sql).is_ok();
    if accepted {
        assert_accepted_is_one_read(sql, &tokens);
    }
    let terminated = format!("{sql}\n;");
    assert_eq!(
        accepted,
        check_read_only(&terminated).is_ok(),
        "{sql:?}: a trailing line break and `;` changed the verdict"
    );
    assert_quoted_text_is_inert(sql);
});
