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
