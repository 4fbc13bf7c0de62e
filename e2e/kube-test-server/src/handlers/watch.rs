//! watch: newline-delimited JSON events. Resumes from a resourceVersion without gap or
//! duplicate (history and live channel are taken under one lock), answers an expired one
//! with an in-stream `410 Expired` ERROR event like the real server, sends BOOKMARKs when
//! asked, supports `sendInitialEvents` (streaming lists) and `timeoutSeconds`.

use super::read::Filter;
use super::{Shape, for_version, partial, shape};
use crate::server::{App, Ctx, ResourceReq};
use crate::status::{ApiError, ApiResult};
use crate::store::{Event, EventType};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

struct Watch {
    rr: ResourceReq,
    filter: Filter,
    bookmarks: bool,
    /// kubectl `get -w` asks for Table events (one row each, column definitions only first),
    /// metadata watchers for PartialObjectMetadata.
    shape: Shape,
    sent_columns: bool,
}

impl Watch {
    fn relevant(&self, ev: &Event) -> bool {
        ev.key.group == self.rr.rt.store_group()
            && ev.key.resource == self.rr.rt.plural
            && (!self.rr.rt.namespaced || self.rr.namespace.is_empty() || ev.key.namespace == self.rr.namespace)
    }

    /// Whether `ev` deletes the CRD serving this watch: the real server then ends the watch.
    fn crd_deleted(&self, ev: &Event) -> bool {
        self.rr.rt.is_custom()
            && ev.kind == EventType::Deleted
            && ev.key.group == "apiextensions.k8s.io"
            && ev.key.resource == "customresourcedefinitions"
            && ev.key.name == format!("{}.{}", self.rr.rt.plural, self.rr.rt.group)
    }

    /// The event to send for `ev`, with selector transitions turned into ADDED/DELETED.
    fn encode(&mut self, kind: &str, obj: Value) -> Bytes {
        let obj = for_version(obj, &self.rr);
        let include = match &self.shape {
            Shape::Full => return line(kind, obj),
            Shape::Metadata => return line(kind, partial(&obj)),
            Shape::Table(include) => include,
        };
        let rv = crate::meta::rv(&obj).to_string();
        let mut t = crate::table::convert(&self.rr, &[obj], include.as_deref(), &rv, None);
        if self.sent_columns {
            t["columnDefinitions"] = Value::Array(Vec::new());
        }
        self.sent_columns = true;
        line(kind, t)
    }

    fn translate(&mut self, ev: &Event) -> Option<Bytes> {
        if !self.relevant(ev) {
            return None;
        }
        let now = self.filter.matches(&for_version(ev.object.clone(), &self.rr));
        let kind = match ev.kind {
            EventType::Added | EventType::Deleted if now => ev.kind.as_str(),
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.filter.matches(&for_version(o.clone(), &self.rr)));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(self.encode(kind, ev.object.clone()))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": self.rr.rt.kind, "apiVersion": self.rr.rt.api_version(&self.rr.version), "metadata": meta}),
        )
    }
}

pub fn watch(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let mut w = Watch {
        rr: rr.clone(),
        filter: Filter::from_ctx(ctx, rr)?,
        bookmarks: ctx.q("allowWatchBookmarks") == Some("true"),
        shape: shape(ctx),
        sent_columns: false,
    };
    let send_initial = ctx.q("sendInitialEvents") == Some("true");
    let rv_param = ctx.q("resourceVersion").unwrap_or("").to_string();
    let timeout = ctx.q("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let (mut start_rv, past, live) = {
        let inner = app.lock();
        let synthetic = send_initial || rv_param.is_empty() || rv_param == "0";
        let from = if synthetic {
            inner.store.current_rv()
        } else {
            rv_param
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?
        };
        match inner.store.watch_from(from) {
            None => {
                let err =
                    ApiError::gone(format!("too old resource version: {from} ({})", inner.store.compacted_rv() + 1));
                let _ = tx.send(line("ERROR", err.to_json()));
                (from, Vec::new(), None)
            }
            Some((past, live)) => {
                if synthetic {
                    let ns = (rr.rt.namespaced && !rr.namespace.is_empty()).then_some(rr.namespace.as_str());
                    for (_, obj) in inner.store.list(rr.rt.store_group(), &rr.rt.plural, ns) {
                        if w.filter.matches(&for_version(obj.clone(), rr)) {
                            let _ = tx.send(w.encode("ADDED", obj.clone()));
                        }
                    }
                    if send_initial && w.bookmarks {
                        let _ = tx.send(w.bookmark(from, true));
                    }
                }
                (from, past, Some(live))
            }
        }
    };
    let interval = app.bookmark_interval;
    tokio::spawn(async move {
        for ev in &past {
            start_rv = start_rv.max(ev.rv);
            if let Some(b) = w.translate(ev)
                && tx.send(b).is_err()
            {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if w.bookmarks => {
                    if tx.send(w.bookmark(start_rv, false)).is_err() { return; }
                }
                ev = live.recv() => match ev {
                    Ok(ev) if ev.rv <= start_rv => {}
                    Ok(ev) => {
                        start_rv = ev.rv;
                        if w.crd_deleted(&ev) {
                            return;
                        }
                        if let Some(b) = w.translate(&ev)
                            && tx.send(b).is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that fell behind is closed; the client resumes from its last RV.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx)) });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
