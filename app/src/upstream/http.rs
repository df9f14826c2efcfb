//! HTTP delivery: POST one JSON event at a time to an `http://` upstream.
//!
//! The outbox driver delivers events strictly in order, one at a time, so the
//! client needs exactly one connection and never more than one request in
//! flight. It therefore uses hyper's low-level HTTP/1.1 connection
//! (`hyper::client::conn::http1`) instead of a pooled client: one
//! `TcpStream`, one connection task on vigil's tokio runtime (no thread), kept
//! alive between events and dropped on any error so the next call starts from
//! a fresh connection. Dropping it aborts its task, so a hanging upstream can
//! never hold a second socket.
//!
//! Memory is bounded per sink: hyper's read buffer is capped at
//! [`READ_BUF_MAX`] (response head plus body bytes in transit), the response
//! body is read and discarded frame by frame up to [`MAX_RESPONSE_BODY`] (a
//! longer body ends the connection instead of being read), and only the first
//! [`ERROR_SNIPPET`] bytes of it are kept, for the error text of a non-2xx
//! answer. An event's request body is the caller's `Bytes`, sent without a
//! copy; a clip's ([`HttpSink::post_clip`]) is streamed from its file
//! [`CLIP_CHUNK`] bytes at a time on the disk thread ([`ClipBody`]), never
//! read whole: hyper
//! asks for the next chunk only once its write buffer (capped at
//! [`READ_BUF_MAX`] too) has room, so a clip upload holds about two chunks.
//!
//! Every event exchange (connect, request, response, body) is bounded by
//! one `timeout`, so a hanging upstream turns into
//! [`DeliveryError::Unavailable`] instead of stalling the outbox. A clip
//! upload may take longer than that on a slow link: it fails only when no
//! body bytes moved for a whole `timeout` (and the answer must come within
//! `timeout` of the last byte). HTTPS is not built in (no TLS library in
//! the firmware); `new` refuses `https://` URLs rather than sending events in
//! clear text to a port that expects TLS.

use crate::disk::ChunkReader;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{DeliveryError, UpstreamError};

/// The most response-body bytes read per request; a longer body is left
/// unread and its connection closed.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// hyper's per-connection read buffer limit (the response head must fit).
pub const READ_BUF_MAX: usize = 64 * 1024;

/// How many bytes of a non-2xx response body are quoted in the error.
pub const ERROR_SNIPPET: usize = 200;

/// Bytes of a clip read from its file per step.
pub const CLIP_CHUNK: usize = crate::disk::CHUNK;

/// The clip id header of a clip upload.
pub const CLIP_HEADER: &str = "x-vigil-clip";
/// The camera name header of a clip upload.
pub const CAMERA_HEADER: &str = "x-vigil-camera";

/// Headers the sink sets itself; the optional extra header may not replace them.
const RESERVED_HEADERS: [HeaderName; 7] = [
    HOST,
    CONTENT_LENGTH,
    CONTENT_TYPE,
    CONNECTION,
    hyper::header::TRANSFER_ENCODING,
    HeaderName::from_static(CLIP_HEADER),
    HeaderName::from_static(CAMERA_HEADER),
];

/// A request body: an event's JSON, or a clip file streamed in chunks.
pub enum SinkBody {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// A clip file.
    File(ClipBody),
}

impl Body for SinkBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            SinkBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SinkBody::File(f) => f.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SinkBody::Full(d) => d.is_none(),
            SinkBody::File(f) => f.reader.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SinkBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            SinkBody::Full(None) => SizeHint::with_exact(0),
            SinkBody::File(f) => SizeHint::with_exact(f.reader.remaining()),
        }
    }
}

/// A clip file's first `len` bytes, read [`CLIP_CHUNK`] bytes at a time
/// on the disk thread.
pub struct ClipBody {
    reader: ChunkReader,
    /// Bytes handed to hyper so far: the upload's progress.
    sent: Arc<AtomicU64>,
}

impl ClipBody {
    /// The next chunk; a read error (or a file shorter than announced) is
    /// an error, so hyper aborts the request rather than send it short.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let chunk = std::task::ready!(self.reader.poll_chunk(cx));
        Poll::Ready(chunk.map(|c| {
            c.map(|c| {
                self.sent.fetch_add(c.len() as u64, Ordering::Relaxed);
                Frame::data(c)
            })
        }))
    }
}

/// A client that POSTs JSON events to one `http://` URL over one kept-alive
/// connection.
pub struct HttpSink {
    /// Host name or IP address to connect to (IPv6 without brackets).
    connect_host: String,
    port: u16,
    /// The `Host` header: the URL's host, and its port when not the default.
    host_header: HeaderValue,
    /// Origin-form request target: path and query.
    target: Uri,
    header: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// "http://host:port/path", without the query (it may carry a token).
    description: String,
    conn: Option<Conn>,
}

/// One open HTTP/1.1 connection: the request handle and the task driving it.
struct Conn {
    sender: http1::SendRequest<SinkBody>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The task would end by itself once the socket closes; aborting it
        // closes the socket now, even if the upstream never answers.
        self.task.abort();
    }
}

