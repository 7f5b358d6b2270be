//! Properties of the policy over generated input, bounded so a run takes seconds: it never
//! panics, whatever it accepts reads the same when printed again, and a query calling a
//! function outside the allowlist is never accepted, however it is built.

use proptest::prelude::*;

use super::catalog::ALLOWED_FUNCTIONS;
use super::*;

const MODES: [Mode; 4] = [Mode::DirectHit, Mode::Random, Mode::Customized, Mode::Write];

/// Functions a generated query may call, allowed and not.
const FUNCTIONS: &[&str] = &[
    "UPPER",
    "ROUND",
    "EXP",
    "MOD",
    "CONCAT",
    "COALESCE",
    "LENGTH",
    "SLEEP",
    "BENCHMARK",
    "GET_LOCK",
    "VERSION",
    "USER",
    "LOAD_FILE",
    "UUID",
    "DATABASE",
    "EXTRACTVALUE",
];

const TABLES: &[(&str, &[&str])] = &[
    ("film", &["film_id", "title", "length", "rental_rate"]),
    ("actor", &["actor_id", "first_name", "last_name"]),
    ("payment", &["payment_id", "amount", "customer_id"]),
];

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "film",
    "actor",
    "mysql.user",
    "film_id",
    "title",
    "*",
    ",",
    "(",
    ")",
    "=",
    "<",
    "+",
    "MOD",
    "DIV",
    "%",
    "||",
    "1",
    "0.5",
    "'x'",
    "\"y\"",
    "NULL",
    "?",
    "@@version",
    "@v",
    "UNION",
    "ALL",
    "WITH",
    "RECURSIVE",
    "AS",
    "LIMIT",
    "10",
    "JOIN",
    "ON",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "SLEEP",
    "UPPER",
    "IN",
    "EXISTS",
    "ORDER",
    "BY",
    "GROUP",
    "/*!",
    "*/",
    "--",
    "\n",
    ";",
    "`",
    "x'41'",
    "CURRENT_USER",
    "n",
];

/// The policy's verdict on a query, and when it accepts: the printed statement, checked
/// again, is accepted with the same digest.
fn check_consistent(sql: &str) -> Result<(), TestCaseError> {
    for mode in MODES {
        if let Ok(accepted) = validate(sql, mode, &Limits::default()) {
            let printed = parse(sql)
                .map_err(|e| TestCaseError::fail(format!("{sql:?} was accepted but: {e}")))?
                .remove(0)
                .to_string();
            let again = validate(&printed, mode, &Limits::default()).map_err(|r| {
                TestCaseError::fail(format!("{sql:?} accepted, printed {printed:?}: {r}"))
            })?;
            prop_assert_eq!(
                &again.digest,
                &accepted.digest,
                "{:?} vs {:?}",
                sql,
                printed
            );
        }
    }
    Ok(())
}

/// An expression over `columns`, up to a few levels deep.
fn expression(columns: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        proptest::sample::select(columns).prop_map(str::to_string),
        (0i64..1000).prop_map(|n| n.to_string()),
        "[a-z' ]{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        Just("NULL".to_string()),
        Just("1.25".to_string()),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                proptest::sample::select(
                    &["+", "-", "*", "/", "MOD", "DIV", "=", "<", "AND", "||"][..]
                ),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            (
                proptest::sample::select(FUNCTIONS),
                proptest::collection::vec(inner, 1..3)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
        ]
    })
}

/// A SELECT of one table with generated expressions, and which functions it calls.
fn select() -> impl Strategy<Value = String> {
    proptest::sample::select(TABLES).prop_flat_map(|(table, columns)| {
        (
            proptest::collection::vec(expression(columns), 1..4),
            proptest::option::of(expression(columns)),
            proptest::option::of(0u32..5000),
        )
            .prop_map(move |(items, filter, limit)| {
                let mut sql = format!("SELECT {} FROM {table}", items.join(", "));
                if let Some(filter) = filter {
                    sql += &format!(" WHERE {filter}");
                }
                if let Some(limit) = limit {
                    sql += &format!(" LIMIT {limit}");
                }
                sql
            })
    })
}

/// The functions a query's text calls that the allowlist does not hold.
fn denied_calls(sql: &str) -> Vec<&'static str> {
    FUNCTIONS
        .iter()
        .copied()
        .filter(|f| sql.contains(&format!("{f}(")))
        .filter(|f| !ALLOWED_FUNCTIONS.iter().any(|a| a.eq_ignore_ascii_case(f)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_consistent(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn token_soup_is_judged_consistently(
        tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 1..24)
    ) {
        check_consistent(&tokens.join(" "))?;
    }

    #[test]
    fn generated_selects_are_judged_consistently(sql in select()) {
        check_consistent(&sql)?;
        let denied = denied_calls(&sql);
        for mode in [Mode::Random, Mode::DirectHit] {
            match validate(&sql, mode, &Limits::default()) {
                Ok(_) => prop_assert!(denied.is_empty(), "{:?} calls {:?} and was accepted", sql, denied),
                Err(r) if !denied.is_empty() => prop_assert_eq!(r.rule, "denied-function", "{:?}", sql),
                Err(_) => {}
            }
        }
    }
}
