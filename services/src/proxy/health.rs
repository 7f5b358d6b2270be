//! What the proxy knows of each backend's health, and the rules that decide which workers may
//! serve reads: replicating and not lagging, or, while the manager is unreachable, caught up
//! with everything the manager had when it was last seen.

use std::time::SystemTime;

use contract::galera::NodeState;
use contract::gtid::GtidPosition;

/// Weight of the newest response-time sample in the moving average.
const EWMA_WEIGHT: f64 = 0.3;

#[derive(Debug, Clone, Default)]
pub struct Health {
    /// May serve: answering and, for a worker, eligible by [`judge_worker`].
    pub healthy: bool,
    /// Smoothed response time in milliseconds: of the probes and of the queries it served.
    pub latency_ms: Option<f64>,
    pub problem: Option<String>,
    pub checks: u64,
    /// When it stopped answering; None while it answers.
    pub down_since: Option<SystemTime>,
    /// Its replication as last probed; None when it replicates from nobody.
    pub replication: Option<Replication>,
    /// Whether it refuses writes (read_only), as last probed.
    pub read_only: Option<bool>,
    /// The manager's binary log position when it last answered.
    pub binlog: Option<GtidPosition>,
    /// The manager's semi-synchronous replication, as last probed.
    pub semi_sync: Option<SemiSync>,
    /// A worker serving although its manager is unreachable (it had caught up).
    pub without_manager: bool,
    /// A Galera node's wsrep state, as last probed.
    pub wsrep: Option<NodeState>,
    /// Since when its replication has not been receiving from its manager (while it answers);
    /// None while it receives.
    pub lost_manager_since: Option<SystemTime>,
}

/// A worker's replication threads and position, from SHOW SLAVE STATUS.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// Connected to the manager and receiving its binary log.
    pub io_running: bool,
    /// Applying what it received.
    pub sql_running: bool,
    pub lag_seconds: Option<u64>,
    /// What it has applied.
    pub applied: Option<GtidPosition>,
    /// What it has received from the manager (applied or not yet).
    pub received: Option<GtidPosition>,
}

/// Whether the manager's commits wait for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemiSync {
    Disabled,
    On,
    /// Enabled, but no worker acknowledged within the timeout: commits are asynchronous.
    FellBack,
}

impl SemiSync {
    pub fn from_probe(enabled: bool, status_on: bool) -> SemiSync {
        match (enabled, status_on) {
            (false, _) => SemiSync::Disabled,
            (true, true) => SemiSync::On,
            (true, false) => SemiSync::FellBack,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SemiSync::Disabled => "disabled",
            SemiSync::On => "on",
            SemiSync::FellBack => "fell back to asynchronous",
        }
    }
}

/// The manager as the monitor last saw it, and what the cluster holds of its writes.
#[derive(Debug, Clone, Default)]
pub struct ManagerView {
    pub reachable: bool,
    /// Everything any worker received from it: with semi-sync, every write it acknowledged.
    /// (Its own last position may hold commits no worker received, which it never
    /// acknowledged: a worker cannot be asked to have those.)
    pub received: Option<GtidPosition>,
}

/// Why a worker may serve reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligible {
    /// Replicating from the manager, within the lag bound.
    Replicating,
    /// Its manager is unreachable, and it has applied everything any worker received.
    CaughtUpWithoutManager,
}

/// Whether a worker may serve reads, and if not, why.
pub fn judge_worker(
    replication: Option<&Replication>,
    max_lag_seconds: u64,
    manager: &ManagerView,
) -> Result<Eligible, String> {
    let Some(r) = replication else {
        return Err("it is not a replica".to_string());
    };
    if !r.sql_running {
        return Err("replication's SQL thread is stopped".to_string());
    }
    if r.io_running {
        return match r.lag_seconds {
            None => Err("replication lag is unknown".to_string()),
            Some(lag) if lag > max_lag_seconds => Err(format!(
                "replication lag {lag} s exceeds {max_lag_seconds} s"
            )),
            Some(_) => Ok(Eligible::Replicating),
        };
    }
    if manager.reachable {
        return Err("replication is not receiving from the manager".to_string());
    }
    match (&r.applied, &manager.received) {
        (Some(applied), Some(received)) if applied.covers(received) => {
            Ok(Eligible::CaughtUpWithoutManager)
        }
        (_, None) => Err(
            "the manager is unreachable and no worker says what it received: whether this \
             worker is behind is unknown"
                .to_string(),
        ),
        _ => Err(
            "the manager is unreachable and this worker has not applied everything the workers \
             received from it"
                .to_string(),
        ),
    }
}

impl Health {
    /// Optimistic until the first probe: reads are retried elsewhere if wrong.
    pub fn new() -> Health {
        Health {
            healthy: true,
            ..Health::default()
        }
    }

    pub fn add_response_time(&mut self, ms: f64) {
        self.latency_ms = Some(match self.latency_ms {
            Some(old) => old + EWMA_WEIGHT * (ms - old),
            None => ms,
        });
    }

    /// The backend answered its probe.
    pub fn answered(&mut self, ms: f64) {
        self.checks += 1;
        self.add_response_time(ms);
        self.down_since = None;
    }

    /// The backend did not answer (a probe, or a query on the request path).
    pub fn failed(&mut self, problem: String) {
        self.healthy = false;
        self.problem = Some(problem);
        self.down_since.get_or_insert_with(SystemTime::now);
    }
}

/// `HH:MM:SS UTC` of a time, for notes and messages.
pub fn clock(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replication(io: bool, sql: bool, lag: Option<u64>, applied: &str) -> Replication {
        Replication {
            io_running: io,
            sql_running: sql,
            lag_seconds: lag,
            applied: Some(applied.parse().unwrap()),
            received: Some(applied.parse().unwrap()),
        }
    }

    fn manager(reachable: bool, received: Option<&str>) -> ManagerView {
        ManagerView {
            reachable,
            received: received.map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn workers_serve_while_replicating_or_caught_up_without_their_manager() {
        let up = manager(true, Some("0-1-100"));
        let down = manager(false, Some("0-1-100"));
        let judge = |r: &Replication, m: &ManagerView| judge_worker(Some(r), 10, m);

        assert_eq!(
            judge(&replication(true, true, Some(0), "0-1-99"), &up),
            Ok(Eligible::Replicating)
        );
        assert!(judge(&replication(true, true, Some(11), "0-1-99"), &up)
            .unwrap_err()
            .contains("lag 11 s"));
        assert!(judge(&replication(true, true, None, "0-1-99"), &up).is_err());
        assert!(judge(&replication(true, false, Some(0), "0-1-100"), &up)
            .unwrap_err()
            .contains("SQL thread"));
        assert!(judge_worker(None, 10, &up).is_err());
        // The IO thread stopped while the manager answers: something is wrong with this one.
        assert!(judge(&replication(false, true, None, "0-1-100"), &up).is_err());

        // The manager gone: workers that applied all any worker received keep serving.
        assert_eq!(
            judge(&replication(false, true, None, "0-1-100"), &down),
            Ok(Eligible::CaughtUpWithoutManager)
        );
        assert!(judge(&replication(false, true, None, "0-1-99"), &down)
            .unwrap_err()
            .contains("has not applied"));
        assert!(judge(&replication(false, false, None, "0-1-100"), &down).is_err());
        assert!(judge(
            &replication(false, true, None, "0-1-100"),
            &manager(false, None)
        )
        .unwrap_err()
        .contains("no worker says"));
    }

    #[test]
    fn clock_reads_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 3 + 3723);
        assert_eq!(clock(t), "01:02:03 UTC");
    }
}
