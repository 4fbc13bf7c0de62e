//! Server-side apply and `metadata.managedFields`, after sigs.k8s.io/structured-merge-diff's
//! `merge.Updater` (Apply / Update) and the apiserver's field manager around it.

use crate::PatchError;
use crate::entries::{self, APPLY, Entry, UPDATE};
use crate::fieldpath::{FieldSet, has_descendant, path_string};
use crate::walk::{self, ListKind, Schema};
use serde_json::{Value, json};

/// How lists are merged, from the schema's `x-kubernetes-list-type` / `-list-map-keys`
/// (absent means atomic, like the real server for CRDs).
///
/// ObjectMeta's lists (`finalizers` a set, `ownerReferences` a map keyed by `uid`) and the
/// lists of the built-in kinds this crate knows (Namespace, ServiceAccount, CRD, admission
/// policies) are handled before this is asked.
pub trait ListSemantics {
    /// `path` is the JSON path of the list, e.g. `["status", "conditions"]`; list items add
    /// no segment (`["spec", "containers", "ports"]`).
    /// Returns `None` for atomic, `Some(vec![])` for `set`, `Some(keys)` for `map`.
    fn list_keys(&self, path: &[String]) -> Option<Vec<String>>;
}

/// Every list atomic.
pub struct AtomicLists;
impl ListSemantics for AtomicLists {
    fn list_keys(&self, _path: &[String]) -> Option<Vec<String>> {
        None
    }
}

/// The list types of the built-in kinds the test server stores, from their OpenAPI
/// (`x-kubernetes-list-type`); everything else in them is atomic.
pub(crate) fn builtin_list_keys(group: &str, kind: &str, path: &[&str]) -> Option<ListKind> {
    let keyed = |k: &str| Some(ListKind::Map(vec![k.to_string()]));
    match (group, kind, path) {
        ("", "Namespace", ["status", "conditions"]) => keyed("type"),
        ("", "ServiceAccount", ["secrets"]) => keyed("name"),
        ("apiextensions.k8s.io", "CustomResourceDefinition", ["status", "conditions"]) => keyed("type"),
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding",
            ["status", "conditions"],
        ) => keyed("type"),
        _ => None,
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// Path as the real server prints it, e.g. `.spec.replicas`.
    pub field: String,
    /// How the real server names the manager: `"mgr"`, or `"kubectl-edit" using v1` for an
    /// `Update` entry, with ` with subresource "status"` when it wrote through `/status`.
    pub printed_manager: String,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict; message formatted like the real server's
    /// (`Apply failed with 1 conflict: conflict with "other": .spec.x`).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error(transparent)]
    Patch(#[from] PatchError),
}

impl ApplyError {
    /// `details.causes` of the 409 Status, one per conflicting field.
    pub fn status_causes(&self) -> Vec<Value> {
        match self {
            ApplyError::Conflicts(cs) => cs
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.printed_manager),
                        "field": c.field,
                    })
                })
                .collect(),
            ApplyError::Patch(_) => Vec::new(),
        }
    }
}

/// The apiserver's `getConflictMessage`.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.printed_manager, c.field);
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.printed_manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.printed_manager == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

fn bad_request(msg: impl Into<String>) -> ApplyError {
    ApplyError::Patch(PatchError::BadRequest(msg.into()))
}

