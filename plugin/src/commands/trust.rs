//! `kubectl sb trust <agent> <fingerprint>`: pin an agent's key for the current cluster, before
//! its first use or to accept a rotation the agent's admin confirmed.

use crate::cli::TrustArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::known_agents::{KnownAgents, PinSource, check_fingerprint};
use sb_core::crd::is_dns_label;

pub fn run(ctx: &Ctx, args: TrustArgs) -> Result<(), PluginError> {
    if !is_dns_label(&args.agent) {
        return Err(PluginError::Usage(format!(
            "{:?} is not an agent name: use the AgentRegistration's name, e.g. edge",
            args.agent
        )));
    }
    check_fingerprint(&args.fingerprint)?;
    let mut known = KnownAgents::from_env()?;
    let previous = known.pin(&ctx.server, &args.agent, &args.fingerprint, PinSource::Trust)?;
    println!("pinned agent {} on {} to key {}", args.agent, ctx.server, args.fingerprint);
    match previous {
        Some(old) if old.fingerprint != args.fingerprint => println!(
            "  replaces {} (pinned {} by {})",
            old.fingerprint,
            old.pinned_at,
            match old.pinned_by {
                PinSource::FirstUse => "first use",
                PinSource::Trust => "kubectl sb trust",
            }
        ),
        Some(_) => println!("  (it was already pinned to this key)"),
        None => {}
    }
    println!("  recorded in {}", known.path().display());
    Ok(())
}
