//! Request routing and the handlers.
//!
//! This is the server's [`Handler`] for [`WebContext`]: the server hands
//! each request here and knows nothing else of the routes (the import runs
//! one way, from here to `server`).
//!
//! Handlers answer from memory in microseconds, or hand the slow part to a
//! thread so that it never holds an IO worker: password checks hash on the
//! runtime's one blocking thread; store reads and file reads run on the
//! disk thread (`crate::disk`; a full queue is 503). Documents that grow
//! with the data (`/metrics`, `/api/status`, `/api/cameras`,
//! `/api/history`, pages of `/api/events`) are written into one of the
//! fixed response buffers (`bodies`; none free within a short wait is 503),
//! files are streamed in chunks (`files`), and the rest (errors, the
//! session, health) are a few hundred bytes by construction. Every request
//! is bounded: headers by hyper
//! (size and `header_timeout`), bodies by `max_body` and `body_timeout`
//! here. Bad requests get a 4xx with a JSON `{"error": ...}` saying what was
//! wrong; nothing here panics on input.
//!
//! State-changing requests (`POST`) are CSRF-safe three ways: they must be
//! `application/json` (which a cross-site form cannot send without a CORS
//! preflight we never grant), an `Origin` header, when present, must match
//! the `Host`, and once logged in they must carry the session's CSRF token in
//! `X-CSRF-Token`. The session cookie is `HttpOnly; SameSite=Strict`.

use super::access::{self, Denied};
use super::api;
use super::auth::{self, AuthError, SessionInfo};
use super::files::FileBody;
use super::host;
use super::prom;
use super::server::{ConnState, Handler, WebStats};
use super::sse::SseStream;
use super::WebContext;
use crate::config::WebConfig;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

mod camera_test;
mod data;
mod settings;
mod update;

use data::{buffer, built, events_page, events_query, stored_file};
#[cfg(test)]
use data::{stored_file_path, QueryError};

/// The status page: one file, no build step.
const STATUS_PAGE: &str = include_str!("status.html");
/// Default `/api/events` page size.
const DEFAULT_PAGE: usize = 100;
const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A response body: a complete buffer or an event stream.
pub enum ResponseBody {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// A `/events` stream.
    Sse(SseStream),
    /// A stored file, read a chunk at a time.
    File(FileBody),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Sse(s) => Pin::new(s).poll_frame(cx),
            ResponseBody::File(f) => f.poll_frame(cx).map(|f| f.map(Ok)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(d) => d.is_none(),
            ResponseBody::Sse(_) => false,
            ResponseBody::File(f) => f.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Sse(_) => SizeHint::default(),
            ResponseBody::File(f) => SizeHint::with_exact(f.remaining()),
        }
    }
}

type Resp = Response<ResponseBody>;
/// A refused request: its status and the message for the client.
type Reject = (StatusCode, String);

fn rejected((status, message): Reject) -> Resp {
    error(status, &message)
}

/// The server's view of the web interface: its `[web]` limits, its
/// counters, and [`route`] for every request.
impl Handler for WebContext {
    type Body = ResponseBody;

    fn limits(&self) -> &WebConfig {
        &self.config
    }

    fn stats(&self) -> &WebStats {
        &self.stats
    }

    fn handle<'a>(
        self: &'a Arc<Self>,
        conn: &'a Arc<ConnState>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Resp> + Send + 'a {
        route(self, conn, req)
    }
}

