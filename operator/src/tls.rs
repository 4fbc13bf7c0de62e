//! TLS for the agent API: a serving certificate (cert-manager's `tls.crt` / `tls.key` /
//! `ca.crt`, or one generated here with its own CA), the SPKI pin agents check, and a
//! rustls + hyper accept loop that survives accept errors and bounds handshakes, request
//! headers, idle connections and how many are open ([`ListenerLimits`]). Only the ring
//! provider is used.

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
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

/// Limits of the agent API listener (`sb-operator run --agent-api-*`; docs/reliability.md,
/// "Agent API limits and hostile input").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From accepting a connection to a completed TLS handshake; a client that sends no
    /// ClientHello (or stalls in the middle of one) is disconnected after it.
    pub handshake_timeout: Duration,
    /// HTTP/1.1: from the moment the server waits for a request until its headers are
    /// complete (hyper's `header_read_timeout`). hyper runs the same clock while an idle
    /// keep-alive connection waits for its next request, so an HTTP/1.1 connection idle this
    /// long is closed too.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 gets GOAWAY and
    /// is cut if it has not ended after `header_timeout` more). A request in flight (a
    /// long-poll claim) never counts as idle.
    pub idle_timeout: Duration,
    /// Open connections (including those still shaking hands) at most; a connection accepted
    /// beyond it is closed at once, without a handshake, and counted.
    pub max_connections: usize,
    /// On shutdown, how long open connections get to finish before they are cut.
    pub drain: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1024,
            drain: Duration::from_secs(5),
        }
    }
}

/// Metrics of the agent API listener; [`crate::api::Metrics`] registers them.
#[derive(Clone, Debug, Default)]
pub struct ListenerMetrics {
    /// Connections open right now (from accept to close, handshakes included).
    pub connections_open: Gauge,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: Counter,
    /// Failed `accept` calls (e.g. EMFILE: out of file descriptors).
    pub accept_errors: Counter,
    /// Connections closed because the TLS handshake did not finish in time.
    pub handshake_timeouts: Counter,
    /// HTTP/1.1 connections closed because request headers did not arrive in time.
    pub header_timeouts: Counter,
    /// Connections closed because no request was in flight for the idle timeout.
    pub idle_closed: Counter,
}

impl ListenerMetrics {
    /// Registers the series (`…_agent_api_connections_open`, `…_connections_refused_total`,
    /// `…_accept_errors_total`, `…_handshake_timeouts_total`, `…_header_timeouts_total`,
    /// `…_idle_connections_closed_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "agent_api_connections_open",
            "Agent API connections open (handshakes included)",
            self.connections_open.clone(),
        );
        registry.register(
            "agent_api_connections_refused",
            "Agent API connections closed at once because the connection cap was reached",
            self.connections_refused.clone(),
        );
        registry.register(
            "agent_api_accept_errors",
            "Failed accepts on the agent API listener (e.g. out of file descriptors)",
            self.accept_errors.clone(),
        );
        registry.register(
            "agent_api_handshake_timeouts",
            "Agent API connections closed because the TLS handshake timed out",
            self.handshake_timeouts.clone(),
        );
        registry.register(
            "agent_api_header_timeouts",
            "Agent API connections closed because request headers did not arrive in time",
            self.header_timeouts.clone(),
        );
        registry.register(
            "agent_api_idle_connections_closed",
            "Agent API connections closed after the idle timeout with no request in flight",
            self.idle_closed.clone(),
        );
    }
}

