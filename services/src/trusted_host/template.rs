//! Parameterized forwarding: a checked statement becomes a template with `?` where its literals
//! were, the literals typed parameters, and a digest that is the same for every statement of
//! the same shape (as ProxySQL's query digest). The proxy runs the template as a cached
//! prepared statement, so a query costs one round trip to the server in the steady state and
//! values never travel as SQL text after the trusted host.
//!
//! What keeps a template meaning what the statement meant:
//! - a decimal literal is bound as text inside `CAST(? AS DECIMAL(65, scale))`, so `0.1 + 0.2`
//!   stays exact (a bound double would not);
//! - an unnamed select item that holds a literal gets the name the server would have given it,
//!   as an alias (`SELECT 1` still answers a column named `1`);
//! - a bare number in ORDER BY or GROUP BY is a column position, not a value: it stays;
//! - literals that cannot be bound faithfully (hex, bit and byte strings) and `?` placeholders
//!   never reach this point: the policy refuses them.

use std::collections::HashSet;
use std::ops::ControlFlow;

use contract::wire::Param;
use sqlparser::ast::{
    CastKind, DataType, ExactNumberInfo, Expr, Function, GroupByExpr, Ident, NamedWindowDefinition,
    NamedWindowExpr, OrderByKind, Query, Select, SelectItem, SetExpr, Spanned, Statement, Value,
    ValueWithSpan, VisitMut, VisitorMut, WindowFrameBound, WindowSpec, WindowType,
};
use sqlparser::tokenizer::Location;

/// The most digits after the point MariaDB's DECIMAL holds.
const MAX_DECIMAL_SCALE: usize = 38;
/// MariaDB's longest column name.
const MAX_ALIAS_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Templated {
    /// The statement with `?` for every literal.
    pub template: String,
    pub params: Vec<Param>,
    /// The normalized shape: literals as `?`, IN lists as one `?`.
    pub digest_text: String,
    /// A short, stable hash of `digest_text`.
    pub digest: String,
}

/// Why a statement cannot be templated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untemplatable(pub String);

/// A checked statement's template (parsed from `sql`): its text, its parameters, and its own
/// tree, for the round-trip check.
pub struct Template {
    pub text: String,
    pub params: Vec<Param>,
    pub tree: Statement,
}

/// Turns a checked statement into its template: names kept for unnamed select items, then the
/// literals taken out.
pub fn template_of(mut statement: Statement, sql: &str) -> Result<Template, Untemplatable> {
    let _ = statement.visit(&mut NameSelectItems { sql });
    let params = take_literals(&mut statement, true)?;
    Ok(Template {
        text: statement.to_string(),
        params,
        tree: statement,
    })
}

/// A statement's digest: its shape (every literal one `?`, an IN list of them one `?`, no
/// aliases added) and the shape's hash, as (digest, digest_text).
pub fn shape_of(mut statement: Statement) -> Result<(String, String), Untemplatable> {
    take_literals(&mut statement, false)?;
    let _ = statement.visit(&mut CollapseInLists);
    let digest_text = statement.to_string();
    Ok((digest_of(&digest_text), digest_text))
}

