//! A Galera cluster's start, from whatever state its nodes are in: a fresh cluster is
//! bootstrapped from its first node; nodes that do not run join the primary component from the
//! position their data recovers to (an incremental transfer when the donor still has the
//! writes); after every node was killed, they are started together and re-form from their saved
//! view; after a clean stop of all, the node marked safe to bootstrap (else the most advanced)
//! starts a new primary component and the others join it. The same plan serves install-cluster,
//! repair and a rerun after any interruption.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{process, server, sql};
use crate::state::{Host, Session};
use crate::transport::{self, script::Script};
use contract::galera::NodeState;

const GALERA_STATE: &str = include_str!("../../scripts/galera-state.sh");
const GALERA_PREPARE_START: &str = include_str!("../../scripts/galera-prepare-start.sh");

/// How long a node may take to answer once started: a joiner answers after its state transfer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long every node has to be Synced in one primary component once all run.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// What a node's host holds, as galera-state.sh reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    pub running: bool,
    /// `wsrep_cluster_status` of a running node that answered.
    pub cluster_status: Option<String>,
    pub initialized: bool,
    pub safe_to_bootstrap: bool,
    /// It kept the last primary view: it was killed while the cluster ran.
    pub saved_view: bool,
    /// The last write it holds: the recovered position's seqno for a stopped node, else
    /// grastate's (-1: unknown).
    pub seqno: i64,
    /// `uuid:seqno` its data recovered to (a stopped, initialized node).
    pub recovered: Option<String>,
}

impl NodeReport {
    pub fn parse(text: &str) -> NodeReport {
        let mut report = NodeReport {
            seqno: -1,
            ..NodeReport::default()
        };
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            let value = value.trim();
            match key {
                "running" => report.running = value == "1",
                "wsrep_cluster_status" => report.cluster_status = Some(value.to_string()),
                "initialized" => report.initialized = value == "1",
                "safe_to_bootstrap" => report.safe_to_bootstrap = value == "1",
                "gvwstate" => report.saved_view = value == "1",
                "seqno" => {
                    if let Ok(n) = value.parse() {
                        report.seqno = report.seqno.max(n);
                    }
                }
                "recovered" if !value.is_empty() => {
                    if let Some(n) = value.rsplit_once(':').and_then(|(_, n)| n.parse().ok()) {
                        report.seqno = report.seqno.max(n);
                    }
                    report.recovered = Some(value.to_string());
                }
                _ => {}
            }
        }
        report
    }

    fn in_primary(&self) -> bool {
        self.running && self.cluster_status.as_deref() == Some("Primary")
    }

    /// Runs and answers queries (a node still starting, or waiting for the others, does not).
    fn answers(&self) -> bool {
        self.running && self.cluster_status.is_some()
    }
}

/// How the nodes start, by index into the nodes given to [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// A primary component runs: the stopped nodes join it, one at a time.
    Join(Vec<usize>),
    /// Every node was killed with the cluster running and kept its view: all start at once and
    /// re-form the primary component together.
    Reform(Vec<usize>),
    /// No primary component and no saved view to re-form from: `first` starts a new one, then
    /// the rest join.
    Bootstrap { first: usize, then: Vec<usize> },
    /// Nodes run but none is in a primary component: `first`, the most advanced of them, is
    /// made primary (pc.bootstrap) and the stopped ones join.
    PromoteRunning { first: usize, then: Vec<usize> },
}

/// Chooses how to bring every node up from what their hosts hold.
pub fn plan(nodes: &[NodeReport]) -> StartPlan {
    let stopped: Vec<usize> = (0..nodes.len()).filter(|&i| !nodes[i].running).collect();
    if nodes.iter().any(NodeReport::in_primary) {
        return StartPlan::Join(stopped);
    }
    let most_advanced = |candidates: &[usize]| -> usize {
        // The highest seqno; between equals, the first node (a stable choice).
        candidates
            .iter()
            .copied()
            .max_by_key(|&i| (nodes[i].seqno, std::cmp::Reverse(i)))
            .unwrap_or(0)
    };
    let answering: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].answers()).collect();
    if !answering.is_empty() {
        return StartPlan::PromoteRunning {
            first: most_advanced(&answering),
            then: stopped,
        };
    }
    // (A node that runs without answering is waiting for the others of its saved view.)
    if nodes.iter().all(|n| n.saved_view) {
        return StartPlan::Reform(stopped);
    }
    let first = nodes
        .iter()
        .position(|n| n.initialized && n.safe_to_bootstrap)
        .unwrap_or_else(|| {
            let initialized: Vec<usize> =
                (0..nodes.len()).filter(|&i| nodes[i].initialized).collect();
            if initialized.is_empty() {
                0
            } else {
                most_advanced(&initialized)
            }
        });
    StartPlan::Bootstrap {
        first,
        then: stopped.into_iter().filter(|&i| i != first).collect(),
    }
}

