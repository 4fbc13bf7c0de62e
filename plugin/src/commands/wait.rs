//! Bounded waiting for a read request to reach a phase, with a progress line per change.

use crate::error::PluginError;
use kube::Api;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use std::time::{Duration, Instant};

/// How often a waiting command looks again. Short: the object is tiny and people wait.
const POLL: Duration = Duration::from_millis(500);

/// Whether nothing more will happen to a read request (from the requester's side,
/// `Delivered` is where waiting stops: the next step is theirs).
pub fn read_settled(phase: ReadPhase) -> bool {
    !matches!(phase, ReadPhase::Pending | ReadPhase::Approved | ReadPhase::Queued | ReadPhase::Running)
}

/// One line on where a read request is and what it waits for.
pub fn describe_read(request: &SecretReadRequest) -> String {
    let status = request.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let agent = &request.spec.target.agent;
    let what = match phase {
        ReadPhase::Pending => match status.approval_summary.as_deref() {
            Some(summary) => format!("waiting for approvals ({summary})"),
            None => "waiting for approvals".to_owned(),
        },
        ReadPhase::Approved => "approved; being queued for the agent".to_owned(),
        ReadPhase::Queued => format!("queued; waiting for agent {agent} to claim the job"),
        ReadPhase::Running => format!("agent {agent} is reading the secret"),
        ReadPhase::Delivered => "delivered; reveal it with `kubectl sb reveal`".to_owned(),
        ReadPhase::Revealed => "revealed".to_owned(),
        ReadPhase::Expired => "expired".to_owned(),
        ReadPhase::Denied => "denied".to_owned(),
        ReadPhase::Failed => "failed".to_owned(),
    };
    match status.message.as_deref().filter(|m| !m.is_empty()) {
        Some(message) if !matches!(phase, ReadPhase::Pending | ReadPhase::Delivered) => {
            format!("{phase:?}: {what} — {message}")
        }
        _ => format!("{phase:?}: {what}"),
    }
}

/// Polls until the request settles (see [`read_settled`]) or `timeout` passes, printing a
/// line to stderr whenever its state changes.
pub async fn until_read_settled(
    api: &Api<SecretReadRequest>,
    name: &str,
    namespace: &str,
    timeout: Duration,
) -> Result<SecretReadRequest, PluginError> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let request = api
            .get(name)
            .await
            .map_err(|err| PluginError::from_kube(err, &format!("secretreadrequest {name}"), namespace))?;
        let line = describe_read(&request);
        if line != last {
            eprintln!("{name}: {line}");
            last = line;
        }
        let phase = request.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
        if read_settled(phase) {
            return Ok(request);
        }
        if started.elapsed() >= timeout {
            return Err(PluginError::Timeout {
                what: format!("secretreadrequest {name} to be delivered"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
