//! What the trusted host's check costs per query, by itself: the policy as the service runs it,
//! on the shapes the load test sends (a point read, a range read, a keyed write) and on one
//! heavier allowed read, each with a thousand different values, as the load test sends them.
//!
//! `cargo bench -p services --bench policy` prints µs per check for each.

use std::time::{Duration, Instant};

use contract::wire::Mode;
use services::trusted_host::policy::{Limits, Policy};

/// Each shape with `#` where its value goes.
const QUERIES: &[(&str, Mode, &str)] = &[
    (
        "point read",
        Mode::DirectHit,
        "SELECT film_id, title, rental_rate, length FROM film WHERE film_id = #",
    ),
    (
        "range read",
        Mode::DirectHit,
        "SELECT film_id, title FROM film WHERE film_id BETWEEN # AND 1000 ORDER BY film_id",
    ),
    (
        "keyed write",
        Mode::Write,
        "UPDATE film SET rental_duration = 5 WHERE film_id = #",
    ),
    (
        "join with aggregate",
        Mode::Random,
        "SELECT c.name, COUNT(*) AS films, AVG(f.length) FROM film f JOIN film_category fc \
         ON fc.film_id = f.film_id JOIN category c ON c.category_id = fc.category_id \
         WHERE f.rating IN ('PG', 'G') GROUP BY c.name ORDER BY films DESC LIMIT #",
    ),
];

fn main() {
    // `cargo test --benches` runs this too: only a bench run measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let policy = Policy::new(Limits::default());
    for (name, mode, shape) in QUERIES {
        let texts: Vec<String> = (1..=1000)
            .map(|n| shape.replace('#', &n.to_string()))
            .collect();
        for sql in &texts {
            if let Err(e) = policy.validate(sql, *mode) {
                panic!("{name} is refused: {e}");
            }
        }
        let mut checks = 0u32;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            for sql in &texts {
                std::hint::black_box(policy.validate(std::hint::black_box(sql), *mode).ok());
            }
            checks += 1000;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(checks);
        println!("{name}: {us:.1} µs per check");
    }
}
