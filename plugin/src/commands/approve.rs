//! `kubectl sb approve|deny`: append one decision to `status.approvals` through the status
//! subresource, in the current user's name. The chart's admission policy checks the rest
//! (not the requester, not twice, holds the `approve` verb) and its sentence is shown as is.

use crate::cli::DecideArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::target::{RequestKind, parse_object};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Resource};
use sb_core::crd::{Approval, Decision, SecretPatch, SecretReadRequest};
use serde_json::{Value, json};

/// How many times to re-read and retry when the object changed under us.
const ATTEMPTS: usize = 5;

pub async fn run(ctx: &Ctx, args: DecideArgs, decision: Decision) -> Result<(), PluginError> {
    let (kind, name) = parse_object(&args.object)?;
    if args.reason.trim().is_empty() {
        return Err(PluginError::Usage("--reason must say why you decide so".into()));
    }
    let (approver, groups) = ctx.whoami_with_groups().await?;
    let resource = match kind {
        RequestKind::Read => ApiResource::erase::<SecretReadRequest>(&()),
        RequestKind::Patch => ApiResource::erase::<SecretPatch>(&()),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource);
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
    let entry = with_second_precision(entry);

    for attempt in 1..=ATTEMPTS {
        let current = api.get(&name).await.map_err(|err| PluginError::from_kube(err, &what, &ctx.namespace))?;
        if let Some(requester) = current.data.pointer("/spec/requester").and_then(Value::as_str)
            && requester == approver
        {
            // The admission policy refuses this too; saying it here spares a round trip and
            // reads the same.
            return Err(PluginError::Refused("the requester cannot approve or deny their own request".into()));
        }
        let patch = append_patch(&current, entry.clone());
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("a well-formed JSON patch");
        match api.patch_status(&name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
            Ok(_) => {
                let verb = if decision == Decision::Approve { "approved" } else { "denied" };
                println!("{}/{name} {verb} by {approver} in namespace {}", kind.short(), ctx.namespace);
                return Ok(());
            }
            Err(kube::Error::Api(status)) if attempt < ATTEMPTS && is_lost_race(&status) => continue,
            Err(err) => return Err(PluginError::from_kube(err, &what, &ctx.namespace)),
        }
    }
    Err(PluginError::Conflict(format!("{what} kept changing while your decision was being recorded")))
}

/// Kubernetes times have second precision; chrono would otherwise print nanoseconds.
fn with_second_precision(mut entry: Value) -> Value {
    entry["time"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    entry
}

/// A JSON patch appending `entry`, guarded by the resourceVersion read, so a decision that
/// lands at the same moment is never overwritten (the guard fails and we retry).
fn append_patch(current: &DynamicObject, entry: Value) -> Value {
    let version = current.meta().resource_version.clone().unwrap_or_default();
    let guard = json!({"op": "test", "path": "/metadata/resourceVersion", "value": version});
    let add = match current.data.get("status") {
        None | Some(Value::Null) => json!({"op": "add", "path": "/status", "value": {"approvals": [entry]}}),
        Some(status) if status.get("approvals").is_none_or(Value::is_null) => {
            json!({"op": "add", "path": "/status/approvals", "value": [entry]})
        }
        Some(_) => json!({"op": "add", "path": "/status/approvals/-", "value": entry}),
    };
    json!([guard, add])
}

/// Whether the resourceVersion guard failed (someone wrote in between). A real API server
/// answers a failed JSON-patch `test` with a generic 422 whose cause carries "test failed";
/// an admission refusal is a 422 too, but names the policy that denied it.
fn is_lost_race(status: &kube::core::Status) -> bool {
    if status.code == 409 {
        return true;
    }
    let causes = status.details.iter().flat_map(|d| d.causes.iter()).map(|c| c.message.as_str());
    status.code == 422
        && !status.message.contains("denied request")
        && (status.message.contains("test failed") || causes.into_iter().any(|m| m.contains("test failed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(data: Value) -> DynamicObject {
        let mut object = DynamicObject::new("db", &ApiResource::erase::<SecretReadRequest>(&())).data(data);
        object.metadata.resource_version = Some("42".into());
        object
    }

    #[test]
    fn the_first_decision_creates_the_list_and_later_ones_append() {
        let entry = json!({"approver": "bob"});
        let patch = append_patch(&object(json!({"spec": {}})), entry.clone());
        assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"}));
        assert_eq!(patch[1], json!({"op": "add", "path": "/status", "value": {"approvals": [entry]}}));
        let patch = append_patch(&object(json!({"status": {"phase": "Pending"}})), entry.clone());
        assert_eq!(patch[1]["path"], "/status/approvals");
        let patch = append_patch(&object(json!({"status": {"approvals": [{"approver": "carol"}]}})), entry);
        assert_eq!(patch[1]["path"], "/status/approvals/-");
    }

    #[test]
    fn only_a_failed_guard_is_retried() {
        let status = |code: u16, message: &str, cause: &str| -> kube::core::Status {
            serde_json::from_value(
                json!({"code": code, "message": message, "details": {"causes": [{"message": cause}]}}),
            )
            .unwrap()
        };
        let generic = "the server rejected our request due to an error in our request";
        assert!(is_lost_race(&status(422, generic, "testing value /metadata/resourceVersion failed: test failed")));
        assert!(is_lost_race(&status(409, "conflict", "")));
        assert!(!is_lost_race(&status(
            422,
            "x is invalid: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: test failed",
            ""
        )));
        assert!(!is_lost_race(&status(422, "spec.x: Invalid value", "")));
    }
}
