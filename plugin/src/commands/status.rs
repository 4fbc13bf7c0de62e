//! `kubectl sb status [-w] [kind/name]`: read requests and patches with phase, approvals and
//! age; `-w` follows changes with a watcher and reports progress on the long steps.

use super::{age, wait};
use crate::cli::StatusArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::target::{RequestKind, parse_object};
use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use sb_core::crd::{Approval, Decision, PatchPhase, ReadPhase, SecretPatch, SecretReadRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often `-w` says a long step is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    object: String,
    target: String,
    phase: String,
    approvals: String,
    requester: String,
    age: String,
    /// Nothing more will happen (for -w on one object).
    settled: bool,
    /// A step that can take a while (queued for or running on the agent).
    long_step: bool,
    detail: String,
}

fn approvals_text(summary: Option<&str>, approvals: &[Approval]) -> String {
    let decided: Vec<String> = approvals
        .iter()
        .map(|a| format!("{}{}", if a.decision == Decision::Approve { "+" } else { "-" }, a.approver))
        .collect();
    let count = approvals.iter().filter(|a| a.decision == Decision::Approve).count().to_string();
    let summary = summary.map(str::to_owned).unwrap_or(count);
    if decided.is_empty() { summary } else { format!("{summary} {}", decided.join(",")) }
}

fn read_row(request: &SecretReadRequest) -> Row {
    let status = request.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    Row {
        object: format!("srr/{}", request.name_any()),
        target: request.spec.target.canonical(),
        phase: format!("{phase:?}"),
        approvals: approvals_text(status.approval_summary.as_deref(), &status.approvals),
        requester: request.spec.requester.clone(),
        age: age(request.metadata.creation_timestamp.as_ref()),
        settled: wait::read_settled(phase),
        long_step: matches!(phase, ReadPhase::Queued | ReadPhase::Running),
        detail: wait::describe_read(request),
    }
}

fn patch_row(patch: &SecretPatch) -> Row {
    let status = patch.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let agent = &patch.spec.target.agent;
    let what = match phase {
        PatchPhase::Pending => "waiting for approvals".to_owned(),
        PatchPhase::Approved => "approved; being queued for the agent".to_owned(),
        PatchPhase::Queued => format!("queued; waiting for agent {agent} to claim the job"),
        PatchPhase::Running => format!("agent {agent} is writing the secret"),
        PatchPhase::Executed if observing(patch) => "written; watching the Applications roll out".to_owned(),
        PatchPhase::Executed => "written".to_owned(),
        PatchPhase::Applied => "written and rolled out".to_owned(),
        PatchPhase::AppliedUnverified => "written; the rollout was not confirmed in time".to_owned(),
        PatchPhase::Denied => "denied".to_owned(),
        PatchPhase::Failed => "failed".to_owned(),
    };
    let mut detail = match status.message.as_deref().filter(|m| !m.is_empty()) {
        Some(message) => format!("{phase:?}: {what} — {message}"),
        None => format!("{phase:?}: {what}"),
    };
    if !status.observations.is_empty() {
        let apps: Vec<String> = observation_lines(patch);
        detail.push_str(&format!(" [{}]", apps.join("; ")));
    }
    Row {
        object: format!("sp/{}", patch.name_any()),
        target: patch.spec.target.canonical(),
        phase: format!("{phase:?}"),
        approvals: approvals_text(status.approval_summary.as_deref(), &status.approvals),
        requester: patch.spec.requester.clone(),
        age: age(patch.metadata.creation_timestamp.as_ref()),
        settled: match phase {
            PatchPhase::Executed => !observing(patch),
            other => matches!(
                other,
                PatchPhase::Applied | PatchPhase::AppliedUnverified | PatchPhase::Denied | PatchPhase::Failed
            ),
        },
        long_step: matches!(phase, PatchPhase::Queued | PatchPhase::Running | PatchPhase::Executed),
        detail,
    }
}

/// Whether an executed patch is (or will be) observed on ArgoCD Applications.
fn observing(patch: &SecretPatch) -> bool {
    patch.spec.observe.is_some() || patch.status.as_ref().is_some_and(|s| s.observe_deadline.is_some())
}

/// One line per observed Application: `argocd/web Synced/Healthy: Applied (rollout seen)`.
fn observation_lines(patch: &SecretPatch) -> Vec<String> {
    let status = patch.status.clone().unwrap_or_default();
    status
        .observations
        .iter()
        .map(|o| {
            let mut line = format!(
                "{}/{} {}/{}: {:?}",
                o.namespace,
                o.name,
                o.sync.as_deref().unwrap_or("-"),
                o.health.as_deref().unwrap_or("-"),
                o.verdict
            );
            if o.rollout_seen {
                line.push_str(" (rollout seen)");
            }
            if let Some(message) = &o.message {
                line.push_str(&format!(" — {message}"));
            }
            line
        })
        .collect()
}