/// Replaces the statement's literals (column positions aside) with `?`, decimals cast to their
/// exact type when `exact`; returns their values in order.
fn take_literals(statement: &mut Statement, exact: bool) -> Result<Vec<Param>, Untemplatable> {
    let mut marker = Marker::default();
    let _ = statement.visit(&mut marker);
    let mut collect = Collect {
        positions: &marker.positions,
        params: Vec::new(),
        exact,
        error: None,
    };
    let _ = statement.visit(&mut collect);
    match collect.error {
        Some(error) => Err(error),
        None => Ok(collect.params),
    }
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across processes and versions, which is all a
/// digest needs (it names a shape; it guards nothing).
pub fn digest_of(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Finds the bare numbers of ORDER BY and GROUP BY (column positions), by address: the tree
/// does not move while it is visited.
#[derive(Default)]
struct Marker {
    positions: HashSet<usize>,
}

fn is_number(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Value(ValueWithSpan {
            value: Value::Number(..),
            ..
        })
    )
}

impl VisitorMut for Marker {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(order_by) = &query.order_by {
            if let OrderByKind::Expressions(exprs) = &order_by.kind {
                for e in exprs.iter().filter(|e| is_number(&e.expr)) {
                    self.positions.insert(&e.expr as *const Expr as usize);
                }
            }
        }
        mark_group_by(&query.body, &mut self.positions);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        for NamedWindowDefinition(_, window) in &select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = window {
                mark_frame(spec, &mut self.positions);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(Function {
            over: Some(WindowType::WindowSpec(spec)),
            ..
        }) = expr
        {
            mark_frame(spec, &mut self.positions);
        }
        ControlFlow::Continue(())
    }
}

/// A window frame's bounds (`2 PRECEDING`, `INTERVAL 1 DAY FOLLOWING`) are part of the
/// statement's syntax, where the server takes no parameter: their numbers stay.
fn mark_frame(spec: &WindowSpec, positions: &mut HashSet<usize>) {
    let Some(frame) = &spec.window_frame else {
        return;
    };
    for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
        let (WindowFrameBound::Preceding(Some(offset)) | WindowFrameBound::Following(Some(offset))) =
            bound
        else {
            continue;
        };
        let number = match offset.as_ref() {
            Expr::Interval(interval) => interval.value.as_ref(),
            other => other,
        };
        if is_number(number) {
            positions.insert(number as *const Expr as usize);
        }
    }
}

fn mark_group_by(body: &SetExpr, positions: &mut HashSet<usize>) {
    match body {
        SetExpr::Select(select) => {
            if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
                for e in exprs.iter().filter(|e| is_number(e)) {
                    positions.insert(e as *const Expr as usize);
                }
            }
        }
        SetExpr::Query(inner) => mark_group_by(&inner.body, positions),
        _ => {}
    }
}

/// Replaces each literal with `?` (a decimal with its exact cast) and records its value.
struct Collect<'a> {
    positions: &'a HashSet<usize>,
    params: Vec<Param>,
    /// Decimals cast to their exact type (the template); plain `?` (the digest's shape).
    exact: bool,
    error: Option<Untemplatable>,
}

impl VisitorMut for Collect<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.positions.contains(&(expr as *const Expr as usize)) {
            return ControlFlow::Continue(());
        }
        let Expr::Value(literal) = expr else {
            return ControlFlow::Continue(());
        };
        let param = match param_of(&literal.value) {
            Ok(Some(param)) => param,
            Ok(None) => return ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        };
        let placeholder = Expr::value(Value::Placeholder("?".to_string()));
        *expr = match (&param, self.exact) {
            (Param::Decimal(text), true) => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(placeholder),
                data_type: DataType::Decimal(ExactNumberInfo::PrecisionAndScale(
                    65,
                    scale_of(text) as i64,
                )),
                format: None,
            },
            _ => placeholder,
        };
        self.params.push(param);
        ControlFlow::Continue(())
    }
}

/// The parameter a literal becomes; None for what is not a literal value.
fn param_of(value: &Value) -> Result<Option<Param>, Untemplatable> {
    Ok(Some(match value {
        Value::Null => Param::Null,
        Value::Boolean(b) => Param::Int(i64::from(*b)),
        Value::Number(text, _) => number(text)?,
        Value::SingleQuotedString(raw) => Param::Text(unescape(raw, '\'')),
        Value::DoubleQuotedString(raw) => Param::Text(unescape(raw, '"')),
        Value::NationalStringLiteral(raw) => Param::Text(unescape(raw, '\'')),
        Value::Placeholder(_) => return Ok(None),
        other => {
            return Err(Untemplatable(format!(
                "the literal {other} cannot be passed as a parameter; write it as a number or a \
                 quoted string"
            )))
        }
    }))
}