/// A source of accepted connections: [`TcpListener`], or a wrapper that injects failures in
/// tests. `accept` must be cancel-safe (it is raced against shutdown).
pub trait Accept: Send {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Io = TcpStream;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// After a failed accept the loop waits this long, doubling up to [`ACCEPT_BACKOFF_MAX`]; a
/// successful accept starts over.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Repeated accept errors and refusals are logged at most this often (they are all counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until `shutdown` resolves. Each connection does its
/// handshake on its own task so a slow client cannot stall the accept loop; `limits` bound
/// the handshake, the request headers, idle connections and how many are open.
///
/// A failed accept (EMFILE, ENFILE, ENOBUFS, …) is logged, counted and followed by a bounded
/// back-off ([`ACCEPT_BACKOFF_MIN`] doubling to [`ACCEPT_BACKOFF_MAX`]); the loop keeps
/// serving. Errors about one connection only (reset or aborted before it was accepted) are
/// retried at once.
///
/// On shutdown it stops accepting, asks every open connection to finish (HTTP/1.1 closes
/// once the request in progress is answered, an idle keep-alive connection at once; HTTP/2
/// sends GOAWAY) and waits up to `limits.drain` for them; connections still open then (a
/// client stalled mid-request, a handshake in progress, a long-poll nobody ended) are cut,
/// and that is logged.
pub async fn serve_tls<L: Accept>(
    mut listener: L,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    limits: ListenerLimits,
    metrics: ListenerMetrics,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failing = Throttled::default();
    let mut refusing = Throttled::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => {
                if let Some(errors) = failing.recovered() {
                    tracing::debug!(errors, "the agent API accepts connections again");
                }
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(e) => {
                metrics.accept_errors.inc();
                if is_per_connection(&e) {
                    tracing::debug!(error = %e, "an agent API connection failed before it was accepted");
                    continue;
                }
                if let Some(since) = failing.due() {
                    tracing::error!(
                        error = %e,
                        errors_since_last_report = since,
                        retry_in = ?backoff,
                        "accepting agent API connections fails; backing off and retrying"
                    );
                }
                let wait = backoff;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            if let Some(since) = refusing.due() {
                tracing::warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    refused_since_last_report = since,
                    "agent API connection cap reached; closing new connections at once"
                );
            }
            drop(io);
            continue;
        };
        let connection = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            peer,
            limits: limits.clone(),
            metrics: metrics.clone(),
            closing: closing.clone(),
        };
        connections.spawn(connection.serve(io, slot));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.drain, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            drain = ?limits.drain,
            "agent API connections still open after the drain timeout; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors about one connection, not about the listener: retried without a pause.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}

/// Logs a repeating condition at most every [`LOG_EVERY`], with how often it happened between.
#[derive(Default)]
struct Throttled {
    last: Option<tokio::time::Instant>,
    unreported: u64,
    total: u64,
}

impl Throttled {
    /// One more occurrence; `Some(occurrences since the last report)` when it is time to log.
    fn due(&mut self) -> Option<u64> {
        self.total += 1;
        self.unreported += 1;
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// The condition ended; `Some(occurrences)` if it had happened since it last ended. The
    /// report clock keeps running, so a condition that comes and goes is not logged each time.
    fn recovered(&mut self) -> Option<u64> {
        let total = std::mem::take(&mut self.total);
        (total > 0).then_some(total)
    }
}

/// Keeps [`ListenerMetrics::connections_open`] counting one connection until dropped.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Requests in flight on one connection and since when it has had none.
#[derive(Clone, Copy, Debug)]
struct Activity {
    in_flight: usize,
    idle_since: tokio::time::Instant,
}

/// Counts one request in flight until dropped (answered, or abandoned with its connection).
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn start(activity: &Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| a.in_flight += 1);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            a.idle_since = tokio::time::Instant::now();
        });
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    peer: SocketAddr,
    limits: ListenerLimits,
    metrics: ListenerMetrics,
    closing: watch::Receiver<bool>,
}

impl Connection {
    async fn serve<I: AsyncRead + AsyncWrite + Unpin + 'static>(mut self, io: I, _slot: OwnedSemaphorePermit) {
        let _open = Open::new(&self.metrics.connections_open);
        let peer = self.peer;
        // The handshake is pinned here rather than moved into the select so that the socket it
        // owns closes when this function returns: after the timeout has been counted, never
        // before (a client that sees the close may read the counter at once).
        let handshake = self.acceptor.accept(io);
        tokio::pin!(handshake);
        let tls = tokio::select! {
            tls = &mut handshake => match tls {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            },
            () = tokio::time::sleep(self.limits.handshake_timeout) => {
                self.metrics.handshake_timeouts.inc();
                tracing::debug!(%peer, timeout = ?self.limits.handshake_timeout, "TLS handshake timed out");
                return;
            }
            // No request has started on a connection still shaking hands: drop it.
            _ = self.closing.wait_for(|closing| *closing) => return,
        };
        // The protocol is the one ALPN agreed on: no sniffing of the first bytes, which hyper
        // does without any timer (a client that sends nothing would be held for good).
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let activity = Arc::new(watch::Sender::new(Activity { in_flight: 0, idle_since: tokio::time::Instant::now() }));
        let mut idle = activity.subscribe();
        let tracked = activity.clone();
        let service = tower::ServiceExt::<Request<Incoming>>::map_future(self.app.clone(), move |response| {
            let in_flight = InFlight::start(&tracked);
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder = if h2 { builder.http2_only() } else { builder.http1_only() };
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout);
        builder.http2().timer(TokioTimer::new());
        let connection = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let (mut shutting_down, mut finishing) = (false, false);
        // When the idle timeout asked the connection to finish; it is cut once it has had no
        // request in flight for `header_timeout` more (an HTTP/2 peer that ignores GOAWAY).
        let mut idle_closing: Option<tokio::time::Instant> = None;
        loop {
            let now = *idle.borrow_and_update();
            let wake = match idle_closing {
                _ if now.in_flight > 0 => None,
                Some(since) => Some(since.max(now.idle_since) + self.limits.header_timeout),
                None if !finishing => Some(now.idle_since + self.limits.idle_timeout),
                None => None,
            };
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                            self.metrics.header_timeouts.inc();
                            tracing::debug!(%peer, timeout = ?self.limits.header_timeout, "request headers timed out");
                        } else {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    return;
                }
                _ = self.closing.wait_for(|closing| *closing), if !shutting_down => {
                    shutting_down = true;
                    if !finishing {
                        finishing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
                _ = idle.changed() => {}
                () = sleep_until_some(wake) => {
                    if idle.borrow().in_flight > 0 {
                        // A request began as the timer fired: it is not idle.
                    } else if idle_closing.is_some() {
                        tracing::debug!(%peer, "an idle connection did not close after GOAWAY; cutting it");
                        return;
                    } else {
                        self.metrics.idle_closed.inc();
                        tracing::debug!(%peer, timeout = ?self.limits.idle_timeout, "closing an idle connection");
                        idle_closing = Some(tokio::time::Instant::now());
                        if !finishing {
                            finishing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
