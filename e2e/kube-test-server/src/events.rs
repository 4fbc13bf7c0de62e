//! core/v1 Events and events.k8s.io/v1 Events are two views of one storage, like the real
//! server: events.k8s.io objects are stored in core form and converted on the way in and out,
//! so an event published by kube-runtime's `Recorder` shows in `kubectl get events`.

use serde_json::{Value, json};

/// (core/v1 field, events.k8s.io/v1 field) pairs that differ in name.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &mut Value, from_idx: usize) {
    let Some(o) = obj.as_object_mut() else { return };
    for pair in RENAMED {
        let (from, to) = if from_idx == 0 { (pair.0, pair.1) } else { (pair.1, pair.0) };
        if let Some(v) = o.remove(from) {
            o.insert(to.into(), v);
        }
    }
}

/// events.k8s.io/v1 form → stored core/v1 form (idempotent).
pub fn to_core(mut obj: Value) -> Value {
    rename(&mut obj, 1);
    obj["apiVersion"] = json!("v1");
    obj["kind"] = json!("Event");
    obj
}

/// Stored core/v1 form → events.k8s.io/v1 form (idempotent).
pub fn from_core(mut obj: Value) -> Value {
    rename(&mut obj, 0);
    obj
}

/// Whether a resource is the events.k8s.io view.
pub fn is_events_v1(group: &str, plural: &str) -> bool {
    group == "events.k8s.io" && plural == "events"
}