/// A number literal as MariaDB types it: an integer (or DECIMAL past 64 bits), a DECIMAL when
/// it has a point, a DOUBLE when it has an exponent.
fn number(text: &str) -> Result<Param, Untemplatable> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Param::Int(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Param::UInt(u));
    }
    if text.contains(['e', 'E']) {
        return text
            .parse::<f64>()
            .map(Param::Double)
            .map_err(|_| Untemplatable(format!("{text} is not a number")));
    }
    if !text.chars().all(|c| c.is_ascii_digit() || c == '.') || text.matches('.').count() > 1 {
        return Err(Untemplatable(format!("{text} is not a number")));
    }
    if scale_of(text) > MAX_DECIMAL_SCALE {
        return Err(Untemplatable(format!(
            "{text} has more than {MAX_DECIMAL_SCALE} digits after the point"
        )));
    }
    Ok(Param::Decimal(text.to_string()))
}

fn scale_of(decimal: &str) -> usize {
    decimal
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len())
}

/// The value of a string literal as MariaDB reads it (default sql_mode: backslash escapes on),
/// from its source form between the quotes.
pub fn unescape(raw: &str, quote: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('Z') => out.push('\u{1a}'),
                // LIKE's wildcards keep their backslash: `\%` matches a percent sign.
                Some(w @ ('%' | '_')) => {
                    out.push('\\');
                    out.push(w);
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            c if c == quote && chars.peek() == Some(&quote) => {
                chars.next();
                out.push(quote);
            }
            c => out.push(c),
        }
    }
    out
}

/// One `?` for an IN list of literals, whatever its length (the digest only).
struct CollapseInLists;

impl VisitorMut for CollapseInLists {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::InList { list, .. } = expr {
            let placeholder = |e: &Expr| {
                matches!(
                    e,
                    Expr::Value(ValueWithSpan {
                        value: Value::Placeholder(_),
                        ..
                    })
                )
            };
            if list.iter().all(placeholder) {
                list.truncate(1);
            }
        }
        ControlFlow::Continue(())
    }
}

/// Gives every unnamed select item that holds a literal the name the server gives it: the
/// value of a bare string, the expression's text as it was written otherwise.
struct NameSelectItems<'a> {
    sql: &'a str,
}

impl VisitorMut for NameSelectItems<'_> {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut sqlparser::ast::Select) -> ControlFlow<()> {
        for item in &mut select.projection {
            let SelectItem::UnnamedExpr(expr) = item else {
                continue;
            };
            if !holds_literal(expr) {
                continue;
            }
            let name = match &*expr {
                Expr::Value(ValueWithSpan {
                    value: Value::SingleQuotedString(raw),
                    ..
                }) => unescape(raw, '\''),
                Expr::Value(ValueWithSpan {
                    value: Value::DoubleQuotedString(raw),
                    ..
                }) => unescape(raw, '"'),
                other => {
                    source_text(self.sql, other).map_or_else(|| other.to_string(), str::to_string)
                }
            };
            // Without backticks: a doubled one in a quoted alias would not read back as the
            // same name (the parser keeps escapes as written), so the round trip would refuse
            // the query for its column's name.
            let name: String = name
                .chars()
                .filter(|c| *c != '`')
                .take(MAX_ALIAS_CHARS)
                .collect();
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('`', name),
            };
        }
        ControlFlow::Continue(())
    }
}

