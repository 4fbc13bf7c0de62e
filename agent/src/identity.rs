//! Who the agent is and where its operator lives.
//!
//! The agent's key material is born here, in its own boundary: `sb-agent identity new`
//! writes `identity.json` with a random 32-byte seed from which both the Ed25519
//! authentication key and the X25519 sealing key derive (`sb_core::identity`). The admin
//! registers only the public half; the control plane never sees the seed.
//!
//! `SB_AGENT_ID` + `SB_AGENT_KEY` win when both are set; otherwise `identity.json` at
//! `SB_IDENTITY_FILE` is read. Nothing else is kept on disk: a restart re-reads the same seed
//! and publishes the same keys.

use crate::cli::Cli;
use sb_core::crd::is_dns_label;
use sb_core::identity::AgentKeys;
use sb_core::protocol::AgentIdentity;
use sb_core::seal::KeyPair;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Environment variable holding the agent id.
pub const ENV_AGENT_ID: &str = "SB_AGENT_ID";
/// Environment variable holding the agent's seed (the `agentKey` of identity.json).
pub const ENV_AGENT_KEY: &str = "SB_AGENT_KEY";
/// Environment variable naming the identity file.
pub const ENV_IDENTITY_FILE: &str = "SB_IDENTITY_FILE";

/// Why no usable identity could be loaded. Messages name the variable or file, never a value.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no agent identity: set {ENV_AGENT_ID} and {ENV_AGENT_KEY}, or {ENV_IDENTITY_FILE} (--identity-file); create one with `sb-agent identity new`"
    )]
    Missing,
    #[error("{set} is set but {missing} is not: set both, or neither to use {ENV_IDENTITY_FILE}")]
    HalfEnv { set: &'static str, missing: &'static str },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} is not an agent key (32 bytes, base64url without padding, as `sb-agent identity new` writes it)")]
    BadKey(&'static str),
    #[error("cannot read identity file {path} ({ENV_IDENTITY_FILE}): {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    // Only the position is reported: serde's message may quote the offending (secret) text.
    #[error(
        "identity file {path} ({ENV_IDENTITY_FILE}) is not a valid identity.json: {category} error at line {line}, column {column}"
    )]
    Malformed { path: PathBuf, category: &'static str, line: usize, column: usize },
    // The id is not quoted: it sits in the file beside the seed.
    #[error(
        "{0} is not an agent id: it must be the name of the agent's AgentRegistration, a DNS-1123 label (a-z, 0-9 and '-', at most 63, starting and ending with a letter or digit)"
    )]
    BadAgentId(String),
    #[error("identity file {path} ({ENV_IDENTITY_FILE}) has an empty {field}")]
    EmptyField { path: PathBuf, field: &'static str },
    #[error("with {ENV_AGENT_ID}/{ENV_AGENT_KEY} the operator URL must come from --operator-url or SB_OPERATOR_URL")]
    NoEndpoint,
    #[error("cannot read CA file {path} (--ca-file / SB_CA_FILE): {source}")]
    CaUnreadable { path: PathBuf, source: std::io::Error },
}

