//! Discovery pages: metadata of the secrets an agent listed, page by page, under its lease.
//! Entries hold references and labels, never values, so they are stored in the clear.

use super::jobs::JobKind;
use super::{Store, StoreError, now_millis};
use crate::audit::AuditEvent;
use sb_core::protocol::{CatalogEntry, CatalogPage};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// The answer to a catalog page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogAck {
    pub job_id: String,
    pub page: u32,
    /// True when the page had been received before (a retry); it was not re-applied.
    pub duplicate: bool,
}

impl Store {
    /// Stores one page of a discovery job claimed by `agent`.
    pub async fn record_catalog_page(
        &self,
        agent: &str,
        job_id: &str,
        page: &CatalogPage,
    ) -> Result<CatalogAck, StoreError> {
        let presented: Vec<u8> = Sha256::digest(page.lease_token.as_bytes()).to_vec();
        let lease = self.lease_row(job_id).await?;
        lease.check(agent, &presented)?;
        if lease.kind != JobKind::Discover {
            return Err(StoreError::InvalidOutcome(format!(
                "catalog pages belong to Discover jobs, not {} jobs",
                lease.kind.as_str()
            )));
        }
        if lease.state.is_final() {
            // A retry of a page sent before the completion is acknowledged; a new page after
            // the completion would change a finished listing.
            let known = sqlx::query("SELECT 1 AS known FROM catalog_pages WHERE job_id = $1 AND page = $2")
                .bind(job_id)
                .bind(i64::from(page.page))
                .fetch_optional(self.pool())
                .await?;
            return match known {
                Some(_) => Ok(CatalogAck { job_id: job_id.to_owned(), page: page.page, duplicate: true }),
                None => Err(StoreError::AlreadyCompleted),
            };
        }
        let entries = serde_json::to_string(&page.entries)?;
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO catalog_pages (job_id, page, entries, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, page) DO NOTHING",
        )
        .bind(job_id)
        .bind(i64::from(page.page))
        .bind(&entries)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        let duplicate = inserted.rows_affected() == 0;
        if duplicate {
            tx.rollback().await?;
        } else {
            let event = AuditEvent::now(format!("agent:{agent}"), "job.catalog-page", lease.object.clone())
                .outcome("Succeeded", format!("page {} with {} entries", page.page, page.entries.len()));
            self.append_audit(&mut tx, &event).await?;
            tx.commit().await?;
        }
        Ok(CatalogAck { job_id: job_id.to_owned(), page: page.page, duplicate })
    }

    /// Every page received for a discovery job, in page order.
    pub async fn catalog_pages(&self, job_id: &str) -> Result<Vec<(u32, Vec<CatalogEntry>)>, StoreError> {
        let rows = sqlx::query("SELECT page, entries FROM catalog_pages WHERE job_id = $1 ORDER BY page")
            .bind(job_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let page: i64 = row.try_get("page")?;
                let entries: String = row.try_get("entries")?;
                Ok((u32::try_from(page).unwrap_or(u32::MAX), serde_json::from_str(&entries)?))
            })
            .collect()
    }
}
