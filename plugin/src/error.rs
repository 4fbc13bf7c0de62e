//! [`PluginError`]: every failure as a sentence a person can act on, never a stack of JSON.
//!
//! No variant ever carries a secret value: values live in `SecretValue` and only reach
//! stdout or a 0600 file.

use std::path::PathBuf;

/// What went wrong, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The command line is wrong; the message says how to fix it.
    #[error("{0}")]
    Usage(String),
    /// An admission policy refused the change (e.g. self-approval).
    #[error("refused: {0}")]
    Refused(String),
    /// RBAC refused the call; the message names the missing verb and resource.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The object does not exist.
    #[error("{what} was not found in namespace {namespace}")]
    NotFound { what: String, namespace: String },
    /// The API server rejected the object as invalid (schema or CEL rule).
    #[error("invalid: {0}")]
    Invalid(String),
    /// An object of that name exists already.
    #[error("{what} already exists in namespace {namespace}; choose another --name")]
    AlreadyExists { what: String, namespace: String },
    /// Someone else changed the object at the same moment, too many times in a row.
    #[error("conflict: {0}; try again")]
    Conflict(String),
    /// The kubeconfig could not be read or has no usable context.
    #[error("cannot use your kubeconfig: {0}")]
    Kubeconfig(String),
    /// The API server could not be reached or answered something unexpected.
    #[error("cannot talk to the Kubernetes API: {0}")]
    Api(String),
    /// The named agent has no AgentRegistration.
    #[error(
        "agent {agent:?} is not registered (no AgentRegistration named {agent:?}); check the name with `kubectl get agentregistrations`"
    )]
    AgentNotRegistered { agent: String },
    /// The agent has not published its sealing key yet.
    #[error(
        "no sealing key published yet for agent {agent:?}: the agent has not called in since it was registered; retry once `kubectl get agentregistration {agent}` shows a Key ID"
    )]
    NoSealingKey { agent: String },
    /// The published sealing key carries no valid signature by one of the agent's registered
    /// authentication keys: the control plane (or someone with write access to it) may have
    /// replaced it, so nothing is sealed to it.
    #[error(
        "refusing to seal to agent {agent:?} on {server}: its published sealing key is not certified by the agent ({reason}){}; nothing was sealed. Ask the agent's admin to check the agent and its AgentRegistration",
        expected_signer(pinned.as_deref())
    )]
    SealingKeyNotCertified {
        agent: String,
        server: String,
        reason: crate::agent_trust::NotCertified,
        pinned: Option<String>,
    },
    /// The sealing key is certified, but by another key than the one pinned in known_agents.
    #[error(
        "refusing to seal to agent {agent:?} on {server}: you pinned its key as {pinned}, but its sealing key is signed by {presented}. Someone may have replaced the agent's keys; nothing was sealed. If the agent's admin confirms that the agent's key was rotated to {presented}, accept it with: kubectl sb trust {agent} {presented}"
    )]
    AgentKeyChanged { agent: String, server: String, pinned: String, presented: String },
    /// The request's private key is not on this machine.
    #[error("the private key for request {name} is missing ({}): it was made on another machine or by another user, or its value was already revealed here", path.display())]
    KeyFileMissing { name: String, path: PathBuf },
    /// Reveal-once: the value was opened before.
    #[error("request {name} was already revealed{}; each delivery can be revealed once — make a new request with `kubectl sb read`", at.as_ref().map(|at| format!(" at {at}")).unwrap_or_default())]
    AlreadyRevealed { name: String, at: Option<String> },
    /// The request ended without a delivery.
    #[error("request {name} is {phase}: {message}")]
    Ended { name: String, phase: String, message: String },
    /// A bounded wait ran out.
    #[error("gave up after {seconds}s waiting for {what} (raise --timeout to wait longer)")]
    Timeout { what: String, seconds: u64 },
    /// Sealing or opening failed (never says what the value was).
    #[error("{context}: {source}")]
    Seal { context: String, source: sb_core::seal::SealError },
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl PluginError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// Translates a kube error for an operation on `what` (e.g. `secretreadrequest db`) in
    /// `namespace` into a sentence.
    pub fn from_kube(err: kube::Error, what: &str, namespace: &str) -> Self {
        match err {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match (status.code, status.reason.as_str()) {
                    (404, _) | (_, "NotFound") => {
                        Self::NotFound { what: what.to_owned(), namespace: namespace.to_owned() }
                    }
                    (403, _) | (_, "Forbidden") => match admission_message(&message) {
                        // Requesters may patch status (to confirm and end their own requests),
                        // so a missing `approve` verb is the policy's sentence, not RBAC's.
                        Some(reason) if reason.contains("lacks the RBAC verb approve") => Self::Refused(format!(
                            "{reason} (ask your cluster admin to bind you to the secrets-bridge-approver role)"
                        )),
                        Some(reason) => Self::Refused(reason),
                        None => Self::Forbidden(with_role_hint(strip_object_prefix(&message))),
                    },
                    (_, "AlreadyExists") => {
                        Self::AlreadyExists { what: what.to_owned(), namespace: namespace.to_owned() }
                    }
                    (409, _) | (_, "Conflict") => Self::Conflict(strip_object_prefix(&message)),
                    (422, _) | (_, "Invalid") => match admission_message(&message) {
                        Some(reason) => Self::Refused(reason),
                        None => Self::Invalid(strip_object_prefix(&message)),
                    },
                    (401, _) => {
                        Self::Api("the cluster did not accept your credentials (401 Unauthorized); log in again".into())
                    }
                    _ => Self::Api(if message.is_empty() { format!("HTTP {}", status.code) } else { message }),
                }
            }
            kube::Error::InferConfig(err) => Self::Kubeconfig(err.to_string()),
            other => Self::Api(other.to_string()),
        }
    }
}

