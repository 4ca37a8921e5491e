//! Statements the sandbox checks through the statement they stand for,
//! because DuckDB cannot serialise a plan of their own:
//!
//! - `EXPLAIN [ANALYZE] x` is checked as `x` (it plans `x`, and with ANALYZE
//!   runs it), so it needs what `x` needs and is refused where `x` is.
//! - A PIVOT statement whose columns come from the data (`PIVOT t ON x
//!   USING sum(y)`, no `IN` list) is expanded by DuckDB's parser into
//!   several statements: a temporary ENUM of `x`'s distinct values read
//!   from the same source, the pivot over that ENUM, and its drop. It is
//!   checked as the same pivot over a stated list (`ON (x) IN (NULL)`),
//!   which plans the same source, expressions and aggregates.
//!
//! Only tokens are read here (sqlparser's tokenizer); every decision on what
//! a statement does is still taken from DuckDB's plan.

use sqlparser::{
    dialect::DuckDbDialect,
    tokenizer::{Token, TokenWithSpan, Tokenizer},
};

use super::split::LineOffsets;

/// An `EXPLAIN` statement and the statement it explains.
#[derive(Debug, PartialEq, Eq)]
pub struct Explain<'a> {
    /// `EXPLAIN`, its options and the whitespace up to the statement.
    pub prefix: &'a str,
    /// The explained statement (empty when there is none).
    pub inner: &'a str,
    /// `EXPLAIN ANALYZE`: the statement also runs.
    pub analyze: bool,
}

/// `sql` as an `EXPLAIN` statement, when it is one.
pub fn explain(sql: &str) -> Option<Explain<'_>> {
    let tokens = significant(sql)?;
    let offsets = LineOffsets::new(sql);
    let mut at = 0;
    if !is_word(tokens.first()?, "EXPLAIN") {
        return None;
    }
    at += 1;
    let mut analyze = false;
    if tokens
        .get(at)
        .is_some_and(|t| is_word(t, "ANALYZE") || is_word(t, "ANALYSE"))
    {
        analyze = true;
        at += 1;
    }
    // `EXPLAIN (FORMAT json, ANALYZE) x` has options; `EXPLAIN (SELECT 1)`
    // explains a parenthesised query: options are followed by more.
    if tokens.get(at).is_some_and(|t| t.token == Token::LParen) {
        let close = matching_paren(&tokens, at)?;
        if tokens.get(close + 1).is_some_and(|t| !ends(&t.token)) {
            analyze |= tokens[at..close]
                .iter()
                .any(|t| is_word(t, "ANALYZE") || is_word(t, "ANALYSE"));
            at = close + 1;
        }
    }
    let start = match tokens.get(at) {
        Some(token) if !ends(&token.token) => start_of(&offsets, token),
        _ => sql.len(),
    };
    Some(Explain {
        prefix: &sql[..start],
        inner: &sql[start..],
        analyze,
    })
}

