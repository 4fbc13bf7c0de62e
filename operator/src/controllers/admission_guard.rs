//! Keeps watch over the admission policies approvals depend on: checked at start-up, again on
//! every change to a policy or binding, and live before any approval is counted. While one
//! is missing, not denying or changed, no approval counts: every pending request says so in
//! the condition `ApprovalPolicyMissing`, the log says which object, and the gauge
//! `sb_operator_controller_admission_policies_in_force` is 0 (docs/threat-model.md).
//!
//! Entries written while the policies were not in force look exactly like real ones once
//! the policies are back. So the store remembers each entry as it is first seen: seen while
//! the policies are in force → trusted; present when an outage ends, or when the policies'
//! uid or generation differ from those last verified (an outage the operator did not see,
//! e.g. while it was down) → untrusted for good. Only trusted entries count.

use crate::policy::admission::{self, Expected, Kind};
use crate::store::{EntryKey, Pins, Store};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use sb_core::crd::{Approval, SecretPatch, SecretReadRequest};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What is wrong with the policies; empty when they are in force.
pub type Problems = Vec<String>;

/// The guard shared by the request controllers.
pub struct AdmissionGuard {
    expected: Result<Vec<Expected>, String>,
    store: Store,
    state: tokio::sync::watch::Sender<Problems>,
    in_force: Gauge,
    /// Set while this process has seen the policies not in force; cleared once the entries
    /// written meanwhile are marked untrusted. Checks run one at a time.
    outage: tokio::sync::Mutex<bool>,
}

impl AdmissionGuard {
    /// Learns the operator's own user name (the one the policies exempt) and renders the
    /// shipped policies for it. A failure here is kept and reported by every check, so the
    /// operator runs but counts no approval.
    pub async fn new(client: &Client, store: Store, in_force: Gauge) -> Self {
        let expected = match own_user(client).await {
            Ok(user) => {
                tracing::info!(user = %user, "the operator's user name, as the admission policies must exempt it");
                admission::expected(&user).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("could not learn the operator's own user name (SelfSubjectReview): {e}")),
        };
        let (state, _) = tokio::sync::watch::channel(vec!["the admission policies have not been checked yet".into()]);
        Self { expected, store, state, in_force, outage: tokio::sync::Mutex::new(false) }
    }

    /// The problems found by the last check.
    pub fn last(&self) -> Problems {
        self.state.borrow().clone()
    }

    /// Checks every shipped object now, records the result and returns it. When the policies
    /// are back after an outage (seen, or told by changed pins), every entry present on any
    /// request is marked untrusted before approvals count again.
    pub async fn check(&self, client: &Client) -> Problems {
        let mut outage = self.outage.lock().await;
        let Inspection { mut problems, pins, unreadable } = match &self.expected {
            Err(e) => Inspection { problems: vec![e.clone()], pins: Pins::new(), unreadable: 0 },
            Ok(expected) => inspect(client, expected).await,
        };
        if problems.is_empty() {
            if let Err(e) = self.settle(client, &pins, &mut outage).await {
                problems.push(format!("could not record which approvals to trust: {e}"));
            }
        } else if problems.len() > unreadable {
            *outage = true;
        }
        // Objects that could not be read (the API server restarting, a network cut) withhold
        // approvals but are no evidence that the policies were out of force: once they can be
        // read again, the pins tell whether anything was deleted, replaced or edited
        // meanwhile (a new uid or generation), and only then is every present entry distrusted.
        self.record(&problems);
        problems
    }

    /// With the policies in force: if they were not in force for a while, distrust every
    /// entry present now; then pin what was verified.
    async fn settle(&self, client: &Client, pins: &Pins, outage: &mut bool) -> Result<(), anyhow::Error> {
        let pinned = self.store.admission_pins().await?;
        if pinned == *pins && !*outage {
            return Ok(());
        }
        if !pinned.is_empty() || *outage {
            let marked = self.distrust_present(client).await?;
            tracing::warn!(
                entries = marked,
                replaced_or_edited = pinned != *pins,
                "the admission policies were not in force for a while: approval entries present now never count"
            );
        }
        // A new store trusts the policies it finds on first use (they verified just now).
        self.store.set_admission_pins(pins).await?;
        *outage = false;
        Ok(())
    }

    async fn distrust_present(&self, client: &Client) -> Result<usize, anyhow::Error> {
        let mut entries = Vec::new();
        for request in Api::<SecretReadRequest>::all(client.clone()).list(&ListParams::default()).await? {
            let uid = request.metadata.uid.clone().unwrap_or_default();
            entries.extend(request.status.iter().flat_map(|s| &s.approvals).map(|a| entry_key(&uid, a)));
        }
        for patch in Api::<SecretPatch>::all(client.clone()).list(&ListParams::default()).await? {
            let uid = patch.metadata.uid.clone().unwrap_or_default();
            entries.extend(patch.status.iter().flat_map(|s| &s.approvals).map(|a| entry_key(&uid, a)));
        }
        self.store.note_approval_entries(&entries, false).await?;
        Ok(entries.len())
    }

