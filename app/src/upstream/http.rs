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
//! [`CLIP_CHUNK`] bytes at a time ([`ClipBody`]), never read whole: hyper
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

use std::io::Read;
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

use super::DeliveryError;

/// The most response-body bytes read per request; a longer body is left
/// unread and its connection closed.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// hyper's per-connection read buffer limit (the response head must fit).
pub const READ_BUF_MAX: usize = 64 * 1024;

/// How many bytes of a non-2xx response body are quoted in the error.
pub const ERROR_SNIPPET: usize = 200;

/// Bytes of a clip read from its file per step.
pub const CLIP_CHUNK: usize = 64 << 10;

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
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            SinkBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SinkBody::File(f) => Poll::Ready(f.next_frame()),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SinkBody::Full(d) => d.is_none(),
            SinkBody::File(f) => f.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SinkBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            SinkBody::Full(None) => SizeHint::with_exact(0),
            SinkBody::File(f) => SizeHint::with_exact(f.remaining),
        }
    }
}

/// A clip file's first `len` bytes, read [`CLIP_CHUNK`] bytes at a time
/// with plain blocking reads on the I/O thread (a page-cache or eMMC read
/// of 64 KiB takes well under a millisecond; `web::files` does the same).
pub struct ClipBody {
    file: std::fs::File,
    remaining: u64,
    /// Bytes handed to hyper so far: the upload's progress.
    sent: Arc<AtomicU64>,
}