/// How reading a response body ended.
struct BodyEnd {
    /// The whole body was read: the connection can carry the next request.
    complete: bool,
    /// The first `ERROR_SNIPPET` bytes, for error messages.
    snippet: Vec<u8>,
    /// Why reading stopped early, if it did.
    problem: Option<String>,
}

impl HttpSink {
    /// Checks the URL and the optional extra header; does no I/O. A refusal
    /// says which kind of mistake it is ([`UpstreamError`]).
    ///
    /// `url` must be `http://` (https is not supported in this build);
    /// `header` is one extra request header (name, value), e.g.
    /// `("Authorization", "Bearer x")`; `timeout` bounds connect plus the
    /// whole exchange of one [`post_json`](HttpSink::post_json).
    pub fn new(
        url: &str,
        header: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<HttpSink, UpstreamError> {
        let parsed = url::Url::parse(url).map_err(|source| UpstreamError::BadUrl {
            url: url.to_string(),
            source,
        })?;
        if parsed.scheme() != "http" {
            return Err(UpstreamError::RefusedScheme {
                url: url.to_string(),
                scheme: parsed.scheme().to_string(),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UpstreamError::CredentialsInUrl {
                url: url.to_string(),
            });
        }
        let (connect_host, host_text) = match parsed.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), d.to_string()),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(url::Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
            None => {
                return Err(UpstreamError::NoHost {
                    url: url.to_string(),
                })
            }
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let host_header = match parsed.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.clone(),
        };
        let host_header =
            HeaderValue::from_str(&host_header).map_err(|source| UpstreamError::BadHost {
                url: url.to_string(),
                source,
            })?;
        let mut target = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            target.push('?');
            target.push_str(q);
        }
        let description = format!("http://{host_text}:{port}{}", parsed.path());
        let target: Uri = target.parse().map_err(|source| UpstreamError::BadPath {
            url: url.to_string(),
            source,
        })?;
        let header = header.map(|(n, v)| checked_header(&n, &v)).transpose()?;
        if timeout.is_zero() {
            return Err(UpstreamError::ZeroTimeout {
                upstream: description,
            });
        }
        Ok(HttpSink {
            connect_host,
            port,
            host_header,
            target,
            header,
            timeout,
            description,
            conn: None,
        })
    }

    /// POSTs `body` with `Content-Type: application/json` to the URL.
    ///
    /// Ok only on a 2xx status. 5xx, 408, 429, connect errors, resets, a
    /// response that is not HTTP and the timeout elapsing are
    /// [`DeliveryError::Unavailable`]; other statuses (4xx, and 3xx since
    /// redirects are not followed) are [`DeliveryError::Rejected`] with the
    /// status and the start of the response body. Any error closes the
    /// connection; the next call reconnects.
    pub async fn post_json(&mut self, body: Bytes) -> Result<(), DeliveryError> {
        let length = body.len() as u64;
        let mut request = self.request(SinkBody::Full(Some(body)), length);
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let result = match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Unavailable(format!(
                "{}: no complete response within {:?}",
                self.description, self.timeout
            ))),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// POSTs what `reader` reads (a finished clip's bytes) with
    /// `Content-Type: video/mp4`, `X-Vigil-Clip: <clip_id>` and
    /// `X-Vigil-Camera: <camera>`, streamed [`CLIP_CHUNK`] bytes at a time.
    ///
    /// Answers are classified as for [`post_json`](HttpSink::post_json).
    /// The upload fails as unavailable when no body bytes moved for a
    /// whole `timeout`, or no answer came within `timeout` after the last
    /// one; a file that cannot be read to `len` aborts the request.
    pub async fn post_clip(
        &mut self,
        reader: ChunkReader,
        clip_id: u64,
        camera: &str,
    ) -> Result<(), DeliveryError> {
        let sent = Arc::new(AtomicU64::new(0));
        let len = reader.remaining();
        let body = SinkBody::File(ClipBody {
            reader,
            sent: sent.clone(),
        });
        let mut request = self.request(body, len);
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        headers.insert(CLIP_HEADER, HeaderValue::from(clip_id));
        headers.insert(
            CAMERA_HEADER,
            HeaderValue::from_str(camera).unwrap_or(HeaderValue::from_static("")),
        );
        let timeout = self.timeout;
        let description = self.description.clone();
        let result = {
            let exchange = self.exchange(request);
            tokio::pin!(exchange);
            loop {
                let before = sent.load(Ordering::Relaxed);
                match tokio::time::timeout(timeout, exchange.as_mut()).await {
                    Ok(r) => break r,
                    // Still moving: a long upload on a slow link.
                    Err(_) if sent.load(Ordering::Relaxed) != before => {}
                    Err(_) => {
                        break Err(DeliveryError::Unavailable(format!(
                            "{description}: clip {clip_id}: no progress and no response within {timeout:?} ({} of {len} bytes sent)",
                            sent.load(Ordering::Relaxed)
                        )))
                    }
                }
            }
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// For the status page: "http://host:port/path".
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// One request on the kept-alive connection or a new one.
    async fn exchange(&mut self, request: Request<SinkBody>) -> Result<(), DeliveryError> {
        let (mut conn, reused) = self.live_conn().await?;
        let response = match conn.sender.try_send_request(request).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                // hyper gives the request back only if none of it was
                // written: the kept-alive connection closed under us (the
                // upstream's idle timeout). Sending it once more on a new
                // connection cannot duplicate the event.
                Some(request) if reused => {
                    log::debug!(
                        "{}: kept-alive connection closed, reconnecting",
                        self.description
                    );
                    drop(conn);
                    conn = self.connect().await?;
                    conn.sender
                        .send_request(request)
                        .await
                        .map_err(|e| self.unavailable("request", &e))?
                }
                _ => return Err(self.unavailable("request", e.error())),
            },
        };
        let status = response.status();
        let end = read_body(response).await;
        if status.is_success() {
            // The upstream accepted the event; a broken body after a 2xx
            // head only costs the connection.
            if end.complete {
                self.conn = Some(conn);
            } else if let Some(p) = &end.problem {
                log::debug!("{}: closing the connection: {p}", self.description);
            }
            return Ok(());
        }
        // Any error drops the connection (`post_json`), even after a
        // complete answer: the next attempt starts afresh.
        Err(classify(status, &end))
    }

    /// The kept-alive connection if it is still open, else a new one; `true`
    /// when reused.
    async fn live_conn(&mut self) -> Result<(Conn, bool), DeliveryError> {
        if let Some(mut conn) = self.conn.take() {
            if conn.sender.ready().await.is_ok() {
                return Ok((conn, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<Conn, DeliveryError> {
        let stream = TcpStream::connect((self.connect_host.as_str(), self.port))
            .await
            .map_err(|e| {
                DeliveryError::Unavailable(format!(
                    "{}: connect to {}:{}: {e}",
                    self.description, self.connect_host, self.port
                ))
            })?;
        // Events are small single writes; do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(READ_BUF_MAX)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unavailable("handshake", &e))?;
        let description = self.description.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("{description}: connection ended: {}", error_chain(&e));
            }
        });
        Ok(Conn { sender, task })
    }

    /// A POST of `body` (`length` bytes) to the URL, without its
    /// `Content-Type`.
    fn request(&self, body: SinkBody, length: u64) -> Request<SinkBody> {
        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.target.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        if let Some((name, value)) = &self.header {
            headers.insert(name.clone(), value.clone());
        }
        request
    }

    fn unavailable(&self, what: &str, e: &hyper::Error) -> DeliveryError {
        DeliveryError::Unavailable(format!("{}: {what}: {}", self.description, error_chain(e)))
    }
}

/// Validates the extra header; the value is never quoted (it may be a secret).
fn checked_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), UpstreamError> {
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|source| UpstreamError::BadHeaderName {
            name: name.to_string(),
            source,
        })?;
    if RESERVED_HEADERS.contains(&header_name) {
        return Err(UpstreamError::ReservedHeader {
            name: name.to_string(),
        });
    }
    let mut header_value =
        HeaderValue::from_str(value).map_err(|source| UpstreamError::BadHeaderValue {
            name: name.to_string(),
            source,
        })?;
    header_value.set_sensitive(true);
    Ok((header_name, header_value))
}

