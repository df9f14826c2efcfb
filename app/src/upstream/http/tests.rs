//! Tests of the HTTP client ([`super::HttpSink`]) against a scripted
//! in-process server on port 0: statuses mapped to unavailable or rejected,
//! the kept-alive connection reused and re-made, timeouts, the response-body
//! cap, clip streaming, and the set-up refusals by kind. Kept apart so the
//! client reads on its own.

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
    let disk = crate::disk::Disk::start("test-disk", 4).unwrap();
    let reader = |len: u64| {
        let file = std::fs::File::open(&path).unwrap();
        crate::disk::ChunkReader::new(disk.clone(), file, len)
    };
    sink.post_clip(reader(clip.len() as u64), 42, "gate")
        .await
        .unwrap();
    // A file shorter than announced aborts the request, never sends it short.
    let short = sink
        .post_clip(reader(clip.len() as u64 + 10), 43, "gate")
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
        matches!(&e, UpstreamError::RefusedScheme { scheme, .. } if scheme == "https"),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("https://example.com/in") && e.contains("not supported"),
        "{e}"
    );
    let e = HttpSink::new("ftp://example.com/", None, t).err().unwrap();
    assert!(
        matches!(&e, UpstreamError::RefusedScheme { scheme, .. } if scheme == "ftp"),
        "{e:?}"
    );
    assert!(e.to_string().contains("unsupported scheme"), "{e}");
    let e = HttpSink::new("not a url", None, t).err().unwrap();
    assert!(matches!(e, UpstreamError::BadUrl { .. }), "{e:?}");
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    assert!(e.to_string().contains("not a url"), "{e}");
    let e = HttpSink::new("http://u:p@example.com/", None, t)
        .err()
        .unwrap();
    assert!(matches!(e, UpstreamError::CredentialsInUrl { .. }), "{e:?}");
    assert!(e.to_string().contains("credentials"), "{e}");
    let bad_name = Some(("Bad Header".to_string(), "x".to_string()));
    let e = HttpSink::new("http://h/", bad_name, t).err().unwrap();
    assert!(matches!(e, UpstreamError::BadHeaderName { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("\"Bad Header\"") && e.contains("name"), "{e}");
    let bad_value = Some(("X-Token".to_string(), "a\r\nInjected: 1".to_string()));
    let e = HttpSink::new("http://h/", bad_value, t).err().unwrap();
    assert!(matches!(e, UpstreamError::BadHeaderValue { .. }), "{e:?}");
    assert!(!format!("{e:?}").contains("Injected"), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("X-Token") && !e.contains("Injected"), "{e}");
    let reserved = Some(("Content-Length".to_string(), "1".to_string()));
    assert!(matches!(
        HttpSink::new("http://h/", reserved, t),
        Err(UpstreamError::ReservedHeader { .. })
    ));
    assert!(matches!(
        HttpSink::new("http://h/", None, Duration::ZERO),
        Err(UpstreamError::ZeroTimeout { .. })
    ));

    let s = HttpSink::new("http://example.com/a/b?token=1", None, t).unwrap();
    assert_eq!(s.describe(), "http://example.com:80/a/b");
    assert_eq!(s.host_header, "example.com");
    let s = HttpSink::new("http://[::1]:8080", None, t).unwrap();
    assert_eq!(s.describe(), "http://[::1]:8080/");
    assert_eq!((s.connect_host.as_str(), s.port), ("::1", 8080));
    assert_eq!(s.host_header, "[::1]:8080");
}