pub async fn run(ctx: &Ctx, args: StatusArgs) -> Result<(), PluginError> {
    let only = args.object.as_deref().map(parse_object).transpose()?;
    if args.watch {
        return follow(ctx, only, args.timeout).await;
    }
    let rows = list(ctx, only.as_ref()).await?;
    if rows.is_empty() {
        println!("No read requests or patches in namespace {}.", ctx.namespace);
        return Ok(());
    }
    print_table(&rows);
    if let Some((RequestKind::Patch, name)) = &only {
        // One patch: what each observed Application showed and what it means.
        let patch = ctx
            .api::<SecretPatch>()
            .get(name)
            .await
            .map_err(|e| PluginError::from_kube(e, &format!("secretpatch {name}"), &ctx.namespace))?;
        for line in observation_lines(&patch) {
            println!("  Application {line}");
        }
    }
    Ok(())
}

async fn list(ctx: &Ctx, only: Option<&(RequestKind, String)>) -> Result<Vec<Row>, PluginError> {
    let ns = &ctx.namespace;
    let reads = ctx.api::<SecretReadRequest>();
    let patches = ctx.api::<SecretPatch>();
    let mut rows = Vec::new();
    match only {
        Some((RequestKind::Read, name)) => rows.push(read_row(
            &reads.get(name).await.map_err(|e| PluginError::from_kube(e, &format!("secretreadrequest {name}"), ns))?,
        )),
        Some((RequestKind::Patch, name)) => rows.push(patch_row(
            &patches.get(name).await.map_err(|e| PluginError::from_kube(e, &format!("secretpatch {name}"), ns))?,
        )),
        None => {
            let lp = ListParams::default();
            let list = reads.list(&lp).await.map_err(|e| PluginError::from_kube(e, "secretreadrequests", ns))?;
            rows.extend(list.items.iter().map(read_row));
            let list = patches.list(&lp).await.map_err(|e| PluginError::from_kube(e, "secretpatches", ns))?;
            rows.extend(list.items.iter().map(patch_row));
        }
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    let header = ["NAME", "TARGET", "PHASE", "APPROVALS", "REQUESTER", "AGE"];
    let cells: Vec<[&str; 6]> =
        rows.iter().map(|r| [r.object.as_str(), &r.target, &r.phase, &r.approvals, &r.requester, &r.age]).collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Follows changes until the one named request settles, or `timeout` passes.
async fn follow(ctx: &Ctx, only: Option<(RequestKind, String)>, timeout: Duration) -> Result<(), PluginError> {
    let config = |name: Option<&str>| match name {
        Some(name) => watcher::Config::default().fields(&format!("metadata.name={name}")),
        None => watcher::Config::default(),
    };
    let name = only.as_ref().map(|(_, n)| n.as_str());
    let reads =
        watcher(ctx.api::<SecretReadRequest>(), config(name)).applied_objects().map_ok(|o| read_row(&o)).boxed();
    let patches = watcher(ctx.api::<SecretPatch>(), config(name)).applied_objects().map_ok(|o| patch_row(&o)).boxed();
    let mut events = match only.as_ref().map(|(k, _)| *k) {
        Some(RequestKind::Read) => reads,
        Some(RequestKind::Patch) => patches,
        None => futures::stream::select(reads, patches).boxed(),
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    // What each object last showed, and since when it has been in its phase.
    let mut seen: BTreeMap<String, (Row, Instant)> = BTreeMap::new();
    loop {
        tokio::select! {
            event = events.next() => {
                let row = match event {
                    Some(Ok(row)) => row,
                    Some(Err(err)) => return Err(PluginError::Api(format!("watching requests: {err}"))),
                    None => return Ok(()),
                };
                if let Some((_, kind_name)) = only.as_ref().map(|(k, n)| (k, format!("{}/{n}", k.short())))
                    && row.object != kind_name
                {
                    continue;
                }
                let changed = seen.get(&row.object).is_none_or(|(old, _)| old.detail != row.detail || old.approvals != row.approvals);
                if changed {
                    println!("{}  {}  approvals {}  {}", clock(), row.object, row.approvals, row.detail);
                    let since = match seen.get(&row.object) {
                        Some((old, since)) if old.phase == row.phase => *since,
                        _ => Instant::now(),
                    };
                    seen.insert(row.object.clone(), (row.clone(), since));
                }
                if only.is_some() && row.settled {
                    return Ok(());
                }
            }
            _ = ticker.tick() => {
                for (row, since) in seen.values().filter(|(row, _)| row.long_step) {
                    println!("{}  {}  still {} after {}s", clock(), row.object, row.phase, since.elapsed().as_secs());
                }
            }
            () = &mut deadline => {
                return match only {
                    Some((kind, name)) => Err(PluginError::Timeout { what: format!("{}/{name} to finish", kind.short()), seconds: timeout.as_secs() }),
                    None => Ok(()),
                };
            }
        }
    }
}

fn clock() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
