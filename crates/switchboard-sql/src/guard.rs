//! A light SQL tokenizer that rejects classes of dangerous input early, with a clear message.
//!
//! This is *not* the read-only guarantee: that comes from the engine (a read-only SQLite
//! connection with an authorizer, a `READ ONLY` transaction on PostgreSQL and MySQL/MariaDB,
//! one prepared statement per call). The tokenizer exists so that a caller gets a precise
//! error ("two statements", "`SELECT … INTO`", "`pg_read_file` is not allowed") instead of an
//! engine message, and so that the few things a superuser's read-only transaction still
//! allows (file-reading and admin functions) are refused by class, on tokens, never by
//! substring matching: string literals, quoted identifiers and comments are skipped, so
//! `SELECT 'DROP TABLE x; --'` is one harmless statement.

use crate::error::SqlError;

/// One significant token of SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word (keyword or identifier), upper-cased for comparison.
    Word(String),
    /// A quoted identifier (`"x"`, `` `x` ``, `[x]`), unquoted, case kept.
    QuotedIdent(String),
    /// A string, numeric or other literal; its content never matters here.
    Literal,
    /// `;`
    Semicolon,
    /// Any other punctuation character.
    Punct(char),
}

/// Splits `sql` into significant tokens, dropping whitespace and comments.
///
/// Handles `'…'` (with `''`), `E'…'` escapes, PostgreSQL dollar quoting, `"…"`, `` `…` ``,
/// `--`/`#` line comments and (nested) `/* … */` comments. An unterminated literal or
/// comment swallows the rest of the input, which is what the engines do too.
pub fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') || c == '#' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < n {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' {
            i = skip_quoted(&chars, i, '\'', true);
            tokens.push(Token::Literal);
        } else if c == '"' || c == '`' {
            let end = skip_quoted(&chars, i, c, false);
            let inner: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
                .iter()
                .collect();
            let doubled: String = [c, c].iter().collect();
            tokens.push(Token::QuotedIdent(inner.replace(&doubled, &c.to_string())));
            i = end;
        } else if c == '$'
            && let Some(end) = dollar_quote_end(&chars, i)
        {
            tokens.push(Token::Literal);
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < n && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `E'…'`, `B'…'`, `X'…'`, `N'…'`: a prefixed literal, not a word.
            if i < n && chars[i] == '\'' && word.len() == 1 {
                i = skip_quoted(&chars, i, '\'', word.eq_ignore_ascii_case("e"));
                tokens.push(Token::Literal);
            } else {
                tokens.push(Token::Word(word.to_uppercase()));
            }
        } else if c.is_ascii_digit() {
            while i < n && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Literal);
        } else if c == ';' {
            tokens.push(Token::Semicolon);
            i += 1;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Returns the index just past the closing `quote` of the literal starting at `start`.
/// A doubled quote is an escaped quote; with `backslash`, `\x` escapes too (MySQL, `E''`).
fn skip_quoted(chars: &[char], start: usize, quote: char, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if backslash && chars[i] == '\\' {
            i += 2;
        } else if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// If a PostgreSQL dollar quote (`$$` or `$tag$`) starts at `start`, the index past its end.
fn dollar_quote_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) != Some(&'$') || chars.get(start + 1).is_some_and(|c| c.is_ascii_digit()) {
        return None; // `$1` is a parameter, not a quote.
    }
    let tag: Vec<char> = chars[start..=j].to_vec();
    let mut i = j + 1;
    while i + tag.len() <= chars.len() {
        if chars[i..i + tag.len()] == tag[..] {
            return Some(i + tag.len());
        }
        i += 1;
    }
    Some(chars.len())
}

/// Statements the read-only tools accept as their first keyword.
pub const READ_STARTS: &[&str] = &[
    "SELECT", "WITH", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC",
];

/// Keywords that only appear in data-changing or schema-changing statements. Found anywhere
/// (for example inside a CTE: `WITH x AS (DELETE …) SELECT …`), the input is not a read.
pub const WRITE_KEYWORDS: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "DROP", "ALTER", "CREATE", "GRANT",
    "REVOKE", "COPY", "CALL", "DO", "VACUUM", "REINDEX", "ATTACH", "DETACH", "HANDLER",
];

/// Functions that read or write server files, load code, or change server state. Superusers
/// may call them even in a read-only transaction, so they are refused by name (as a call,
/// `name(`, whether bare, schema-qualified or quoted).
pub const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL: server files and large objects.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "lo_import",
    "lo_export",
    "lo_from_bytea",
    "lo_put",
    "lo_create",
    "lo_unlink",
    // PostgreSQL: server state and other sessions.
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_notify",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    // MySQL/MariaDB.
    "load_file",
    "get_lock",
    "sys_exec",
    "sys_eval",
    // SQLite.
    "load_extension",
    "writefile",
    "readfile",
    "edit",
];

