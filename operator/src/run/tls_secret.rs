//! The serving certificate Secret (`sb-operator-tls`): used as found (cert-manager's
//! `tls.crt`/`tls.key`/`ca.crt`), or generated on the first start and stored so every
//! replica and every restart serves the same key, and agents' SPKI pins keep matching.

use crate::tls::{ServingTls, TlsError};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::BTreeMap;

/// Why the serving certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum TlsSecretError {
    #[error("reading or creating Secret {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {name} lacks {key}")]
    Incomplete { name: String, key: &'static str },
    #[error("serving certificate: {0}")]
    Tls(#[from] TlsError),
}

impl TlsSecretError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::Incomplete { .. } => "incomplete",
            Self::Tls(_) => "tls",
        }
    }
}

const KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// Loads the Secret `name` in `namespace`, or generates the material for `names` and creates
/// it.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<ServingTls, TlsSecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let kube_err = |source| TlsSecretError::Kube { name: name.to_owned(), source };
    if let Some(found) = api.get_opt(name).await.map_err(kube_err)? {
        return from_secret(&found, name);
    }
    let generated = ServingTls::generate(names)?;
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), ByteString(generated.cert_pem.clone().into_bytes())),
        ("tls.key".to_owned(), ByteString(generated.key_pem.as_bytes().to_vec())),
        ("ca.crt".to_owned(), ByteString(generated.ca_pem.clone().into_bytes())),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = name, pin = %generated.spki_sha256, "generated the agent API serving certificate");
            Ok(generated)
        }
        // Another replica created it first: use theirs so every replica serves one key.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let found = api.get(name).await.map_err(kube_err)?;
            from_secret(&found, name)
        }
        Err(e) => Err(kube_err(e)),
    }
}

fn from_secret(secret: &Secret, name: &str) -> Result<ServingTls, TlsSecretError> {
    let data = secret.data.clone().unwrap_or_default();
    for key in KEYS {
        if !data.contains_key(key) {
            return Err(TlsSecretError::Incomplete { name: name.to_owned(), key });
        }
    }
    let pem = |key: &str| String::from_utf8_lossy(&data[key].0).into_owned();
    Ok(ServingTls::from_pem(pem("tls.crt"), zeroize::Zeroizing::new(pem("tls.key")), pem("ca.crt"))?)
}
