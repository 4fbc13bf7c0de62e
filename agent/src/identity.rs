//! Who the agent is and where its operator lives.
//!
//! `SB_AGENT_ID` + `SB_AGENT_SECRET` win when both are set; otherwise the operator-minted
//! `identity.json` at `SB_IDENTITY_FILE` is read. Nothing else is kept on disk: the sealing
//! key pair is derived from the secret, so a restart re-reads the same credential and
//! publishes the same public key.

use crate::cli::Cli;
use sb_core::protocol::AgentIdentity;
use sb_core::seal::{KeyPair, derive_agent_keypair};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Environment variable holding the agent id.
pub const ENV_AGENT_ID: &str = "SB_AGENT_ID";
/// Environment variable holding the agent secret.
pub const ENV_AGENT_SECRET: &str = "SB_AGENT_SECRET";
/// Environment variable naming the identity file.
pub const ENV_IDENTITY_FILE: &str = "SB_IDENTITY_FILE";

/// Why no usable identity could be loaded. Messages name the variable or file, never a value.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no agent identity: set {ENV_AGENT_ID} and {ENV_AGENT_SECRET}, or {ENV_IDENTITY_FILE} (--identity-file)")]
    Missing,
    #[error("{set} is set but {missing} is not: set both, or neither to use {ENV_IDENTITY_FILE}")]
    HalfEnv { set: &'static str, missing: &'static str },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("cannot read identity file {path} ({ENV_IDENTITY_FILE}): {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    // Only the position is reported: serde's message may quote the offending (secret) text.
    #[error(
        "identity file {path} ({ENV_IDENTITY_FILE}) is not a valid identity.json: {category} error at line {line}, column {column}"
    )]
    Malformed { path: PathBuf, category: &'static str, line: usize, column: usize },
    #[error("identity file {path} ({ENV_IDENTITY_FILE}) has an empty {field}")]
    EmptyField { path: PathBuf, field: &'static str },
    #[error("with {ENV_AGENT_ID}/{ENV_AGENT_SECRET} the operator URL must come from --operator-url or SB_OPERATOR_URL")]
    NoEndpoint,
    #[error("cannot read CA file {path} (--ca-file / SB_CA_FILE): {source}")]
    CaUnreadable { path: PathBuf, source: std::io::Error },
}

/// The credential and the operator coordinates the agent runs with.
pub struct Identity {
    /// The agent id (AgentRegistration name).
    pub agent_id: String,
    /// Bearer secret; also the seed of the sealing key.
    pub secret: Zeroizing<String>,
    /// Operator base URL.
    pub operator_url: String,
    /// PEM CA bundle, when one is known.
    pub ca_pem: Option<String>,
    /// SPKI pin, when one is known.
    pub spki_pin: Option<String>,
    /// Where the credential came from, for the start-up log line.
    pub source: &'static str,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("secret", &"[REDACTED]")
            .field("operator_url", &self.operator_url)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity from the process environment and `cli`.
    pub fn load(cli: &Cli) -> Result<Self, IdentityError> {
        Self::resolve(cli, |name| std::env::var(name).ok())
    }

    /// Loads the identity with `env` standing in for the process environment.
    pub fn resolve(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let id = env(ENV_AGENT_ID);
        let secret = env(ENV_AGENT_SECRET).map(Zeroizing::new);
        let mut identity = match (id, secret) {
            (Some(agent_id), Some(secret)) => {
                if agent_id.trim().is_empty() {
                    return Err(IdentityError::Empty(ENV_AGENT_ID));
                }
                if secret.is_empty() {
                    return Err(IdentityError::Empty(ENV_AGENT_SECRET));
                }
                let operator_url = cli.operator_url.clone().ok_or(IdentityError::NoEndpoint)?;
                Identity { agent_id, secret, operator_url, ca_pem: None, spki_pin: None, source: "environment" }
            }
            (Some(_), None) => return Err(IdentityError::HalfEnv { set: ENV_AGENT_ID, missing: ENV_AGENT_SECRET }),
            (None, Some(_)) => return Err(IdentityError::HalfEnv { set: ENV_AGENT_SECRET, missing: ENV_AGENT_ID }),
            (None, None) => {
                let path = cli.identity_file.clone().ok_or(IdentityError::Missing)?;
                Self::from_file(&path)?
            }
        };
        // Flags override the file so an operator move does not need a re-minted credential.
        if let Some(url) = &cli.operator_url {
            identity.operator_url = url.clone();
        }
        if let Some(path) = &cli.ca_file {
            let pem = std::fs::read_to_string(path)
                .map_err(|source| IdentityError::CaUnreadable { path: path.clone(), source })?;
            identity.ca_pem = Some(pem);
        }
        if let Some(pin) = &cli.spki_pin {
            identity.spki_pin = Some(pin.clone());
        }
        Ok(identity)
    }

    fn from_file(path: &Path) -> Result<Self, IdentityError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|source| IdentityError::Unreadable { path: path.to_owned(), source })?,
        );
        let file: AgentIdentity = serde_json::from_str(&text).map_err(|err| IdentityError::Malformed {
            path: path.to_owned(),
            category: match err.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "syntax",
                serde_json::error::Category::Data => "field",
            },
            line: err.line(),
            column: err.column(),
        })?;
        let empty = |field| IdentityError::EmptyField { path: path.to_owned(), field };
        if file.agent_id.is_empty() {
            return Err(empty("agentId"));
        }
        if file.agent_secret.is_empty() {
            return Err(empty("agentSecret"));
        }
        let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
        Ok(Identity {
            agent_id: file.agent_id.clone(),
            secret: Zeroizing::new(file.agent_secret.clone()),
            operator_url: file.operator_endpoint.clone(),
            ca_pem: non_empty(file.ca_bundle.clone()),
            spki_pin: non_empty(file.spki_sha256.clone()),
            source: "identity file",
        })
    }

    /// The sealing key pair: a pure function of the secret, identical after every restart.
    pub fn sealing_keypair(&self) -> KeyPair {
        derive_agent_keypair(self.secret.as_bytes())
    }
}