/// Brings every node of the cluster up and waits until all are Synced in one primary
/// component; `note` tells the operator what is done.
pub fn start_cluster(session: &mut Session, nodes: &[Host], note: &dyn Fn(String)) -> Result<()> {
    let mut reports: Vec<NodeReport> = nodes.iter().map(report).collect::<Result<_>>()?;
    // A node an interrupted run started (a first node, a joiner in its transfer) is left to
    // finish starting: what it says then decides the plan. Not after every node was killed:
    // then a started node waits for the others, which the plan starts.
    if !reports.iter().all(|r| r.saved_view) && reports.iter().any(|r| r.running && !r.answers()) {
        for (node, r) in nodes.iter().zip(&reports) {
            if r.running && !r.answers() {
                launch(session, node, false, None, true)?;
            }
        }
        reports = nodes.iter().map(report).collect::<Result<_>>()?;
    }
    let name = |i: &usize| nodes[*i].name.clone();
    match plan(&reports) {
        StartPlan::Join(stopped) => {
            for i in stopped {
                join(session, &nodes[i], &reports[i], note)?;
            }
        }
        StartPlan::Reform(all) => {
            note(format!(
                "every node stopped with the cluster running: {} start together and re-form it",
                all.iter().map(name).collect::<Vec<_>>().join(", ")
            ));
            for &i in &all {
                launch(
                    session,
                    &nodes[i],
                    false,
                    reports[i].recovered.as_deref(),
                    false,
                )?;
            }
            for node in nodes {
                launch(session, node, false, None, true)?;
            }
        }
        StartPlan::Bootstrap { first, then } => {
            note(format!(
                "{} starts the cluster{}",
                nodes[first].name,
                if reports[first].safe_to_bootstrap {
                    format!(
                        " (the last node to stop cleanly, marked safe to bootstrap; seqno {})",
                        reports[first].seqno
                    )
                } else if reports[first].initialized {
                    format!(
                        " (no primary component runs; it holds the most recent write, seqno {})",
                        reports[first].seqno
                    )
                } else {
                    String::new()
                }
            ));
            launch(
                session,
                &nodes[first],
                true,
                reports[first].recovered.as_deref(),
                true,
            )?;
            for i in then {
                join(session, &nodes[i], &reports[i], note)?;
            }
        }
        StartPlan::PromoteRunning { first, then } => {
            note(format!(
                "no node is in a primary component: {} (the most advanced running node) becomes it",
                nodes[first].name
            ));
            sql::sql(
                &nodes[first],
                "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES';",
            )?;
            for i in then {
                join(session, &nodes[i], &reports[i], note)?;
            }
        }
    }
    wait_synced(nodes, SYNC_TIMEOUT)?;
    // Nodes that re-formed the cluster together were started without waiting.
    nodes.iter().try_for_each(forget_start)
}

/// Starts a stopped node joining the primary component, from where its data recovers to.
fn join(
    session: &mut Session,
    node: &Host,
    report: &NodeReport,
    note: &dyn Fn(String),
) -> Result<()> {
    note(format!(
        "{} joins the cluster{}",
        node.name,
        match &report.recovered {
            Some(position) => format!(
                " from {position} (an incremental transfer if a donor still has the writes since)"
            ),
            None => " (a full state transfer)".to_string(),
        }
    ));
    launch(session, node, false, report.recovered.as_deref(), true)
}

