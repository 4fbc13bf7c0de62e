//! The agent API listener under hostile and faulty conditions (docs/reliability.md, "Agent
//! API limits and hostile input"): silent and slow clients are cut after their timeout while
//! others are served, connections beyond the cap are refused while earlier ones are served,
//! idle connections are closed but a long-poll never counts as idle, and a failed accept
//! does not stop the loop. Every wait is bounded and fails the test; no test measures time.

mod common;

use common::{Flavor, TestDb};
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER};
use sb_core::protocol::{CLAIM_PATH, ClaimResponse};
use sb_operator::api::{ApiConfig, ApiState, Metrics, router};
use sb_operator::store::{StoreOptions, StoredAuthKey};
use sb_operator::tls::{Accept, ListenerLimits, ServingTls, serve_tls};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// The longest any test waits for something to happen before it fails.
const BOUND: Duration = Duration::from_secs(20);

fn agent() -> AgentKeys {
    AgentKeys::from_seed(&[1; 32])
}

/// The agent API on a fresh SQLite store, served over TLS with `limits` on `listener`.
struct Server {
    _db: TestDb,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(limits: ListenerLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self::start_on(listener, addr, limits).await
    }

    async fn start_on<L: Accept + 'static>(listener: L, addr: SocketAddr, limits: ListenerLimits) -> Self {
        sb_operator::tls::install_crypto_provider();
        let db = TestDb::new(Flavor::Sqlite).await;
        let store = db.store(StoreOptions::default()).await;
        let key = StoredAuthKey::new(&agent().auth_public(), chrono::Utc::now().timestamp_millis());
        store.set_agent_keys("operator", "edge", &[key]).await.unwrap();
        let tls = ServingTls::load_or_generate(&db.dir().join("tls"), &["127.0.0.1".into()]).unwrap();
        let state = ApiState::new(store, ApiConfig::default());
        let metrics = state.metrics.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopping = async {
            let _ = stopped.await;
        };
        let config = tls.server_config().unwrap();
        let listener_metrics = metrics.listener.clone();
        let task = tokio::spawn(serve_tls(listener, config, router(state), stopping, limits, listener_metrics));
        Self { _db: db, addr, metrics, ca_pem: tls.ca_pem, stop: Some(stop), task: Some(task) }
    }

    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection that has completed its handshake (ALPN `http/1.1`, or `alpn`).
    async fn tls(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let connecting = tokio_rustls::TlsConnector::from(self.client_config(alpn)).connect(name, tcp);
        tokio::time::timeout(BOUND, connecting).await.expect("the TLS handshake neither finished nor failed")
    }

    /// A client as an agent has one (HTTP/2 by ALPN); each client opens its own connection.
    fn client(&self) -> reqwest::Client {
        let config = (*self.client_config(&[b"h2", b"http/1.1"])).clone();
        reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
    }

    /// A signed claim by a new client (a new connection); returns the status.
    async fn claim(&self, wait_seconds: u32) -> reqwest::Result<u16> {
        self.claim_with(&self.client(), wait_seconds).await
    }

    async fn claim_with(&self, client: &reqwest::Client, wait_seconds: u32) -> reqwest::Result<u16> {
        let body = serde_json::json!({"maxJobs": 1, "waitSeconds": wait_seconds}).to_string();
        let response = client
            .post(format!("https://127.0.0.1:{}{CLAIM_PATH}", self.addr.port()))
            .header(SIGNATURE_HEADER, signature(body.as_bytes()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        if status == 200 {
            response.json::<ClaimResponse>().await?;
        }
        Ok(status)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(BOUND, task).await.expect("the server stops").unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn signature(body: &[u8]) -> String {
    RequestSignature::sign(&agent(), "edge", "POST", CLAIM_PATH, chrono::Utc::now().timestamp(), body).to_header()
}

/// A signed claim written by hand as HTTP/1.1 on an open connection; returns the status.
async fn claim_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> u16 {
    let body = serde_json::json!({"maxJobs": 1, "waitSeconds": 0}).to_string();
    let request = format!(
        "POST {CLAIM_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{SIGNATURE_HEADER}: {}\r\ncontent-length: {}\r\n\r\n{body}",
        signature(body.as_bytes()),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before the answer: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    };
    tokio::time::timeout(BOUND, read).await.expect("no answer to the claim")
}

/// Reads until the peer closes the connection (EOF or an error); fails after [`BOUND`].
async fn closed_by_the_server<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, read).await.unwrap_or_else(|_| panic!("{what}: the server never closed it"));
}

/// Whether the server still holds `tcp` open: a non-blocking peek finds neither data, EOF
/// nor an error.
fn still_open(tcp: &TcpStream) -> bool {
    use std::os::fd::AsFd;
    let probe = std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned().unwrap());
    probe.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    matches!(probe.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn limits() -> ListenerLimits {
    ListenerLimits { drain: Duration::from_secs(1), ..ListenerLimits::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_says_hello_is_disconnected_after_the_handshake_timeout_while_another_is_served() {
    let server = Server::start(ListenerLimits { handshake_timeout: Duration::from_secs(3), ..limits() }).await;
    let listener = &server.metrics.listener;
    // One client connects and sends nothing; another sends half a TLS record header.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut halting = TcpStream::connect(server.addr).await.unwrap();
    halting.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    eventually("both connections accepted", || listener.connections_open.get() == 2).await;

    assert_eq!(server.claim(0).await.unwrap(), 200, "another client is served meanwhile");
    assert!(still_open(&silent) && still_open(&halting), "cut before their handshake timeout");
    assert_eq!(listener.handshake_timeouts.get(), 0);

    closed_by_the_server(&mut silent, "a client that never sent a ClientHello").await;
    closed_by_the_server(&mut halting, "a client stalled in its ClientHello").await;
    assert_eq!(listener.handshake_timeouts.get(), 2);
    eventually("the open-connections gauge falls back", || listener.connections_open.get() == 0).await;
    assert_eq!(server.claim(0).await.unwrap(), 200);
    let text = server.metrics.encode();
    assert!(text.contains("sb_operator_agent_api_handshake_timeouts_total 2"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_sending_headers_byte_by_byte_is_cut_after_the_header_timeout() {
    let server = Server::start(ListenerLimits { header_timeout: Duration::from_secs(2), ..limits() }).await;
    let listener = server.metrics.listener.clone();
    let slow = server.tls(&[b"http/1.1"]).await.unwrap();
    let (mut reading, mut writing) = tokio::io::split(slow);
    // Headers that would take 100 s at one byte every 50 ms.
    let dribble = tokio::spawn(async move {
        let start = format!("POST {CLAIM_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: ");
        if writing.write_all(start.as_bytes()).await.is_err() {
            return false;
        }
        for _ in 0..2000 {
            if writing.write_all(b"a").await.is_err() || writing.flush().await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    });
    assert_eq!(server.claim(0).await.unwrap(), 200, "another client is served meanwhile");
    assert_eq!(listener.header_timeouts.get(), 0, "cut before the header timeout");
    closed_by_the_server(&mut reading, "a slowloris client").await;
    assert_eq!(listener.header_timeouts.get(), 1);
    let finished = tokio::time::timeout(BOUND, dribble).await.expect("the writer stops once cut").unwrap();
    assert!(!finished, "the server read all 2000 bytes of headers");
    assert_eq!(server.claim(0).await.unwrap(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_shakes_hands_and_sends_nothing_is_closed_over_http1_and_http2() {
    let server = Server::start(ListenerLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..limits()
    })
    .await;
    let listener = server.metrics.listener.clone();
    // Protocols are taken from ALPN: no byte sniffing without a timer.
    let mut http1 = server.tls(&[b"http/1.1"]).await.unwrap();
    let mut http2 = server.tls(&[b"h2"]).await.unwrap();
    let mut no_alpn = server.tls(&[]).await.unwrap();
    closed_by_the_server(&mut http1, "a silent HTTP/1.1 connection").await;
    closed_by_the_server(&mut http2, "a silent HTTP/2 connection").await;
    closed_by_the_server(&mut no_alpn, "a silent connection without ALPN").await;
    eventually("all three counted", || listener.header_timeouts.get() + listener.idle_closed.get() == 3).await;
    assert!(listener.idle_closed.get() >= 1, "the HTTP/2 connection is closed as idle");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_a_long_poll_is_never_idle() {
    let server = Server::start(ListenerLimits { idle_timeout: Duration::from_secs(1), ..limits() }).await;
    let listener = server.metrics.listener.clone();
    // A claim that waits 3 s for a job, three idle timeouts.
    let client = server.client();
    assert_eq!(server.claim_with(&client, 3).await.unwrap(), 200, "the long-poll is answered, not cut");
    assert_eq!(listener.idle_closed.get(), 0, "a connection with a request in flight is not idle");
    // Its connection has nothing in flight now and is closed after the idle timeout.
    eventually("the idle connection is closed", || listener.idle_closed.get() == 1).await;
    eventually("no connection left open", || listener.connections_open.get() == 0).await;
    assert_eq!(server.claim_with(&client, 0).await.unwrap(), 200, "the client reconnects");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_while_earlier_ones_are_served() {
    let server = Server::start(ListenerLimits { max_connections: 2, ..limits() }).await;
    let listener = server.metrics.listener.clone();
    let mut first = server.tls(&[b"http/1.1"]).await.unwrap();
    let second = server.tls(&[b"http/1.1"]).await.unwrap();
    eventually("two connections open", || listener.connections_open.get() == 2).await;

    let refused = server.tls(&[b"http/1.1"]).await;
    assert!(refused.is_err(), "a third connection is closed before its handshake");
    assert!(server.claim(0).await.is_err(), "and so is a fourth");
    assert_eq!(listener.connections_refused.get(), 2);
    assert_eq!(claim_on(&mut first).await, 200, "an earlier connection is still served");
    assert_eq!(claim_on(&mut first).await, 200, "and stays usable");

    drop(second);
    eventually("the closed connection frees its slot", || listener.connections_open.get() == 1).await;
    assert_eq!(server.claim(0).await.unwrap(), 200, "a new connection is served once below the cap");
    assert_eq!(listener.connections_refused.get(), 2);
    let text = server.metrics.encode();
    assert!(text.contains("sb_operator_agent_api_connections_refused_total 2"), "{text}");
    server.stop().await;
}

/// A listener whose next `failures` accepts fail with EMFILE, as when the process is out of
/// file descriptors.
struct Flaky {
    inner: TcpListener,
    failures: Arc<AtomicUsize>,
}

impl Accept for Flaky {
    type Io = TcpStream;

    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(std::io::Error::from_raw_os_error(24)); // EMFILE
        }
        self.inner.accept().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_do_not_stop_the_listener() {
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    // The very first accepts fail.
    let failures = Arc::new(AtomicUsize::new(3));
    let server = Server::start_on(Flaky { inner, failures: failures.clone() }, addr, limits()).await;
    let listener = server.metrics.listener.clone();
    assert_eq!(server.claim(0).await.unwrap(), 200, "served after three failed accepts");
    assert_eq!(listener.accept_errors.get(), 3);

    // Failures in the middle of serving: the next accept after this connection's fails.
    failures.store(5, Ordering::SeqCst);
    assert_eq!(server.claim(0).await.unwrap(), 200);
    assert_eq!(server.claim(0).await.unwrap(), 200, "served after five more failed accepts");
    assert_eq!(listener.accept_errors.get(), 8);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let text = server.metrics.encode();
    assert!(text.contains("sb_operator_agent_api_accept_errors_total 8"), "{text}");
    server.stop().await;
}