    /// Splits `approvals` of the object `uid` into those that may count and the names of
    /// those that never will. Call right after a [`AdmissionGuard::check`] that found the
    /// policies in force: entries not seen before are trusted now.
    pub async fn trusted(
        &self,
        uid: &str,
        approvals: &[Approval],
    ) -> Result<(Vec<Approval>, Vec<String>), crate::store::StoreError> {
        if approvals.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys: Vec<EntryKey> = approvals.iter().map(|a| entry_key(uid, a)).collect();
        self.store.note_approval_entries(&keys, true).await?;
        let trust = self.store.approval_trust(uid).await?;
        let mut counted = Vec::new();
        let mut refused = Vec::new();
        for (approval, key) in approvals.iter().zip(&keys) {
            if trust.get(&key.digest).copied().unwrap_or(false) {
                counted.push(approval.clone());
            } else {
                refused.push(approval.approver.clone());
            }
        }
        Ok((counted, refused))
    }

    fn record(&self, problems: &Problems) {
        self.in_force.set(i64::from(problems.is_empty()));
        let changed = self.state.send_if_modified(|old| {
            if old == problems {
                return false;
            }
            *old = problems.clone();
            true
        });
        if !changed {
            return;
        }
        if problems.is_empty() {
            tracing::info!("admission policies in force: approvals count again");
        }
        for problem in problems {
            tracing::warn!(problem = %problem, "ApprovalPolicyMissing: no approval counts until the shipped admission policies are restored");
        }
    }

    /// A stream that yields whenever the verdict changes, to look at every request again.
    pub fn changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let rx = self.state.subscribe();
        futures::stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) })
    }

    /// Re-checks on every change to an admission policy or binding until `shutdown`.
    pub async fn watch(self: Arc<Self>, client: Client, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let policies = watcher(Api::<ValidatingAdmissionPolicy>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|_| ()));
        let bindings =
            watcher(Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .map(|e| e.map(|_| ()));
        let mut events = std::pin::pin!(futures::stream::select(policies, bindings));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                event = events.next() => match event {
                    None => return,
                    Some(Ok(())) => { self.check(&client).await; }
                    Some(Err(e)) => {
                        // The watch backs off and retries; meanwhile the live check decides.
                        tracing::warn!(error = %e, "watching admission policies failed; retrying");
                        self.check(&client).await;
                    }
                },
            }
        }
    }
}

/// Every shipped object's problem, and the uid and generation of those installed.
/// What one look at the shipped objects found.
struct Inspection {
    problems: Problems,
    /// uid and generation of each object found.
    pins: Pins,
    /// How many of `problems` are objects that could not be read at all.
    unreadable: usize,
}

async fn inspect(client: &Client, expected: &[Expected]) -> Inspection {
    let mut problems = Vec::new();
    let mut pins = Pins::new();
    let mut unreadable = 0;
    // One round trip for all of them (this runs before every approval is counted).
    let found = futures::future::join_all(expected.iter().map(|object| installed(client, object))).await;
    for (object, found) in expected.iter().zip(found) {
        match found {
            Ok(found) => {
                let spec = found.as_ref().map(|(spec, _, _)| spec.clone());
                problems.extend(admission::compare(object, spec).map(|p| p.to_string()));
                if let Some((_, uid, generation)) = found {
                    pins.insert((object.kind.as_str().to_owned(), object.name.clone()), (uid, generation));
                }
            }
            Err(e) => {
                unreadable += 1;
                problems.push(format!("could not read {}/{}: {e}", object.kind.as_str(), object.name));
            }
        }
    }
    Inspection { problems, pins, unreadable }
}

/// The store's key of one approval entry: SHA-256 of its JSON.
fn entry_key(uid: &str, approval: &Approval) -> EntryKey {
    let json = serde_json::to_vec(approval).unwrap_or_default();
    EntryKey {
        object_uid: uid.to_owned(),
        digest: hex::encode(Sha256::digest(json)),
        approver: approval.approver.clone(),
    }
}

async fn own_user(client: &Client) -> Result<String, kube::Error> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default())
}

/// The installed object's spec, uid and generation; `None` when it does not exist.
async fn installed(
    client: &Client,
    object: &Expected,
) -> Result<Option<(serde_json::Value, String, i64)>, kube::Error> {
    fn parts(
        meta: &kube::core::ObjectMeta,
        spec: Result<serde_json::Value, serde_json::Error>,
    ) -> (serde_json::Value, String, i64) {
        (spec.unwrap_or_default(), meta.uid.clone().unwrap_or_default(), meta.generation.unwrap_or_default())
    }
    Ok(match object.kind {
        Kind::Policy => Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .get_opt(&object.name)
            .await?
            .map(|p| parts(&p.metadata, serde_json::to_value(&p.spec))),
        Kind::Binding => Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .get_opt(&object.name)
            .await?
            .map(|b| parts(&b.metadata, serde_json::to_value(&b.spec))),
    })
}
