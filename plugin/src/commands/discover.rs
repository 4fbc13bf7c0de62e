//! `kubectl sb discover` creates a DiscoveryJob; `kubectl sb catalog` lists what discoveries
//! found (metadata only: discovery never reads a value).

use crate::cli::{CatalogArgs, DiscoverArgs};
use crate::context::Ctx;
use crate::error::PluginError;
use crate::target::parse_agent_provider;
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use sb_core::crd::{DiscoveredSecret, DiscoveryJob, DiscoveryJobSpec, DiscoverySchedule, DiscoveryScope};

/// Prefix of the Kubernetes-safe copies of provider labels on catalog entries.
pub const CATALOG_LABEL_PREFIX: &str = "catalog.secrets-bridge.io/";

pub async fn run(ctx: &Ctx, args: DiscoverArgs) -> Result<(), PluginError> {
    let (agent, provider) = parse_agent_provider(&args.source)?;
    if let Some(every) = &args.every {
        check_interval(every)?;
    }
    let spec = DiscoveryJobSpec {
        agent: agent.clone(),
        provider: provider.clone(),
        scope: DiscoveryScope { path_prefix: args.prefix.clone(), name_filter: None },
        schedule: args.every.clone().map(|every| DiscoverySchedule { every }),
    };
    let mut job = DiscoveryJob::new("", spec);
    match &args.name {
        Some(name) => job.metadata.name = Some(name.clone()),
        None => {
            job.metadata.name = None;
            job.metadata.generate_name = Some(format!("{agent}-{provider}-"));
        }
    }
    let created = ctx
        .api::<DiscoveryJob>()
        .create(&PostParams::default(), &job)
        .await
        .map_err(|err| PluginError::from_kube(err, "discoveryjob", &ctx.namespace))?;
    let name = created.name_any();
    let scope =
        args.prefix.as_deref().map(|p| format!("under {p:?}")).unwrap_or_else(|| "in the whole allowed scope".into());
    let when = args.every.as_deref().map(|e| format!("every {e}")).unwrap_or_else(|| "once".into());
    println!("discoveryjob/{name} created");
    println!("  lists the secrets of {agent}/{provider} {scope}, {when} (metadata only, never values)");
    println!("See the results with: kubectl sb catalog -n {}", ctx.namespace);
    Ok(())
}

fn check_interval(every: &str) -> Result<(), PluginError> {
    let (digits, unit) = every.split_at(every.len().saturating_sub(1));
    let ok = matches!(unit, "s" | "m" | "h")
        && !digits.is_empty()
        && digits.len() <= 6
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if ok { Ok(()) } else { Err(PluginError::Usage(format!("--every {every:?} is not an interval like 30m or 6h"))) }
}

/// `owner=payments` means `catalog.secrets-bridge.io/owner=payments`: provider labels are
/// only ever copied under that prefix, so a bare key can mean nothing else.
pub fn expand_selector(selector: &str) -> String {
    selector
        .split(',')
        .map(|term| {
            let term = term.trim();
            let (bang, rest) = match term.strip_prefix('!') {
                Some(rest) => ("!", rest),
                None => ("", term),
            };
            let key = &rest[..rest.find(['=', '!', ' ']).unwrap_or(rest.len())];
            if key.is_empty() || key.contains('/') {
                term.to_owned()
            } else {
                format!("{bang}{CATALOG_LABEL_PREFIX}{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn catalog(ctx: &Ctx, args: CatalogArgs) -> Result<(), PluginError> {
    let mut params = ListParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(&expand_selector(selector));
    }
    let list = ctx
        .api::<DiscoveredSecret>()
        .list(&params)
        .await
        .map_err(|err| PluginError::from_kube(err, "discoveredsecrets", &ctx.namespace))?;
    if list.items.is_empty() {
        println!(
            "No discovered secrets in namespace {}{}.",
            ctx.namespace,
            args.selector.map(|s| format!(" matching {s}")).unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<[String; 5]> = list
        .items
        .iter()
        .map(|entry| {
            let labels: Vec<String> = entry.spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            [
                format!("{}/{}:{}", entry.spec.agent, entry.spec.provider, entry.spec.reference),
                entry.spec.provider_type.as_str().to_owned(),
                entry.spec.version.clone().unwrap_or_else(|| "-".into()),
                entry.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}")).unwrap_or_else(|| "-".into()),
                if labels.is_empty() { "-".into() } else { labels.join(",") },
            ]
        })
        .collect();
    let header = ["SECRET", "TYPE", "VERSION", "PHASE", "LABELS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_label_keys_mean_catalog_labels() {
        assert_eq!(expand_selector("owner=payments"), "catalog.secrets-bridge.io/owner=payments");
        assert_eq!(
            expand_selector("owner!=x,tier"),
            "catalog.secrets-bridge.io/owner!=x,catalog.secrets-bridge.io/tier"
        );
        assert_eq!(expand_selector("!tier"), "!catalog.secrets-bridge.io/tier");
        assert_eq!(expand_selector("example.com/team=a"), "example.com/team=a");
    }

    #[test]
    fn intervals_follow_the_crd_pattern() {
        for ok in ["30m", "6h", "90s"] {
            assert!(check_interval(ok).is_ok(), "{ok}");
        }
        for bad in ["6", "0h", "6d", "h", "1234567m"] {
            assert!(check_interval(bad).is_err(), "{bad}");
        }
    }
}
