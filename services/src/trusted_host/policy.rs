//! The trusted host's query policy: deny by default, one statement of an allowed kind, checked
//! on sqlparser's AST, and forwarded as the canonical text re-printed from that AST.
//!
//! Each rule has an id that appears in the rejection message and in the log. To add a rule,
//! add a row to [`RULES`] and a check that returns `reject("its-id", ...)`.

use std::collections::HashSet;
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Cte, Expr, FromTable, Ident, LimitClause, ObjectName, Query,
    Select, SelectItem, SetExpr, SetOperator, SetQuantifier, Statement, TableAlias, TableFactor,
    TableObject, Value, Visit, Visitor,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::template::{template_of, Templated, Untemplatable};
use catalog::{
    dataset, Dataset, ALLOWED_FUNCTIONS, DATASET_SCHEMA, IDENTITY_KEYWORDS, SYSTEM_SCHEMAS,
    WRITE_ROW_CAP,
};
use contract::wire::Mode;
use known_templates::{forwarded, KnownTemplates, Refused};

mod catalog;
mod known_templates;

/// A rule of the policy and the reason it exists.
pub struct Rule {
    pub id: &'static str,
    pub why: &'static str,
}

/// The policy, readable in one place.
pub const RULES: &[Rule] = &[
    Rule { id: "query-length", why: "bounds parsing work and rules out payload smuggling in huge texts" },
    Rule { id: "executable-comment", why: "MariaDB runs the inside of /*! */ and /*M! */ and reads /*+ */ as hints; sqlparser may see a plain comment" },
    Rule { id: "parse-error", why: "what cannot be parsed cannot be checked: deny by default" },
    Rule { id: "single-statement", why: "stacked statements would run what was never checked" },
    Rule { id: "statement-kind", why: "reads are SELECT only; writes are INSERT, UPDATE or DELETE; no DDL, GRANT, SET, CALL, LOAD, LOCK, HANDLER or anything else" },
    Rule { id: "where-required", why: "an UPDATE or DELETE without WHERE rewrites or empties a whole table" },
    Rule { id: "bounded-write", why: "an UPDATE or DELETE names its rows by key (every column of the table's primary key equal to a value, in a list, or BETWEEN two numbers at most the write cap apart) or takes at most a LIMIT's worth: WHERE 1 = 1 is a whole table" },
    Rule { id: "single-table-write", why: "a write changes one table, named once: joins, multi-table DELETE and INSERT ... SELECT change or copy rows nobody listed" },
    Rule { id: "set-operation", why: "UNION and friends are the classic way to append other tables' rows to a result" },
    Rule { id: "into", why: "SELECT ... INTO writes files or variables on the server" },
    Rule { id: "locking-read", why: "FOR UPDATE / LOCK IN SHARE MODE hold locks that block replication and writers" },
    Rule { id: "non-ascii", why: "outside string literals, names and keywords are plain ASCII: look-alike letters and invisible characters let a name pass a check that the server then reads as another" },
    Rule { id: "system-schema", why: "mysql, information_schema, performance_schema and sys describe accounts and the server" },
    Rule { id: "other-schema", why: "only the dataset's own tables are the application's to query: another schema on the server is not" },
    Rule { id: "unknown-table", why: "only the dataset's tables (sql/schema.sql) and the query's own CTEs and subqueries are read or written: tables a server provides by itself (a storage engine's virtual tables) and names of no table never reach a server" },
    Rule { id: "unknown-column", why: "every column a query names is a column of the dataset's tables or a name the query gives itself (an alias, a CTE's column): nothing else reaches a server" },
    Rule { id: "variable", why: "@@ system variables leak server configuration; @ user variables carry state between statements" },
    Rule { id: "denied-function", why: "only the functions a film-rental application uses are accepted, by their exact ASCII name and unqualified: any other may sleep, read files, take locks, leak the server's or account's identity, or smuggle data out through errors" },
    Rule { id: "nesting-depth", why: "deeply nested subqueries are a denial of service" },
    Rule { id: "join-limit", why: "many-way joins are a denial of service" },
    Rule { id: "in-list-size", why: "huge IN lists are a denial of service" },
    Rule { id: "limit-cap", why: "a read returns at most the row cap; LIMIT must be a plain number" },
    Rule { id: "placeholder", why: "a ? would be bound to nothing the client sent: a client writes values, the trusted host makes the placeholders" },
    Rule { id: "literal-kind", why: "hex, bit and byte-string literals cannot be passed as parameters without changing what they mean" },
    Rule { id: "round-trip", why: "what is forwarded must be exactly what was checked: the printed template has to parse back to the same tree" },
];