/// For a statement holding a PIVOT whose values come from the data: the
/// statement with each such pivot column given a stated list, for the plan
/// check (see the module's notes). `None` when there is nothing to state.
pub fn stated_pivot(sql: &str) -> Option<String> {
    let tokens = significant(sql)?;
    let offsets = LineOffsets::new(sql);
    let mut insertions: Vec<(usize, &str)> = Vec::new();
    let depths = depths(&tokens);
    for (i, token) in tokens.iter().enumerate() {
        let starts_statement = i == 0 || tokens[i - 1].token == Token::LParen;
        if !(starts_statement && (is_word(token, "PIVOT") || is_word(token, "PIVOT_WIDER"))) {
            continue;
        }
        let depth = depths[i];
        // Its ON, at its own depth.
        let Some(on) = (i + 1..tokens.len())
            .take_while(|&j| depths[j] >= depth && !ends(&tokens[j].token))
            .find(|&j| depths[j] == depth && is_word(&tokens[j], "ON"))
        else {
            continue;
        };
        // The columns: up to USING, GROUP BY, ORDER BY, LIMIT, the end of
        // the statement or of the parentheses around it; split at commas.
        let mut column_start = on + 1;
        let mut has_in = false;
        let mut j = on + 1;
        loop {
            let token = tokens.get(j);
            let at_depth = token.is_some_and(|_| depths[j] == depth);
            let column_ends = match token {
                None => true,
                Some(t) => {
                    ends(&t.token)
                        || depths[j] < depth
                        || (at_depth
                            && (t.token == Token::Comma
                                || ["USING", "GROUP", "ORDER", "LIMIT", "OFFSET"]
                                    .iter()
                                    .any(|w| is_word(t, w))))
                }
            };
            if column_ends {
                if !has_in && j > column_start {
                    insertions.push((start_of(&offsets, &tokens[column_start]), "("));
                    insertions.push((end_of(&offsets, &tokens[j - 1]), ") IN (NULL)"));
                }
                if token.is_some_and(|t| t.token == Token::Comma && at_depth) {
                    column_start = j + 1;
                    has_in = false;
                    j += 1;
                    continue;
                }
                break;
            }
            has_in |= at_depth && is_word(token.expect("not the end"), "IN");
            j += 1;
        }
    }
    if insertions.is_empty() {
        return None;
    }
    insertions.sort_by_key(|(at, _)| *at);
    let mut out = String::with_capacity(sql.len() + insertions.len() * 12);
    let mut copied = 0;
    for (at, text) in insertions {
        out.push_str(&sql[copied..at]);
        out.push_str(text);
        copied = at;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// The tokens that are not whitespace or comments, ending with EOF; `None`
/// when the tokenizer cannot read the text (DuckDB's parser then reports it).
fn significant(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    Some(
        tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect(),
    )
}

/// Each token's depth in parentheses; a `(` and its `)` count outside.
fn depths(tokens: &[TokenWithSpan]) -> Vec<usize> {
    let mut depth = 0usize;
    tokens
        .iter()
        .map(|t| match t.token {
            Token::LParen => {
                depth += 1;
                depth - 1
            }
            Token::RParen => {
                depth = depth.saturating_sub(1);
                depth
            }
            _ => depth,
        })
        .collect()
}

fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn is_word(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn ends(token: &Token) -> bool {
    matches!(token, Token::EOF | Token::SemiColon)
}

fn start_of(offsets: &LineOffsets, token: &TokenWithSpan) -> usize {
    offsets.byte_offset(token.span.start.line, token.span.start.column)
}

fn end_of(offsets: &LineOffsets, token: &TokenWithSpan) -> usize {
    offsets.byte_offset(token.span.end.line, token.span.end.column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_is_read_with_its_options() {
        let plain = explain("EXPLAIN SELECT 1").unwrap();
        assert_eq!(
            (plain.prefix, plain.inner, plain.analyze),
            ("EXPLAIN ", "SELECT 1", false)
        );
        let analyzed = explain("  explain analyze\n -- why\n SELECT * FROM t").unwrap();
        assert_eq!(
            (analyzed.inner, analyzed.analyze),
            ("SELECT * FROM t", true)
        );
        let options = explain("EXPLAIN (FORMAT json, ANALYZE) SELECT 1").unwrap();
        assert_eq!((options.inner, options.analyze), ("SELECT 1", true));
        let json = explain("EXPLAIN (FORMAT json) INSERT INTO t VALUES (1)").unwrap();
        assert_eq!(
            (json.inner, json.analyze),
            ("INSERT INTO t VALUES (1)", false)
        );
        let wrapped = explain("EXPLAIN (SELECT 1)").unwrap();
        assert_eq!((wrapped.inner, wrapped.analyze), ("(SELECT 1)", false));
        assert_eq!(explain("EXPLAIN").unwrap().inner, "");
        assert_eq!(explain("SELECT 'EXPLAIN'"), None);
        assert_eq!(explain("\"EXPLAIN\" SELECT 1"), None);
    }

    #[test]
    fn pivots_over_the_data_get_a_stated_list() {
        assert_eq!(
            stated_pivot("PIVOT t ON x USING sum(y)").as_deref(),
            Some("PIVOT t ON (x) IN (NULL) USING sum(y)")
        );
        assert_eq!(
            stated_pivot("pivot (SELECT * FROM t) ON x || k, y GROUP BY k").as_deref(),
            Some("pivot (SELECT * FROM t) ON (x || k) IN (NULL), (y) IN (NULL) GROUP BY k")
        );
        assert_eq!(
            stated_pivot("SELECT * FROM (PIVOT t ON f(a, b)) p").as_deref(),
            Some("SELECT * FROM (PIVOT t ON (f(a, b)) IN (NULL)) p")
        );
        assert_eq!(
            stated_pivot("WITH p AS (PIVOT_WIDER t ON x IN ('a'), z ORDER BY 1) FROM p").as_deref(),
            Some("WITH p AS (PIVOT_WIDER t ON x IN ('a'), (z) IN (NULL) ORDER BY 1) FROM p")
        );
        assert_eq!(
            stated_pivot("PIVOT t ON x IN ('a', 'b') USING sum(y)"),
            None
        );
        assert_eq!(
            stated_pivot("SELECT * FROM t PIVOT (sum(y) FOR x IN ('a'))"),
            None
        );
        assert_eq!(stated_pivot("UNPIVOT t ON a, b INTO NAME n VALUE v"), None);
        assert_eq!(stated_pivot("SELECT 'PIVOT t ON x'"), None);
    }
}
