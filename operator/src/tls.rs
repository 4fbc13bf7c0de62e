//! TLS for the agent API: a serving certificate (cert-manager's `tls.crt` / `tls.key` /
//! `ca.crt`, or one generated here with its own CA), the SPKI pin agents check, and a
//! rustls + hyper accept loop. Only the ring provider is used.

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// Why TLS material could not be produced or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Makes ring the process-wide rustls provider (reqwest and vaultrs use the default). Safe
/// to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The serving certificate and what agents need to trust it.
#[derive(Clone)]
pub struct ServingTls {
    /// PEM chain, leaf first (`tls.crt`).
    pub cert_pem: String,
    /// PEM private key (`tls.key`).
    pub key_pem: Zeroizing<String>,
    /// PEM CA bundle agents trust (`ca.crt`); goes into identity.json.
    pub ca_pem: String,
    /// Base64 SHA-256 of the leaf's SubjectPublicKeyInfo; goes into identity.json.
    pub spki_sha256: String,
}

impl std::fmt::Debug for ServingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingTls").field("spki_sha256", &self.spki_sha256).finish_non_exhaustive()
    }
}

const FILES: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

impl ServingTls {
    /// A fresh CA and a serving certificate for `names` (DNS names or IP addresses).
    pub fn generate(names: &[String]) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "secrets-bridge operator CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(names.to_vec())?;
        leaf_params.distinguished_name.push(DnType::CommonName, "sb-operator");
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        Self::from_pem(leaf.pem(), Zeroizing::new(leaf_key.serialize_pem()), ca_cert.pem())
    }

    /// Reads `tls.crt`, `tls.key` and `ca.crt` from `dir` (a cert-manager Secret mount).
    pub fn load_dir(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TlsError::Io { path: path.display().to_string(), source })
        };
        Self::from_pem(read("tls.crt")?, Zeroizing::new(read("tls.key")?), read("ca.crt")?)
    }

    /// Loads `dir` when it holds the three files, otherwise generates and writes them (the
    /// key 0600) so a restart keeps the same pin.
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        if FILES.iter().all(|f| dir.join(f).exists()) {
            return Self::load_dir(dir);
        }
        let tls = Self::generate(names)?;
        tls.write_dir(dir)?;
        Ok(tls)
    }

    /// Writes the three files into `dir`.
    pub fn write_dir(&self, dir: &Path) -> Result<(), TlsError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| TlsError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, body) in
            [("tls.crt", self.cert_pem.as_str()), ("tls.key", self.key_pem.as_str()), ("ca.crt", self.ca_pem.as_str())]
        {
            let path = dir.join(name);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, if name == "tls.key" { 0o600 } else { 0o644 });
            std::io::Write::write_all(&mut options.open(&path).map_err(io(&path))?, body.as_bytes())
                .map_err(io(&path))?;
        }
        Ok(())
    }

    /// From PEM text, e.g. the `tls.crt`, `tls.key` and `ca.crt` keys of a cert-manager
    /// Secret read through the Kubernetes API.
    pub fn from_pem(cert_pem: String, key_pem: Zeroizing<String>, ca_pem: String) -> Result<Self, TlsError> {
        let chain = certs(&cert_pem)?;
        let leaf = chain.first().ok_or_else(|| TlsError::Invalid("tls.crt holds no certificate".into()))?;
        let spki_sha256 = spki_sha256(leaf)?;
        Ok(Self { cert_pem, key_pem, ca_pem, spki_sha256 })
    }

    /// A rustls server configuration (HTTP/2 and HTTP/1.1, TLS 1.2+) with the ring provider.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|e| TlsError::Invalid(format!("tls.key: {e}")))?
            .ok_or_else(|| TlsError::Invalid("tls.key holds no private key".into()))?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs(&self.cert_pem)?, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate PEM: {e}")))
}

/// Base64 (standard, padded) SHA-256 of a certificate's DER SubjectPublicKeyInfo: the same
/// pin format as HPKP and `curl --pinnedpubkey sha256//…`.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    Ok(STANDARD.encode(Sha256::digest(parsed.subject_public_key_info().as_ref())))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves. Each connection does its
/// handshake on its own task so a slow client cannot stall the accept loop.
///
/// On shutdown it stops accepting, asks every open connection to finish (HTTP/1.1 closes
/// once the request in progress is answered, an idle keep-alive connection at once; HTTP/2
/// sends GOAWAY) and waits up to `drain` for them; connections still open then (a client
/// stalled mid-request, a handshake in progress, a long-poll nobody ended) are cut, and that
/// is logged.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        connections.spawn(serve_connection(acceptor.clone(), app.clone(), tcp, peer, closing.clone()));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            ?drain,
            "agent API connections still open after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    app: Router,
    tcp: TcpStream,
    peer: SocketAddr,
    mut closing: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
    let tls = tokio::select! {
        tls = handshake => match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        // No request has started on a connection still shaking hands: drop it.
        _ = closing.wait_for(|closing| *closing) => return,
    };
    let service = TowerToHyperService::new(app);
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut finishing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.wait_for(|closing| *closing), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_round_trips_through_a_directory_with_the_same_pin() {
        let dir = tempfile::tempdir().unwrap();
        let made = ServingTls::load_or_generate(dir.path(), &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let loaded = ServingTls::load_or_generate(dir.path(), &[]).unwrap();
        assert_eq!(made.spki_sha256, loaded.spki_sha256);
        assert_eq!(STANDARD.decode(&made.spki_sha256).unwrap().len(), 32);
        assert!(made.server_config().is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