/// The numeric bounds of the policy.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_query_bytes: usize,
    /// How many queries may nest inside each other (the top level counts as one).
    pub max_depth: usize,
    pub max_joins: usize,
    pub max_in_list: usize,
    /// A read returns at most this many rows.
    pub read_row_cap: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_query_bytes: 4096,
            max_depth: 3,
            max_joins: 6,
            max_in_list: 100,
            read_row_cap: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rule: &'static str,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected by rule {}: {}", self.rule, self.reason)
    }
}

fn reject<T>(rule: &'static str, reason: impl Into<String>) -> Result<T, Rejection> {
    debug_assert!(RULES.iter().any(|r| r.id == rule), "unknown rule {rule}");
    Err(Rejection {
        rule,
        reason: reason.into(),
    })
}

/// The policy as the trusted host runs it: its limits, and the templates it has seen.
pub struct Policy {
    pub limits: Limits,
    known_templates: KnownTemplates,
}

impl Policy {
    pub fn new(limits: Limits) -> Policy {
        Policy {
            limits,
            known_templates: KnownTemplates::default(),
        }
    }

    /// Checks a query for a mode, as [`validate`] does; a template seen before is compared
    /// with the tree its text parsed to then, and has the digest it had then.
    pub fn validate(&self, sql: &str, mode: Mode) -> Result<Templated, Rejection> {
        checked(sql, mode, &self.limits, Some(&self.known_templates))
    }
}

/// Checks a query for a mode; returns what to forward: its template, parameters and digest.
pub fn validate(sql: &str, mode: Mode, limits: &Limits) -> Result<Templated, Rejection> {
    checked(sql, mode, limits, None)
}

fn checked(
    sql: &str,
    mode: Mode,
    limits: &Limits,
    known_templates: Option<&KnownTemplates>,
) -> Result<Templated, Rejection> {
    if sql.len() > limits.max_query_bytes {
        return reject(
            "query-length",
            format!(
                "the query is {} bytes, at most {} are accepted",
                sql.len(),
                limits.max_query_bytes
            ),
        );
    }
    if let Some(marker) = find_executable_comment(sql) {
        return reject(
            "executable-comment",
            format!("the query contains a {marker} comment"),
        );
    }
    check_ascii(sql)?;
    let mut statements = parse(sql).or_else(|e| {
        reject(
            "parse-error",
            format!("the query does not parse as MySQL: {e}"),
        )
    })?;
    if statements.len() != 1 {
        return reject(
            "single-statement",
            format!(
                "exactly one statement is accepted, found {}",
                statements.len()
            ),
        );
    }
    let mut statement = statements.remove(0);
    let write_scope = check_kind(&statement, mode)?;

    let mut defined = DefinedNames::default();
    let _ = statement.visit(&mut defined);
    let mut walker = Walker {
        limits,
        dataset: dataset(),
        defined: &defined,
        depth: 0,
        tables: 0,
        recursive_unions: Vec::new(),
        unknown_name: None,
    };
    if let ControlFlow::Break(rejection) = statement.visit(&mut walker) {
        return Err(rejection);
    }
    if let Some(rejection) = walker.unknown_name {
        return Err(rejection);
    }
    if mode.is_read() {
        if let Statement::Query(query) = &mut statement {
            cap_limit(query, limits.read_row_cap)?;
        }
    } else if let Some(scope) = &write_scope {
        check_bounded(scope)?;
    }

    let template = template_of(statement.clone(), sql)
        .or_else(|Untemplatable(reason)| reject("literal-kind", reason))?;
    match forwarded(template, statement, known_templates) {
        Ok(templated) => Ok(templated),
        Err(Refused::Literal(Untemplatable(reason))) => reject("literal-kind", reason),
        Err(Refused::RoundTrip) => reject(
            "round-trip",
            "the query does not print back to the same statement; write it more plainly",
        ),
    }
}

