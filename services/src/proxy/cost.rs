//! The cost bound: before a read runs, the server's own plan says how many rows it expects to
//! examine (EXPLAIN), and a read over the bound is refused without running. The plan is read
//! once per shape and kept by digest when it cannot depend on the values (a key lookup, a
//! scan, a join by keys), or when even the most its values could make it examine is within
//! the bound (a range on one table reads at most a whole table); any other plan that depends
//! on the values (a range of values joined to a scan, say) is read for every query of its
//! shape. A kept plan is read again after a minute, as the tables change.
//!
//! The plan also says which reads are heavy (more than HEAVY_ROWS examined): the proxy keeps
//! them off the servers that light reads can use instead (its routing).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shapes whose estimate is kept at most; past it, plans are read per query.
const MAX_SHAPES: usize = 4096;

/// A read whose plan examines more rows than this is heavy: more than a scan of one of the
/// dataset's tables at the default scale, as a join on columns with no index is.
pub const HEAVY_ROWS: f64 = 10_000.0;

/// One row of MariaDB's EXPLAIN: its select, its access type and its row estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub select_id: Option<u64>,
    pub select_type: String,
    pub access: Option<String>,
    pub rows: Option<u64>,
}

/// What a plan says of a read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Rows the server expects to examine: for each select, the rows of its first table, plus
    /// those of the second for each of them, and so on (a nested-loop join), summed over the
    /// selects; a dependent subquery's, once for each row the outer join produces.
    pub examined_rows: f64,
    /// The most any query of the shape can examine by this plan: each access whose estimate
    /// the values decide reading as many rows as the largest table holds (infinite when the
    /// plan names no table to tell).
    pub worst_rows: f64,
    /// The estimate may change with the values bound.
    pub depends_on_values: bool,
}

/// Access types whose row estimate the server may take from the values.
const VALUE_DEPENDENT: &[&str] = &["range", "index_merge", "ref", "ref_or_null", "fulltext"];

fn value_dependent(row: &PlanRow) -> bool {
    row.access
        .as_deref()
        .is_some_and(|a| VALUE_DEPENDENT.contains(&a))
}

/// Rows a plan examines, each row of the plan counting `rows_of` it.
fn examined(plan: &[PlanRow], rows_of: impl Fn(&PlanRow, f64) -> f64) -> f64 {
    let mut examined = 0.0;
    let mut select = None;
    let mut product = 1.0;
    // The rows the first select's join produces: how often a dependent subquery runs.
    let mut outer: Option<f64> = None;
    for row in plan {
        if row.select_id != select {
            if select.is_some() && outer.is_none() {
                outer = Some(product);
            }
            select = row.select_id;
            product = match row.select_type.starts_with("DEPENDENT") {
                true => outer.unwrap_or(1.0),
                false => 1.0,
            };
        }
        let Some(rows) = row.rows else {
            continue;
        };
        product *= rows_of(row, rows.max(1) as f64);
        examined += product;
    }
    examined
}

impl Estimate {
    /// `largest_table`: the rows of the dataset's largest table.
    pub fn from_plan(plan: &[PlanRow], has_params: bool, largest_table: f64) -> Estimate {
        let examined_rows = examined(plan, |_, rows| rows);
        let any_table = plan.iter().any(|r| r.rows.is_some());
        // A plan with no table (the server found no row for a key while planning) says
        // nothing of the next values.
        let depends_on_values = has_params && (plan.iter().any(value_dependent) || !any_table);
        let worst_rows = match (depends_on_values, any_table) {
            (false, _) => examined_rows,
            (true, false) => f64::INFINITY,
            (true, true) => examined(plan, |row, rows| match value_dependent(row) {
                true => rows.max(largest_table),
                false => rows,
            }),
        };
        Estimate {
            examined_rows,
            worst_rows,
            depends_on_values,
        }
    }
}

/// How long a shape's plan stands for its queries: the tables grow and shrink with the
/// writes, and so do the plans' estimates.
const KEPT_FOR: Duration = Duration::from_secs(60);

/// The last estimate of each shape, and when it was made.
#[derive(Default)]
pub struct Estimates {
    by_digest: Mutex<HashMap<String, (Estimate, Instant)>>,
}

impl Estimates {
    fn last(&self, digest: &str) -> Option<(Estimate, Instant)> {
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .copied()
    }

