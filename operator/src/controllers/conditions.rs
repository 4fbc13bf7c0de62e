//! Status helpers shared by the controllers: standard conditions and the server-side apply
//! of a status with the controller's own field manager.

use super::{Error, now_time};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A condition with `status` "True" or "False".
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now_time(),
    }
}

/// Puts `new` into `conditions`, keeping the old transition time when the status did not
/// change (so `kubectl describe` shows when it last flipped, not when it was last written).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        *old = new;
    } else {
        conditions.push(new);
    }
}

/// Removes the condition of `type_`.
pub fn clear_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Server-side applies `status` to the status subresource of `name` as `manager`. Fields the
/// manager does not send (such as approvers' `status.approvals`) are left to their owners.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, manager: &str, status: &S) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    Ok(api.patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&body)).await?)
}