/// An UPDATE or DELETE names its rows by the table's primary key (each key column, in a
/// top-level AND of the WHERE, equal to a value or in a list of values), or has a LIMIT of at
/// most WRITE_ROW_CAP.
fn check_bounded(scope: &WriteScope) -> Result<(), Rejection> {
    let WriteScope {
        table,
        selection,
        limit,
    } = *scope;
    let name = match table {
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .map(|p| p.to_string().trim_matches('`').to_ascii_lowercase())
            .unwrap_or_default(),
        _ => return reject("single-table-write", "a write names a table"),
    };
    if let Some(limit) = limit {
        let rows = match limit {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        };
        return match rows {
            Some(n) if n <= WRITE_ROW_CAP => Ok(()),
            _ => reject(
                "bounded-write",
                format!("a write's LIMIT is a number of at most {WRITE_ROW_CAP}, not {limit}"),
            ),
        };
    }
    let mut constrained = Vec::new();
    key_columns(selection, &mut constrained)?;
    let key = dataset()
        .table(&name)
        .map(|t| t.key.as_slice())
        .filter(|k| !k.is_empty());
    match key {
        Some(key) if key.iter().all(|c| constrained.contains(&c.to_string())) => Ok(()),
        Some(key) => reject(
            "bounded-write",
            format!(
                "the WHERE must give {} (= a value, IN a list, or BETWEEN two numbers at most \
                 {WRITE_ROW_CAP} apart), or the write a LIMIT of at most {WRITE_ROW_CAP}",
                key.join(" and ")
            ),
        ),
        None => reject(
            "bounded-write",
            format!("{name} is not a table of the dataset that rows can be written to by key"),
        ),
    }
}

/// The columns a top-level AND of the WHERE fixes to values: `col = value`, `value = col`,
/// `col IN (values)` and `col BETWEEN number AND number` (refused when the two are more than
/// the write cap apart).
fn key_columns(expr: &Expr, out: &mut Vec<String>) -> Result<(), Rejection> {
    let column = |e: &Expr| -> Option<String> {
        match e {
            Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
            _ => None,
        }
    };
    let is_value = |e: &Expr| matches!(e, Expr::Value(_));
    match expr {
        Expr::Nested(inner) => key_columns(inner, out)?,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            key_columns(left, out)?;
            key_columns(right, out)?;
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            if let (Some(c), Some(low), Some(high)) = (column(expr), integer(low), integer(high)) {
                let width = high.saturating_sub(low).saturating_add(1);
                if width > i128::from(WRITE_ROW_CAP) {
                    return reject(
                        "bounded-write",
                        format!(
                            "{c} BETWEEN {low} AND {high} spans {width} keys: a write names at \
                             most {WRITE_ROW_CAP}"
                        ),
                    );
                }
                out.push(c);
            }
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            if let (Some(c), true) = (column(left), is_value(right)) {
                out.push(c);
            } else if let (Some(c), true) = (column(right), is_value(left)) {
                out.push(c);
            }
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } if list.iter().all(is_value) => {
            if let Some(c) = column(expr) {
                out.push(c);
            }
        }
        _ => {}
    }
    Ok(())
}

/// An integer literal, signed or not.
fn integer(expr: &Expr) -> Option<i128> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => integer(expr).map(|n| -n),
        _ => None,
    }
}

