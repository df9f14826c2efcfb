//! `/api/update`: system updates from the page (admin only; `crate::update`).
//!
//! - `GET /api/update`: the state document: running slot and version, the
//!   other slot, the upload or install under way, the countdown to the
//!   reboot, a probation under way, the last update's result.
//! - `POST /api/update/bundle`: the bundle itself as the body
//!   (`Content-Type: application/octet-stream`, `Content-Length` required,
//!   the session's `X-CSRF-Token`). The size is checked against
//!   `update.max_bundle` and the free space before a byte is written; the
//!   body goes to the data partition one chunk at a time; the answer (202)
//!   comes once it is stored and handed to RAUC. Progress follows on the
//!   event stream (`update` events) and in `GET /api/update`.
//! - `POST /api/update/reboot` `{}`: reboot into the installed update now.
//! - `POST /api/update/cancel-reboot` `{}`: stop the countdown to it.
//!
//! The upload is the one body not bounded by `web.max_body`: it is never
//! held, so its size is bounded by the disk instead. `web.body_timeout`
//! bounds each wait for the next chunk, not the whole upload.

use super::super::WebContext;
use super::{check_post_as, error, header_str, json, read_body, rejected, set, Resp};
use crate::update::{upload::Upload, UpdateError, Updater};
use hyper::body::{Body, Incoming};
use hyper::header;
use hyper::{Method, Request, StatusCode};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Whether `path` is one of these routes.
pub(super) fn owns(path: &str) -> bool {
    path == "/api/update" || path.starts_with("/api/update/")
}

/// Answers a request for one of these routes (the access gate let a `GET`
/// through only with the admin session; every `POST` is checked here).
pub(super) async fn handle(ctx: &Arc<WebContext>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let post = req.method() == Method::POST;
    let Some(updater) = ctx.updater.clone() else {
        return error(StatusCode::NOT_FOUND, "no such page");
    };
    match (path.as_str(), get, post) {
        ("/api/update", true, _) => json(StatusCode::OK, &updater.view(Instant::now())),
        ("/api/update/bundle", _, true) => {
            if let Some(r) = refused_request(ctx, req.headers(), "application/octet-stream") {
                return r;
            }
            upload(ctx, &updater, req).await
        }
        ("/api/update/reboot" | "/api/update/cancel-reboot", _, true) => {
            if let Some(r) = refused_request(ctx, req.headers(), "application/json") {
                return r;
            }
            // The body is `{}`; read (bounded) so the connection stays usable.
            if let Err(r) = read_body(ctx, req.into_body()).await {
                return rejected(r);
            }
            let done = if path == "/api/update/reboot" {
                updater.reboot_now()
            } else {
                updater.cancel_reboot()
            };
            match done {
                Ok(()) => json(StatusCode::OK, &updater.view(Instant::now())),
                Err(e) => refused(&e),
            }
        }
        (
            "/api/update"
            | "/api/update/bundle"
            | "/api/update/reboot"
            | "/api/update/cancel-reboot",
            _,
            _,
        ) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET on /api/update, POST on the rest",
            );
            set(
                &mut r,
                header::ALLOW,
                if path == "/api/update" {
                    "GET, HEAD"
                } else {
                    "POST"
                },
            );
            r
        }
        _ => error(StatusCode::NOT_FOUND, "no such page"),
    }
}

/// The answer refusing a request without the session, its CSRF token or
/// the content type an update request must carry, or from another origin;
/// `None` when it may go on.
fn refused_request(
    ctx: &WebContext,
    headers: &hyper::HeaderMap,
    content_type: &str,
) -> Option<Resp> {
    if let Err(r) = check_post_as(headers, content_type) {
        return Some(rejected(r));
    }
    let csrf = header_str(headers, "x-csrf-token");
    let token = crate::web::auth::cookie_token(header_str(headers, "cookie")).unwrap_or("");
    (!ctx.auth.authorize(token, csrf, Instant::now())).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "not logged in, or missing X-CSRF-Token",
        )
    })
}

/// The status for each way an update is refused.
fn refused(e: &UpdateError) -> Resp {
    let status = match e {
        UpdateError::Busy(_) => StatusCode::CONFLICT,
        UpdateError::LengthRequired => StatusCode::LENGTH_REQUIRED,
        UpdateError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        UpdateError::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
        UpdateError::Truncated { .. } | UpdateError::Overlong { .. } | UpdateError::Body(_) => {
            StatusCode::BAD_REQUEST
        }
        UpdateError::Unavailable(_) | UpdateError::Disk(_) => StatusCode::SERVICE_UNAVAILABLE,
        UpdateError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        UpdateError::Io { .. } | UpdateError::Spawn { .. } | UpdateError::Answer(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, &e.to_string())
}

async fn upload(ctx: &Arc<WebContext>, updater: &Arc<Updater>, req: Request<Incoming>) -> Resp {
    // Only a declared length is taken: a chunked body could be any size.
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // The install shares the budget's reserve with the camera test: one
    // of them at a time, held until RAUC's client has exited.
    let Ok(reserve) = ctx.camera_test.clone().try_acquire_owned() else {
        return refused(&UpdateError::Busy(
            "a camera test is running; try again when it is done",
        ));
    };
    let free = crate::web::api::disk_usage(&ctx.data_dir).map_or(0, |d| d.free_bytes);
    let len = match updater.begin(len, free) {
        Ok(len) => len,
        Err(e) => return refused(&e),
    };
    let result = receive(ctx, updater, req.into_body(), len).await;
    match result {
        Ok(bundle) => {
            let streaming = ctx
                .registry
                .cameras
                .iter()
                .filter(|c| c.status().state == crate::metrics::CameraState::Streaming)
                .map(|c| c.name.clone())
                .collect();
            let u = updater.clone();
            tokio::spawn(async move {
                u.install(bundle, streaming).await;
                drop(reserve);
            });
            let mut r = json(StatusCode::ACCEPTED, &updater.view(Instant::now()));
            set(&mut r, header::LOCATION, "/api/update");
            r
        }
        Err(e) => {
            log::warn!("update: upload refused: {e}");
            updater.failed(&e);
            refused(&e)
        }
    }
}

/// Writes the body to the data partition a chunk at a time.
async fn receive(
    ctx: &Arc<WebContext>,
    updater: &Updater,
    mut body: Incoming,
    len: u64,
) -> Result<std::path::PathBuf, UpdateError> {
    let mut file = Upload::create(updater.disk().clone(), updater.dir(), len).await?;
    loop {
        let next = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout(ctx.config.body_timeout, next).await {
            Err(_) => {
                return Err(UpdateError::Body(format!(
                    "no data for {} s (web.body_timeout)",
                    ctx.config.body_timeout.as_secs()
                )))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(UpdateError::Body(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            file.write(data).await?;
            updater.received(file.received());
        }
    }
    file.finish().await
}
