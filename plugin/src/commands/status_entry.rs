//! Appending one entry to a list in a request's status (`status.approvals`,
//! `status.requesterActions`) through the status subresource, guarded by the
//! resourceVersion it was read at, so two writers never overwrite each other. The admission
//! policy judges the entry; its sentence is shown as is.

use crate::error::PluginError;
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// How many times to re-read and retry when the object changed under us.
const ATTEMPTS: usize = 5;

/// Appends `entry` to `status.<field>` of `name`; `precheck` sees the current object first
/// and may refuse with a clearer sentence than the API server's.
pub async fn append(
    api: &Api<DynamicObject>,
    name: &str,
    field: &str,
    entry: Value,
    what: &str,
    namespace: &str,
    precheck: impl Fn(&DynamicObject) -> Result<(), PluginError>,
) -> Result<(), PluginError> {
    let entry = with_second_precision(entry);
    for attempt in 1..=ATTEMPTS {
        let current = api.get(name).await.map_err(|err| PluginError::from_kube(err, what, namespace))?;
        precheck(&current)?;
        let patch = append_patch(&current, field, entry.clone());
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("a well-formed JSON patch");
        match api.patch_status(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if attempt < ATTEMPTS && is_lost_race(&status) => continue,
            Err(err) => return Err(PluginError::from_kube(err, what, namespace)),
        }
    }
    Err(PluginError::Conflict(format!("{what} kept changing while your entry was being recorded")))
}

/// Kubernetes times have second precision; chrono would otherwise print nanoseconds.
fn with_second_precision(mut entry: Value) -> Value {
    entry["time"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    entry
}

/// A JSON patch appending `entry`, guarded by the resourceVersion read, so a decision that
/// lands at the same moment is never overwritten (the guard fails and we retry).
fn append_patch(current: &DynamicObject, field: &str, entry: Value) -> Value {
    let version = current.meta().resource_version.clone().unwrap_or_default();
    let guard = json!({"op": "test", "path": "/metadata/resourceVersion", "value": version});
    let add = match current.data.get("status") {
        None | Some(Value::Null) => json!({"op": "add", "path": "/status", "value": {field: [entry]}}),
        Some(status) if status.get(field).is_none_or(Value::is_null) => {
            json!({"op": "add", "path": format!("/status/{field}"), "value": [entry]})
        }
        Some(_) => json!({"op": "add", "path": format!("/status/{field}/-"), "value": entry}),
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
    use kube::api::ApiResource;
    use sb_core::crd::SecretReadRequest;

    fn object(data: Value) -> DynamicObject {
        let mut object = DynamicObject::new("db", &ApiResource::erase::<SecretReadRequest>(&())).data(data);
        object.metadata.resource_version = Some("42".into());
        object
    }

    #[test]
    fn the_first_decision_creates_the_list_and_later_ones_append() {
        let entry = json!({"approver": "bob"});
        let patch = append_patch(&object(json!({"spec": {}})), "approvals", entry.clone());
        assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"}));
        assert_eq!(patch[1], json!({"op": "add", "path": "/status", "value": {"approvals": [entry]}}));
        let patch = append_patch(&object(json!({"status": {"phase": "Pending"}})), "approvals", entry.clone());
        assert_eq!(patch[1]["path"], "/status/approvals");
        let patch =
            append_patch(&object(json!({"status": {"approvals": [{"approver": "carol"}]}})), "approvals", entry);
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