/// Outside string literals and comments, every character is ASCII.
fn check_ascii(sql: &str) -> Result<(), Rejection> {
    if sql.is_ascii() {
        return Ok(());
    }
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .or_else(|e| {
            reject(
                "parse-error",
                format!("the query does not parse as MySQL: {e}"),
            )
        })?;
    for token in tokens {
        let text = matches!(
            token,
            Token::SingleQuotedString(_)
                | Token::DoubleQuotedString(_)
                | Token::NationalStringLiteral(_)
                | Token::EscapedStringLiteral(_)
                | Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_))
        );
        let shown = token.to_string();
        if !text && !shown.is_ascii() {
            let codes: Vec<String> = shown
                .chars()
                .filter(|c| !c.is_ascii())
                .map(|c| format!("U+{:04X}", u32::from(c)))
                .collect();
            return reject(
                "non-ascii",
                format!(
                    "{shown:?} has characters that are not ASCII ({}): outside string literals, \
                     write names and keywords in plain ASCII",
                    codes.join(" ")
                ),
            );
        }
    }
    Ok(())
}

/// Checks the qualifier of a table or column name: none, or the dataset's schema.
fn check_schema(name: &str, schema: &str) -> ControlFlow<Rejection> {
    let schema = schema.trim_matches('`').to_ascii_lowercase();
    if SYSTEM_SCHEMAS.contains(&schema.as_str()) {
        return break_with(
            "system-schema",
            format!("{name} is in the system schema {schema}"),
        );
    }
    if schema != DATASET_SCHEMA {
        return break_with(
            "other-schema",
            format!(
                "{name} is in the schema {schema}: only {DATASET_SCHEMA}'s tables are accepted"
            ),
        );
    }
    ControlFlow::Continue(())
}

fn parse(sql: &str) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    // Unescaping off: string literals keep their exact source form, so printing them back
    // cannot turn a harmless string into different SQL.
    let mut tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()?;
    infix_mod_as_percent(&mut tokens);
    Parser::new(&MySqlDialect {})
        .with_options(ParserOptions::new().with_unescape(false))
        .with_tokens_with_locations(tokens)
        .parse_statements()
}

/// MariaDB's `a MOD b` is `a % b`; sqlparser's MySQL dialect knows only the function form
/// `MOD(a, b)`, so the operator is handed to it as `%` (printed so in the template). `MOD` is
/// the operator when it follows an operand. A wrong guess only makes a query fail to parse:
/// whatever comes out is still the tree that is checked and forwarded.
fn infix_mod_as_percent(tokens: &mut [TokenWithSpan]) {
    let mut previous: Option<usize> = None;
    for i in 0..tokens.len() {
        if matches!(tokens[i].token, Token::Whitespace(_)) {
            continue;
        }
        let is_mod = matches!(&tokens[i].token,
            Token::Word(w) if w.keyword == Keyword::MOD && w.quote_style.is_none());
        if is_mod && previous.is_some_and(|p| ends_operand(&tokens[p].token)) {
            tokens[i].token = Token::Mod;
        }
        previous = Some(i);
    }
}

/// Whether an expression can end with this token, so an operator may follow it.
fn ends_operand(token: &Token) -> bool {
    /// Words after which an operand must come.
    const LEADING: &[Keyword] = &[
        Keyword::SELECT,
        Keyword::WHERE,
        Keyword::AND,
        Keyword::OR,
        Keyword::NOT,
        Keyword::XOR,
        Keyword::ON,
        Keyword::BY,
        Keyword::HAVING,
        Keyword::WHEN,
        Keyword::THEN,
        Keyword::ELSE,
        Keyword::SET,
        Keyword::IN,
        Keyword::LIKE,
        Keyword::IS,
        Keyword::CASE,
        Keyword::DISTINCT,
        Keyword::ALL,
        Keyword::ANY,
        Keyword::SOME,
        Keyword::BETWEEN,
        Keyword::LIMIT,
        Keyword::OFFSET,
        Keyword::INTERVAL,
        Keyword::EXISTS,
        Keyword::DIV,
        Keyword::MOD,
        Keyword::VALUES,
        Keyword::RLIKE,
        Keyword::REGEXP,
        Keyword::SEPARATOR,
        Keyword::AS,
    ];
    match token {
        Token::RParen
        | Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_) => true,
        Token::Word(w) => w.quote_style.is_some() || !LEADING.contains(&w.keyword),
        _ => false,
    }
}

