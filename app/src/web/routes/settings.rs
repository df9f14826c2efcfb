//! `/api/settings`: the configuration file from the page (admin only).
//!
//! - `GET /api/settings`: the file with its secrets hidden, its cameras as
//!   the form lists them, its budget, the last changes and, when the start
//!   fell back on the last good file, why.
//! - `GET /api/settings/export`: the same text as a download.
//! - `POST /api/settings/check` `{"toml"}`: what a save would answer,
//!   saving nothing.
//! - `POST /api/settings` `{"toml", "via"}`: the whole file (the editor,
//!   an import).
//! - `POST /api/settings/cameras` `{"cameras", "check_only"}`: the camera list.
//! - `POST /api/settings/section` `{"section", "values", "check_only"}`: the
//!   keys of one section's form (`settings::sections`), e.g.
//!   `{"section": "upstream.mqtt", "values": {"url": "mqtt://10.0.0.2",
//!   "password": "***"}}`; `null` removes a key (the default applies), a
//!   secret sent as `***` stays. `GET /api/settings` lists every form
//!   (`sections`: per section its title and its keys' label, kind, help and
//!   value) so the page renders them from the schema.
//! - `POST /api/settings/factory-reset` `{"password"}`: the factory file,
//!   after the admin password again.
//! - `POST /api/settings/test-upstream` `{"upstream": "http"|"mqtt"}`: a
//!   test event to a running upstream, answered with what it said.
//! - `POST /api/settings/network/confirm` `{"id"?}`: keeps a new static
//!   address (`network`, the router pattern); `GET /api/settings` shows the
//!   network state as `network`.
//! - `POST /api/settings/cameras/test` `{"camera": {...}}`: one camera of
//!   the cameras form opened once (`super::camera_test`).
//!
//! A refused text is 422 with every problem located (key and line) and the
//! budget when it parsed; nothing is written. A save that changed the file
//! answers `"restarting": true` and vigil restarts to apply it. The
//! service reads and writes files, so every call is a disk-thread job; the
//! answers are written into a response buffer like every other document.
//! Request bodies are bounded by `web.max_body` before any of this runs.

use super::super::WebContext;
use super::data::{buffer, built_as, disk_refused};
use super::{
    auth_error, check_post, error, header_str, parse_json, read_body, rejected, set, Resp,
};
use crate::settings::{cameras::CameraForm, Outcome, Service, SettingsError};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

mod network;