async fn route(ctx: &Arc<WebContext>, conn: &Arc<ConnState>, req: Request<Incoming>) -> Resp {
    if let Err(e) = host::check(req.headers(), &ctx.config.hostnames) {
        return error(StatusCode::MISDIRECTED_REQUEST, &e.to_string());
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let now = Instant::now();
    let session = session_of(ctx, req.headers(), now);
    if let Err(why) = access::check(
        &ctx.config,
        &method,
        &path,
        req.headers(),
        session.is_some(),
    ) {
        return denied(why);
    }
    match path.as_str() {
        "/" | "/index.html" if get => page(),
        "/api/health" if get => {
            // 503 from a process that is stopping to apply a save: whoever
            // waits for the restart (the page, the board test) waits on.
            let health = api::health(ctx);
            let status = if health.restarting {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            json(status, &health)
        }
        "/events" if get => events_stream(ctx, conn, session.as_ref()),
        "/metrics" if get => {
            let mut out = match buffer(ctx).await {
                Ok(out) => out,
                Err(busy) => return busy,
            };
            prom::render_into(ctx, &mut out);
            built(out, prom::CONTENT_TYPE)
        }
        "/api/status" | "/api/cameras" | "/api/events" | "/api/history" if get => {
            if path == "/api/events" {
                return match events_query(req.uri().query().unwrap_or("")) {
                    Ok((after, limit)) => events_page(ctx, after, limit).await,
                    Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                };
            }
            let mut out = match buffer(ctx).await {
                Ok(out) => out,
                Err(busy) => return busy,
            };
            // A failed write is the buffer's overflow, answered by `built`.
            let _ = match path.as_str() {
                "/api/status" => serde_json::to_writer(&mut out, &api::status(ctx)),
                "/api/cameras" => serde_json::to_writer(
                    &mut out,
                    &(0..ctx.registry.cameras.len())
                        .map(|i| api::camera(ctx, i, true))
                        .collect::<Vec<_>>(),
                ),
                _ => serde_json::to_writer(&mut out, &ctx.history.to_json()),
            };
            built(out, "application/json")
        }
        p if p.starts_with("/api/events/") => {
            if !get {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                set(&mut r, header::ALLOW, "GET, HEAD");
                return r;
            }
            let range = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            let range = range.map(str::to_owned);
            stored_file(ctx, p, range).await
        }
        p if settings::owns(p) => settings::handle(ctx, conn.peer.ip(), req).await,
        p if update::owns(p) => update::handle(ctx, req).await,
        "/api/session" if get => json(StatusCode::OK, &session_json(ctx, session.as_ref())),
        "/api/setup" | "/api/login" | "/api/logout" | "/api/password" if post => {
            if let Err(r) = check_post(req.headers()) {
                return rejected(r);
            }
            let peer = conn.peer.ip();
            let csrf = header_str(req.headers(), "x-csrf-token").to_owned();
            let token = header_str(req.headers(), "cookie");
            let token = auth::cookie_token(token).unwrap_or("").to_owned();
            let body = match read_body(ctx, req.into_body()).await {
                Ok(b) => b,
                Err(r) => return rejected(r),
            };
            match path.as_str() {
                "/api/setup" => setup_or_login(ctx, peer, &body, true).await,
                "/api/login" => setup_or_login(ctx, peer, &body, false).await,
                "/api/logout" => {
                    if !ctx.auth.authorize(&token, &csrf, now) {
                        return error(
                            StatusCode::FORBIDDEN,
                            "not logged in, or missing X-CSRF-Token",
                        );
                    }
                    ctx.auth.logout(&token);
                    let mut r = empty(StatusCode::NO_CONTENT);
                    set_cookie(&mut r, &auth::clear_cookie());
                    r
                }
                _ => change_password(ctx, peer, token, csrf, &body).await,
            }
        }
        "/" | "/index.html" | "/events" | "/metrics" | "/api/status" | "/api/cameras"
        | "/api/events" | "/api/history" | "/api/session" | "/api/health" => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            set(&mut r, header::ALLOW, "GET, HEAD");
            r
        }
        "/api/setup" | "/api/login" | "/api/logout" | "/api/password" => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            set(&mut r, header::ALLOW, "POST");
            r
        }
        _ => error(StatusCode::NOT_FOUND, "no such page"),
    }
}

fn page() -> Resp {
    let mut r = full(StatusCode::OK, STATUS_PAGE.as_bytes());
    set(&mut r, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(&mut r, header::CONTENT_SECURITY_POLICY, CSP);
    set(&mut r, header::X_FRAME_OPTIONS, "DENY");
    set(&mut r, header::REFERRER_POLICY, "no-referrer");
    r
}

fn events_stream(ctx: &Arc<WebContext>, conn: &Arc<ConnState>, s: Option<&SessionInfo>) -> Resp {
    let Some(stream) = ctx.hub.subscribe(s.map(|s| s.id)) else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many event streams; retry later",
        );
        set(&mut r, header::RETRY_AFTER, "5");
        return r;
    };
    conn.streaming.store(true, Ordering::Relaxed);
    let mut r = Response::new(ResponseBody::Sse(stream));
    set(&mut r, header::CONTENT_TYPE, "text/event-stream");
    set(&mut r, header::CACHE_CONTROL, "no-store");
    // A stream ended by its session's end takes its connection with it.
    set(&mut r, header::CONNECTION, "close");
    r
}

#[derive(Serialize)]
struct SessionJson<'a> {
    admin_set: bool,
    logged_in: bool,
    csrf: Option<&'a str>,
}

fn session_json<'a>(ctx: &WebContext, s: Option<&'a SessionInfo>) -> SessionJson<'a> {
    SessionJson {
        admin_set: ctx.auth.admin_set(),
        logged_in: s.is_some(),
        csrf: s.map(|s| s.csrf.as_str()),
    }
}

fn session_of(ctx: &WebContext, headers: &HeaderMap, now: Instant) -> Option<SessionInfo> {
    let token = auth::cookie_token(header_str(headers, "cookie"))?;
    ctx.auth.session(token, now)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
    /// The one-time setup code (setup only; login ignores it).
    #[serde(default)]
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    current: String,
    new: String,
}

