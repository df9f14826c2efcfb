//! Request routing and the handlers.
//!
//! Every handler answers from memory in microseconds except the password
//! checks, which hash on the runtime's one blocking thread so that a login
//! never holds an IO worker. Every request is bounded: headers by hyper
//! (size and `header_timeout`), bodies by `max_body` and `body_timeout`
//! here. Bad requests get a 4xx with a JSON `{"error": ...}` saying what was
//! wrong; nothing here panics on input.
//!
//! State-changing requests (`POST`) are CSRF-safe three ways: they must be
//! `application/json` (which a cross-site form cannot send without a CORS
//! preflight we never grant), an `Origin` header, when present, must match
//! the `Host`, and once logged in they must carry the session's CSRF token in
//! `X-CSRF-Token`. The session cookie is `HttpOnly; SameSite=Strict`.

use super::api;
use super::auth::{self, AuthError, SessionInfo};
use super::files::{self, FileBody, OpenError, Part};
use super::prom;
use super::server::{ConnState, InFlight};
use super::sse::SseStream;
use super::WebContext;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

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
            ResponseBody::File(f) => Poll::Ready(f.next_frame().map(Ok)),
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

/// A response body that keeps its request counted as in flight until hyper
/// drops it (written, or abandoned with the connection).
pub struct TrackedBody {
    body: ResponseBody,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers one request; never fails (errors are responses).
pub async fn handle(
    ctx: Arc<WebContext>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<TrackedBody>, Infallible> {
    let in_flight = conn.begin_request();
    let resp = route(&ctx, &conn, req).await;
    let class = (resp.status().as_u16() / 100).clamp(2, 5) as usize - 2;
    ctx.stats.responses[class].inc();
    Ok(resp.map(|body| TrackedBody {
        body,
        _in_flight: in_flight,
    }))
}

async fn route(ctx: &Arc<WebContext>, conn: &Arc<ConnState>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let now = Instant::now();
    let session = session_of(ctx, req.headers(), now);
    let readable = ctx.config.public_status || session.is_some();
    match path.as_str() {
        "/" | "/index.html" if get => page(),
        "/events" if get => {
            if !readable {
                return login_required();
            }
            events_stream(ctx, conn)
        }
        "/metrics" if get => {
            if !readable {
                return login_required();
            }
            let mut r = full(StatusCode::OK, prom::render(ctx).into_bytes());
            set(&mut r, header::CONTENT_TYPE, prom::CONTENT_TYPE);
            r
        }
        "/api/status" | "/api/cameras" | "/api/events" | "/api/history" if get => {
            if !readable {
                return login_required();
            }
            match path.as_str() {
                "/api/status" => json(StatusCode::OK, &api::status(ctx)),
                "/api/cameras" => {
                    let cams: Vec<_> = (0..ctx.registry.cameras.len())
                        .map(|i| api::camera(ctx, i, true))
                        .collect();
                    json(StatusCode::OK, &cams)
                }
                "/api/history" => json(StatusCode::OK, &ctx.history.to_json()),
                _ => match events_query(req.uri().query().unwrap_or("")) {
                    Ok((after, limit)) => match api::events_page_json(ctx, after, limit) {
                        Ok(body) => {
                            let mut r = full(StatusCode::OK, body);
                            set(&mut r, header::CONTENT_TYPE, "application/json");
                            set(&mut r, header::CACHE_CONTROL, "no-store");
                            r
                        }
                        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
                    },
                    Err(msg) => error(StatusCode::BAD_REQUEST, &msg),
                },
            }
        }
        p if p.starts_with("/api/events/") => {
            if !get {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
                set(&mut r, header::ALLOW, "GET, HEAD");
                return r;
            }
            if !readable {
                return login_required();
            }
            let range = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            stored_file(ctx, p, range)
        }
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
        | "/api/events" | "/api/history" | "/api/session" => {
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

fn events_stream(ctx: &Arc<WebContext>, conn: &Arc<ConnState>) -> Resp {
    let Some(stream) = ctx.hub.subscribe() else {
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
    r
}

/// Parses `after=ID&limit=N`; unknown parameters are an error so a typo
/// does not silently return the wrong page.
/// What `/api/events/<id>/<file>` names: the event id and which file.
fn stored_file_path(path: &str) -> Option<(u64, &str)> {
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

/// An event's snapshot or clip, sent from its file in chunks.
fn stored_file(ctx: &WebContext, path: &str, range: Option<&str>) -> Resp {
    let Some((id, which)) = stored_file_path(path) else {
        return error(StatusCode::NOT_FOUND, "no such page");
    };
    let Some(store) = &ctx.store else {
        return error(StatusCode::NOT_FOUND, "no event store");
    };
    let (file, max, content_type, missing) = if which == "snapshot.jpg" {
        (
            store.snapshot_path(id),
            MAX_SNAPSHOT_FILE,
            "image/jpeg",
            "no snapshot for this event (none taken, not written yet, or deleted by retention)",
        )
    } else {
        let clip = match store.get(id) {
            Ok(Some(record)) => record.clip,
            Ok(None) => None,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        };
        let Some(clip) = clip else {
            return error(
                StatusCode::NOT_FOUND,
                "no clip for this event (recording off, or the event is not stored yet)",
            );
        };
        (
            store.clip_path(clip),
            MAX_CLIP_FILE,
            "video/mp4",
            "no clip for this event (not written yet, failed, or deleted by retention)",
        )
    };
    let opened = match files::open(&ctx.files, &file, max, range) {
        Ok(o) => o,
        Err(OpenError::Missing) => return error(StatusCode::NOT_FOUND, missing),
        Err(OpenError::Busy) => {
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
    let cache = if which == "snapshot.jpg" {
        "private, max-age=86400"
    } else {
        "no-store"
    };
    set(&mut r, header::CACHE_CONTROL, cache);
    r
}

fn events_query(query: &str) -> Result<(u64, usize), String> {
    let mut after = 0u64;
    let mut limit = DEFAULT_PAGE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => {
                after = v
                    .parse()
                    .map_err(|_| format!("`after` must be an event id (0 or more), got `{v}`"))?
            }
            "limit" => {
                limit = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!(
                        "`limit` must be a number from 1 to {}, got `{v}`",
                        api::MAX_PAGE
                    )
                })?;
            }
            _ => return Err(format!("unknown parameter `{k}`; use after and limit")),
        }
    }
    Ok((after, limit.min(api::MAX_PAGE)))
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
    let auth_ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let now = Instant::now();
        if setup {
            auth_ctx.auth.setup(peer, &b.password, now)
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
    let auth_ctx = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
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
        AuthError::RateLimited { retry_after } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, &msg);
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            set(&mut r, header::RETRY_AFTER, &secs.max(1).to_string());
            r
        }
        AuthError::WeakPassword(_) => error(StatusCode::BAD_REQUEST, &msg),
        AuthError::Storage(_) => {
            log::error!("admin password: {msg}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &msg)
        }
    }
}

/// CSRF and content checks shared by every POST.
fn check_post(headers: &HeaderMap) -> Result<(), Reject> {
    let ct = header_str(headers, "content-type");
    if !ct
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json".into(),
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

fn login_required() -> Resp {
    error(
        StatusCode::UNAUTHORIZED,
        "log in to read status (web.public_status is off)",
    )
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
mod tests {
    use super::*;

    #[test]
    fn stored_file_paths_take_digits_and_known_names_only() {
        assert_eq!(
            stored_file_path("/api/events/42/snapshot.jpg"),
            Some((42, "snapshot.jpg"))
        );
        assert_eq!(
            stored_file_path("/api/events/7/clip.mp4"),
            Some((7, "clip.mp4"))
        );
        for bad in [
            "/api/events//snapshot.jpg",
            "/api/events/-1/snapshot.jpg",
            "/api/events/+1/clip.mp4",
            "/api/events/1/../snapshot.jpg",
            "/api/events/1/clip.mp4/",
            "/api/events/1/other.bin",
            "/api/events/99999999999999999999999/snapshot.jpg",
            "/api/events/1x/snapshot.jpg",
            "/api/events/1",
        ] {
            assert_eq!(stored_file_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_query_parses_and_caps() {
        assert_eq!(events_query(""), Ok((0, DEFAULT_PAGE)));
        assert_eq!(events_query("after=7&limit=3"), Ok((7, 3)));
        assert_eq!(events_query("limit=1000000"), Ok((0, api::MAX_PAGE)));
        for bad in ["after=-1", "after=x", "limit=0", "limit=", "foo=1", "after"] {
            assert!(events_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn posts_need_json_and_same_origin() {
        let mut h = HeaderMap::new();
        assert!(check_post(&h).is_err(), "no content type");
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert!(check_post(&h).is_err());
        h.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(check_post(&h).is_ok(), "no Origin: not a browser form");
        h.insert("host", HeaderValue::from_static("10.0.0.9:8080"));
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(check_post(&h).is_err());
        h.insert("origin", HeaderValue::from_static("http://10.0.0.9:8080"));
        assert!(check_post(&h).is_ok());
    }
}