/// Whether `path` is one of these routes.
pub(super) fn owns(path: &str) -> bool {
    path == "/api/settings" || path.starts_with("/api/settings/")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    toml: String,
    #[serde(default)]
    via: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CamerasBody {
    cameras: Vec<CameraForm>,
    #[serde(default)]
    check_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionBody {
    section: String,
    values: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    check_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    password: String,
}

/// Answers a request for one of these routes (reads were let through by
/// the access gate only with the admin session).
pub(super) async fn handle(
    ctx: &Arc<WebContext>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let known = matches!(
        path.as_str(),
        "/api/settings"
            | "/api/settings/export"
            | "/api/settings/check"
            | "/api/settings/cameras"
            | "/api/settings/section"
            | "/api/settings/factory-reset"
            | "/api/settings/test-upstream"
            | "/api/settings/network/confirm"
            | "/api/settings/cameras/test"
    );
    if !known {
        return error(StatusCode::NOT_FOUND, "no such page");
    }
    let Some(service) = ctx.settings.clone() else {
        return error(
            StatusCode::CONFLICT,
            "vigil was started with --camera: there is no configuration file to edit (start it with --config FILE)",
        );
    };
    match (path.as_str(), get, post) {
        ("/api/settings", true, _) => {
            let data_dir = ctx.data_dir.clone();
            let out = job(ctx, move || {
                let view = service.view()?;
                Ok(network::with_status(view, &data_dir))
            })
            .await;
            answer(
                ctx,
                out,
                |v, w| serde_json::to_writer(w, &v).map_err(Into::into),
                "application/json",
                StatusCode::OK,
            )
            .await
        }
        ("/api/settings/export", true, _) => {
            let out = job(ctx, move || service.export()).await;
            let mut r = answer(
                ctx,
                out,
                |text, w| w.write_all(text.as_bytes()),
                "application/toml; charset=utf-8",
                StatusCode::OK,
            )
            .await;
            if r.status() == StatusCode::OK {
                set(
                    &mut r,
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"vigil-config.toml\"",
                );
            }
            r
        }
        ("/api/settings/export", false, _) => allow(&["GET", "HEAD"]),
        ("/api/settings", false, true)
        | ("/api/settings/check", _, true)
        | ("/api/settings/cameras", _, true)
        | ("/api/settings/section", _, true)
        | ("/api/settings/factory-reset", _, true)
        | ("/api/settings/test-upstream", _, true)
        | ("/api/settings/network/confirm", _, true)
        | ("/api/settings/cameras/test", _, true) => {
            if let Err(r) = check_post(req.headers()) {
                return rejected(r);
            }
            let csrf = header_str(req.headers(), "x-csrf-token").to_owned();
            let token = header_str(req.headers(), "cookie");
            let token = super::auth::cookie_token(token).unwrap_or("").to_owned();
            if !ctx.auth.authorize(&token, &csrf, Instant::now()) {
                return error(
                    StatusCode::FORBIDDEN,
                    "not logged in, or missing X-CSRF-Token",
                );
            }
            let body = match read_body(ctx, req.into_body()).await {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            change(ctx, service, peer, &path, &body).await
        }
        ("/api/settings", _, _) => allow(&["GET", "HEAD", "POST"]),
        _ => allow(&["POST"]),
    }
}

async fn change(
    ctx: &Arc<WebContext>,
    service: Arc<Service>,
    peer: std::net::IpAddr,
    path: &str,
    body: &[u8],
) -> Resp {
    if path == "/api/settings/test-upstream" {
        return test_upstream(ctx, body).await;
    }
    if path == "/api/settings/network/confirm" {
        return network::confirm(ctx, body).await;
    }
    if path == "/api/settings/cameras/test" {
        return super::camera_test::handle(ctx, service, body).await;
    }
    let result = match path {
        "/api/settings" | "/api/settings/check" => {
            let b: TextBody = match parse_json(body) {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            let via = match b.via.as_deref() {
                None | Some("page") => "page",
                Some("import") => "import",
                Some(other) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("`via` is page or import, not `{other}`"),
                    )
                }
            };
            if path == "/api/settings" {
                job(ctx, move || service.save(&b.toml, via)).await
            } else {
                job(ctx, move || service.check(&b.toml)).await
            }
        }
        "/api/settings/cameras" => {
            let b: CamerasBody = match parse_json(body) {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            if b.check_only {
                job(ctx, move || service.check_cameras(&b.cameras)).await
            } else {
                job(ctx, move || service.save_cameras(&b.cameras)).await
            }
        }
        "/api/settings/section" => {
            let b: SectionBody = match parse_json(body) {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            if b.check_only {
                job(ctx, move || service.check_section(&b.section, &b.values)).await
            } else {
                job(ctx, move || service.save_section(&b.section, &b.values)).await
            }
        }
        _ => {
            let b: ResetBody = match parse_json(body) {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            if let Err(r) = confirm(ctx, peer, b.password).await {
                return r;
            }
            job(ctx, move || service.factory_reset()).await
        }
    };
    let status = match &result {
        Ok(Ok(o)) if !o.ok => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    answer(
        ctx,
        result,
        |o: Outcome, w| serde_json::to_writer(w, &o).map_err(Into::into),
        "application/json",
        status,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    upstream: String,
}

/// One made-up event to a running upstream (`crate::upstream::probe`), on
/// the runtime like the drainers; one at a time, bounded by
/// `upstream.timeout`. 200 with the upstream's answer, 502 with why not.
async fn test_upstream(ctx: &WebContext, body: &[u8]) -> Resp {
    use crate::upstream::probe::{self, ProbeError, Target};
    let b: TestBody = match parse_json(body) {
        Ok(b) => b,
        Err(r) => return rejected(r),
    };
    let target = match b.upstream.as_str() {
        "http" => Target::Http,
        "mqtt" => Target::Mqtt,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`upstream` is http or mqtt, not `{other}`"),
            )
        }
    };
    let Ok(_one) = ctx.upstream_test.try_acquire() else {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "a test event is already on its way",
        );
        set(&mut r, header::RETRY_AFTER, "1");
        return r;
    };
    #[derive(serde::Serialize)]
    struct Answer {
        ok: bool,
        answer: String,
    }
    let (status, answer) =
        match probe::send(&ctx.upstream, target, crate::clock::now_unix_ms()).await {
            Ok(said) => (
                StatusCode::OK,
                Answer {
                    ok: true,
                    answer: said,
                },
            ),
            Err(e @ ProbeError::NotConfigured(_)) => {
                return error(StatusCode::CONFLICT, &e.to_string())
            }
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                Answer {
                    ok: false,
                    answer: e.to_string(),
                },
            ),
        };
    super::json(status, &answer)
}

/// The admin password again, checked on the runtime's blocking thread like
/// a login (it hashes).
async fn confirm(
    ctx: &Arc<WebContext>,
    peer: std::net::IpAddr,
    password: String,
) -> Result<(), Resp> {
    let permit = ctx
        .auth
        .admit(peer, &[&password], Instant::now())
        .map_err(auth_error)?;
    let auth_ctx = ctx.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth_ctx.auth.confirm(peer, &password, Instant::now())
    })
    .await;
    match checked {
        Ok(Ok(())) => Ok(()),
        // 403, not 401: the session is fine, the password is not.
        Ok(Err(crate::web::auth::AuthError::WrongPassword)) => {
            Err(error(StatusCode::FORBIDDEN, "wrong admin password"))
        }
        Ok(Err(e)) => Err(auth_error(e)),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "password check failed",
        )),
    }
}

