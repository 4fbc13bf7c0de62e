//! A TCP proxy in front of moto that can swallow the answer to a write: the request reaches
//! moto (the secret changes) but the agent never hears back, so a test can SIGKILL the agent
//! exactly "in the middle" of a patch — after the provider applied it, before the agent
//! completed the job. No hook in the agent is needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The proxy; dropping it stops accepting.
pub struct HoldingProxy {
    /// `http://127.0.0.1:<port>`, to put in the agent's config.
    pub endpoint: String,
    hold: Arc<AtomicBool>,
    held: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    /// Forwards to `upstream` (`host:port`); while holding, the answer to any request whose
    /// bytes contain `marker` (e.g. `secretsmanager.PutSecretValue`) is never forwarded.
    pub async fn start(upstream: &str, marker: &'static str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let hold = Arc::new(AtomicBool::new(true));
        let held = Arc::new(Notify::new());
        let upstream = upstream.to_owned();
        let (h, n) = (hold.clone(), held.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, h, n) = (upstream.clone(), h.clone(), n.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pump(client, server, marker, h, n).await;
                    }
                });
            }
        });
        Ok(Self { endpoint, hold, held, task })
    }

    /// Waits until a marked request reached the provider and its answer was swallowed.
    pub async fn wait_held(&self) {
        self.held.notified().await;
    }

    /// Forward everything from now on.
    pub fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(client: TcpStream, server: TcpStream, marker: &str, hold: Arc<AtomicBool>, held: Arc<Notify>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let s2 = swallow.clone();
    let marker = marker.as_bytes().to_vec();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if hold.load(Ordering::SeqCst) && buf[..n].windows(marker.len()).any(|w| w == marker.as_slice()) {
                s2.store(true, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if swallow.load(Ordering::SeqCst) {
                // The provider has applied the write; the agent must never learn it.
                held.notify_one();
                std::future::pending::<()>().await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}

/// A TCP proxy that can take a provider "down" for one test without stopping the shared
/// service: while down it closes every connection it has and every new one at once, as a
/// provider that stopped would look to the agent.
pub struct SwitchProxy {
    /// `http://127.0.0.1:<port>`, to put in the agent's config.
    pub endpoint: String,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchProxy {
    /// Forwards to `upstream` (`host:port`), up.
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (up, watch) = tokio::sync::watch::channel(true);
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*watch.borrow() {
                    drop(client);
                    continue;
                }
                let (upstream, mut watch) = (upstream.clone(), watch.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { endpoint, up, task })
    }

    /// Takes the provider down (`false`) or brings it back (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP balancer standing for the Kubernetes Service in front of several operator replicas:
/// each new connection goes to the next backend in turn, and a backend that refuses the
/// connection (a killed replica) is skipped, as once kube-proxy has dropped a dead pod's
/// endpoint. Connections already open stay with their backend until either side closes them,
/// so a replica's death cuts exactly the connections it held.
pub struct ServiceProxy {
    /// `127.0.0.1:<port>`; agents reach it as `https://<addr>` (the serving certificate names 127.0.0.1).
    pub addr: String,
    backends: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections handed to each backend, by position in `backends`.
    served: Arc<std::sync::Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceProxy {
    /// Listens on a free loopback port with no backend yet (every connection is closed).
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let backends: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let served: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
        let (b, s) = (backends.clone(), served.clone());
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut client, _)) = listener.accept().await {
                let candidates = b.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let start = next;
                next = next.wrapping_add(1);
                let served = s.clone();
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let pick = (start + i) % candidates.len();
                        if let Ok(mut server) = TcpStream::connect(&candidates[pick]).await {
                            served.lock().unwrap_or_else(|e| e.into_inner())[pick] += 1;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self { addr, backends, served, task })
    }

    /// Adds a backend (`host:port`) to the rotation.
    pub fn add_backend(&self, backend: &str) {
        self.backends.lock().unwrap_or_else(|e| e.into_inner()).push(backend.to_owned());
        self.served.lock().unwrap_or_else(|e| e.into_inner()).push(0);
    }

    /// How many connections each backend was handed, in the order they were added.
    pub fn connections_served(&self) -> Vec<u64> {
        self.served.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
