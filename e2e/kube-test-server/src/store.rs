//! In-memory object storage with one global, monotonically increasing resourceVersion, a
//! bounded event history for watch resumption, and a broadcast channel for live watchers.

use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Storage key: group, plural resource, namespace ("" when cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Self { group: group.into(), resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as recorded in the history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: Key,
    pub object: Value,
    /// The object before the change (selector transitions in watches, past snapshots).
    pub old: Option<Value>,
}

/// Events after a resourceVersion plus the receiver for later ones.
pub type Resume = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Highest resourceVersion whose event was evicted from the history: resuming from an
    /// older one answers 410 Gone.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

pub fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(history_limit.max(16));
        Self { objects: BTreeMap::new(), rv: 1, history: VecDeque::new(), history_limit, compacted: 0, tx }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource, optionally in one namespace, in key order.
    pub fn list<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        let start = Key::new(group, resource, namespace.unwrap_or(""), "");
        self.objects.range(start..).take_while(move |(k, _)| {
            k.group == group && k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Past events still kept for watch resumption, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.history.iter()
    }

    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// Stores `obj` under `key` with a new resourceVersion and records the event.
    pub fn put(&mut self, key: Key, mut obj: Value) -> Value {
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        let old = self.objects.insert(key.clone(), obj.clone());
        let kind = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.record(kind, key, obj.clone(), old);
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let before = self.objects.remove(key)?;
        let mut old = before.clone();
        self.rv += 1;
        set_rv(&mut old, self.rv);
        self.record(EventType::Deleted, key.clone(), old.clone(), Some(before));
        Some(old)
    }

    fn record(&mut self, kind: EventType, key: Key, object: Value, old: Option<Value>) {
        let ev = Arc::new(Event { rv: self.rv, kind, key, object, old });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// The objects of one resource as they were at resourceVersion `at`, rebuilt by undoing
    /// later events; `None` if the history no longer reaches back that far.
    pub fn list_at(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        at: u64,
    ) -> Option<BTreeMap<Key, Value>> {
        if at < self.compacted {
            return None;
        }
        let mut map: BTreeMap<Key, Value> =
            self.list(group, resource, namespace).map(|(k, v)| (k.clone(), v.clone())).collect();
        for ev in self.history.iter().rev().take_while(|e| e.rv > at) {
            let k = &ev.key;
            if k.group != group || k.resource != resource || namespace.is_some_and(|ns| k.namespace != ns) {
                continue;
            }
            match (&ev.kind, &ev.old) {
                (EventType::Added, _) => {
                    map.remove(k);
                }
                (_, Some(before)) => {
                    map.insert(k.clone(), before.clone());
                }
                (_, None) => {}
            }
        }
        Some(map)
    }

    /// Events after `rv` still in the history plus a receiver for later ones, taken
    /// atomically so there is neither a gap nor a duplicate. `None` if `rv` was compacted.
    pub fn watch_from(&self, rv: u64) -> Option<Resume> {
        if rv < self.compacted {
            return None;
        }
        let past = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Some((past, self.tx.subscribe()))
    }
}