/// The rows an UPDATE or DELETE names, kept from the kind check for the bounds check (which
/// runs after the walker, so a system or another schema is refused by its own rule first).
#[derive(Clone, Copy)]
struct WriteScope<'a> {
    table: &'a TableFactor,
    selection: &'a Expr,
    limit: Option<&'a Expr>,
}

/// The statement is of a kind the mode accepts; for an UPDATE or DELETE, returns its scope.
fn check_kind(statement: &Statement, mode: Mode) -> Result<Option<WriteScope<'_>>, Rejection> {
    // Printed only for a refusal: printing a statement costs as much as parsing it.
    let kind = || statement_kind(statement);
    if mode.is_read() {
        let Statement::Query(query) = statement else {
            return reject(
                "statement-kind",
                format!("{} accepts only SELECT, not {}", mode.as_str(), kind()),
            );
        };
        return check_query_body(&query.body).map(|()| None);
    }
    match statement {
        Statement::Insert(insert) => {
            if insert.replace_into {
                return reject(
                    "statement-kind",
                    "REPLACE deletes rows; use INSERT or UPDATE",
                );
            }
            if let TableObject::TableName(table) = &insert.table {
                check_written_columns(table, insert.columns.iter())?;
            }
            match insert.source.as_deref().map(|q| q.body.as_ref()) {
                Some(SetExpr::Values(_)) => Ok(None),
                _ => reject(
                    "single-table-write",
                    "INSERT takes VALUES only (not SELECT or SET)",
                ),
            }
        }
        Statement::Update(update) => {
            if !update.table.joins.is_empty() || update.from.is_some() {
                return reject(
                    "single-table-write",
                    "an UPDATE changes one table, without joins",
                );
            }
            if let TableFactor::Table { name, .. } = &update.table.relation {
                let targets = update.assignments.iter().flat_map(|a| match &a.target {
                    AssignmentTarget::ColumnName(column) => std::slice::from_ref(column),
                    AssignmentTarget::Tuple(columns) => columns.as_slice(),
                });
                check_written_columns(name, targets)?;
            }
            let Some(selection) = &update.selection else {
                return reject("where-required", "an UPDATE needs a WHERE clause");
            };
            Ok(Some(WriteScope {
                table: &update.table.relation,
                selection,
                limit: update.limit.as_ref(),
            }))
        }
        Statement::Delete(delete) => {
            let from = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [table] = from.as_slice() else {
                return reject("single-table-write", "a DELETE changes one table");
            };
            if !delete.tables.is_empty() || delete.using.is_some() || !table.joins.is_empty() {
                return reject(
                    "single-table-write",
                    "a DELETE changes one table, without joins",
                );
            }
            let Some(selection) = &delete.selection else {
                return reject("where-required", "a DELETE needs a WHERE clause");
            };
            Ok(Some(WriteScope {
                table: &table.relation,
                selection,
                limit: delete.limit.as_ref(),
            }))
        }
        _ => reject(
            "statement-kind",
            format!(
                "write accepts only INSERT, UPDATE or DELETE, not {}",
                kind()
            ),
        ),
    }
}

