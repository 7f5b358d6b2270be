//! The film-rental dataset: sql/schema.sql plus rows generated from a fixed seed, so every
//! deployment of the same scale holds exactly the same data and benchmarks compare.

use std::fmt::Write;

use super::sql::sql_string;

/// Bumped whenever the generated rows or the schema change, so an older load is replaced.
pub const GENERATOR_VERSION: u32 = 2;

const SCHEMA: &str = include_str!("../../../sql/schema.sql");
const ROWS_PER_INSERT: usize = 500;

const LANGUAGES: [&str; 6] = [
    "English", "Italian", "Japanese", "Mandarin", "French", "German",
];
const CATEGORIES: [&str; 16] = [
    "Action",
    "Animation",
    "Children",
    "Classics",
    "Comedy",
    "Documentary",
    "Drama",
    "Family",
    "Foreign",
    "Games",
    "Horror",
    "Music",
    "New",
    "Sci-Fi",
    "Sports",
    "Travel",
];
const CITIES: [&str; 2] = ["Lethbridge", "Woodridge"];
const FIRST_NAMES: [&str; 24] = [
    "Penelope",
    "Nick",
    "Ed",
    "Jennifer",
    "Johnny",
    "Bette",
    "Grace",
    "Matthew",
    "Joe",
    "Christian",
    "Zero",
    "Karl",
    "Uma",
    "Vivien",
    "Cuba",
    "Fred",
    "Helen",
    "Dan",
    "Bob",
    "Lucille",
    "Kirsten",
    "Elvis",
    "Sandra",
    "Siobhan",
];
const LAST_NAMES: [&str; 24] = [
    "Guiness",
    "Wahlberg",
    "Chase",
    "Davis",
    "Lollobrigida",
    "Nicholson",
    "Mostel",
    "Johansson",
    "Swank",
    "Gable",
    "Cage",
    "Berry",
    "Wood",
    "Bergen",
    "Olivier",
    "Costner",
    "Voight",
    "Torn",
    "Fawcett",
    "Tracy",
    "Paltrow",
    "O'Brien",
    "Marx",
    "D'Angelo",
];
const ADJECTIVES: [&str; 20] = [
    "Academy",
    "Ace",
    "Adaptation",
    "Affair",
    "African",
    "Agent",
    "Airplane",
    "Alabama",
    "Alamo",
    "Alien",
    "Amadeus",
    "Amelie",
    "American",
    "Anaconda",
    "Angels",
    "Annie",
    "Apache",
    "Arabia",
    "Arizona",
    "Armageddon",
];
const NOUNS: [&str; 20] = [
    "Dinosaur",
    "Goldfinger",
    "Prejudice",
    "Egg",
    "Sweethearts",
    "Truman",
    "Sierra",
    "Grosse",
    "Center",
    "Fever",
    "Hunchback",
    "Meets",
    "Invasion",
    "Wrath",
    "Racer",
    "Identity",
    "Bride",
    "Secrets",
    "Wild",
    "Trip",
];
const RATINGS: [&str; 5] = ["G", "PG", "PG-13", "R", "NC-17"];

/// A complete load: the SQL that creates and fills the schema, and the row count of each table.
pub struct Dataset {
    pub sql: String,
    pub counts: Vec<(&'static str, u64)>,
}

/// The tables whose row counts prove a load (or its replication) complete.
pub const TABLES: [&str; 12] = [
    "language",
    "category",
    "actor",
    "film",
    "film_actor",
    "film_category",
    "store",
    "customer",
    "inventory",
    "rental",
    "payment",
    "dataset_info",
];

/// A small, fast generator with a stable sequence (splitmix64): the data must not change when
/// a dependency's random generator does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

/// Collects rows of one table into multi-row INSERTs.
struct Table<'a> {
    sql: &'a mut String,
    name: &'static str,
    columns: &'static str,
    rows: Vec<String>,
    count: u64,
}

