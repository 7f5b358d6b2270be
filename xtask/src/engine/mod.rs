//! The step engine: runs a step under the deployment's lock and records it in data.json.
//!
//! A step records `running` before it changes anything and `done` or `failed` after, so an
//! interrupted run is visible and the next run of the same step picks up where it stopped.
//! Steps reconcile with reality instead of trusting the record: whatever an earlier attempt
//! created is found and adopted, never created twice. The engine knows the steps only through
//! the table the steps layer hands it: what work each step of `Step` does.

use anyhow::{bail, Context, Result};

use crate::cluster::{self, build};
use crate::flags::{BenchArgs, SettingsArgs};
use crate::providers;
use crate::results;
use crate::state::{self, now, BenchRun, Deployment, Lock, Paths, Session, Step, StepStatus};

/// The work of one step, on a locked deployment.
pub type Work = fn(&mut Session) -> Result<()>;

pub struct Engine {
    pub paths: Paths,
    /// What each step does: the steps layer's table.
    pub work: fn(Step) -> Work,
}

impl Engine {
    /// `provision`: plans a new deployment from the settings, or reruns on the live one (whose
    /// recorded settings the given flags must match).
    pub fn provision(&self, force: bool, settings: &SettingsArgs) -> Result<()> {
        let lock = Lock::acquire(&self.paths)?;
        let mut session = open_or_plan(&self.paths, lock, settings)?;
        self.run_in(&mut session, Step::Provision, force)
    }

    /// Any other step of the pipeline, or teardown, on the live deployment.
    pub fn step(&self, step: Step, force: bool, bench: &BenchArgs) -> Result<()> {
        let lock = Lock::acquire(&self.paths)?;
        let mut session = Session::open_live(&self.paths, lock)?;
        follow_the_servers(&mut session, step);
        if step == Step::Bench {
            choose_bench_run(&mut session.deployment, bench, force)?;
        }
        self.run_in(&mut session, step, force)
    }

    /// Every pipeline step that is not done yet, in order, under one lock.
    pub fn all(&self, settings: &SettingsArgs, bench: &BenchArgs) -> Result<()> {
        let lock = Lock::acquire(&self.paths)?;
        let mut session = open_or_plan(&self.paths, lock, settings)?;
        for step in Step::PIPELINE {
            if step == Step::Bench {
                choose_bench_run(&mut session.deployment, bench, false)?;
            }
            if session.deployment.step(step).status != StepStatus::Done {
                follow_the_servers(&mut session, step);
            }
            self.run_in(&mut session, step, false).with_context(|| {
                format!(
                    "resume with `{}` once the cause is fixed",
                    state::command(&step.to_string())
                )
            })?;
        }
        let d = &session.deployment;
        let provider = providers::of(d.provider());
        let drifted = cluster::drift::drift(d);
        if !drifted.is_empty() {
            eprintln!(
                "\nevery step is done, but the deployment drifted since: {}.\n  \
                 `{}` checks every server, service and replica and fixes what drifted",
                drifted.join("; "),
                state::command("repair")
            );
        }
        let gatekeeper = provider.public_gatekeeper_url(d)?;
        if let Some(charges) = provider.charges(d) {
            eprintln!("\n{charges}");
        }
        eprintln!(
            "\nall steps are done.\n  results:    {}/summary.md (CSVs and charts beside it)\n  \
             gatekeeper: {gatekeeper}/\n  status:     {}\n  tear down:  {}",
            results::results_dir().display(),
            state::command("status"),
            state::command("teardown")
        );
        Ok(())
    }

    fn run_in(&self, session: &mut Session, step: Step, force: bool) -> Result<()> {
        let record = session.deployment.step(step);
        if let Some(needed) = step.needs() {
            if session.deployment.step(needed).status != StepStatus::Done {
                bail!(
                    "`{step}` needs `{needed}` to be done first: run `{}`",
                    state::command(&needed.to_string())
                );
            }
        }
        match record.status {
            StepStatus::Done if !force => {
                eprintln!(
                    "{step}: already done at {} (nothing to do; --force redoes it)",
                    record.finished_at.as_deref().unwrap_or("?")
                );
                return Ok(());
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
        let result = (self.work)(step)(session);
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
        // A step done again may have changed what the steps after it used: they are to be
        // done again too.
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
        Ok(())
    }
}

/// Before a step that uses the cluster's roles: the record is brought up to what the servers
/// and the proxy say (a failover the proxy made by itself), so the step uses the manager they
/// have. A server that does not answer leaves the record as it is.
fn follow_the_servers(session: &mut Session, step: Step) {
    if matches!(step, Step::DeployServices | Step::Bench) {
        match cluster::topology::follow(session) {
            Ok(changed) => {
                for change in changed {
                    eprintln!("{step}: recorded from the servers and the proxy: {change}");
                }
            }
            Err(e) => eprintln!("{step}: the roles could not be read from the servers: {e:#}"),
        }
    }
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

/// Opens the live deployment, or plans a new one (nothing is written until the step begins).
fn open_or_plan(paths: &Paths, lock: Lock, args: &SettingsArgs) -> Result<Session> {
    if let Some(existing) = paths.load()? {
        if existing.is_live() {
            args.check_matches(&existing.settings)?;
            return Session::open_live(paths, lock);
        }
    }
    let settings = args.to_settings()?;
    if let Some(target) = &settings.target {
        // Before any instance is paid for: deploy-services would need it.
        build::check_target(target)?;
    }
    let id = state::new_deployment_id();
    let hosts = providers::of(settings.provider_kind()).plan_hosts(&settings, paths, &id)?;
    Ok(Session::new(
        paths,
        lock,
        Deployment::new(id, settings, hosts),
    ))
}

/// Decides the bench run a `bench` (or `all`) works on: the interrupted one, or a new one.
fn choose_bench_run(d: &mut Deployment, args: &BenchArgs, force: bool) -> Result<()> {
    let requested = args.to_settings()?;
    let status = d.step(Step::Bench).status;
    match &d.bench {
        Some(run) if status != StepStatus::Done && !force => {
            if !args.is_empty() && run.settings != requested {
                bail!(
                    "bench run {} was interrupted with other settings ({:?}); run `{}` without \
                     flags to finish it, or with --force to start a new run",
                    run.id,
                    run.settings,
                    state::command("bench")
                );
            }
        }
        Some(_) if status == StepStatus::Done && !force => {}
        _ => {
            let started_at = now();
            let stamp: String = started_at
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            d.bench = Some(BenchRun {
                id: format!("{stamp}-{}", d.id),
                started_at,
                settings: requested,
                workers: Some(d.settings.workers),
            });
        }
    }
    Ok(())
}