async fn setup_or_login(
    ctx: &Arc<WebContext>,
    peer: std::net::IpAddr,
    body: &[u8],
    setup: bool,
) -> Resp {
    let b: PasswordBody = match parse_json(body) {
        Ok(b) => b,
        Err(r) => return rejected(r),
    };
    let permit = match ctx.auth.admit(peer, &[&b.password], Instant::now()) {
        Ok(p) => p,
        Err(e) => return auth_error(e),
    };
    let auth_ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let now = Instant::now();
        if setup {
            auth_ctx.auth.setup(peer, &b.code, &b.password, now)
        } else {
            auth_ctx.auth.login(peer, &b.password, now)
        }
    })
    .await;
    match result {
        Ok(Ok(info)) => {
            let mut r = json(StatusCode::OK, &session_json(ctx, Some(&info)));
            set_cookie(&mut r, &auth::session_cookie(&info, &ctx.auth_config));
            r
        }
        Ok(Err(e)) => auth_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "password check failed"),
    }
}

async fn change_password(
    ctx: &Arc<WebContext>,
    peer: std::net::IpAddr,
    token: String,
    csrf: String,
    body: &[u8],
) -> Resp {
    if !ctx.auth.authorize(&token, &csrf, Instant::now()) {
        return error(
            StatusCode::FORBIDDEN,
            "not logged in, or missing X-CSRF-Token",
        );
    }
    let b: ChangeBody = match parse_json(body) {
        Ok(b) => b,
        Err(r) => return rejected(r),
    };
    let permit = match ctx.auth.admit(peer, &[&b.current, &b.new], Instant::now()) {
        Ok(p) => p,
        Err(e) => return auth_error(e),
    };
    let auth_ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth_ctx
            .auth
            .change_password(peer, &token, &b.current, &b.new, Instant::now())
    })
    .await;
    match result {
        Ok(Ok(())) => empty(StatusCode::NO_CONTENT),
        Ok(Err(e)) => auth_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "password change failed"),
    }
}

fn auth_error(e: AuthError) -> Resp {
    let msg = e.to_string();
    match e {
        AuthError::AlreadySet | AuthError::NotSet => error(StatusCode::CONFLICT, &msg),
        AuthError::WrongPassword => error(StatusCode::UNAUTHORIZED, &msg),
        AuthError::SetupCode { .. } => error(StatusCode::FORBIDDEN, &msg),
        AuthError::RateLimited { retry_after } | AuthError::Busy { retry_after } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, &msg);
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            set(&mut r, header::RETRY_AFTER, &secs.max(1).to_string());
            r
        }
        AuthError::WeakPassword(_) | AuthError::TooLong => error(StatusCode::BAD_REQUEST, &msg),
        AuthError::Storage(_) => {
            log::error!("admin password: {msg}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &msg)
        }
    }
}

/// CSRF and content checks shared by every POST.
fn check_post(headers: &HeaderMap) -> Result<(), Reject> {
    check_post_as(headers, "application/json")
}

/// [`check_post`] for a body of `content_type` (the update's bundle is
/// `application/octet-stream`, which a cross-site form cannot send either).
fn check_post_as(headers: &HeaderMap, content_type: &str) -> Result<(), Reject> {
    let ct = header_str(headers, "content-type");
    if !ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(content_type))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send Content-Type: {content_type}"),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = header_str(headers, "host");
        let origin = origin.to_str().unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
        if !same {
            return Err((StatusCode::FORBIDDEN, "cross-origin request refused".into()));
        }
    }
    Ok(())
}

/// Reads a request body within `max_body` bytes and `body_timeout`.
async fn read_body(ctx: &WebContext, mut body: Incoming) -> Result<Vec<u8>, Reject> {
    let max = ctx.config.max_body;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes"),
        )
    };
    if body.size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity((body.size_hint().lower() as usize).min(max));
    let read = async {
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let frame = frame.map_err(|e| (StatusCode::BAD_REQUEST, format!("bad body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(ctx.config.body_timeout, read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(r)) => Err(r),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time".into(),
        )),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reject> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

/// A request the access gate refused: 401, saying what to send.
fn denied(why: Denied) -> Resp {
    let mut r = error(StatusCode::UNAUTHORIZED, &why.to_string());
    if why == Denied::Token {
        set(&mut r, header::WWW_AUTHENTICATE, "Bearer");
    }
    r
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(ResponseBody::Full(Some(body.into())));
    *r.status_mut() = status;
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(ResponseBody::Full(None));
    *r.status_mut() = status;
    r
}

fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => {
            let mut r = full(status, v);
            set(&mut r, header::CONTENT_TYPE, "application/json");
            set(&mut r, header::CACHE_CONTROL, "no-store");
            r
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Resp {
    #[derive(Serialize)]
    struct E<'a> {
        error: &'a str,
    }
    let body = serde_json::to_vec(&E { error: message }).unwrap_or_default();
    let mut r = full(status, body);
    set(&mut r, header::CONTENT_TYPE, "application/json");
    set(&mut r, header::CACHE_CONTROL, "no-store");
    r
}

fn set(r: &mut Resp, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn set_cookie(r: &mut Resp, value: &str) {
    set(r, header::SET_COOKIE, value);
}

#[cfg(test)]
mod tests;
