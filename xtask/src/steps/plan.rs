//! plan: what provision would create with the given settings, or what the live deployment has:
//! each host with its size and address, the network rules the provider makes, and what it costs
//! while it runs. It reads only data.json and the settings (an inventory's file), contacts no
//! cloud and creates nothing.

use anyhow::Result;

use crate::flags::PlanArgs;
use crate::providers::{self, aws};
use crate::state::{self, Paths};

pub fn run(paths: &Paths, args: &PlanArgs) -> Result<()> {
    let prices = aws::price_overrides(&args.price_per_hour)?;
    let live = paths.load()?.filter(|d| d.is_live());
    let settings = match &live {
        Some(d) => {
            args.settings.check_matches(&d.settings)?;
            println!(
                "deployment {} ({} provider, provisioned {}): what exists",
                d.id,
                d.provider(),
                d.created_at
            );
            d.settings.clone()
        }
        None => {
            let settings = args.settings.to_settings()?;
            println!(
                "a new deployment ({} provider): nothing exists yet; `{}` with the same flags \
                 creates this",
                settings.provider_kind(),
                state::command("provision")
            );
            settings
        }
    };
    println!(
        "engine {}, {} {}, dataset scale {}, database port {}, service port {}",
        state::name_of(&settings.engine),
        settings.workers,
        match settings.engine {
            state::Engine::Replication => "workers",
            state::Engine::Galera => "nodes",
        },
        settings.scale,
        settings.db_port,
        settings.service_port
    );
    let provider = providers::of(settings.provider_kind());
    let plan = provider.plan(&settings, paths, live.as_ref(), &prices)?;
    let width = |f: &dyn Fn(&providers::PlannedHost) -> usize, title: &str| {
        plan.hosts
            .iter()
            .map(f)
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let size_width = width(&|h| h.size.len(), "SIZE");
    println!();
    println!(
        "{:<14} {:<13} {:<size_width$}  ADDRESS",
        "HOST", "ROLE", "SIZE"
    );
    for host in &plan.hosts {
        println!(
            "{:<14} {:<13} {:<size_width$}  {}",
            host.name,
            host.role.to_string(),
            host.size,
            host.address
        );
    }
    if !plan.rules.is_empty() {
        println!();
        println!("who may reach what (security groups):");
        for rule in &plan.rules {
            println!("  {rule}");
        }
    }
    if !plan.cost.is_empty() {
        println!();
        println!("what it costs while it runs:");
        for line in &plan.cost {
            println!("  {line}");
        }
    }
    if let Some(charges) = live.as_ref().and_then(|d| provider.charges(d)) {
        println!("  {charges}");
    }
    println!();
    for note in &plan.notes {
        println!("{note}");
    }
    Ok(())
}