/// Starts a node new to the cluster, empty, and waits until it answers: it joins the primary
/// component by a full state transfer from `donor` (never the writer: the transfer blocks the
/// donor's writes).
pub fn join_new(session: &mut Session, node: &Host, donor: &Host) -> Result<()> {
    server::wipe(session, node)?;
    server::write_config(&session.deployment, node)?;
    let prepare = Script::new("galera-prepare-start", GALERA_PREPARE_START)
        .param("HOST_DIR", node.dir.display().to_string())
        .param("BOOTSTRAP", "0")
        .param("START_POSITION", "")
        .param("DONOR", donor.name.clone());
    transport::run_script(node, &prepare, b"")?;
    let start = server::start_script(node)?
        .param("WAIT", "1")
        .param("START_TIMEOUT", JOIN_TIMEOUT.as_secs().to_string());
    process::start_and_record(session, node, start, server::process_key(node), "mariadbd")
        .with_context(|| format!("starting {}", node.name))?;
    forget_start(node)
}

/// What the node's host holds now.
pub fn report(node: &Host) -> Result<NodeReport> {
    let script =
        Script::new("galera-state", GALERA_STATE).param("HOST_DIR", node.dir.display().to_string());
    let out = transport::run_script(node, &script, b"")
        .with_context(|| format!("reading the Galera state of {}", node.name))?;
    Ok(NodeReport::parse(&out))
}

/// Starts a node (or adopts the one running): as a new cluster's first node, or joining from
/// `position`; `wait`: until it answers.
fn launch(
    session: &mut Session,
    node: &Host,
    bootstrap: bool,
    position: Option<&str>,
    wait: bool,
) -> Result<()> {
    server::write_config(&session.deployment, node)?;
    prepare_start(node, bootstrap, position)?;
    let start = server::start_script(node)?
        .param("WAIT", if wait { "1" } else { "0" })
        .param("START_TIMEOUT", JOIN_TIMEOUT.as_secs().to_string());
    process::start_and_record(session, node, start, server::process_key(node), "mariadbd")
        .with_context(|| format!("starting {}", node.name))?;
    if wait {
        forget_start(node)?;
    }
    Ok(())
}

/// Writes how the node's server starts next: bootstrapping a new cluster, or joining from
/// `position` (none: from what its data says, a full transfer if it says nothing).
fn prepare_start(node: &Host, bootstrap: bool, position: Option<&str>) -> Result<()> {
    let prepare = Script::new("galera-prepare-start", GALERA_PREPARE_START)
        .param("HOST_DIR", node.dir.display().to_string())
        .param("BOOTSTRAP", if bootstrap { "1" } else { "0" })
        .param("START_POSITION", position.unwrap_or_default());
    transport::run_script(node, &prepare, b"").map(drop)
}

/// Once a node runs in the cluster, a start of its own (its supervisor restarting it after a
/// crash, a reboot) must join whatever primary component runs: never start a new one, never
/// claim a position its data has moved past.
fn forget_start(node: &Host) -> Result<()> {
    prepare_start(node, false, None)
}

/// A node's wsrep state, asked over its socket.
pub fn node_state(node: &Host) -> Result<NodeState> {
    let out = sql::sql(
        node,
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME LIKE 'WSREP%';",
    )?;
    NodeState::from_status(out.lines().filter_map(|l| l.split_once('\t'))).with_context(|| {
        format!(
            "{} reports no wsrep status: Galera is not running there",
            node.name
        )
    })
}

