//! `kubectl sb confirm`: the requester named in a request that someone else submitted for
//! them (ArgoCD syncing a SecretPatch from git, with the `submit-for-others` grant) says it is
//! theirs. Until then the operator counts no approval, so a committer who is also an approver
//! cannot put a change in someone else's name and approve it themselves. The entry goes to
//! `status.requesterActions`; the admission policy accepts it only from the requester.

use super::status_entry;
use crate::cli::ConfirmArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::target::parse_object;
use kube::api::DynamicObject;
use sb_core::crd::{RequesterAck, RequesterAction, SUBMITTED_BY_ANNOTATION};
use serde_json::Value;

pub async fn run(ctx: &Ctx, args: ConfirmArgs) -> Result<(), PluginError> {
    let (kind, name) = parse_object(&args.object)?;
    let user = ctx.whoami().await?;
    let api = ctx.request_api(kind);
    let what = format!("{} {name}", kind.singular());
    let ack = RequesterAck {
        action: RequesterAction::Confirm,
        user: user.clone(),
        time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let entry = serde_json::to_value(&ack).expect("an acknowledgement serialises");
    let precheck = |current: &DynamicObject| {
        let requester = current.data.pointer("/spec/requester").and_then(Value::as_str).unwrap_or_default();
        if requester != user {
            return Err(PluginError::Refused(format!(
                "only the requester ({requester}) can confirm {what}; you are {user}"
            )));
        }
        let submitter = current.metadata.annotations.as_ref().and_then(|a| a.get(SUBMITTED_BY_ANNOTATION));
        let Some(submitter) = submitter.filter(|s| **s != user) else {
            return Err(PluginError::Refused(format!("{what} was created by you; there is nothing to confirm")));
        };
        // Say what is being confirmed: the person confirming owns the change from now on.
        let target = current.data.pointer("/spec/target").cloned().unwrap_or_default();
        let field = |k: &str| target.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let justification = current.data.pointer("/spec/justification").and_then(Value::as_str).unwrap_or_default();
        eprintln!(
            "confirming {what}: submitted by {submitter} in your name for {}/{}:{} ({justification})",
            field("agent"),
            field("provider"),
            field("ref")
        );
        Ok(())
    };
    status_entry::append(&api, &name, "requesterActions", entry, &what, &ctx.namespace, precheck).await?;
    println!("{}/{name} confirmed by {user} in namespace {}; approvals now count", kind.short(), ctx.namespace);
    Ok(())
}
