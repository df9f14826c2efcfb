//! An HTTP upstream for vigil's event delivery, over `std::net`: it accepts
//! keep-alive HTTP/1.1 POSTs with a `Content-Length`, decodes each body
//! (`{"event": {...}, "snapshot_jpeg": "<base64>"|null}`) and records what
//! arrived, and it can be switched at any time to misbehave (5xx, garbage,
//! hang, refuse) so tests can watch the outbox wait and drain.
//!
//! Clip uploads (`Content-Type: video/mp4`) arrive at the same URL; their
//! bodies are kept as they came ([`Request::clip`]), not parsed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `200 OK`: the event is delivered.
    Ok,
    /// This status with a short body (e.g. 500).
    Status(u16),
    /// Reads the request, writes `hello garbage\r\n\r\n` and closes.
    Garbage,
    /// Reads the request and never answers, keeping the socket open.
    Hang,
    /// Closes every accepted connection at once, before reading anything.
    Closed,
}

/// What the receiver made of one JPEG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JpegInfo {
    /// Its size in bytes.
    pub len: usize,
    /// FNV-1a 64 of its bytes (to compare with a copy served elsewhere).
    pub hash: u64,
    /// Starts with SOI (FF D8) and ends with EOI (FF D9).
    pub markers_ok: bool,
    /// Width and height from its SOF0/SOF1/SOF2 marker, when found.
    pub size: Option<(u16, u16)>,
}

/// One POST that was read completely.
#[derive(Clone, Debug)]
pub struct Request {
    /// Order of arrival (0-based, over all requests).
    pub seq: usize,
    /// Which accepted connection it came on (0-based).
    pub conn: usize,
    /// The request target.
    pub path: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The mode the receiver answered in.
    pub mode: Mode,
    /// The event record, when the body was the expected JSON.
    pub event: Option<serde_json::Value>,
    /// `event.id`, when present.
    pub id: Option<u64>,
    /// Whether `snapshot_jpeg` was present and not null.
    pub has_snapshot: bool,
    /// The decoded snapshot's facts.
    pub jpeg: Option<JpegInfo>,
    /// The decoded snapshot itself (kept for the first [`KEEP_JPEGS`]
    /// requests only, so a long test does not hold every picture).
    pub jpeg_bytes: Option<Vec<u8>>,
    /// Why the body could not be understood, if it could not.
    pub body_error: Option<String>,
    /// Bytes of the body.
    pub body_len: usize,
    /// FNV-1a 64 of the body.
    pub body_hash: u64,
    /// The body of a clip upload (`Content-Type: video/mp4`), as it came.
    pub clip: Option<Vec<u8>>,
    /// When it was read.
    pub at: Instant,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True for a clip upload (`Content-Type: video/mp4`).
    pub fn is_clip(&self) -> bool {
        self.header("content-type") == Some("video/mp4")
    }

    /// True when the receiver acknowledged it (answered 2xx).
    pub fn accepted(&self) -> bool {
        self.mode == Mode::Ok
    }
}

/// Snapshots kept as bytes for this many requests.
pub const KEEP_JPEGS: usize = 64;
/// Largest request body read; anything larger fails the connection.
const MAX_BODY: usize = 32 << 20;

struct Shared {
    mode: Mutex<Mode>,
    requests: Mutex<Vec<Request>>,
    connections: Mutex<usize>,
    stop: AtomicBool,
}

/// The running receiver; stops accepting when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 on a free port, answering in `mode`.
    pub fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            requests: Mutex::new(Vec::new()),
            connections: Mutex::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("receiver-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn receiver");
        Receiver {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Switches how later requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.lock().unwrap()
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were read so far.
    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Event ids acknowledged (answered 200), in arrival order.
    pub fn accepted_ids(&self) -> Vec<u64> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.accepted())
            .filter_map(|r| r.id)
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.shared.connections.lock().unwrap()
    }

    /// Waits until `pred` holds over the requests; false after `timeout`.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&[Request]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.shared.requests.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        if *shared.mode.lock().unwrap() == Mode::Closed {
            drop(stream);
            continue;
        }
        let conn = {
            let mut n = shared.connections.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name(format!("receiver-conn-{conn}"))
            .spawn(move || serve(stream, conn, s));
    }
}