/// The text of `expr` in `sql`, from its span (lines and columns count from 1, columns in
/// characters). A unary operator is not in its expression's span: it is taken from the text.
fn source_text<'a>(sql: &'a str, expr: &Expr) -> Option<&'a str> {
    let span = expr.span();
    if span.start.line == 0 {
        return None;
    }
    let offset = |at: Location| -> Option<usize> {
        let (mut line, mut column) = (1, 1);
        for (i, c) in sql.char_indices() {
            if (line, column) == (at.line, at.column) {
                return Some(i);
            }
            if c == '\n' {
                (line, column) = (line + 1, 1);
            } else {
                column += 1;
            }
        }
        ((line, column) == (at.line, at.column)).then_some(sql.len())
    };
    let (mut start, end) = (offset(span.start)?, offset(span.end)?);
    // Down the leftmost operands: each unary operator met starts the text earlier.
    let mut leftmost = expr;
    loop {
        leftmost = match leftmost {
            Expr::BinaryOp { left, .. } => left,
            Expr::IsNull(e) | Expr::IsNotNull(e) => e,
            Expr::Between { expr, .. } | Expr::InList { expr, .. } => expr,
            Expr::UnaryOp { expr, .. } => {
                let before = sql.get(..start)?.trim_end();
                start = if before.ends_with(['-', '+', '~', '!']) {
                    before.len() - 1
                } else if before.to_ascii_uppercase().ends_with("NOT") {
                    before.len() - 3
                } else {
                    return None;
                };
                expr
            }
            _ => break,
        };
    }
    // The span's end misses closing parentheses and postfix operators (`x IS NULL`): the item
    // runs to the next comma, closing parenthesis or clause keyword outside quotes and
    // parentheses.
    let end = item_end(sql, start).max(end);
    sql.get(start..end).map(str::trim).filter(|t| !t.is_empty())
}

