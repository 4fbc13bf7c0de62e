//! A local HTTPS server with rcgen certificates that counts the requests reaching it, so a
//! test can prove a refused handshake sent nothing.

use axum::Router;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA and a serving certificate for 127.0.0.1 signed by it.
pub struct TestPki {
    /// PEM of the CA certificate.
    pub ca_pem: String,
    /// DER of the serving certificate.
    pub leaf_der: CertificateDer<'static>,
    /// Its private key.
    pub leaf_key: PrivatePkcs8KeyDer<'static>,
    /// base64 SHA-256 of the serving certificate's SPKI.
    pub pin: String,
}

impl TestPki {
    /// Fresh CA + leaf.
    pub fn generate() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let leaf_der = leaf.der().clone();
        let pin = sb_agent::transport::spki_pin_of(&leaf_der).unwrap();
        Self { ca_pem: ca.pem(), leaf_der, leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()), pin }
    }
}

/// A running server.
pub struct TlsServer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// Requests that reached the HTTP layer.
    pub requests: Arc<AtomicUsize>,
}

impl TlsServer {
    /// Requests seen so far.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves `router` over TLS with `pki`'s serving certificate on an ephemeral loopback port.
pub async fn serve(pki: &TestPki, router: Router) -> TlsServer {
    sb_agent::transport::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf_der.clone()], PrivateKeyDer::Pkcs8(pki.leaf_key.clone_key()))
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, router, counter) = (acceptor.clone(), router.clone(), counter.clone());
            tokio::spawn(async move {
                // A failed handshake ends here, before any request is read.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let router = router.clone();
                    async move { tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)).await }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsServer { url: format!("https://{addr}"), requests }
}