/// The key material and the operator coordinates the agent runs with.
pub struct Identity {
    /// The agent id (AgentRegistration name).
    pub agent_id: String,
    /// The authentication and sealing keys.
    pub keys: std::sync::Arc<AgentKeys>,
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
            .field("keys", &self.keys)
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
        let key = env(ENV_AGENT_KEY).map(Zeroizing::new);
        let mut identity = match (id, key) {
            (Some(agent_id), Some(key)) => {
                if agent_id.trim().is_empty() {
                    return Err(IdentityError::Empty(ENV_AGENT_ID));
                }
                if !is_dns_label(&agent_id) {
                    return Err(IdentityError::BadAgentId(ENV_AGENT_ID.to_owned()));
                }
                if key.is_empty() {
                    return Err(IdentityError::Empty(ENV_AGENT_KEY));
                }
                let keys = AgentKeys::from_seed_base64(&key).map_err(|_| IdentityError::BadKey(ENV_AGENT_KEY))?;
                let operator_url = cli.operator_url.clone().ok_or(IdentityError::NoEndpoint)?;
                Identity {
                    agent_id,
                    keys: keys.into(),
                    operator_url,
                    ca_pem: None,
                    spki_pin: None,
                    source: "environment",
                }
            }
            (Some(_), None) => return Err(IdentityError::HalfEnv { set: ENV_AGENT_ID, missing: ENV_AGENT_KEY }),
            (None, Some(_)) => return Err(IdentityError::HalfEnv { set: ENV_AGENT_KEY, missing: ENV_AGENT_ID }),
            (None, None) => {
                let path = cli.identity_file.clone().ok_or(IdentityError::Missing)?;
                Self::from_file(&path)?
            }
        };
        // Flags override the file: the operator's coordinates may change without a new identity.
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
        Self::from_json(path, &text)
    }

    /// Parses and checks the text of `identity.json`; `path` only names the file in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let file: AgentIdentity = serde_json::from_str(text).map_err(|err| IdentityError::Malformed {
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
        if !is_dns_label(&file.agent_id) {
            return Err(IdentityError::BadAgentId(format!("agentId in identity file {}", path.display())));
        }
        if file.agent_key.is_empty() {
            return Err(empty("agentKey"));
        }
        let keys = AgentKeys::from_seed_base64(&file.agent_key).map_err(|_| IdentityError::BadKey("agentKey"))?;
        let non_empty = |s: String| (!s.trim().is_empty()).then_some(s);
        Ok(Identity {
            agent_id: file.agent_id.clone(),
            keys: keys.into(),
            operator_url: file.operator_endpoint.clone(),
            ca_pem: non_empty(file.ca_bundle.clone()),
            spki_pin: non_empty(file.spki_sha256.clone()),
            source: "identity file",
        })
    }

    /// The sealing key pair: a pure function of the seed, identical after every restart.
    pub fn sealing_keypair(&self) -> KeyPair {
        self.keys.derive_sealing()
    }
}

/// `sb-agent identity new`: a fresh identity, written to `out` (mode 0600, refusing to
/// overwrite), and what the admin registers: the public key and its fingerprint, as YAML
/// for `AgentRegistration.spec` or as JSON.
pub fn create(
    agent_id: &str,
    out: &Path,
    operator_url: Option<&str>,
    ca_file: Option<&Path>,
    spki_pin: Option<&str>,
) -> Result<AgentKeysSummary, anyhow::Error> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if !is_dns_label(agent_id) {
        return Err(IdentityError::BadAgentId("the agent id given".to_owned()).into());
    }
    let keys = AgentKeys::generate();
    let ca_bundle = match ca_file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let identity = AgentIdentity {
        agent_id: agent_id.to_owned(),
        agent_key: keys.seed_base64().to_string(),
        operator_endpoint: operator_url.unwrap_or_default().to_owned(),
        ca_bundle,
        spki_sha256: spki_pin.unwrap_or_default().to_owned(),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&identity)?);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (an existing identity is never overwritten)", out.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    let public = keys.auth_public();
    let sealing = keys.sealing();
    Ok(AgentKeysSummary {
        agent_id: agent_id.to_owned(),
        public_key: public.to_base64(),
        fingerprint: public.fingerprint(),
        sealing_key_id: sealing.key_id(),
    })
}

/// The public half of a new identity, as `identity new` prints it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentKeysSummary {
    pub agent_id: String,
    pub public_key: String,
    pub fingerprint: String,
    pub sealing_key_id: String,
}

impl AgentKeysSummary {
    /// The snippet to paste under `AgentRegistration.spec`.
    pub fn registration_yaml(&self) -> String {
        format!(
            "# AgentRegistration {agent}: the private half stays in identity.json, in this boundary only.\n\
             # Fingerprint {fp} (people pin it with `kubectl sb trust {agent} {fp}`).\n\
             authKeys:\n  - publicKey: {key}\n",
            agent = self.agent_id,
            fp = self.fingerprint,
            key = self.public_key
        )
    }
}
