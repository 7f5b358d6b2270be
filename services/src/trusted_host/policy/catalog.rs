//! What the policy knows of the application and the server: the functions a query may call,
//! the schemas and keys of the dataset, and the server's own schemas. The checks are in
//! policy.rs; this is the data they compare with.

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
];

/// Words MariaDB reads as functions of the session even without parentheses; sqlparser reads
/// them as column names.
pub(super) const IDENTITY_KEYWORDS: &[&str] = &[
    "current_user",
    "current_role",
    "session_user",
    "system_user",
];

/// The primary key of each table of the dataset (sql/schema.sql; a test keeps them in step).
pub(super) const PRIMARY_KEYS: &[(&str, &[&str])] = &[
    ("language", &["language_id"]),
    ("category", &["category_id"]),
    ("actor", &["actor_id"]),
    ("film", &["film_id"]),
    ("film_actor", &["actor_id", "film_id"]),
    ("film_category", &["film_id", "category_id"]),
    ("store", &["store_id"]),
    ("customer", &["customer_id"]),
    ("inventory", &["inventory_id"]),
    ("rental", &["rental_id"]),
    ("payment", &["payment_id"]),
];

/// The dataset's schema: the only one a query may name.
pub(super) const DATASET_SCHEMA: &str = "filmdb";

/// The most rows an UPDATE or DELETE without a key predicate may name with its LIMIT.
pub(super) const WRITE_ROW_CAP: u64 = 100;

/// The server's own schemas: accounts, its state and its configuration.
pub(super) const SYSTEM_SCHEMAS: &[&str] =
    &["mysql", "information_schema", "performance_schema", "sys"];