/// Serves one connection: requests until the peer closes, a reply closes
/// it, or the receiver stops.
fn serve(stream: TcpStream, conn: usize, shared: Arc<Shared>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader, &shared) {
            Some(h) => h,
            None => return,
        };
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or("").to_owned();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if len > MAX_BODY {
            return;
        }
        let mut body = vec![0u8; len];
        if read_exact_patiently(&mut reader, &mut body, &shared).is_err() {
            return;
        }
        // The mode in force when the request was complete decides the answer.
        let mode = *shared.mode.lock().unwrap();
        {
            let mut requests = shared.requests.lock().unwrap();
            let seq = requests.len();
            let is_clip = headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "video/mp4");
            let mut r = parse_body(if is_clip { &[][..] } else { &body[..] }, seq < KEEP_JPEGS);
            r.body_len = body.len();
            r.body_hash = fnv64(&body);
            if is_clip {
                r.body_error = None;
                r.clip = Some(body);
            }
            r.seq = seq;
            r.conn = conn;
            r.path = path;
            r.headers = headers;
            r.mode = mode;
            requests.push(r);
        }
        match mode {
            Mode::Ok => {
                let reply =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
                if writer.write_all(reply).is_err() {
                    return;
                }
            }
            Mode::Status(code) => {
                let body = format!("status {code} from the test receiver");
                let reply = format!(
                    "HTTP/1.1 {code} Test\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Mode::Garbage => {
                let _ = writer.write_all(b"hello garbage\r\n\r\n");
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
            Mode::Closed => return,
            Mode::Hang => {
                // Never answer; hold the socket until the peer gives up.
                let mut sink = [0u8; 4096];
                loop {
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match reader.read(&mut sink) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads a request head (up to the blank line); None on close or stop.
fn read_head(reader: &mut BufReader<TcpStream>, shared: &Shared) -> Option<String> {
    let mut head = String::new();
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) => {
                if !line.ends_with(b"\n") {
                    continue; // timed out inside a line; keep reading it
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if text == "\r\n" || text == "\n" {
                    if head.is_empty() {
                        continue; // stray blank line between requests
                    }
                    return Some(head);
                }
                head.push_str(&text);
                if head.len() > 64 * 1024 {
                    return None;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return None,
        }
    }
}

fn read_exact_patiently(
    reader: &mut BufReader<TcpStream>,
    buf: &mut [u8],
    shared: &Shared,
) -> Result<(), ()> {
    let mut done = 0;
    while done < buf.len() {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(());
        }
        match reader.read(&mut buf[done..]) {
            Ok(0) => return Err(()),
            Ok(n) => done += n,
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

fn parse_body(body: &[u8], keep_jpeg: bool) -> Request {
    let mut r = Request {
        seq: 0,
        conn: 0,
        path: String::new(),
        headers: Vec::new(),
        mode: Mode::Ok,
        event: None,
        id: None,
        has_snapshot: false,
        jpeg: None,
        jpeg_bytes: None,
        body_error: None,
        body_len: body.len(),
        body_hash: fnv64(body),
        clip: None,
        at: Instant::now(),
    };
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            r.body_error = Some(format!("not JSON: {e}"));
            return r;
        }
    };
    let Some(event) = v.get("event").filter(|e| e.is_object()) else {
        r.body_error = Some("no `event` object".into());
        return r;
    };
    r.id = event.get("id").and_then(|i| i.as_u64());
    if r.id.is_none() {
        r.body_error = Some("no numeric `event.id`".into());
    }
    r.event = Some(event.clone());
    match v.get("snapshot_jpeg") {
        Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(b64)) => {
            r.has_snapshot = true;
            match base64_decode(b64) {
                Ok(jpeg) => {
                    r.jpeg = Some(jpeg_info(&jpeg));
                    if keep_jpeg {
                        r.jpeg_bytes = Some(jpeg);
                    }
                }
                Err(e) => r.body_error = Some(format!("snapshot_jpeg: {e}")),
            }
        }
        Some(other) => r.body_error = Some(format!("snapshot_jpeg is {other}")),
        None => r.body_error = Some("no `snapshot_jpeg` key".into()),
    }
    r
}

/// FNV-1a, 64 bits.
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Checks a JPEG's SOI/EOI markers and reads its size from the SOF marker.
pub fn jpeg_info(jpeg: &[u8]) -> JpegInfo {
    let markers_ok =
        jpeg.len() >= 4 && jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]);
    JpegInfo {
        len: jpeg.len(),
        hash: fnv64(jpeg),
        markers_ok,
        size: jpeg_size(jpeg),
    }
}

/// Width and height from the first SOF0/SOF1/SOF2 segment.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        if marker == 0xD9 || marker == 0xDA {
            return None; // end of image or start of scan before any SOF
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if matches!(marker, 0xC0..=0xC2) {
            let seg = jpeg.get(i + 4..i + 2 + len)?;
            if seg.len() < 5 {
                return None;
            }
            let height = u16::from_be_bytes([seg[1], seg[2]]);
            let width = u16::from_be_bytes([seg[3], seg[4]]);
            return Some((width, height));
        }
        i += 2 + len;
    }
    None
}

/// Standard base64 (with padding) to bytes.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(format!("length {} is not a multiple of 4", b.len()));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (n, chunk) in b.chunks(4).enumerate() {
        let last = n + 1 == b.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(format!("misplaced padding in quad {n}"));
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | val(c).ok_or_else(|| format!("bad character {:?}", c as char))?;
        }
        acc <<= 6 * pad as u32;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("/+8=").unwrap(), [0xFF, 0xEF]);
        assert!(base64_decode("Zm9").is_err());
        assert!(base64_decode("Z=9v").is_err());
        assert!(base64_decode("Zm9*").is_err());
    }

    #[test]
    fn jpeg_size_reads_sof0() {
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x01,
            0x10, 0x02, 0x80, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9,
        ];
        assert_eq!(jpeg_size(&jpeg), Some((640, 272)));
        assert!(jpeg_info(&jpeg).markers_ok);
        assert!(!jpeg_info(&jpeg[..10]).markers_ok);
    }
}
