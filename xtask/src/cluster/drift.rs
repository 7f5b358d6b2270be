//! What no longer matches what the done steps promised: a server or service that does not
//! answer, a former manager still fenced, a manager that came back read-only, a Galera node
//! that is not Synced. `all` reports it; `repair` fixes it.

use std::time::Duration;

use super::services;
use super::{galera, sql};
use crate::state::{Deployment, Role, Step, StepStatus};

pub fn drift(d: &Deployment) -> Vec<String> {
    let mut found = Vec::new();
    if d.step(Step::InstallCluster).status == StepStatus::Done {
        for host in d.database_hosts() {
            if sql::sql(host, "SELECT 1;").is_err() {
                found.push(format!("{}'s server does not answer", host.name));
            } else if d.fenced.contains(&host.name) {
                found.push(format!("{} is a fenced former manager", host.name));
            } else if host.role == Role::Manager
                && sql::sql(host, "SELECT @@read_only;").is_ok_and(|r| r.trim() != "0")
            {
                found.push(format!("the manager ({}) is read-only", host.name));
            } else if host.role == Role::Node {
                if let Err(why) =
                    galera::node_state(host).and_then(|s| s.may_serve().map_err(anyhow::Error::msg))
                {
                    found.push(format!("{} does not serve: {why:#}", host.name));
                }
            }
        }
    }
    if d.step(Step::DeployServices).status == StepStatus::Done {
        for role in services::ORDER {
            let Ok(host) = d.host(role) else { continue };
            if services::check_health(d, host, Duration::ZERO).is_err() {
                found.push(format!("{} does not answer", host.name));
            }
        }
    }
    found
}