/// Reads and discards the body, stopping after `MAX_RESPONSE_BODY` bytes.
async fn read_body(response: Response<Incoming>) -> BodyEnd {
    let mut body = response.into_body();
    let mut end = BodyEnd {
        complete: false,
        snippet: Vec::new(),
        problem: None,
    };
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                end.problem = Some(format!("reading the response body: {}", error_chain(&e)));
                return end;
            }
        };
        if let Ok(data) = frame.into_data() {
            let room = ERROR_SNIPPET.saturating_sub(end.snippet.len());
            end.snippet.extend_from_slice(&data[..room.min(data.len())]);
            seen += data.len();
            if seen > MAX_RESPONSE_BODY {
                end.problem = Some(format!(
                    "response body longer than {MAX_RESPONSE_BODY} bytes, not read further"
                ));
                return end;
            }
        }
    }
    end.complete = true;
    end
}

/// The error for a non-2xx status.
fn classify(status: StatusCode, end: &BodyEnd) -> DeliveryError {
    let mut text = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let snippet = String::from_utf8_lossy(&end.snippet);
    let snippet = snippet.trim();
    if !snippet.is_empty() {
        text.push_str(": ");
        text.push_str(snippet);
    }
    let retry = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.as_u16() >= 600;
    if retry {
        DeliveryError::Unavailable(text)
    } else {
        if status.is_redirection() {
            text.push_str(" (redirects are not followed)");
        }
        DeliveryError::Rejected(text)
    }
}

/// An error and its sources, "outer: inner: ...", since hyper's own text is
/// often generic ("error trying to connect").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
