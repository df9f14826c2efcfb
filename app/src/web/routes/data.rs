//! The routes that read the event store and its files: pages of
//! `/api/events`, snapshots and clips, and the response buffers the
//! documents are built in.
//!
//! Store reads, opens and file reads are jobs for the disk thread
//! (`crate::disk`), so a slow card delays these answers and nothing else;
//! a full disk queue, like a lack of response buffers, is 503 with
//! `Retry-After`.

use super::super::api;
use super::super::bodies::Lease;
use super::super::files::{self, OpenError, Opened, Part};
use super::super::pages;
use super::super::WebContext;
use super::{error, full, set, Resp, ResponseBody, DEFAULT_PAGE};
use crate::disk::DiskError;
use hyper::header;
use hyper::{Response, StatusCode};

/// What `/api/events/<id>/<file>` names: the event id and which file.
pub(super) fn stored_file_path(path: &str) -> Option<(u64, &str)> {
    let (id, file) = path.strip_prefix("/api/events/")?.split_once('/')?;
    // Digits only: no sign, no path tricks.
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    matches!(file, "snapshot.jpg" | "clip.mp4").then_some((id.parse().ok()?, file))
}

/// Snapshots are written by vigil and at most the JPEG buffer's size; a
/// larger file is not one of ours and is not served.
const MAX_SNAPSHOT_FILE: u64 = 16 << 20;

/// Clips are bounded by the store quota (at most 1 TiB).
const MAX_CLIP_FILE: u64 = 1 << 40;

/// Why a stored file is not sent (decided on the disk thread).
enum NotSent {
    /// The event has no clip, or is not stored.
    NoClip,
    /// The store could not be read.
    Store(Box<crate::store::StoreError>),
    /// The file could not be opened, or every file slot is taken.
    Open(OpenError),
}

/// An event's snapshot or clip, sent from its file in chunks; the record
/// lookup, the open and every read run on the disk thread.
pub(super) async fn stored_file(ctx: &WebContext, path: &str, range: Option<String>) -> Resp {
    let Some((id, which)) = stored_file_path(path) else {
        return error(StatusCode::NOT_FOUND, "no such page");
    };
    let Some(store) = ctx.store.clone() else {
        return error(StatusCode::NOT_FOUND, "no event store");
    };
    let snapshot = which == "snapshot.jpg";
    let (disk, slots) = (ctx.disk.clone(), ctx.files.clone());
    let job = ctx.disk.try_run(move || -> Result<Opened, NotSent> {
        let (file, max) = if snapshot {
            (store.snapshot_path(id), MAX_SNAPSHOT_FILE)
        } else {
            match store.get(id) {
                Ok(Some(record)) => match record.clip {
                    Some(clip) => (store.clip_path(clip), MAX_CLIP_FILE),
                    None => return Err(NotSent::NoClip),
                },
                Ok(None) => return Err(NotSent::NoClip),
                Err(e) => return Err(NotSent::Store(Box::new(e))),
            }
        };
        files::open(&disk, &slots, &file, max, range.as_deref()).map_err(NotSent::Open)
    });
    let answer = match job {
        Ok(answer) => answer.await,
        Err(e) => Err(e),
    };
    let (content_type, missing) = if snapshot {
        (
            "image/jpeg",
            "no snapshot for this event (none taken, not written yet, or deleted by retention)",
        )
    } else {
        (
            "video/mp4",
            "no clip for this event (not written yet, failed, or deleted by retention)",
        )
    };
    let opened = match answer {
        Err(e) => return disk_refused(e),
        Ok(Ok(opened)) => opened,
        Ok(Err(NotSent::NoClip)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no clip for this event (recording off, or the event is not stored yet)",
            )
        }
        Ok(Err(NotSent::Store(e))) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        Ok(Err(NotSent::Open(OpenError::Missing))) => return error(StatusCode::NOT_FOUND, missing),
        Ok(Err(NotSent::Open(OpenError::Busy))) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many files being sent; retry later",
            );
            set(&mut r, header::RETRY_AFTER, "1");
            return r;
        }
    };
    let size = opened.size;
    let mut r = Response::new(ResponseBody::File(opened.body));
    match opened.part {
        Part::Whole => {}
        Part::Range { start, end } => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                &mut r,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{size}"),
            );
        }
        Part::Unsatisfiable => {
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(&mut r, header::CONTENT_RANGE, &format!("bytes */{size}"));
        }
    }
    set(&mut r, header::CONTENT_TYPE, content_type);
    set(&mut r, header::ACCEPT_RANGES, "bytes");
    // A snapshot never changes while it exists; a clip grows while written.
    let cache = if snapshot {
        "private, max-age=86400"
    } else {
        "no-store"
    };
    set(&mut r, header::CACHE_CONTROL, cache);
    r
}

