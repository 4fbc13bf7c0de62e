//! TLS to the operator: the CA from identity.json (or `--ca-file`) and, on top, the SHA-256
//! pin of the serving certificate's SubjectPublicKeyInfo. A certificate the CA accepts but
//! whose key is not the pinned one is refused before any request is written.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why no TLS configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("no CA bundle for the operator: put caBundle in identity.json or pass --ca-file / SB_CA_FILE")]
    NoCa,
    #[error("the CA bundle holds no usable certificate: {0}")]
    BadCa(String),
    #[error("no SPKI pin for the operator: put spkiSha256 in identity.json or pass --spki-pin / SB_SPKI_PIN")]
    NoPin,
    #[error("the SPKI pin is not base64 of 32 bytes (SHA-256)")]
    BadPin,
}

/// The operator presented a certificate whose key is not the pinned one.
#[derive(thiserror::Error)]
#[error("the operator's certificate key does not match the SPKI pin (spkiSha256 / --spki-pin)")]
pub struct PinMismatch;

// rustls shows verifier errors with `Debug`; make that the readable message too.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Installs ring as the process-wide rustls provider; harmless when already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Delegates chain and name checks to webpki, then compares the end-entity SPKI hash.
#[derive(Debug)]
pub struct PinnedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pin: [u8; 32],
}

impl PinnedVerifier {
    fn spki_matches(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let digest = Sha256::digest(cert.public_key().raw);
        if digest.as_slice() == self.pin {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                PinMismatch,
            )))))
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.spki_matches(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The base64 SHA-256 of a DER certificate's SubjectPublicKeyInfo, the format of the pin.
pub fn spki_pin_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(STANDARD.encode(Sha256::digest(cert.public_key().raw)))
}

/// A rustls client configuration trusting only `ca_pem` and only a key matching `pin`.
pub fn client_config(ca_pem: Option<&str>, pin: Option<&str>) -> Result<ClientConfig, TlsSetupError> {
    let ca_pem = ca_pem.ok_or(TlsSetupError::NoCa)?;
    let pin = pin.ok_or(TlsSetupError::NoPin)?;
    let pin: [u8; 32] =
        STANDARD.decode(pin.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(TlsSetupError::BadPin)?;
    let mut roots = RootCertStore::empty();
    let mut reader = ca_pem.as_bytes();
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| TlsSetupError::BadCa(e.to_string()))?;
        roots.add(cert).map_err(|e| TlsSetupError::BadCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::BadCa("no PEM certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::BadCa(e.to_string()))?;
    let verifier = Arc::new(PinnedVerifier { inner, pin });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::BadCa(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}