    /// What a shape's plan made less than KEPT_FOR before `now` says of every query of it:
    /// the rows it examines when its values cannot change them, else the most it can examine
    /// when even that is within `bound`. None: the plan is read for this query.
    pub fn kept(&self, digest: &str, now: Instant, bound: f64) -> Option<f64> {
        self.last(digest)
            .filter(|(e, at)| {
                now.saturating_duration_since(*at) < KEPT_FOR
                    && (!e.depends_on_values || e.worst_rows <= bound)
            })
            .map(|(e, _)| e.worst_rows)
    }

    /// Whether the shape's last plan was heavy (where to send it; the bound is checked per
    /// query where the plan depends on the values).
    pub fn heavy(&self, digest: &str) -> bool {
        self.last(digest)
            .is_some_and(|(e, _)| e.examined_rows > HEAVY_ROWS)
    }

    pub fn keep(&self, digest: &str, estimate: Estimate, now: Instant) {
        let mut by_digest = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        if by_digest.len() < MAX_SHAPES || by_digest.contains_key(digest) {
            by_digest.insert(digest.to_string(), (estimate, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, access: &str, rows: u64) -> PlanRow {
        let select_type = if id == 1 { "SIMPLE" } else { "SUBQUERY" };
        PlanRow {
            select_id: Some(id),
            select_type: select_type.to_string(),
            access: Some(access.to_string()),
            rows: Some(rows),
        }
    }

    #[test]
    fn a_join_examines_the_product_of_its_tables() {
        // film (1000 rows scanned) joined to rental on a non-key column (16,000 each).
        let plan = [row(1, "ALL", 1000), row(1, "ALL", 16_000)];
        let e = Estimate::from_plan(&plan, false, 4000.0);
        assert_eq!(e.examined_rows, 1000.0 + 1000.0 * 16_000.0);
        assert!(!e.depends_on_values);
        // A subquery adds its own, once; a dependent one, once per outer row.
        let plan = [row(1, "ALL", 10), row(2, "eq_ref", 1), row(3, "ALL", 5)];
        assert_eq!(
            Estimate::from_plan(&plan, false, 4000.0).examined_rows,
            10.0 + 1.0 + 5.0
        );
        let mut dependent = row(2, "ALL", 16_000);
        dependent.select_type = "DEPENDENT SUBQUERY".to_string();
        let plan = [row(1, "ALL", 1000), dependent];
        assert_eq!(
            Estimate::from_plan(&plan, false, 4000.0).examined_rows,
            1000.0 + 1000.0 * 16_000.0
        );
    }

    #[test]
    fn what_depends_on_the_values_is_read_per_query() {
        let key = [row(1, "const", 1)];
        assert!(!Estimate::from_plan(&key, true, 4000.0).depends_on_values);
        let range = [row(1, "range", 20)];
        assert!(Estimate::from_plan(&range, true, 4000.0).depends_on_values);
        // The same plan with no value bound is the same for every query of its shape.
        assert!(!Estimate::from_plan(&range, false, 4000.0).depends_on_values);
        let nothing = [PlanRow {
            select_id: Some(1),
            select_type: "SIMPLE".to_string(),
            access: None,
            rows: None,
        }];
        assert!(Estimate::from_plan(&nothing, true, 4000.0).depends_on_values);

        let kept = Estimates::default();
        let now = Instant::now();
        kept.keep("range", Estimate::from_plan(&range, true, 4000.0), now);
        kept.keep("key", Estimate::from_plan(&key, true, 4000.0), now);
        // A range on one table reads at most the largest table: within a bound of 4000 its
        // shape's plan stands for every query of it, within 3999 it does not.
        assert_eq!(kept.kept("range", now, 4000.0), Some(4000.0));
        assert_eq!(kept.kept("range", now, 3999.0), None);
        // A range joined to a scan of 1000 rows: at worst 4000 + 4000 x 1000.
        let joined = [row(1, "range", 20), row(1, "ALL", 1000)];
        let e = Estimate::from_plan(&joined, true, 4000.0);
        assert_eq!(
            (e.examined_rows, e.worst_rows),
            (20.0 + 20_000.0, 4000.0 + 4_000_000.0)
        );
        assert_eq!(kept.kept("key", now, 1.0), Some(1.0));
        // A plan stands for a while, then is read again.
        assert_eq!(kept.kept("key", now + KEPT_FOR, 1.0), None);
        assert!(!kept.heavy("key") && !kept.heavy("range") && !kept.heavy("never seen"));
        let join = Estimate::from_plan(&[row(1, "ALL", 1000), row(1, "ALL", 16)], false, 4000.0);
        kept.keep("join", join, now);
        assert!(kept.heavy("join"));
    }
}
