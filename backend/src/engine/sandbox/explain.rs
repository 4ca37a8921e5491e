//! `EXPLAIN`: DuckDB cannot serialise the plan of an EXPLAIN statement, so
//! the sandbox checks the statement it explains and runs an EXPLAIN it
//! writes itself around exactly that checked text.
//!
//! A request `EXPLAIN [ANALYZE] x` (or with an option list of `ANALYZE`
//! and `FORMAT f`) is read here only as far as that fixed head: the word
//! EXPLAIN, its options from a closed list, then whitespace. Whatever
//! follows is `x`, and what runs is [`Explain::around`]`(x)`:
//! `EXPLAIN (FORMAT f) ` or `EXPLAIN (ANALYZE, FORMAT f) ` followed by the
//! checked text. The user's own head is never run, so nothing in it (a
//! comment, a quote) can make DuckDB read `x` differently from the check:
//! the written head ends in a space, where DuckDB's lexer starts afresh,
//! and after an option list the grammar takes one statement, the one `x`
//! parsed as alone. A head this reader does not know (a comment before
//! EXPLAIN, another option) is not an EXPLAIN here: DuckDB's plan check
//! then refuses the statement (DuckDB cannot serialise it).

/// An `EXPLAIN` request: how to explain, and the statement explained.
#[derive(Debug, PartialEq, Eq)]
pub struct Explain<'a> {
    /// `EXPLAIN ANALYZE`: the statement also runs.
    pub analyze: bool,
    /// DuckDB's output format (lower case, from a closed list).
    pub format: &'static str,
    /// Everything after the head.
    pub inner: &'a str,
}

const FORMATS: [&str; 5] = ["text", "json", "html", "graphviz", "yaml"];

impl Explain<'_> {
    /// The EXPLAIN statement the service runs for `checked`, the text the
    /// sandbox checked as the explained statement.
    pub fn around(&self, checked: &str) -> String {
        let analyze = if self.analyze { "ANALYZE, " } else { "" };
        format!("EXPLAIN ({analyze}FORMAT {}) {checked}", self.format)
    }
}

/// `sql` as an EXPLAIN request, when it starts with a head this reader
/// knows (see the module's notes).
pub fn explain(sql: &str) -> Option<Explain<'_>> {
    let mut rest = skip_space(sql);
    rest = word(rest, &["EXPLAIN"])?.1;
    let mut analyze = false;
    let mut format = "text";
    let after_space = skip_space(rest);
    // `EXPLAIN` must be followed by whitespace, its option list or the end.
    if after_space.len() == rest.len() && !rest.is_empty() && !rest.starts_with('(') {
        return None;
    }
    rest = after_space;
    if let Some((_, after)) = word(rest, &["ANALYZE", "ANALYSE"]) {
        if after.len() == skip_space(after).len() && !after.is_empty() {
            return None;
        }
        analyze = true;
        rest = skip_space(after);
    } else if let Some(options) = rest.strip_prefix('(') {
        // An option list, if it is one this reader knows; otherwise the
        // parenthesis opens the explained statement (`EXPLAIN (SELECT 1)`).
        if let Some((listed_analyze, listed_format, after)) = option_list(options) {
            analyze = listed_analyze;
            format = listed_format;
            rest = skip_space(after);
        }
    }
    Some(Explain {
        analyze,
        format,
        inner: rest,
    })
}

/// `ANALYZE`, `FORMAT f`, separated by commas, up to `)`: whether ANALYZE
/// was listed, the format, and the text after the `)`.
fn option_list(mut rest: &str) -> Option<(bool, &'static str, &str)> {
    let mut analyze = false;
    let mut format = "text";
    loop {
        rest = skip_space(rest);
        if let Some((_, after)) = word(rest, &["ANALYZE", "ANALYSE"]) {
            analyze = true;
            rest = after;
        } else if let Some((_, after)) = word(rest, &["FORMAT"]) {
            let (name, after) = word(skip_space(after), &FORMATS)?;
            format = FORMATS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(name))
                .expect("word matched one of FORMATS");
            rest = after;
        } else {
            return None;
        }
        rest = skip_space(rest);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        return rest.strip_prefix(')').map(|after| (analyze, format, after));
    }
}

/// ASCII whitespace (space, tab, line feed, carriage return, form feed)
/// skipped; DuckDB treats each of them as a separator.
fn skip_space(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r', '\x0c'])
}

/// One of `words` (any case) at the start of `text`, ending where a word
/// ends: the word as written and the text after it.
fn word<'a>(text: &'a str, words: &[&str]) -> Option<(&'a str, &'a str)> {
    words.iter().find_map(|w| {
        let head = text.get(..w.len())?;
        let after = &text[w.len()..];
        let ends = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$');
        (head.eq_ignore_ascii_case(w) && ends).then_some((head, after))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_heads_are_read_and_written_canonically() {
        let plain = explain("EXPLAIN SELECT 1").unwrap();
        assert_eq!(
            (plain.inner, plain.analyze, plain.format),
            ("SELECT 1", false, "text")
        );
        assert_eq!(plain.around("SELECT 1"), "EXPLAIN (FORMAT text) SELECT 1");
        let analyzed = explain("  explain analyze\n -- why\n SELECT * FROM t").unwrap();
        assert_eq!(
            (analyzed.inner, analyzed.analyze),
            ("-- why\n SELECT * FROM t", true)
        );
        assert_eq!(
            analyzed.around("SELECT 2"),
            "EXPLAIN (ANALYZE, FORMAT text) SELECT 2"
        );
        let options = explain("EXPLAIN (FORMAT JSON, ANALYSE) SELECT 1").unwrap();
        assert_eq!(
            (options.inner, options.analyze, options.format),
            ("SELECT 1", true, "json")
        );
        let wrapped = explain("EXPLAIN (SELECT 1)").unwrap();
        assert_eq!((wrapped.inner, wrapped.analyze), ("(SELECT 1)", false));
        assert_eq!(explain("EXPLAIN").unwrap().inner, "");
        assert_eq!(
            explain("EXPLAIN(FORMAT yaml)FROM t").unwrap().inner,
            "FROM t"
        );
    }

    /// What follows the head is the explained statement whatever it holds:
    /// the attacker's `\r` ends DuckDB's comment inside it, and DuckDB's
    /// check of it sees the INSERT.
    #[test]
    fn everything_after_the_head_is_the_explained_statement() {
        let attack = explain("EXPLAIN ANALYZE -- x\rINSERT INTO victim\nSELECT 42").unwrap();
        assert_eq!(attack.inner, "-- x\rINSERT INTO victim\nSELECT 42");
        assert!(attack.analyze);
    }

    #[test]
    fn other_heads_are_not_read() {
        for sql in [
            "SELECT 'EXPLAIN'",
            "\"EXPLAIN\" SELECT 1",
            "EXPLAINED",
            "/* c */ EXPLAIN SELECT 1",
            "EXPLAIN/* c */SELECT 1",
            "EXPLAIN ANALYZE/* c */SELECT 1",
        ] {
            assert_eq!(explain(sql), None, "{sql:?}");
        }
        // An option this reader does not know: the parenthesis is taken
        // as the explained statement's, which DuckDB's check then reads.
        let unknown = explain("EXPLAIN (VERBOSE) SELECT 1").unwrap();
        assert_eq!(unknown.inner, "(VERBOSE) SELECT 1");
    }
}
