//! One watch per kind over the namespace, remembering for every object when each phase was
//! first seen (by the harness's clock) and its current phase: create → first status and
//! approve → Delivered are read from it without polling the API server, and so is how many
//! resident requests have settled.

use futures::StreamExt;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the watch showed of one object.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// When each phase was first seen.
    pub first: BTreeMap<String, Instant>,
    /// The phase of the latest version seen.
    pub phase: Option<String>,
}

/// Every object of one kind in one namespace, as the watch shows them.
pub struct Phases {
    seen: Mutex<HashMap<String, Seen>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Phases {
    /// Starts watching `api`; `phase_of` reads an object's `status.phase`.
    pub fn start<K>(api: Api<K>, phase_of: fn(&K) -> Option<String>) -> Arc<Self>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let me = Arc::new(Self { seen: Mutex::default(), task: Mutex::new(None) });
        let weak = Arc::downgrade(&me);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let Some(me) = weak.upgrade() else { return };
                match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                        me.saw(obj.name_any(), phase_of(&obj));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("sb-scale: watch error (the watcher retries): {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        *me.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        me
    }

    fn saw(&self, name: String, phase: Option<String>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(name).or_default();
        if let Some(phase) = &phase {
            entry.first.entry(phase.clone()).or_insert(now);
        }
        entry.phase = phase;
    }

    /// When `name` first showed any phase (its first status).
    pub fn first_status(&self, name: &str) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(name).and_then(|s| s.first.values().min().copied())
    }

    /// When `name` was first seen in `phase`.
    pub fn first(&self, name: &str, phase: &str) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(name).and_then(|s| s.first.get(phase).copied())
    }

    /// How many objects satisfy `pred(name, current phase)`.
    pub fn count(&self, pred: impl Fn(&str, Option<&str>) -> bool) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().filter(|(name, s)| pred(name, s.phase.as_deref())).count()
    }

    /// Waits until `name` shows one of `phases` (or `None`: any phase); returns when it was
    /// first seen so, or `None` at `deadline`.
    pub async fn wait(&self, name: &str, phases: Option<&[&str]>, deadline: Instant) -> Option<Instant> {
        loop {
            let at = match phases {
                None => self.first_status(name),
                Some(phases) => phases.iter().filter_map(|p| self.first(name, p)).min(),
            };
            if at.is_some() {
                return at;
            }
            if Instant::now() >= deadline {
                return None;
            }
            // In-process only: the watch did the API work.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}
