//! What an observed ArgoCD Application's status means for an executed patch (pure).
//!
//! | verdict | when |
//! |---|---|
//! | Applied | `sync.status` Synced and `health.status` Healthy, ArgoCD reconciled after the change (`reconciledAt` > `executedAt`), and no operation that finished after it did other than succeed (nor one still running) |
//! | Failed (RolloutFailed) | an operation finished after the change with phase Failed or Error, or the health is Degraded and turned so after it (`health.lastTransitionTime`, else `reconciledAt`, after `executedAt`) |
//! | Missing | the Application does not exist or cannot be read |
//! | Waiting | anything else; at the deadline the patch becomes AppliedUnverified |
//!
//! A Progressing health seen after the change, followed by Healthy, is recorded as a rollout
//! seen. Evidence strictly after the change counts; a failed sync from before it is ignored.

use chrono::{DateTime, Utc};
use sb_core::crd::ObservationVerdict;

/// The part of an Application's status the verdict reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppView {
    pub sync: Option<String>,
    pub health: Option<String>,
    pub health_message: Option<String>,
    pub health_changed_at: Option<DateTime<Utc>>,
    pub reconciled_at: Option<DateTime<Utc>>,
    pub operation: Option<OperationView>,
}

/// `status.operationState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationView {
    pub phase: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: String,
}

impl AppView {
    /// Reads an Application's `status` (any JSON; absent fields stay `None`).
    pub fn from_status(status: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let time = |v: &serde_json::Value| {
            v.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
        };
        let op = &status["operationState"];
        Self {
            sync: text(&status["sync"]["status"]),
            health: text(&status["health"]["status"]),
            health_message: text(&status["health"]["message"]),
            health_changed_at: time(&status["health"]["lastTransitionTime"]),
            reconciled_at: time(&status["reconciledAt"]),
            operation: text(&op["phase"]).map(|phase| OperationView {
                phase,
                finished_at: time(&op["finishedAt"]),
                message: text(&op["message"]).unwrap_or_default(),
            }),
        }
    }
}

/// One Application judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: ObservationVerdict,
    /// ArgoCD's message when it explains a failure.
    pub message: Option<String>,
    /// A Progressing health after the change was seen now.
    pub progressing: bool,
}

/// Judges one Application (`None`: it does not exist) against a change executed at `executed`.
pub fn judge(view: Option<&AppView>, executed: DateTime<Utc>) -> Judgement {
    let Some(view) = view else {
        return Judgement { verdict: ObservationVerdict::Missing, message: None, progressing: false };
    };
    let after = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t > executed);
    let reconciled_after = after(view.reconciled_at);
    if let Some(op) = &view.operation
        && matches!(op.phase.as_str(), "Failed" | "Error")
        && after(op.finished_at)
    {
        let message = format!("sync {}: {}", op.phase, op.message);
        return Judgement { verdict: ObservationVerdict::Failed, message: Some(message), progressing: false };
    }
    let health = view.health.as_deref().unwrap_or_default();
    if health == "Degraded" && after(view.health_changed_at.or(view.reconciled_at)) {
        let message = format!("health Degraded: {}", view.health_message.clone().unwrap_or_default());
        return Judgement { verdict: ObservationVerdict::Failed, message: Some(message), progressing: false };
    }
    let progressing = health == "Progressing" && reconciled_after;
    let operation_settled = match &view.operation {
        None => true,
        Some(op) if op.phase == "Running" || op.phase == "Terminating" => false,
        Some(op) => !after(op.finished_at) || op.phase == "Succeeded",
    };
    let applied =
        view.sync.as_deref() == Some("Synced") && health == "Healthy" && reconciled_after && operation_settled;
    let verdict = if applied { ObservationVerdict::Applied } else { ObservationVerdict::Waiting };
    Judgement { verdict, message: None, progressing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn view(sync: &str, health: &str, reconciled: i64, op: Option<(&str, i64)>) -> AppView {
        AppView {
            sync: Some(sync.into()),
            health: Some(health.into()),
            health_message: Some("rollout of db-client stuck".into()),
            health_changed_at: None,
            reconciled_at: Some(at(reconciled)),
            operation: op.map(|(phase, finished)| OperationView {
                phase: phase.into(),
                finished_at: Some(at(finished)),
                message: "one or more objects failed to apply".into(),
            }),
        }
    }

    #[test]
    fn every_row_of_the_table() {
        use ObservationVerdict::*;
        let executed = at(0);
        let rows: Vec<(&str, Option<AppView>, ObservationVerdict)> = vec![
            ("synced and healthy after the change", Some(view("Synced", "Healthy", 5, None)), Applied),
            ("a successful sync after the change", Some(view("Synced", "Healthy", 5, Some(("Succeeded", 4)))), Applied),
            (
                "a failed sync before the change is ignored",
                Some(view("Synced", "Healthy", 5, Some(("Failed", -3)))),
                Applied,
            ),
            ("reconciled only before the change", Some(view("Synced", "Healthy", -1, None)), Waiting),
            ("reconciled in the same second", Some(view("Synced", "Healthy", 0, None)), Waiting),
            ("out of sync", Some(view("OutOfSync", "Healthy", 5, None)), Waiting),
            ("progressing", Some(view("Synced", "Progressing", 5, None)), Waiting),
            ("a sync still running", Some(view("Synced", "Healthy", 5, Some(("Running", 0)))), Waiting),
            ("a failed sync after the change", Some(view("Synced", "Healthy", 5, Some(("Failed", 4)))), Failed),
            ("an errored sync after the change", Some(view("OutOfSync", "Healthy", 5, Some(("Error", 4)))), Failed),
            ("degraded after the change", Some(view("Synced", "Degraded", 5, None)), Failed),
            (
                "degraded since before the change, not reconciled since",
                Some(view("Synced", "Degraded", -5, None)),
                Waiting,
            ),
            ("no such Application", None, Missing),
        ];
        for (what, v, want) in rows {
            assert_eq!(judge(v.as_ref(), executed).verdict, want, "{what}");
        }
    }

    #[test]
    fn a_failure_quotes_argocd_and_progressing_is_noticed() {
        let failed = judge(Some(&view("Synced", "Healthy", 5, Some(("Failed", 4)))), at(0));
        assert_eq!(failed.message.as_deref(), Some("sync Failed: one or more objects failed to apply"));
        let degraded = judge(Some(&view("Synced", "Degraded", 5, None)), at(0));
        assert_eq!(degraded.message.as_deref(), Some("health Degraded: rollout of db-client stuck"));
        assert!(judge(Some(&view("Synced", "Progressing", 5, None)), at(0)).progressing);
        assert!(!judge(Some(&view("Synced", "Progressing", -5, None)), at(0)).progressing);
    }

    #[test]
    fn the_status_is_read_from_argocd_field_names() {
        let status = serde_json::json!({
            "sync": {"status": "Synced", "revision": "abc"},
            "health": {"status": "Healthy", "lastTransitionTime": "2027-01-15T08:00:05Z"},
            "reconciledAt": "2027-01-15T08:00:06Z",
            "operationState": {"phase": "Succeeded", "finishedAt": "2027-01-15T08:00:04Z", "message": "successfully synced"}
        });
        let v = AppView::from_status(&status);
        assert_eq!(v.sync.as_deref(), Some("Synced"));
        assert_eq!(v.operation.as_ref().unwrap().phase, "Succeeded");
        assert!(v.reconciled_at.unwrap() > v.health_changed_at.unwrap());
    }
}
