//! Vault login: a static token, AppRole or Kubernetes service-account auth. Secrets for the
//! login come from an environment variable or a file, never from the config file itself.

use super::ProviderError;
use super::vault::classify;
use crate::config::VaultAuth;
use std::path::Path;
use std::time::{Duration, Instant};
use vaultrs::api::AuthInfo;
use vaultrs::client::VaultClient;
use zeroize::Zeroizing;

/// Logs in as configured. Returns the token and, for tokens with a TTL, when to log in again.
pub(super) async fn login(
    client: &VaultClient,
    auth: &VaultAuth,
) -> Result<(Zeroizing<String>, Option<Instant>), ProviderError> {
    match auth {
        VaultAuth::Token { token_env, token_file } => {
            Ok((read_secret(token_env.as_deref(), token_file.as_deref(), "token")?, None))
        }
        VaultAuth::AppRole { mount, role_id, secret_id_env, secret_id_file } => {
            let secret_id = read_secret(secret_id_env.as_deref(), secret_id_file.as_deref(), "AppRole secret id")?;
            let info = vaultrs::auth::approle::login(client, mount, role_id, &secret_id).await.map_err(classify)?;
            Ok(session_of(info))
        }
        VaultAuth::Kubernetes { mount, role, jwt_file } => {
            let jwt = read_secret(None, Some(jwt_file), "Kubernetes service-account token")?;
            let info = vaultrs::auth::kubernetes::login(client, mount, role, &jwt).await.map_err(classify)?;
            Ok(session_of(info))
        }
    }
}

/// A login secret from an environment variable or a file (re-read at every login, so a
/// rotated Kubernetes token or secret id is picked up).
fn read_secret(env: Option<&str>, file: Option<&Path>, what: &str) -> Result<Zeroizing<String>, ProviderError> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(Zeroizing::new)
            .map_err(|_| ProviderError::Config(format!("vault {what}: environment variable {var} is not set")));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|text| Zeroizing::new(text.trim().to_owned()))
            .map_err(|e| ProviderError::Config(format!("vault {what}: cannot read {}: {e}", path.display())));
    }
    Err(ProviderError::Config(format!("vault {what}: set an Env or File source")))
}

/// The token of a login and when to renew it: two thirds into its TTL (none for TTL 0).
fn session_of(info: AuthInfo) -> (Zeroizing<String>, Option<Instant>) {
    let renew_at = (info.lease_duration > 0)
        .then(|| Instant::now() + Duration::from_secs(info.lease_duration.saturating_mul(2) / 3));
    (Zeroizing::new(info.client_token), renew_at)
}