/// The columns an INSERT lists or an UPDATE sets are the written table's own. (A table that
/// is not the dataset's is refused by the walker, which names it.)
fn check_written_columns<'a>(
    table: &ObjectName,
    columns: impl Iterator<Item = &'a ObjectName>,
) -> Result<(), Rejection> {
    let Some(table) = last_part(table).and_then(|name| dataset().table(&name)) else {
        return Ok(());
    };
    for column in columns {
        let name = last_part(column).unwrap_or_default();
        if !table.columns.contains(&name) {
            return reject(
                "unknown-column",
                format!("{} has no column {column}", table.name),
            );
        }
    }
    Ok(())
}

/// The last part of a dotted name, unquoted and in lowercase.
fn last_part(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
}

/// A query's body must be a plain SELECT (or a parenthesized query), never a set operation or
/// a statement dressed as a query.
fn check_query_body(body: &SetExpr) -> Result<(), Rejection> {
    match body {
        SetExpr::Select(_) => Ok(()),
        SetExpr::Query(inner) => check_query_body(&inner.body),
        SetExpr::SetOperation { op, .. } => {
            reject("set-operation", format!("{op} is not accepted"))
        }
        SetExpr::Values(_) => reject(
            "statement-kind",
            "a bare VALUES list is not a read of the data",
        ),
        _ => reject("statement-kind", "only SELECT queries are accepted"),
    }
}

/// The first words of a statement, for messages ("DROP TABLE", "SET").
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if matches!(*first, "CREATE" | "DROP" | "ALTER" | "LOCK" | "LOAD") => {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "an empty statement".to_string(),
    }
}

/// Where a `/*!`, `/*M!` or `/*+` comment starts outside string literals and quoted names.
pub fn find_executable_comment(sql: &str) -> Option<&'static str> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == quote {
                        // A doubled quote stands for the quote itself.
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let rest = &sql[i + 2..];
                for marker in ["!", "M!", "+"] {
                    if rest.starts_with(marker) {
                        return Some(match marker {
                            "!" => "/*!",
                            "M!" => "/*M!",
                            _ => "/*+",
                        });
                    }
                }
                // A plain comment: skip to its end.
                match rest.find("*/") {
                    Some(end) => i += 2 + end + 2,
                    None => return None,
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'#' => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            _ => i += 1,
        }
    }
    None
}

/// Gives a read a LIMIT no larger than the cap.
fn cap_limit(query: &mut Query, cap: u64) -> Result<(), Rejection> {
    let cap_expr = || Expr::value(Value::Number(cap.to_string(), false));
    let literal = |e: &Expr| -> Result<u64, Rejection> {
        match e {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => n
                    .parse()
                    .or_else(|_| reject("limit-cap", format!("LIMIT {n} is not a row count"))),
                other => reject("limit-cap", format!("LIMIT {other} is not a plain number")),
            },
            other => reject("limit-cap", format!("LIMIT {other} is not a plain number")),
        }
    };
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(cap_expr()),
                offset: None,
                limit_by: vec![],
            })
        }
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return reject("limit-cap", "LIMIT BY is not accepted");
            }
            if let Some(offset) = offset {
                literal(&offset.value)?;
            }
            match limit {
                Some(l) if literal(l)? <= cap => {}
                _ => *limit = Some(cap_expr()),
            }
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            literal(offset)?;
            if literal(limit)? > cap {
                *limit = cap_expr();
            }
        }
    }
    Ok(())
}

/// Walks the whole statement, wherever queries and expressions nest.
struct Walker<'a> {
    limits: &'a Limits,
    dataset: &'static Dataset,
    defined: &'a DefinedNames,
    depth: usize,
    tables: usize,
    /// The bodies of recursive CTEs, the only queries a UNION (ALL) is accepted in.
    recursive_unions: Vec<*const Query>,
    /// The first name that is not the dataset's nor the query's own: refused once the walk is
    /// over, so that a rule naming the attack (a system schema, a function) is the one told.
    unknown_name: Option<Rejection>,
}

