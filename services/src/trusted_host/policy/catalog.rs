//! What the policy knows of the application and the server: the functions a query may call,
//! the schemas and keys of the dataset, and the server's own schemas. The checks are in
//! policy.rs; this is the data they compare with.

use std::sync::OnceLock;

use sqlparser::ast::{ColumnOption, Statement, TableConstraint};

/// The functions a read or write may call, compared ASCII-case-insensitively with the whole
/// (unqualified) name: aggregates, strings, numbers, dates and conditionals. Anything else is
/// refused, including what MariaDB adds later.
pub(super) const ALLOWED_FUNCTIONS: &[&str] = &[
    // Aggregates.
    "avg",
    "count",
    "group_concat",
    "max",
    "min",
    "sum",
    "std",
    "stddev",
    "variance",
    // Strings.
    "char_length",
    "character_length",
    "concat",
    "concat_ws",
    "crc32",
    "field",
    "find_in_set",
    "format",
    "hex",
    "instr",
    "lcase",
    "left",
    "length",
    "locate",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "mid",
    "position",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "sha1",
    "sha2",
    "soundex",
    "space",
    "strcmp",
    "substr",
    "substring",
    "substring_index",
    "trim",
    "ucase",
    "upper",
    // Numbers.
    "abs",
    "ceil",
    "ceiling",
    "degrees",
    "div",
    "exp",
    "floor",
    "greatest",
    "least",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "rand",
    "round",
    "sign",
    "sqrt",
    "truncate",
    // Dates and times.
    "adddate",
    "curdate",
    "current_date",
    "current_time",
    "current_timestamp",
    "curtime",
    "date",
    "date_add",
    "date_format",
    "date_sub",
    "datediff",
    "day",
    "dayname",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "from_unixtime",
    "hour",
    "last_day",
    "makedate",
    "minute",
    "month",
    "monthname",
    "now",
    "quarter",
    "second",
    "str_to_date",
    "subdate",
    "time",
    "timediff",
    "timestamp",
    "timestampadd",
    "timestampdiff",
    "unix_timestamp",
    "week",
    "weekday",
    "weekofyear",
    "year",
    "yearweek",
    // Conditionals.
    "coalesce",
    "if",
    "ifnull",
    "isnull",
    "nullif",
    // Window functions (the aggregates above work over windows too).
    "cume_dist",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "nth_value",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
    // JSON: constructors, extractors and tests of documents built from the data. Their
    // results are bounded like any other string (max_allowed_packet, group_concat_max_len for
    // the aggregates).
    "json_array",
    "json_arrayagg",
    "json_contains",
    "json_contains_path",
    "json_depth",
    "json_exists",
    "json_extract",
    "json_keys",
    "json_length",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_quote",
    "json_search",
    "json_type",
    "json_unquote",
    "json_valid",
    "json_value",
];

/// Words MariaDB reads as functions of the session even without parentheses; sqlparser reads
/// them as column names.
pub(super) const IDENTITY_KEYWORDS: &[&str] = &[
    "current_user",
    "current_role",
    "session_user",
    "system_user",
];

/// A table of the dataset, as sql/schema.sql creates it.
pub(super) struct Table {
    pub name: String,
    pub columns: Vec<String>,
    /// The columns of its primary key, in order (empty when it has none).
    pub key: Vec<String>,
}

/// The dataset's tables: the only ones a query may name.
pub(super) struct Dataset {
    pub tables: Vec<Table>,
}

impl Dataset {
    /// The table of that name (compared in lowercase, as the names are written there).
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.columns.iter().any(|c| c == name))
    }
}

/// The schema the project loads, compiled in: the policy and the servers read the same text.
const SCHEMA_SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/schema.sql"));

/// The dataset, read from the schema once.
pub(super) fn dataset() -> &'static Dataset {
    static DATASET: OnceLock<Dataset> = OnceLock::new();
    DATASET.get_or_init(|| read_schema(SCHEMA_SQL))
}

/// The tables a schema script creates, with their columns and primary keys.
fn read_schema(text: &str) -> Dataset {
    let statements = super::parse(text).expect("sql/schema.sql parses (a unit test checks it)");
    let tables = statements
        .into_iter()
        .filter_map(|statement| {
            let Statement::CreateTable(table) = statement else {
                return None;
            };
            let mut key: Vec<String> = table
                .columns
                .iter()
                .filter(|c| {
                    c.options
                        .iter()
                        .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
                })
                .map(|c| c.name.value.to_ascii_lowercase())
                .collect();
            for constraint in &table.constraints {
                if let TableConstraint::PrimaryKey(pk) = constraint {
                    key.extend(
                        pk.columns
                            .iter()
                            .map(|c| c.to_string().trim_matches('`').to_ascii_lowercase()),
                    );
                }
            }
            Some(Table {
                name: table
                    .name
                    .to_string()
                    .trim_matches('`')
                    .to_ascii_lowercase(),
                columns: table
                    .columns
                    .iter()
                    .map(|c| c.name.value.to_ascii_lowercase())
                    .collect(),
                key,
            })
        })
        .collect();
    Dataset { tables }
}

/// The dataset's schema: the only one a query may name.
pub(super) const DATASET_SCHEMA: &str = "filmdb";

/// The most rows an UPDATE or DELETE without a key predicate may name with its LIMIT.
pub(super) const WRITE_ROW_CAP: u64 = 100;

/// The server's own schemas: accounts, its state and its configuration.
pub(super) const SYSTEM_SCHEMAS: &[&str] =
    &["mysql", "information_schema", "performance_schema", "sys"];