type Job<T> = Result<Result<T, SettingsError>, crate::disk::DiskError>;

/// Runs `f` on the disk thread (a full queue is an error now, not a wait).
async fn job<T, F>(ctx: &WebContext, f: F) -> Job<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SettingsError> + Send + 'static,
{
    match ctx.disk.try_run(f) {
        Ok(answer) => answer.await,
        Err(e) => Err(e),
    }
}

/// A job's result written into a response buffer with `write`.
async fn answer<T>(
    ctx: &WebContext,
    result: Job<T>,
    write: impl FnOnce(T, &mut super::super::bodies::Lease) -> std::io::Result<()>,
    content_type: &str,
    status: StatusCode,
) -> Resp {
    let value = match result {
        Err(e) => return disk_refused(e),
        Ok(Err(e)) => return settings_error(&e),
        Ok(Ok(v)) => v,
    };
    let mut out = match buffer(ctx).await {
        Ok(out) => out,
        Err(busy) => return busy,
    };
    // A failed write is the buffer's overflow, answered by `built_as`.
    let _ = write(value, &mut out);
    built_as(out, status, content_type)
}

fn settings_error(e: &SettingsError) -> Resp {
    let status = match e {
        SettingsError::NoFactory => StatusCode::CONFLICT,
        SettingsError::TooLarge { .. } | SettingsError::Invalid(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        SettingsError::Io { .. } => {
            log::error!("settings: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, &e.to_string())
}

fn allow(methods: &[&str]) -> Resp {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("use {}", methods.join(" or ")),
    );
    set(&mut r, header::ALLOW, &methods.join(", "));
    r
}
