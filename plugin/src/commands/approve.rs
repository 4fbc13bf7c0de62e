//! `kubectl sb approve|deny`: append one decision to `status.approvals` through the status
//! subresource, in the current user's name. The chart's admission policy checks the rest
//! (not the requester, not twice, holds the `approve` verb) and its sentence is shown as is.

use super::status_entry;
use crate::cli::DecideArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::target::parse_object;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use sb_core::crd::{Approval, Decision};
use serde_json::Value;

pub async fn run(ctx: &Ctx, args: DecideArgs, decision: Decision) -> Result<(), PluginError> {
    let (kind, name) = parse_object(&args.object)?;
    if args.reason.trim().is_empty() {
        return Err(PluginError::Usage("--reason must say why you decide so".into()));
    }
    let (approver, groups) = ctx.whoami_with_groups().await?;
    let api = ctx.request_api(kind);
    let what = format!("{} {name}", kind.singular());
    let approval = Approval {
        decision,
        approver: approver.clone(),
        // The operator's SubjectAccessReview needs them for group-granted `approve` verbs.
        groups,
        reason: args.reason.clone(),
        time: Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let entry = serde_json::to_value(&approval).expect("an approval serialises");
    let precheck = |current: &DynamicObject| {
        if let Some(requester) = current.data.pointer("/spec/requester").and_then(Value::as_str)
            && requester == approver
        {
            // The admission policy refuses this too; saying it here spares a round trip and
            // reads the same.
            return Err(PluginError::Refused("the requester cannot approve or deny their own request".into()));
        }
        Ok(())
    };
    status_entry::append(&api, &name, "approvals", entry, &what, &ctx.namespace, precheck).await?;
    let verb = if decision == Decision::Approve { "approved" } else { "denied" };
    println!("{}/{name} {verb} by {approver} in namespace {}", kind.short(), ctx.namespace);
    Ok(())
}