impl<'a> Table<'a> {
    fn new(sql: &'a mut String, name: &'static str, columns: &'static str) -> Table<'a> {
        Table {
            sql,
            name,
            columns,
            rows: Vec::new(),
            count: 0,
        }
    }

    fn row(&mut self, values: String) {
        self.rows.push(values);
        self.count += 1;
        if self.rows.len() == ROWS_PER_INSERT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        writeln!(
            self.sql,
            "INSERT INTO {} ({}) VALUES\n({});",
            self.name,
            self.columns,
            self.rows.join("),\n(")
        )
        .unwrap();
        self.rows.clear();
    }

    fn finish(mut self) -> (&'static str, u64) {
        self.flush();
        (self.name, self.count)
    }
}

/// A time `minutes` after the dataset's epoch, as SQL.
fn at(minutes: u64) -> String {
    format!("TIMESTAMP'2025-01-01 00:00:00' + INTERVAL {minutes} MINUTE")
}

pub fn generate(scale: u32) -> Dataset {
    let scale = u64::from(scale);
    let mut rng = Rng(0x5EED_F11A_u64 ^ scale);
    let mut sql = String::from(SCHEMA);
    sql.push_str("SET autocommit = 0;\n");
    let mut counts = Vec::new();

    let mut t = Table::new(&mut sql, "language", "language_id, name");
    for (i, name) in LANGUAGES.iter().enumerate() {
        t.row(format!("{}, {}", i + 1, sql_string(name)));
    }
    counts.push(t.finish());

    let mut t = Table::new(&mut sql, "category", "category_id, name");
    for (i, name) in CATEGORIES.iter().enumerate() {
        t.row(format!("{}, {}", i + 1, sql_string(name)));
    }
    counts.push(t.finish());

    let actors = 20 * scale;
    let mut t = Table::new(&mut sql, "actor", "actor_id, first_name, last_name");
    for id in 1..=actors {
        let (first, last) = (rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
        t.row(format!("{id}, {}, {}", sql_string(first), sql_string(last)));
    }
    counts.push(t.finish());

    let films = 100 * scale;
    let mut t = Table::new(
        &mut sql,
        "film",
        "film_id, title, description, release_year, language_id, rental_duration, rental_rate, \
         length, replacement_cost, rating",
    );
    for id in 1..=films {
        let title = format!("{} {} {id}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS));
        let description = format!(
            "A {} story of a {} who must meet a {}",
            rng.pick(&ADJECTIVES).to_lowercase(),
            rng.pick(&NOUNS).to_lowercase(),
            rng.pick(&LAST_NAMES)
        );
        t.row(format!(
            "{id}, {}, {}, {}, {}, {}, {}.99, {}, {}.99, {}",
            sql_string(&title),
            sql_string(&description),
            rng.between(1990, 2024),
            rng.between(1, LANGUAGES.len() as u64),
            rng.between(3, 7),
            rng.between(0, 4),
            rng.between(46, 185),
            rng.between(9, 29),
            sql_string(rng.pick(&RATINGS)),
        ));
    }
    counts.push(t.finish());

    let mut t = Table::new(&mut sql, "film_actor", "actor_id, film_id");
    for film in 1..=films {
        let cast = rng.between(1, 5);
        let first = rng.between(1, actors);
        // Consecutive actor ids from a random start: distinct, so the primary key holds.
        for k in 0..cast.min(actors) {
            t.row(format!("{}, {film}", (first - 1 + k) % actors + 1));
        }
    }
    counts.push(t.finish());

    let mut t = Table::new(&mut sql, "film_category", "film_id, category_id");
    for film in 1..=films {
        t.row(format!(
            "{film}, {}",
            rng.between(1, CATEGORIES.len() as u64)
        ));
    }
    counts.push(t.finish());

    let mut t = Table::new(&mut sql, "store", "store_id, city");
    for (i, city) in CITIES.iter().enumerate() {
        t.row(format!("{}, {}", i + 1, sql_string(city)));
    }
    counts.push(t.finish());

    let customers = 50 * scale;
    let mut t = Table::new(
        &mut sql,
        "customer",
        "customer_id, store_id, first_name, last_name, email, active, create_date",
    );
    for id in 1..=customers {
        let (first, last) = (rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
        let email = format!(
            "{}.{}{id}@example.org",
            first.to_lowercase(),
            last.replace('\'', "").to_lowercase()
        );
        t.row(format!(
            "{id}, {}, {}, {}, {}, {}, {}",
            rng.between(1, CITIES.len() as u64),
            sql_string(first),
            sql_string(last),
            sql_string(&email),
            u8::from(rng.between(0, 9) != 0),
            at(rng.between(0, 60 * 24 * 30)),
        ));
    }
    counts.push(t.finish());

    let inventory = 3 * films;
    let mut t = Table::new(&mut sql, "inventory", "inventory_id, film_id, store_id");
    for id in 1..=inventory {
        t.row(format!(
            "{id}, {}, {}",
            (id - 1) / 3 + 1,
            rng.between(1, CITIES.len() as u64)
        ));
    }
    counts.push(t.finish());

    let rentals = 8 * customers;
    let mut returned = Vec::new();
    let mut t = Table::new(
        &mut sql,
        "rental",
        "rental_id, rental_date, inventory_id, customer_id, return_date",
    );
    for id in 1..=rentals {
        let rented = 60 * 24 * 30 + rng.between(0, 60 * 24 * 300);
        let customer = rng.between(1, customers);
        let return_date = if rng.between(0, 9) == 0 {
            "NULL".to_string()
        } else {
            returned.push((id, customer, rented));
            at(rented + rng.between(60, 60 * 24 * 7))
        };
        t.row(format!(
            "{id}, {}, {}, {customer}, {return_date}",
            at(rented),
            rng.between(1, inventory)
        ));
    }
    counts.push(t.finish());

    let mut t = Table::new(
        &mut sql,
        "payment",
        "payment_id, customer_id, rental_id, amount, payment_date",
    );
    for (id, (rental, customer, rented)) in returned.into_iter().enumerate() {
        t.row(format!(
            "{}, {customer}, {rental}, {}.{:02}, {}",
            id + 1,
            rng.between(0, 11),
            rng.between(0, 99),
            at(rented + 10)
        ));
    }
    counts.push(t.finish());

    writeln!(
        sql,
        "INSERT INTO dataset_info (scale, generator_version, loaded_at) \
         VALUES ({scale}, {GENERATOR_VERSION}, NOW());\nCOMMIT;"
    )
    .unwrap();
    counts.push(("dataset_info", 1));
    Dataset { sql, counts }
}

/// SQL that prints one `table<TAB>rows` line per table of the dataset.
pub fn count_query() -> String {
    let parts: Vec<String> = TABLES
        .iter()
        .map(|t| format!("SELECT '{t}', COUNT(*) FROM filmdb.{t}"))
        .collect();
    format!("{};\n", parts.join("\nUNION ALL "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_scale_same_data() {
        let (a, b) = (generate(2), generate(2));
        assert_eq!(a.sql, b.sql);
        assert_eq!(a.counts, b.counts);
        assert_ne!(generate(1).sql, a.sql);
    }

    #[test]
    fn counts_cover_every_table_and_grow_with_scale() {
        let one = generate(1);
        let names: Vec<_> = one.counts.iter().map(|(t, _)| *t).collect();
        assert_eq!(names, TABLES);
        let count = |d: &Dataset, table| d.counts.iter().find(|(t, _)| *t == table).unwrap().1;
        assert_eq!(count(&one, "film"), 100);
        assert_eq!(count(&one, "rental"), 400);
        assert_eq!(count(&generate(3), "film"), 300);
        let total: u64 = one.counts.iter().map(|(_, n)| n).sum();
        assert!(
            (1_300..1_800).contains(&total),
            "scale 1 is about 1,500 rows, got {total}"
        );
    }

    #[test]
    fn batches_rows_and_escapes_quotes() {
        let d = generate(10);
        // 1,000 films in batches of 500.
        assert_eq!(d.sql.matches("INSERT INTO film (").count(), 2);
        assert!(d.sql.contains("'O''Brien'"));
        assert!(d.sql.trim_end().ends_with("COMMIT;"));
    }
}