/// One server-side apply by `manager`. `live` is the stored object (None creates it);
/// `applied` the applied configuration. `subresource` is `"status"` when applying to
/// `/status`. Returns the new object with `metadata.managedFields` updated.
///
/// For the main resource of a kind that has a status subresource, remove `status` from
/// `applied` first: the real server ignores it there.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    lists: &dyn ListSemantics,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(bad_request("the applied configuration must be an object"));
    }
    if applied.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(bad_request("metadata.managedFields must be nil"));
    }
    if applied.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(bad_request("Object 'Kind' is missing in the applied configuration"));
    }
    let api_version = applied.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let live_version = live.and_then(|l| l.get("apiVersion")).and_then(Value::as_str);
    if api_version.is_empty() || live_version.is_some_and(|v| v != api_version) {
        return Err(bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {api_version}, \
             expected: {}",
            live_version.unwrap_or("the resource's version")
        )));
    }
    let schema = Schema::for_object(applied, lists);
    let base = live.map_or_else(|| json!({}), entries::without_managed_fields);
    let mut managers = match live {
        Some(l) => entries::decode(l).map_err(|e| bad_request(format!("failed to decode managed fields: {e}")))?,
        None => Vec::new(),
    };
    if live.is_some() && managers.is_empty() {
        // An object nobody tracked yet: its fields belong to a placeholder, as in the real
        // server, so a first apply cannot silently take over what others wrote.
        // The real server records it as an `Update` from an empty object.
        let mut set = walk::compare(&json!({}), &base, &schema).changed();
        entries::strip_server_fields(&mut set);
        managers.push(Entry {
            manager: "before-first-apply".into(),
            operation: UPDATE.into(),
            api_version: api_version.into(),
            time: None,
            subresource: None,
            set,
        });
    }

    // Through /status only `status` counts; the rest of the applied object is ignored.
    let config = match subresource {
        Some("status") => json!({ "status": applied.get("status").cloned().unwrap_or(json!({})) }),
        _ => entries::without_managed_fields(applied),
    };
    let mut new_set = walk::field_set(&config, &schema).map_err(|e| ApplyError::Patch(PatchError::Invalid(e)))?;
    entries::strip_server_fields(&mut new_set);

    let mine = |e: &Entry| e.is(manager, APPLY, subresource, api_version);
    let last_set = managers.iter().find(|e| mine(e)).map(|e| e.set.clone());
    let mut merged = crate::merge::merge(Some(&base), &config, &mut Vec::new(), &schema);

    // Prune what this manager applied last time, left out now, and nobody else claims.
    if let Some(last) = &last_set {
        let mut owned: FieldSet = new_set.clone();
        for e in managers.iter().filter(|e| !mine(e)) {
            owned.extend(e.set.iter().cloned());
        }
        for path in last {
            if !owned.contains(path) && !has_descendant(&owned, path) {
                crate::merge::remove_path(&mut merged, path);
            }
        }
    }

    let cmp = walk::compare(&base, &merged, &schema);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    for e in managers.iter().filter(|e| !mine(e)) {
        for path in e.set.intersection(&changed) {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                field: path_string(path),
                printed_manager: e.printed(),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for e in managers.iter_mut().filter(|e| !mine(e)) {
        e.set.retain(|p| !changed.contains(p) && !cmp.removed.contains(p));
    }

    let now = entries::now();
    match managers.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            if !cmp.is_empty() || e.set != new_set {
                e.time = Some(now);
            }
            e.set = new_set;
            e.api_version = api_version.into();
        }
        None => managers.push(Entry {
            manager: manager.into(),
            operation: APPLY.into(),
            api_version: api_version.into(),
            time: Some(now),
            subresource: subresource.map(str::to_string),
            set: new_set,
        }),
    }
    entries::encode(&mut merged, managers);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `manager` with operation `Update`:
/// the manager takes ownership of the fields it changed, others lose them.
///
/// `new` may carry `metadata.managedFields` the client sent (then they are taken as the
/// starting point, as the real server does for the main resource); otherwise `old`'s are.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, subresource: Option<&str>) {
    record_update_with(old, new, manager, subresource, &AtomicLists);
}

/// [`record_update`] with the schema's list semantics, so that e.g. two controllers'
/// conditions in a map list are owned per item.
pub fn record_update_with(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    lists: &dyn ListSemantics,
) {
    let from_new = match entries::decode(new) {
        Ok(es) if !es.is_empty() && subresource.is_none() => Some(es),
        _ => None,
    };
    let mut managers = from_new.or_else(|| old.and_then(|o| entries::decode(o).ok())).unwrap_or_default();
    let api_version = new
        .get("apiVersion")
        .or_else(|| old.and_then(|o| o.get("apiVersion")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let schema = Schema::for_object(new, lists);
    let before = old.map_or_else(|| json!({}), entries::without_managed_fields);
    let after = entries::without_managed_fields(new);
    let cmp = walk::compare(&before, &after, &schema);
    let mut taken = cmp.changed();
    for e in managers.iter_mut() {
        e.set.retain(|p| !taken.contains(p) && !cmp.removed.contains(p));
    }
    entries::strip_server_fields(&mut taken);
    if !taken.is_empty() {
        let now = entries::now();
        match managers.iter_mut().find(|e| e.is(manager, UPDATE, subresource, &api_version)) {
            Some(e) => {
                e.set.extend(taken);
                e.time = Some(now);
            }
            None => managers.push(Entry {
                manager: manager.into(),
                operation: UPDATE.into(),
                api_version,
                time: Some(now),
                subresource: subresource.map(str::to_string),
                set: taken,
            }),
        }
    }
    entries::encode(new, managers);
}
