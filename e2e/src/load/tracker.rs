//! One watch per kind for the whole run instead of a poll per request: every change the API
//! server reports for a request the driver registered lands in that request's own channel,
//! with the driver's clock reading when each phase was first seen.

use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

/// What the watch has shown of one request.
pub struct Seen<K> {
    /// The latest version of the object.
    pub latest: Option<Arc<K>>,
    /// When each phase was first seen, by the driver's clock.
    pub first: BTreeMap<String, Instant>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self { latest: None, first: BTreeMap::new() }
    }
}

impl<K> Seen<K> {
    /// When `phase` was first seen.
    pub fn at(&self, phase: &str) -> Option<Instant> {
        self.first.get(phase).copied()
    }
}

/// The requests of one kind the driver follows.
pub struct Tracker<K> {
    entries: Mutex<HashMap<String, watch::Sender<Seen<K>>>>,
    /// Changes seen for registered requests; a stall shows as this standing still.
    changes: AtomicU64,
    phase_of: fn(&K) -> Option<String>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<K> Tracker<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    /// Starts watching `api` (the watcher lists again by itself after a broken watch).
    pub fn start(api: Api<K>, phase_of: fn(&K) -> Option<String>) -> Arc<Self> {
        let tracker =
            Arc::new(Self { entries: Mutex::default(), changes: AtomicU64::new(0), phase_of, task: Mutex::new(None) });
        let weak = Arc::downgrade(&tracker);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let Some(tracker) = weak.upgrade() else { return };
                match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => tracker.saw(obj),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("load: watch error (the watcher retries): {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        });
        *tracker.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        tracker
    }

    /// Follows `name` from now on; call before creating it so no change is missed.
    pub fn register(&self, name: &str) -> watch::Receiver<Seen<K>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.entry(name.to_owned()).or_insert_with(|| watch::channel(Seen::default()).0).subscribe()
    }

    fn saw(&self, obj: K) {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = entries.get(&obj.name_any()) else { return };
        let phase = (self.phase_of)(&obj);
        sender.send_modify(|seen| {
            if let Some(phase) = phase {
                seen.first.entry(phase).or_insert(now);
            }
            seen.latest = Some(Arc::new(obj));
        });
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes seen so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The latest phase of every registered request, for a report of what did not finish.
    pub fn phases(&self) -> BTreeMap<String, Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(|(name, tx)| (name.clone(), tx.borrow().latest.as_deref().and_then(self.phase_of))).collect()
    }
}

impl<K> Drop for Tracker<K> {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}
