//! The controllers the real control plane runs in the background: the garbage collector
//! (ownerReferences with background, foreground and orphan propagation), the namespace
//! controller (a terminating namespace empties, then disappears) and ClusterRole aggregation.

use crate::handlers::delete::{self, Outcome};
use crate::meta;
use crate::server::{App, Inner};
use crate::store::Key;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(app: Arc<App>) {
    loop {
        tokio::select! {
            _ = app.gc_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        // Let the request that woke us finish before sweeping.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut inner = app.lock();
        for _ in 0..20 {
            let aggregated = crate::aggregate::sweep(&mut inner);
            if !sweep(&app, &mut inner) && !aggregated {
                break;
            }
        }
    }
}

fn remove_finalizer(app: &App, inner: &mut Inner, key: &Key, fin: &str) {
    let Some(mut obj) = inner.store.get(key).cloned() else { return };
    let rest: Vec<String> = meta::finalizers(&obj).into_iter().filter(|f| f != fin).collect();
    if rest.is_empty() {
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("finalizers");
        }
    } else {
        meta::meta_mut(&mut obj).insert("finalizers".into(), json!(rest));
    }
    if rest.is_empty() && meta::is_deleting(&obj) {
        inner.store.put(key.clone(), obj);
        delete::delete_now(app, inner, key);
    } else {
        inner.store.put(key.clone(), obj);
    }
}

/// One pass; true if anything changed.
fn sweep(app: &App, inner: &mut Inner) -> bool {
    let objects: Vec<(Key, Value)> = inner.store.all().map(|(k, v)| (k.clone(), v.clone())).collect();
    let uids: HashSet<String> = objects.iter().map(|(_, v)| meta::uid(v).to_string()).collect();
    let mut dependents: HashMap<String, Vec<Key>> = HashMap::new();
    for (k, v) in &objects {
        for u in meta::owner_uids(v) {
            dependents.entry(u).or_default().push(k.clone());
        }
    }
    let mut changed = false;
    for (k, v) in &objects {
        let owners = meta::owner_uids(v);
        // Background: every owner is gone → the dependent goes too.
        if !owners.is_empty() && owners.iter().all(|u| !uids.contains(u)) && !meta::is_deleting(v) {
            changed |= delete::delete_object(app, inner, k, "Background").is_some();
            continue;
        }
        if !meta::is_deleting(v) {
            continue;
        }
        let fins = meta::finalizers(v);
        let deps = dependents.get(meta::uid(v)).cloned().unwrap_or_default();
        if fins.iter().any(|f| f == "orphan") {
            for d in &deps {
                if let Some(mut dep) = inner.store.get(d).cloned() {
                    let uid = meta::uid(v).to_string();
                    if let Some(refs) = dep.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                        refs.retain(|r| r["uid"].as_str() != Some(uid.as_str()));
                    }
                    inner.store.put(d.clone(), dep);
                }
            }
            remove_finalizer(app, inner, k, "orphan");
            changed = true;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let mut remaining = false;
            for d in &deps {
                match delete::delete_object(app, inner, d, "Foreground") {
                    Some(Outcome::Pending(_)) => remaining = true,
                    Some(Outcome::Deleted(_)) => changed = true,
                    None => {}
                }
            }
            if !remaining {
                remove_finalizer(app, inner, k, "foregroundDeletion");
                changed = true;
            }
        }
        if k.group.is_empty() && k.resource == "namespaces" {
            changed |= drain_namespace(app, inner, &k.name, &objects);
        }
    }
    changed
}

fn drain_namespace(app: &App, inner: &mut Inner, ns: &str, objects: &[(Key, Value)]) -> bool {
    let inside: Vec<&Key> = objects.iter().map(|(k, _)| k).filter(|k| k.namespace == ns).collect();
    if inside.is_empty() {
        if meta::finalizers(inner.store.get(&Key::new("", "namespaces", "", ns)).unwrap_or(&Value::Null)).is_empty() {
            delete::delete_now(app, inner, &Key::new("", "namespaces", "", ns));
            return true;
        }
        return false;
    }
    let mut changed = false;
    for k in inside {
        if let Some(Outcome::Deleted(_)) = delete::delete_object(app, inner, k, "Background") {
            changed = true;
        }
    }
    changed
}