/// A page of `/api/events`: stored events are read and written on the disk
/// thread, straight into a response buffer.
pub(super) async fn events_page(ctx: &WebContext, after: u64, limit: usize) -> Resp {
    let mut out = match buffer(ctx).await {
        Ok(out) => out,
        Err(busy) => return busy,
    };
    let Some(store) = ctx.store.clone() else {
        pages::write_recent(ctx, after, limit, &mut out);
        return built(out, "application/json");
    };
    let job = ctx.disk.try_run(move || {
        let written = pages::write_stored(&store, after, limit, &mut out);
        (out, written)
    });
    let answer = match job {
        Ok(answer) => answer.await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((out, Ok(()))) => built(out, "application/json"),
        Ok((_, Err(e))) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => disk_refused(e),
    }
}

/// A response buffer, or the 503 to answer when none came free in time.
pub(super) async fn buffer(ctx: &WebContext) -> Result<Lease, Resp> {
    ctx.bodies.take().await.ok_or_else(|| {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "every response buffer is in use; retry later",
        );
        set(&mut r, header::RETRY_AFTER, "1");
        r
    })
}

/// The document written into `out`, as a response; 500 when it did not fit.
pub(super) fn built(out: Lease, content_type: &str) -> Resp {
    built_as(out, StatusCode::OK, content_type)
}

/// [`built`] with another status (a refused settings change is 422 with
/// its document).
pub(super) fn built_as(out: Lease, status: StatusCode, content_type: &str) -> Resp {
    match out.into_bytes() {
        Some(body) => {
            let mut r = full(status, body);
            set(&mut r, header::CONTENT_TYPE, content_type);
            set(&mut r, header::CACHE_CONTROL, "no-store");
            r
        }
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the document is larger than its response buffer",
        ),
    }
}

/// The disk thread could not take or finish the job: 503.
pub(super) fn disk_refused(e: DiskError) -> Resp {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{e}; retry later"),
    );
    set(&mut r, header::RETRY_AFTER, "1");
    r
}

/// Why an `/api/events` query was refused (400); the text tells the client
/// what to send instead.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum QueryError {
    /// `after` is not an event id; holds the value sent.
    After(String),
    /// `limit` is not a number of 1 or more; holds the value sent.
    Limit(String),
    /// A parameter other than `after` and `limit`; holds its name.
    Unknown(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::After(v) => write!(f, "`after` must be an event id (0 or more), got `{v}`"),
            QueryError::Limit(v) => write!(
                f,
                "`limit` must be a number from 1 to {}, got `{v}`",
                api::MAX_PAGE
            ),
            QueryError::Unknown(k) => write!(f, "unknown parameter `{k}`; use after and limit"),
        }
    }
}

impl std::error::Error for QueryError {}

/// Parses `after=ID&limit=N`; unknown parameters are an error so a typo
/// does not silently return the wrong page.
pub(super) fn events_query(query: &str) -> Result<(u64, usize), QueryError> {
    let mut after = 0u64;
    let mut limit = DEFAULT_PAGE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => after = v.parse().map_err(|_| QueryError::After(v.into()))?,
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| QueryError::Limit(v.into()))?;
            }
            _ => return Err(QueryError::Unknown(k.into())),
        }
    }
    Ok((after, limit.min(api::MAX_PAGE)))
}
