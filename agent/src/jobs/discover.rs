//! Discover: list metadata under the scope page by page; values are never read.

use super::{Executor, PageSink, failed, provider_failure};
use crate::backoff::Backoff;
use sb_core::protocol::{CatalogPage, ClaimedJob, DiscoverJob, JobOutcome, JobResult};
use tracing::{info, warn};

/// Attempts to deliver one page before the job gives up (and is retried by the operator).
const PAGE_ATTEMPTS: u32 = 5;

impl Executor {
    pub(super) async fn discover(&self, claim: &ClaimedJob, job: &DiscoverJob, sink: &dyn PageSink) -> JobOutcome {
        let job_id = claim.job_id.as_str();
        let target = format!("{}/{}:{}", job.agent, job.provider, job.path_prefix.as_deref().unwrap_or(""));
        let provider = match self.provider(&job.agent, &job.provider) {
            Ok(p) => p,
            Err(failure) => return JobOutcome::Failed(failure),
        };
        let prefixes = match provider.scope.listing_prefixes(job.path_prefix.as_deref()) {
            Ok(p) => p,
            Err(err) => {
                warn!(job_id, target, step = "scope", "{err}");
                return failed("OutOfScope", err.to_string(), false);
            }
        };
        let (mut pages, mut total) = (0u32, 0u64);
        for prefix in &prefixes {
            let mut token: Option<String> = None;
            loop {
                let listed = match provider.backend.list(prefix, token.as_deref(), self.page_size).await {
                    Ok(page) => page,
                    Err(err) => {
                        warn!(job_id, target, step = "list", reason = err.reason(), "{err}");
                        return provider_failure(&err);
                    }
                };
                let entries: Vec<_> = listed
                    .entries
                    .into_iter()
                    .filter(|e| job.name_filter.as_deref().is_none_or(|f| e.reference.contains(f)))
                    .collect();
                if !entries.is_empty() {
                    let page = CatalogPage { lease_token: claim.lease_token.clone(), page: pages, entries };
                    if let Err(err) = deliver(sink, job_id, &page).await {
                        warn!(job_id, target, step = "page", page = pages, "{err}");
                        return failed("OperatorUnavailable", format!("could not deliver page {pages}: {err}"), true);
                    }
                    info!(
                        job_id,
                        target,
                        step = "page",
                        page = pages,
                        entries = page.entries.len(),
                        "sent a catalog page"
                    );
                    total += page.entries.len() as u64;
                    pages += 1;
                }
                match listed.next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        info!(job_id, target, step = "done", pages, total, "listing complete");
        JobOutcome::Succeeded(JobResult::Discover { pages, total, complete: true })
    }
}

async fn deliver(
    sink: &dyn PageSink,
    job_id: &str,
    page: &CatalogPage,
) -> Result<(), crate::transport::TransportError> {
    let mut backoff = Backoff::new(std::time::Duration::from_millis(200), std::time::Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        match sink.send_page(job_id, page).await {
            Ok(()) => return Ok(()),
            Err(err) if err.retryable() && attempt < PAGE_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(err) => return Err(err),
        }
    }
}
