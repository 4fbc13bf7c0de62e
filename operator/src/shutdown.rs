//! Bounded graceful shutdown: each part (a server, the controllers) gets a drain timeout
//! from the moment shutdown begins; a part that has not finished by then is dropped, and
//! that is logged, so nothing still open (a stalled client, a reconcile stuck on a call
//! without a timeout) can keep the process from exiting.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Resolves once `flag` turns true (or its sender is gone).
pub async fn stopped(mut flag: watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            break;
        }
    }
}

/// Runs `work` until it ends by itself or, once `stop` resolved, for at most `drain` more;
/// then drops it (with a warning naming `what`) and returns `None`. `work` is expected to
/// wind down by itself when `stop` resolves (its own graceful shutdown).
pub async fn drain_within<F: Future>(
    what: &str,
    work: F,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => return Some(done),
        () = stop => {}
    }
    match tokio::time::timeout(drain, work).await {
        Ok(done) => Some(done),
        Err(_) => {
            tracing::warn!(what, ?drain, "{what} did not stop within the drain timeout; abandoning it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_that_ignores_the_stop_is_dropped_after_the_drain_timeout() {
        let (tx, rx) = watch::channel(false);
        let dropped = std::sync::Arc::new(());
        let held = dropped.clone();
        let stuck = async move {
            let _held = held;
            std::future::pending::<()>().await
        };
        let stopping = tokio::spawn(drain_within("stuck work", stuck, stopped(rx), Duration::from_millis(50)));
        tx.send(true).unwrap();
        assert_eq!(stopping.await.unwrap(), None);
        assert_eq!(std::sync::Arc::strong_count(&dropped), 1, "the stuck work was dropped");
    }

    #[tokio::test]
    async fn work_that_winds_down_returns_its_output() {
        let (tx, rx) = watch::channel(false);
        let work = {
            let rx = rx.clone();
            async move {
                stopped(rx).await;
                "stopped"
            }
        };
        tx.send(true).unwrap();
        assert_eq!(drain_within("work", work, stopped(rx), Duration::from_secs(5)).await, Some("stopped"));
        let finished = drain_within("work", async { 7 }, std::future::pending(), Duration::from_secs(5)).await;
        assert_eq!(finished, Some(7), "work that ends before any stop");
    }
}