impl ClipBody {
    /// The next chunk; a read error (or a file shorter than announced) is
    /// an error, so hyper aborts the request rather than send it short.
    fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        if self.remaining == 0 {
            return None;
        }
        let n = (self.remaining as usize).min(CLIP_CHUNK);
        let mut buf = vec![0u8; n];
        match self.file.read_exact(&mut buf) {
            Ok(()) => {
                self.remaining -= n as u64;
                self.sent.fetch_add(n as u64, Ordering::Relaxed);
                Some(Ok(Frame::data(Bytes::from(buf))))
            }
            Err(e) => {
                self.remaining = 0;
                Some(Err(e))
            }
        }
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
    /// Checks the URL and the optional extra header; does no I/O.
    ///
    /// `url` must be `http://` (https is not supported in this build);
    /// `header` is one extra request header (name, value), e.g.
    /// `("Authorization", "Bearer x")`; `timeout` bounds connect plus the
    /// whole exchange of one [`post_json`](HttpSink::post_json).
    pub fn new(
        url: &str,
        header: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<HttpSink, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("upstream URL {url:?}: {e}"))?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(format!(
                    "upstream URL {url:?}: https is not supported in this build (no TLS); use an http:// URL"
                ))
            }
            other => {
                return Err(format!(
                    "upstream URL {url:?}: unsupported scheme {other:?}, expected http://"
                ))
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!(
                "upstream URL {url:?}: credentials in the URL are not supported; pass them as the extra header"
            ));
        }
        let (connect_host, host_text) = match parsed.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), d.to_string()),
            Some(url::Host::Ipv4(a)) => (a.to_string(), a.to_string()),
            Some(url::Host::Ipv6(a)) => (a.to_string(), format!("[{a}]")),
            None => return Err(format!("upstream URL {url:?}: no host")),
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let host_header = match parsed.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.clone(),
        };
        let host_header = HeaderValue::from_str(&host_header)
            .map_err(|e| format!("upstream URL {url:?}: host: {e}"))?;
        let mut target = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            target.push('?');
            target.push_str(q);
        }
        let description = format!("http://{host_text}:{port}{}", parsed.path());
        let target: Uri = target
            .parse()
            .map_err(|e| format!("upstream URL {url:?}: path: {e}"))?;
        let header = header.map(|(n, v)| checked_header(&n, &v)).transpose()?;
        if timeout.is_zero() {
            return Err(format!(
                "upstream {description}: timeout must be above zero"
            ));
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

    /// POSTs the first `len` bytes of `file` (a finished clip) with
    /// `Content-Type: video/mp4`, `X-Vigil-Clip: <clip_id>` and
    /// `X-Vigil-Camera: <camera>`, streamed [`CLIP_CHUNK`] bytes at a time.
    ///
    /// Answers are classified as for [`post_json`](HttpSink::post_json).
    /// The upload fails as unavailable when no body bytes moved for a
    /// whole `timeout`, or no answer came within `timeout` after the last
    /// one; a file that cannot be read to `len` aborts the request.
    pub async fn post_clip(
        &mut self,
        file: std::fs::File,
        len: u64,
        clip_id: u64,
        camera: &str,
    ) -> Result<(), DeliveryError> {
        let sent = Arc::new(AtomicU64::new(0));
        let body = SinkBody::File(ClipBody {
            file,
            remaining: len,
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
fn checked_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("upstream header name {name:?} is not a valid HTTP header name"))?;
    if RESERVED_HEADERS.contains(&header_name) {
        return Err(format!(
            "upstream header {name:?} is set by vigil itself and cannot be replaced"
        ));
    }
    let mut header_value = HeaderValue::from_str(value).map_err(|_| {
        format!("upstream header {name:?}: the value must be visible ASCII without line breaks")
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
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// What the test server does with one request.
    #[derive(Clone, Copy, Debug)]
    enum Reply {
        /// Answer with this status and a small body, keeping the connection.
        Status(u16),
        /// Answer 200, then close the connection.
        OkThenClose,
        /// Write these bytes and close.
        Garbage(&'static [u8]),
        /// Never answer.
        Hang,
        /// 200 with a small chunked body.
        Chunked,
        /// 200 with a chunked body that never ends.
        EndlessChunked,
        /// 200 with `Content-Length: 100 MiB`, streaming until closed.
        HugeLength,
    }

    #[derive(Debug)]
    struct Recorded {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    struct Server {
        addr: SocketAddr,
        accepts: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Recorded>>>,
        task: JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        /// Serves request i with `replies[i]`, the last one repeating.
        async fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepts = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let replies = Arc::new(replies);
            let (a, r) = (accepts.clone(), requests.clone());
            let task = tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    a.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_connection(stream, replies.clone(), r.clone()));
                }
            });
            Server {
                addr,
                accepts,
                requests,
                task,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn accepts(&self) -> usize {
            self.accepts.load(Ordering::SeqCst)
        }
    }

    async fn serve_connection(
        mut stream: TcpStream,
        replies: Arc<Vec<Reply>>,
        requests: Arc<Mutex<Vec<Recorded>>>,
    ) {
        while let Some(recorded) = read_request(&mut stream).await {
            let index = {
                let mut all = requests.lock().unwrap();
                all.push(recorded);
                all.len() - 1
            };
            let reply = replies[index.min(replies.len() - 1)];
            let keep = match reply {
                Reply::Status(code) => {
                    let body = format!("status {code}");
                    let head = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(head.as_bytes()).await.is_ok()
                }
                Reply::OkThenClose => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    false
                }
                Reply::Garbage(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    false
                }
                Reply::Hang => std::future::pending().await,
                Reply::Chunked => stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                    )
                    .await
                    .is_ok(),
                Reply::EndlessChunked => {
                    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if stream.write_all(head).await.is_ok() {
                        let mut chunk = b"4000\r\n".to_vec();
                        chunk.extend_from_slice(&[b'x'; 0x4000]);
                        chunk.extend_from_slice(b"\r\n");
                        while stream.write_all(&chunk).await.is_ok() {}
                    }
                    false
                }
                Reply::HugeLength => {
                    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n";
                    if stream.write_all(head).await.is_ok() {
                        let block = [b'y'; 0x4000];
                        while stream.write_all(&block).await.is_ok() {}
                    }
                    false
                }
            };
            if !keep {
                return;
            }
        }
    }

    /// Reads one request (head and Content-Length body); None at EOF.
    async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let method = first.next().unwrap().to_string();
        let target = first.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Recorded {
            method,
            target,
            headers,
            body,
        })
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn sink(url: &str) -> HttpSink {
        HttpSink::new(url, None, TIMEOUT).unwrap()
    }

    #[tokio::test]
    async fn http_posts_json_with_headers_and_reuses_the_connection() {
        let server = Server::start(vec![Reply::Status(200)]).await;
        let header = Some(("Authorization".to_string(), "Bearer s3cret".to_string()));
        let mut sink = HttpSink::new(&server.url("/ingest?site=1"), header, TIMEOUT).unwrap();
        for i in 0..3 {
            let body = Bytes::from(format!("{{\"id\":{i}}}"));
            sink.post_json(body).await.unwrap();
        }
        assert_eq!(server.accepts(), 1, "one connection for three events");
        let requests = server.requests.lock().unwrap();
        assert_eq!(requests.len(), 3);
        for (i, r) in requests.iter().enumerate() {
            let body = format!("{{\"id\":{i}}}");
            assert_eq!(r.method, "POST");
            assert_eq!(r.target, "/ingest?site=1");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
            assert_eq!(r.header("host"), Some(server.addr.to_string().as_str()));
            assert_eq!(
                r.header("content-length"),
                Some(body.len().to_string().as_str())
            );
            assert_eq!(r.body, body.as_bytes());
        }
    }

    #[tokio::test]
    async fn http_statuses_map_to_unavailable_or_rejected() {
        let codes = [500, 503, 408, 429, 400, 401, 404, 301, 204];
        let server = Server::start(codes.iter().map(|&c| Reply::Status(c)).collect()).await;
        let mut sink = sink(&server.url("/e"));
        for code in codes {
            let result = sink.post_json(Bytes::from_static(b"{}")).await;
            match code {
                500 | 503 | 408 | 429 => match result {
                    Err(DeliveryError::Unavailable(text)) => {
                        assert!(text.starts_with(&format!("HTTP {code}")), "{text}")
                    }
                    other => panic!("{code}: {other:?}"),
                },
                204 => assert_eq!(result, Ok(())),
                _ => match result {
                    Err(DeliveryError::Rejected(text)) => {
                        assert!(text.starts_with(&format!("HTTP {code}")), "{text}");
                        assert!(
                            text.contains(&format!("status {code}")),
                            "body quoted: {text}"
                        );
                    }
                    other => panic!("{code}: {other:?}"),
                },
            }
        }
        // Every error dropped its connection; the 204 came on a new one.
        assert_eq!(server.accepts(), codes.len());
    }

    #[tokio::test]
    async fn http_garbage_is_unavailable_and_the_next_post_reconnects() {
        let random: &'static [u8] = &[0x16, 0x03, 0x01, 0xff, 0x00, 0x9c, 0xde, 0xad, 0xbe, 0xef];
        let server = Server::start(vec![
            Reply::Garbage(b"hello\r\n\r\n"),
            Reply::Garbage(random),
            Reply::Garbage(b""),
            Reply::Status(200),
        ])
        .await;
        let mut sink = sink(&server.url("/"));
        for _ in 0..3 {
            match sink.post_json(Bytes::from_static(b"{}")).await {
                Err(DeliveryError::Unavailable(text)) => {
                    assert!(text.contains("request"), "{text}")
                }
                other => panic!("{other:?}"),
            }
        }
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(server.accepts(), 4);
    }

    #[tokio::test]
    async fn http_hanging_upstream_is_unavailable_after_the_timeout() {
        let server = Server::start(vec![Reply::Hang, Reply::Status(200)]).await;
        let timeout = Duration::from_millis(300);
        let mut sink = HttpSink::new(&server.url("/"), None, timeout).unwrap();
        let start = Instant::now();
        match sink.post_json(Bytes::from_static(b"{}")).await {
            Err(DeliveryError::Unavailable(text)) => assert!(text.contains("within"), "{text}"),
            other => panic!("{other:?}"),
        }
        let took = start.elapsed();
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(2),
            "{took:?}"
        );
        // The hanging connection is dropped, not reused.
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(server.accepts(), 2);
    }

    #[tokio::test]
    async fn http_reconnects_when_the_upstream_closed_the_kept_alive_connection() {
        let server = Server::start(vec![
            Reply::OkThenClose,
            Reply::OkThenClose,
            Reply::Status(200),
        ])
        .await;
        let mut sink = sink(&server.url("/"));
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        // Straight away: the close may still be in flight.
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        // Later: the connection task has seen the close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(server.accepts(), 3);
        assert_eq!(
            server.requests.lock().unwrap().len(),
            3,
            "no event sent twice"
        );
    }

    #[tokio::test]
    async fn http_refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut sink = sink(&format!("http://{addr}/x"));
        match sink.post_json(Bytes::from_static(b"{}")).await {
            Err(DeliveryError::Unavailable(text)) => {
                assert!(text.contains(&format!("connect to {}", addr)), "{text}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn http_reads_at_most_64k_of_a_response_body() {
        let server = Server::start(vec![
            Reply::Chunked,
            Reply::Status(200),
            Reply::EndlessChunked,
            Reply::HugeLength,
            Reply::Status(200),
        ])
        .await;
        let mut sink = HttpSink::new(&server.url("/"), None, Duration::from_secs(3)).unwrap();
        // A small chunked body is read whole: the connection is reused.
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(server.accepts(), 1);
        // Endless bodies: Ok (the status was 200) without reading them to
        // the end, which would only end with the timeout.
        let start = Instant::now();
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        // Each partly read body cost its connection.
        assert_eq!(server.accepts(), 3);
    }

    #[tokio::test]
    async fn http_streams_a_clip_file_with_its_headers_on_the_same_connection() {
        let server = Server::start(vec![Reply::Status(200)]).await;
        let path = std::env::temp_dir().join(format!("vigil-clip-{}.mp4", std::process::id()));
        // Several chunks and a partial one.
        let clip: Vec<u8> = (0..3 * CLIP_CHUNK + 1234)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &clip).unwrap();
        let header = Some(("Authorization".to_string(), "Bearer s3cret".to_string()));
        let mut sink = HttpSink::new(&server.url("/in"), header, TIMEOUT).unwrap();
        sink.post_json(Bytes::from_static(b"{}")).await.unwrap();
        let file = std::fs::File::open(&path).unwrap();
        sink.post_clip(file, clip.len() as u64, 42, "gate")
            .await
            .unwrap();
        // A file shorter than announced aborts the request, never sends it short.
        let file = std::fs::File::open(&path).unwrap();
        let short = sink
            .post_clip(file, clip.len() as u64 + 10, 43, "gate")
            .await;
        assert!(
            matches!(short, Err(DeliveryError::Unavailable(_))),
            "{short:?}"
        );
        let _ = std::fs::remove_file(&path);
        let requests = server.requests.lock().unwrap();
        assert_eq!(requests.len(), 2, "the short clip never completed");
        let r = &requests[1];
        assert_eq!(r.target, "/in");
        assert_eq!(r.header("content-type"), Some("video/mp4"));
        assert_eq!(r.header("x-vigil-clip"), Some("42"));
        assert_eq!(r.header("x-vigil-camera"), Some("gate"));
        assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
        let length = clip.len().to_string();
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert!(r.body == clip, "body differs");
        assert_eq!(server.accepts(), 1, "events and clips share the connection");
    }

    #[test]
    fn http_new_checks_the_url_and_header() {
        let t = Duration::from_secs(1);
        let e = HttpSink::new("https://example.com/in", None, t)
            .err()
            .unwrap();
        assert!(
            e.contains("https://example.com/in") && e.contains("not supported"),
            "{e}"
        );
        let e = HttpSink::new("ftp://example.com/", None, t).err().unwrap();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = HttpSink::new("not a url", None, t).err().unwrap();
        assert!(e.contains("not a url"), "{e}");
        let e = HttpSink::new("http://u:p@example.com/", None, t)
            .err()
            .unwrap();
        assert!(e.contains("credentials"), "{e}");
        let bad_name = Some(("Bad Header".to_string(), "x".to_string()));
        let e = HttpSink::new("http://h/", bad_name, t).err().unwrap();
        assert!(e.contains("\"Bad Header\"") && e.contains("name"), "{e}");
        let bad_value = Some(("X-Token".to_string(), "a\r\nInjected: 1".to_string()));
        let e = HttpSink::new("http://h/", bad_value, t).err().unwrap();
        assert!(e.contains("X-Token") && !e.contains("Injected"), "{e}");
        let reserved = Some(("Content-Length".to_string(), "1".to_string()));
        assert!(HttpSink::new("http://h/", reserved, t).is_err());
        assert!(HttpSink::new("http://h/", None, Duration::ZERO).is_err());

        let s = HttpSink::new("http://example.com/a/b?token=1", None, t).unwrap();
        assert_eq!(s.describe(), "http://example.com:80/a/b");
        assert_eq!(s.host_header, "example.com");
        let s = HttpSink::new("http://[::1]:8080", None, t).unwrap();
        assert_eq!(s.describe(), "http://[::1]:8080/");
        assert_eq!((s.connect_host.as_str(), s.port), ("::1", 8080));
        assert_eq!(s.host_header, "[::1]:8080");
    }
}