fn expected_signer(pinned: Option<&str>) -> String {
    pinned
        .map(|fingerprint| format!("; expected a signature by {fingerprint}, the key you pinned for it"))
        .unwrap_or_default()
}

/// The policy's own sentence out of an admission denial
/// (`... is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <msg>`).
fn admission_message(message: &str) -> Option<String> {
    message.split_once("denied request: ").map(|(_, reason)| reason.trim().to_owned())
}

/// Names the shipped role that grants what RBAC just refused.
fn with_role_hint(sentence: String) -> String {
    let role = if sentence.contains("resource \"secretreadrequests/status\"")
        || sentence.contains("resource \"secretpatches/status\"")
    {
        "secrets-bridge-approver"
    } else if sentence.contains("resource \"agentregistrations\"") {
        "secrets-bridge-agent-reader"
    } else if ["secretreadrequests", "secretpatches", "discoveredsecrets", "secrets"]
        .iter()
        .any(|r| sentence.contains(&format!("resource \"{r}\"")))
    {
        "secrets-bridge-requester"
    } else {
        return sentence;
    };
    format!("{sentence} (ask your cluster admin to bind you to the {role} role)")
}

/// `secretreadrequests.secrets-bridge.io "x" is forbidden: User "bob" cannot ...` keeps only
/// the part after the object, which is the sentence.
fn strip_object_prefix(message: &str) -> String {
    for marker in [" is forbidden: ", " is invalid: ", " already exists"] {
        if let Some((_, rest)) = message.split_once(marker)
            && !rest.is_empty()
        {
            return rest.trim().to_owned();
        }
    }
    message.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn admission_denials_become_one_sentence() {
        let err = PluginError::from_kube(
            api(
                403,
                "Forbidden",
                "secretreadrequests.secrets-bridge.io \"db\" is forbidden: ValidatingAdmissionPolicy 'secrets-bridge-approvals' with binding 'secrets-bridge-approvals' denied request: the requester cannot approve or deny their own request",
            ),
            "secretreadrequest db",
            "team-a",
        );
        assert_eq!(err.to_string(), "refused: the requester cannot approve or deny their own request");
    }

    #[test]
    fn rbac_denials_name_the_missing_verb() {
        let err = PluginError::from_kube(
            api(
                403,
                "Forbidden",
                "secretreadrequests.secrets-bridge.io is forbidden: User \"bob\" cannot create resource \"secretreadrequests\" in API group \"secrets-bridge.io\" in the namespace \"team-a\"",
            ),
            "secretreadrequests",
            "team-a",
        );
        assert_eq!(
            err.to_string(),
            "forbidden: User \"bob\" cannot create resource \"secretreadrequests\" in API group \"secrets-bridge.io\" in the namespace \"team-a\" (ask your cluster admin to bind you to the secrets-bridge-requester role)"
        );
    }

    #[test]
    fn not_found_names_the_object_and_namespace() {
        let err = PluginError::from_kube(api(404, "NotFound", "nope"), "secretreadrequest db", "team-a");
        assert_eq!(err.to_string(), "secretreadrequest db was not found in namespace team-a");
    }
}