/// Refuses `sql` unless it is exactly one statement (a trailing `;` is fine).
pub(crate) fn single_statement(tokens: &[Token]) -> Result<(), SqlError> {
    if tokens.iter().all(|t| *t == Token::Semicolon) {
        return Err(SqlError::Rejected("the statement is empty".into()));
    }
    let mut seen_semicolon = false;
    for token in tokens {
        match token {
            Token::Semicolon => seen_semicolon = true,
            _ if seen_semicolon => {
                return Err(SqlError::Rejected(
                    "only one statement per call is allowed; send the statements one at a time"
                        .into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `sql` is one read-only statement with no denied function call.
pub fn check_read_only(sql: &str) -> Result<(), SqlError> {
    let tokens = tokenize(sql);
    single_statement(&tokens)?;
    let first = tokens.iter().find_map(|t| match t {
        Token::Word(w) => Some(w.as_str()),
        Token::Punct('(') => None,
        _ => Some(""),
    });
    match first {
        Some(word) if READ_STARTS.contains(&word) => {}
        Some(word) => {
            return Err(SqlError::Rejected(format!(
                "only read-only statements (SELECT, WITH, VALUES, TABLE, SHOW, DESCRIBE) are \
                 allowed here{}",
                if word.is_empty() {
                    String::new()
                } else {
                    format!(", not {word}")
                }
            )));
        }
        None => return Err(SqlError::Rejected("the statement is empty".into())),
    }
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        if WRITE_KEYWORDS.contains(&word.as_str()) {
            // `SELECT … FOR UPDATE` / `FOR NO KEY UPDATE` is a lock request, which the read-only
            // transaction refuses by itself; it is not a hidden write statement.
            let after_for =
                i > 0 && matches!(&tokens[i - 1], Token::Word(p) if p == "FOR" || p == "KEY");
            if !(word == "UPDATE" && after_for) {
                return Err(SqlError::Rejected(format!(
                    "{word} is not allowed in a read-only query (data-changing statements, \
                     also inside a WITH clause, need the `execute` tool)"
                )));
            }
        }
        if word == "INTO" {
            return Err(SqlError::Rejected(
                "SELECT … INTO (a new table, a variable, OUTFILE or DUMPFILE) is not allowed in \
                 a read-only query"
                    .into(),
            ));
        }
    }
    check_functions(&tokens)
}

/// Refuses calls to [`DENIED_FUNCTIONS`].
pub(crate) fn check_functions(tokens: &[Token]) -> Result<(), SqlError> {
    for pair in tokens.windows(2) {
        let name = match &pair[0] {
            Token::Word(w) => w.to_lowercase(),
            Token::QuotedIdent(q) => q.to_lowercase(),
            _ => continue,
        };
        if pair[1] == Token::Punct('(') && DENIED_FUNCTIONS.contains(&name.as_str()) {
            return Err(SqlError::Rejected(format!(
                "the function {name}() reads or writes server files or changes server state, \
                 and is not allowed"
            )));
        }
    }
    Ok(())
}

/// The function names called in `expr` (lower-cased, schema qualifier dropped).
pub fn called_functions(expr: &str) -> Vec<String> {
    let tokens = tokenize(expr);
    tokens
        .windows(2)
        .filter(|pair| pair[1] == Token::Punct('('))
        .filter_map(|pair| match &pair[0] {
            Token::Word(w) => Some(w.to_lowercase()),
            Token::QuotedIdent(q) => Some(q.to_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(sql: &str) -> bool {
        check_read_only(sql).is_err()
    }

    #[test]
    fn plain_reads_pass() {
        for sql in [
            "SELECT 1",
            "select * from t;",
            "  -- hi\n SELECT 'a;b' AS x /* ; */",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "SELECT $$;DROP TABLE x;$$",
            "SELECT \"delete\" FROM t",
            "SELECT * FROM t FOR UPDATE",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT 'it''s; fine'",
            "SELECT E'\\'; DROP TABLE t; --'",
            "VALUES (1), (2)",
            "SHOW TABLES",
        ] {
            assert!(
                check_read_only(sql).is_ok(),
                "{sql}: {:?}",
                check_read_only(sql)
            );
        }
    }

    #[test]
    fn classes_of_writes_are_refused() {
        for sql in [
            "SELECT 1; DROP TABLE t",
            "SELECT 1; COMMIT; DROP TABLE t",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT * INTO newt FROM t",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "COPY t TO PROGRAM 'id'",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            "SELECT \"pg_read_file\"('/etc/passwd')",
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_terminate_backend(1)",
            "SELECT load_extension('x')",
            "INSERT INTO t VALUES (1)",
            "PRAGMA writable_schema = 1",
            "ATTACH DATABASE 'x' AS y",
            "",
            ";",
        ] {
            assert!(rejected(sql), "{sql} should be rejected");
        }
    }

    #[test]
    fn functions_in_expressions_are_found() {
        assert_eq!(
            called_functions("pg_catalog.pg_read_file('a(b)'::text), lower(x)"),
            vec!["pg_read_file".to_string(), "lower".to_string()]
        );
    }
}
