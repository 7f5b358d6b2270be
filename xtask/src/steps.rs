//! The step engine: which steps exist, in which order, and how a run of one is recorded.
//!
//! A step records `running` in data.json before it changes anything and `done` or `failed` after,
//! so an interrupted run is visible and the next run of the same step picks up where it stopped.
//! Steps reconcile with reality instead of trusting the record: whatever an earlier attempt
//! created is found and adopted, never created twice.

use std::fmt;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::flags::{BenchArgs, SettingsArgs};
use crate::state::{now, Deployment, Lock, Paths, StepStatus};
use crate::{bench, deploy_services, fetch_results, install_cluster, provision, teardown};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Provision,
    InstallCluster,
    DeployServices,
    Bench,
    FetchResults,
    Teardown,
}

impl Step {
    /// What `all` runs, in order; each step needs the one before it.
    pub const PIPELINE: [Step; 5] = [
        Step::Provision,
        Step::InstallCluster,
        Step::DeployServices,
        Step::Bench,
        Step::FetchResults,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Provision => "provision",
            Step::InstallCluster => "install-cluster",
            Step::DeployServices => "deploy-services",
            Step::Bench => "bench",
            Step::FetchResults => "fetch-results",
            Step::Teardown => "teardown",
        }
    }

    /// The step that must be done before this one can run.
    pub fn needs(self) -> Option<Step> {
        let at = Step::PIPELINE.iter().position(|s| *s == self)?;
        at.checked_sub(1).map(|i| Step::PIPELINE[i])
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A locked deployment: the only way to change data.json.
pub struct Session {
    pub paths: Paths,
    pub deployment: Deployment,
    _lock: Lock,
}

impl Session {
    pub fn save(&self) -> Result<()> {
        self.paths.save(&self.deployment)
    }
}

/// What happened to one step of a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    AlreadyDone,
}

/// Runs one pipeline step (or skips it when done and not forced).
pub fn run(
    paths: &Paths,
    step: Step,
    force: bool,
    settings: &SettingsArgs,
    bench_args: &BenchArgs,
) -> Result<Outcome> {
    let lock = Lock::acquire(paths)?;
    let mut session = match step {
        Step::Provision => provision::open(paths, lock, settings)?,
        _ => {
            settings.reject_for(step)?;
            open_live(paths, lock)?
        }
    };
    if step == Step::Bench {
        bench::choose_run(&mut session.deployment, bench_args, force)?;
    }
    run_in(&mut session, step, force)
}

/// Runs every pipeline step that is not done yet, in order, under one lock.
pub fn run_all(paths: &Paths, settings: &SettingsArgs, bench_args: &BenchArgs) -> Result<()> {
    let lock = Lock::acquire(paths)?;
    let mut session = provision::open(paths, lock, settings)?;
    for step in Step::PIPELINE {
        if step == Step::Bench {
            bench::choose_run(&mut session.deployment, bench_args, false)?;
        }
        run_in(&mut session, step, false)
            .with_context(|| format!("resume with `cargo xtask {step}` once the cause is fixed"))?;
    }
    let d = &session.deployment;
    let gatekeeper = d.public_gatekeeper_url()?;
    eprintln!(
        "\nall steps are done.\n  results:    {}/summary.md (CSVs and charts beside it)\n  \
         gatekeeper: {gatekeeper}/\n  status:     cargo xtask status\n  tear down:  cargo xtask teardown",
        crate::fetch_results::results_dir().display()
    );
    Ok(())
}

/// Opens the current deployment for a step other than provision.
pub fn open_live(paths: &Paths, lock: Lock) -> Result<Session> {
    let deployment = match paths.load()? {
        Some(d) if d.is_live() => d,
        Some(d) => bail!(
            "deployment {} was torn down at {}; run `cargo xtask provision` to create a new one",
            d.id,
            d.torn_down_at.unwrap_or_default()
        ),
        None => bail!(
            "no deployment at {}; run `cargo xtask provision` first",
            paths.data_json.display()
        ),
    };
    Ok(Session {
        paths: paths.clone(),
        deployment,
        _lock: lock,
    })
}

pub fn new_session(paths: &Paths, lock: Lock, deployment: Deployment) -> Session {
    Session {
        paths: paths.clone(),
        deployment,
        _lock: lock,
    }
}

pub fn run_in(session: &mut Session, step: Step, force: bool) -> Result<Outcome> {
    let record = session.deployment.step(step);
    if let Some(needed) = step.needs() {
        if session.deployment.step(needed).status != StepStatus::Done {
            bail!("`{step}` needs `{needed}` to be done first: run `cargo xtask {needed}`");
        }
    }
    match record.status {
        StepStatus::Done if !force => {
            eprintln!(
                "{step}: already done at {} (nothing to do; --force redoes it)",
                record.finished_at.as_deref().unwrap_or("?")
            );
            return Ok(Outcome::AlreadyDone);
        }
        StepStatus::Running => {
            eprintln!("{step}: the previous attempt was interrupted; resuming from what exists")
        }
        StepStatus::Failed => eprintln!(
            "{step}: retrying after the failure of attempt {}",
            record.attempts
        ),
        _ => {}
    }

    begin(session, step)?;
    let started = std::time::Instant::now();
    let result = execute(session, step);
    let record = session.deployment.step_mut(step);
    record.finished_at = Some(now());
    match &result {
        Ok(()) => {
            record.status = StepStatus::Done;
            record.error = None;
        }
        Err(e) => {
            record.status = StepStatus::Failed;
            record.error = Some(format!("{e:#}"));
        }
    }
    // A step done again may have changed what the steps after it used: they are to be done
    // again too.
    if result.is_ok() && record.attempts > 1 {
        for later in Step::PIPELINE.iter().skip_while(|s| **s != step).skip(1) {
            if let Some(r) = session.deployment.steps.get_mut(later) {
                r.status = StepStatus::Pending;
            }
        }
    }
    session.save()?;
    result.with_context(|| format!("step `{step}` failed"))?;
    eprintln!("{step}: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(Outcome::Ran)
}

/// Records that a step is running, before it touches anything.
fn begin(session: &mut Session, step: Step) -> Result<()> {
    let record = session.deployment.step_mut(step);
    record.status = StepStatus::Running;
    record.attempts += 1;
    record.started_at = Some(now());
    record.finished_at = None;
    record.error = None;
    session.save()
}

fn execute(session: &mut Session, step: Step) -> Result<()> {
    match step {
        Step::Provision => provision::run(session),
        Step::InstallCluster => install_cluster::run(session),
        Step::DeployServices => deploy_services::run(session),
        Step::Bench => bench::run(session),
        Step::FetchResults => fetch_results::run(session),
        Step::Teardown => teardown::execute(session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_order_and_prerequisites() {
        assert_eq!(Step::Provision.needs(), None);
        assert_eq!(Step::InstallCluster.needs(), Some(Step::Provision));
        assert_eq!(Step::FetchResults.needs(), Some(Step::Bench));
        assert_eq!(Step::Teardown.needs(), None);
        let names: Vec<_> = Step::PIPELINE.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "provision",
                "install-cluster",
                "deploy-services",
                "bench",
                "fetch-results"
            ]
        );
    }

    #[test]
    fn step_names_match_their_serialized_form() {
        for step in Step::PIPELINE.into_iter().chain([Step::Teardown]) {
            assert_eq!(serde_json::to_value(step).unwrap(), step.name());
        }
    }
}