/// Waits until every node is Synced in one primary component of all of them.
pub fn wait_synced(nodes: &[Host], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut problems = Vec::new();
        for node in nodes {
            match node_state(node) {
                Ok(state) => {
                    if let Err(why) = state.may_serve() {
                        problems.push(format!("{}: {why}", node.name));
                    } else if state.cluster_size as usize != nodes.len() {
                        problems.push(format!(
                            "{}: its component has {} of the {} nodes",
                            node.name,
                            state.cluster_size,
                            nodes.len()
                        ));
                    }
                }
                Err(e) => problems.push(format!("{}: {e:#}", node.name)),
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the Galera nodes were not all Synced within {} s: {}; each node's mariadbd.err says why",
                timeout.as_secs(),
                problems.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The node that takes the writes now, by the proxy's rule: the lowest wsrep_local_index among
/// the Synced nodes (the proxy keeps a writer while it serves; from the outside, the rule's
/// first choice is what it picks when it starts).
pub fn writer(nodes: &[Host]) -> Result<Host> {
    let states: Vec<Option<NodeState>> = nodes.iter().map(|n| node_state(n).ok()).collect();
    let index = contract::galera::choose_writer(usize::MAX, &states).with_context(|| {
        format!(
            "no Galera node is Synced in the primary component; run `{}`",
            crate::state::command("repair")
        )
    })?;
    Ok(nodes[index].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(initialized: bool, seqno: i64, safe: bool, view: bool) -> NodeReport {
        NodeReport {
            running: false,
            cluster_status: None,
            initialized,
            safe_to_bootstrap: safe,
            saved_view: view,
            seqno,
            recovered: initialized.then(|| format!("u:{seqno}")),
        }
    }

    fn primary() -> NodeReport {
        NodeReport {
            running: true,
            cluster_status: Some("Primary".into()),
            initialized: true,
            ..NodeReport::default()
        }
    }

    #[test]
    fn a_fresh_cluster_is_bootstrapped_from_its_first_node() {
        let fresh = stopped(false, -1, false, false);
        assert_eq!(
            plan(&[fresh.clone(), fresh.clone(), fresh]),
            StartPlan::Bootstrap {
                first: 0,
                then: vec![1, 2]
            }
        );
    }

    #[test]
    fn stopped_nodes_join_a_running_primary_component() {
        let nodes = [stopped(true, 40, false, true), primary(), primary()];
        assert_eq!(plan(&nodes), StartPlan::Join(vec![0]));
        // An interrupted install: the first node runs, the others are still fresh.
        let fresh = stopped(false, -1, false, false);
        assert_eq!(
            plan(&[primary(), fresh.clone(), fresh]),
            StartPlan::Join(vec![1, 2])
        );
    }

    #[test]
    fn after_every_node_was_killed_they_reform_together() {
        let nodes = [
            stopped(true, 10, false, true),
            stopped(true, 12, false, true),
            stopped(true, 12, false, true),
        ];
        assert_eq!(plan(&nodes), StartPlan::Reform(vec![0, 1, 2]));
    }

    #[test]
    fn after_a_clean_stop_the_safe_node_or_the_most_advanced_bootstraps() {
        let nodes = [
            stopped(true, 10, false, false),
            stopped(true, 12, true, false),
            stopped(true, 11, false, false),
        ];
        assert_eq!(
            plan(&nodes),
            StartPlan::Bootstrap {
                first: 1,
                then: vec![0, 2]
            }
        );
        // Nobody marked safe (killed one by one): the highest seqno, the first of equals.
        let nodes = [
            stopped(true, 10, false, false),
            stopped(true, 12, false, true),
            stopped(true, 12, false, false),
        ];
        assert_eq!(
            plan(&nodes),
            StartPlan::Bootstrap {
                first: 1,
                then: vec![0, 2]
            }
        );
    }

    #[test]
    fn a_running_node_without_quorum_is_made_primary() {
        let mut survivor = primary();
        survivor.cluster_status = Some("non-Primary".into());
        survivor.seqno = 30;
        let nodes = [
            stopped(true, 20, false, true),
            survivor,
            stopped(true, 25, false, true),
        ];
        assert_eq!(
            plan(&nodes),
            StartPlan::PromoteRunning {
                first: 1,
                then: vec![0, 2]
            }
        );
    }

    #[test]
    fn the_state_script_is_read() {
        let report = NodeReport::parse(
            "running=0\ninitialized=1\nuuid=abc\nseqno=-1\nsafe_to_bootstrap=0\ngvwstate=1\n\
             recovered=6f3b-11ef:42\n",
        );
        assert_eq!(
            report,
            NodeReport {
                running: false,
                cluster_status: None,
                initialized: true,
                safe_to_bootstrap: false,
                saved_view: true,
                seqno: 42,
                recovered: Some("6f3b-11ef:42".into()),
            }
        );
        let running = NodeReport::parse("running=1\nwsrep_cluster_status=Primary\nseqno=7\n");
        assert!(running.in_primary());
        let waiting = NodeReport::parse("running=1\ngvwstate=1\n");
        assert!(!waiting.answers());
        // Killed all together, one of them already started again by an interrupted run: the
        // others start and all re-form.
        assert_eq!(
            plan(&[
                waiting,
                stopped(true, 3, false, true),
                stopped(true, 3, false, true)
            ]),
            StartPlan::Reform(vec![1, 2])
        );
        assert_eq!(running.seqno, 7);
    }
}