/// `name AS (anchor UNION ALL step)` where both sides are plain SELECTs and the step reads
/// `name` itself: the shape of a recursive CTE, and the only set operation accepted.
fn is_recursive_union(cte: &Cte) -> bool {
    let SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier: SetQuantifier::All,
        left,
        right,
    } = cte.query.body.as_ref()
    else {
        return false;
    };
    let (SetExpr::Select(_), SetExpr::Select(step)) = (left.as_ref(), right.as_ref()) else {
        return false;
    };
    step.from.iter().any(|from| {
        matches!(&from.relation, TableFactor::Table { name, .. }
            if name.0.len() == 1 && name.to_string().eq_ignore_ascii_case(&cte.alias.name.value))
    })
}

impl Visitor for Walker<'_> {
    type Break = Rejection;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Rejection> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return break_with(
                "nesting-depth",
                format!("queries nest at most {} deep", self.limits.max_depth),
            );
        }
        let recursive_union = self.recursive_unions.contains(&std::ptr::from_ref(query));
        if !recursive_union {
            if let Err(r) = check_no_set_operations(&query.body) {
                return ControlFlow::Break(r);
            }
        }
        if matches!(
            query.body.as_ref(),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            return break_with("statement-kind", "a write cannot be nested in a query");
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if with.recursive && is_recursive_union(cte) {
                    // Its rows are bounded by the server: the proxy's sessions run with a low
                    // max_recursive_iterations.
                    self.recursive_unions
                        .push(std::ptr::from_ref(cte.query.as_ref()));
                } else if let Err(r) = check_no_set_operations(&cte.query.body) {
                    return ControlFlow::Break(r);
                }
            }
        }
        if !query.locks.is_empty() {
            return break_with(
                "locking-read",
                "locking reads (FOR UPDATE, LOCK IN SHARE MODE) are not accepted",
            );
        }
        if query.for_clause.is_some() {
            return break_with(
                "statement-kind",
                "FOR XML/JSON/BROWSE clauses are not accepted",
            );
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Rejection> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Rejection> {
        if select.into.is_some() {
            return break_with("into", "SELECT ... INTO is not accepted");
        }
        if !select.optimizer_hints.is_empty() {
            return break_with("executable-comment", "optimizer hints are not accepted");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Rejection> {
        let parts: Vec<String> = relation.0.iter().map(|p| p.to_string()).collect();
        match parts.len() {
            0 | 1 => {}
            2 => check_schema(&relation.to_string(), &parts[0])?,
            _ => {
                return break_with(
                    "other-schema",
                    format!("{relation}: a table is named as table or schema.table"),
                )
            }
        }
        let name = last_part(relation).unwrap_or_default();
        // A CTE's name is the query's own, unless written with the dataset's schema.
        let own = parts.len() == 1 && self.defined.tables.contains(&name);
        if !own && self.dataset.table(&name).is_none() {
            self.unknown(
                "unknown-table",
                format!("{relation} is not a table of the dataset (nor a CTE of the query)"),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Rejection> {
        if !matches!(
            factor,
            TableFactor::Table { .. }
                | TableFactor::Derived { .. }
                | TableFactor::NestedJoin { .. }
        ) {
            return break_with(
                "unknown-table",
                "rows come from the dataset's tables, subqueries and joins of them only \
                 (no table functions)",
            );
        }
        self.tables += 1;
        if self.tables > self.limits.max_joins + 1 {
            return break_with(
                "join-limit",
                format!("at most {} tables may be joined", self.limits.max_joins + 1),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Rejection> {
        match expr {
            Expr::Function(function) => {
                if function.name.0.len() != 1 {
                    return break_with(
                        "denied-function",
                        format!("{}: functions are not qualified", function.name),
                    );
                }
                let name = function.name.to_string();
                let allowed = ALLOWED_FUNCTIONS
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&name));
                if !allowed {
                    return break_with(
                        "denied-function",
                        format!("the function {name}() is not accepted"),
                    );
                }
            }
            Expr::Identifier(ident)
                if IDENTITY_KEYWORDS
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&ident.value)) =>
            {
                return break_with(
                    "denied-function",
                    format!("{} names the session's account", ident.value),
                );
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 3 => {
                let name = Expr::CompoundIdentifier(parts.clone()).to_string();
                if parts.len() > 3 {
                    return break_with("other-schema", format!("{name} has too many qualifiers"));
                }
                if let ControlFlow::Break(r) = check_schema(&name, &parts[0].value) {
                    return ControlFlow::Break(r);
                }
            }
            Expr::InList { list, .. } if list.len() > self.limits.max_in_list => {
                return break_with(
                    "in-list-size",
                    format!(
                        "IN lists hold at most {} values, found {}",
                        self.limits.max_in_list,
                        list.len()
                    ),
                );
            }
            Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
                return break_with(
                    "placeholder",
                    format!("{} is not accepted: write the value itself", v.value),
                );
            }
            Expr::Identifier(ident) if ident.value.starts_with('@') => {
                return break_with(
                    "variable",
                    format!("the variable {} is not accepted", ident.value),
                );
            }
            Expr::CompoundIdentifier(parts) if parts.iter().any(|p| p.value.starts_with('@')) => {
                return break_with("variable", "variables are not accepted");
            }
            Expr::Identifier(column) => self.check_column(column),
            Expr::CompoundIdentifier(parts) => {
                if let [.., qualifier, column] = parts.as_slice() {
                    let name = qualifier.value.to_ascii_lowercase();
                    if self.dataset.table(&name).is_none() && !self.defined.tables.contains(&name) {
                        self.unknown(
                            "unknown-table",
                            format!(
                                "{qualifier} is not a table of the dataset, nor an alias or CTE \
                                 of the query"
                            ),
                        );
                    }
                    self.check_column(column);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walker<'_> {
    fn check_column(&mut self, column: &Ident) {
        let name = column.value.to_ascii_lowercase();
        if !self.dataset.has_column(&name) && !self.defined.columns.contains(&name) {
            self.unknown(
                "unknown-column",
                format!(
                    "{column} is not a column of the dataset's tables, nor a name the query \
                     gives itself"
                ),
            );
        }
    }

    fn unknown(&mut self, rule: &'static str, reason: String) {
        if self.unknown_name.is_none() {
            self.unknown_name = reject::<()>(rule, reason).err();
        }
    }
}

/// The names a statement gives itself, wherever it gives them: CTEs and their columns, table
/// and subquery aliases and their columns, select-item aliases. A name is accepted if the
/// statement defines it anywhere; the server resolves the scopes (a name out of its scope is
/// the server's error, about a name of the query's own).
#[derive(Default)]
struct DefinedNames {
    /// CTE names and table aliases: what may stand where a table does or qualify a column.
    tables: HashSet<String>,
    columns: HashSet<String>,
}

impl DefinedNames {
    fn alias(&mut self, alias: &TableAlias) {
        self.tables.insert(alias.name.value.to_ascii_lowercase());
        self.columns.extend(
            alias
                .columns
                .iter()
                .map(|c| c.name.value.to_ascii_lowercase()),
        );
    }
}

impl Visitor for DefinedNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            self.alias(&cte.alias);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            alias: Some(alias), ..
        }
        | TableFactor::Derived {
            alias: Some(alias), ..
        } = factor
        {
            self.alias(alias);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        for item in &select.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                self.columns.insert(alias.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

fn check_no_set_operations(body: &SetExpr) -> Result<(), Rejection> {
    match body {
        SetExpr::SetOperation { op, .. } => {
            reject("set-operation", format!("{op} is not accepted"))
        }
        SetExpr::Query(inner) => check_no_set_operations(&inner.body),
        _ => Ok(()),
    }
}

fn break_with(rule: &'static str, reason: impl Into<String>) -> ControlFlow<Rejection> {
    match reject::<()>(rule, reason) {
        Err(r) => ControlFlow::Break(r),
        Ok(()) => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