/// Where the select item starting at `start` ends in `sql`.
fn item_end(sql: &str, start: usize) -> usize {
    const CLAUSES: [&str; 13] = [
        "FROM",
        "WHERE",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "INTO",
        "WINDOW",
        "FOR",
        "LOCK",
        "UNION",
        "EXCEPT",
        "INTERSECT",
    ];
    let bytes = sql.as_bytes();
    let (mut depth, mut i) = (0usize, start);
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' && quote != b'`' {
                        2
                    } else {
                        1
                    };
                }
            }
            b'(' => depth += 1,
            b')' if depth == 0 => return i,
            b')' => depth -= 1,
            b',' | b';' if depth == 0 => return i,
            c if depth == 0 && c.is_ascii_alphabetic() && (i == 0 || !is_word(bytes[i - 1])) => {
                let word_end = (i..bytes.len())
                    .find(|&j| !is_word(bytes[j]))
                    .unwrap_or(bytes.len());
                let word = &sql[i..word_end];
                if CLAUSES.iter().any(|c| c.eq_ignore_ascii_case(word)) {
                    return i;
                }
                i = word_end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn holds_literal(expr: &Expr) -> bool {
    struct Finder(bool);
    impl VisitorMut for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = expr {
                if !matches!(v.value, Value::Placeholder(_)) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = expr.clone().visit(&mut finder);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::MySqlDialect;
    use sqlparser::parser::{Parser, ParserOptions};

    fn templated(sql: &str) -> Templated {
        let mut statements = Parser::new(&MySqlDialect {})
            .with_options(ParserOptions::new().with_unescape(false))
            .try_with_sql(sql)
            .unwrap()
            .parse_statements()
            .unwrap();
        let statement = statements.remove(0);
        let (digest, digest_text) = shape_of(statement.clone()).unwrap();
        let template = template_of(statement, sql).unwrap();
        Templated {
            template: template.text,
            params: template.params,
            digest,
            digest_text,
        }
    }

    #[test]
    fn every_literal_kind_becomes_a_typed_parameter() {
        let t = templated(
            "SELECT * FROM t WHERE a = 'it''s \\\\ \\' \\n' AND b = -42 AND c IS NULL \
             AND d = NULL AND e = 2.50 AND f = 1e3 AND g = 18446744073709551615 AND h = TRUE \
             AND i = '2025-01-02' AND j IN (1, 2, 3) LIMIT 7",
        );
        assert_eq!(
            t.template,
            "SELECT * FROM t WHERE a = ? AND b = -? AND c IS NULL AND d = ? \
             AND e = CAST(? AS DECIMAL(65,2)) AND f = ? AND g = ? AND h = ? AND i = ? \
             AND j IN (?, ?, ?) LIMIT ?"
        );
        assert_eq!(
            t.params,
            [
                Param::Text("it's \\ ' \n".into()),
                Param::Int(42),
                Param::Null,
                Param::Decimal("2.50".into()),
                Param::Double(1000.0),
                Param::UInt(u64::MAX),
                Param::Int(1),
                Param::Text("2025-01-02".into()),
                Param::Int(1),
                Param::Int(2),
                Param::Int(3),
                Param::Int(7),
            ]
        );
    }

    #[test]
    fn same_shape_same_digest() {
        let a = templated("SELECT title FROM film WHERE film_id = 1");
        let b = templated("select title from film where film_id = 999");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.digest_text, "SELECT title FROM film WHERE film_id = ?");
        // IN lists of any length are one shape.
        let short = templated("SELECT 1 FROM film WHERE film_id IN (1, 2)");
        let long = templated("SELECT 1 FROM film WHERE film_id IN (5, 6, 7, 8)");
        assert_eq!(short.digest, long.digest);
        assert_ne!(short.template, long.template);
        // Another column, another table, another operator: another shape.
        for other in [
            "SELECT title FROM film WHERE length = 1",
            "SELECT title FROM actor WHERE film_id = 1",
            "SELECT title FROM film WHERE film_id > 1",
            "SELECT title, length FROM film WHERE film_id = 1",
        ] {
            assert_ne!(templated(other).digest, a.digest, "{other}");
        }
        assert_eq!(a.digest.len(), 16);
        assert_eq!(digest_of(""), "cbf29ce484222325");
    }

    #[test]
    fn column_positions_stay_and_names_are_kept() {
        let t = templated(
            "SELECT title, 'x', 1 +2, TRUE FROM film GROUP BY 1 ORDER BY 2 DESC, length + 3",
        );
        assert_eq!(
            t.template,
            "SELECT title, ? AS `x`, ? + ? AS `1 +2`, ? AS `TRUE` FROM film GROUP BY 1 \
             ORDER BY 2 DESC, length + ?"
        );
        assert_eq!(t.params.len(), 5);
        // On another line, with characters of more than one byte before it.
        let t = templated("SELECT 'é',\n  -7   * 2\nFROM film");
        assert_eq!(
            t.template,
            "SELECT ? AS `é`, -? * ? AS `-7   * 2` FROM film"
        );
        // Named items keep their own names.
        let t = templated("SELECT 5 AS five");
        assert_eq!(t.template, "SELECT ? AS five");
    }

    #[test]
    fn window_frame_bounds_stay() {
        let t = templated(
            "SELECT SUM(a) OVER (ORDER BY b ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS s, \
             LAG(a, 3) OVER w AS l FROM t WINDOW w AS (ORDER BY d RANGE INTERVAL 1 DAY PRECEDING)",
        );
        assert_eq!(
            t.template,
            "SELECT SUM(a) OVER (ORDER BY b ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS s, \
             LAG(a, ?) OVER w AS l FROM t WINDOW w AS (ORDER BY d RANGE INTERVAL 1 DAY PRECEDING)"
        );
        assert_eq!(t.params.len(), 1);
    }

    #[test]
    fn unescapes_as_mariadb_does() {
        assert_eq!(unescape(r"a\tb", '\''), "a\tb");
        assert_eq!(unescape(r"100\%", '\''), r"100\%");
        assert_eq!(unescape(r"\_x", '\''), r"\_x");
        assert_eq!(unescape(r"\q", '\''), "q");
        assert_eq!(unescape("say \"\"hi\"\"", '"'), "say \"hi\"");
        assert_eq!(unescape(r"\0\Z", '\''), "\0\u{1a}");
    }
}
