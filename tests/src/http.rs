//! A minimal HTTP/1.1 client over `std::net`, for talking to vigil's web
//! interface byte by byte: the tests need to send malformed, slow and
//! half-finished requests that a real client library would refuse to send.
//!
//! vigil needs the admin session for nearly everything, so the harness
//! remembers the session cookie per address ([`remember_session`], done by
//! [`crate::login::claim`]) and [`request`] (thus [`get`] and [`post_json`])
//! sends it unless the caller passes its own `Cookie`. [`get_anon`] and
//! [`request_anon`] send none; raw requests get it from [`with_session`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// The session cookie (`vigil_session=...`) per vigil address.
static SESSIONS: Mutex<Vec<(SocketAddr, String)>> = Mutex::new(Vec::new());

/// Sends `cookie` with every later request to `addr` (replacing any).
pub fn remember_session(addr: SocketAddr, cookie: &str) {
    let mut s = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|(a, _)| *a != addr);
    s.push((addr, cookie.to_owned()));
}

/// The session cookie remembered for `addr`.
pub fn session(addr: SocketAddr) -> Option<String> {
    let s = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    s.iter().find(|(a, _)| *a == addr).map(|(_, c)| c.clone())
}

/// `raw` (a request's bytes) with the `Cookie` of `addr`'s session added
/// after the request line; unchanged when there is none.
pub fn with_session(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let Some(cookie) = session(addr) else {
        return raw.to_vec();
    };
    let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
        return raw.to_vec();
    };
    let mut out = raw[..eol + 2].to_vec();
    out.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
    out.extend_from_slice(&raw[eol + 2..]);
    out
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code (0 when the server closed without answering).
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends raw bytes and reads until the server closes (or `timeout`).
pub fn raw(addr: SocketAddr, request: &[u8], timeout: Duration) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// `GET path` as a slow client on a poor link: the socket's receive buffer
/// is shrunk to `rcvbuf` bytes and its segment size to 536 before
/// connecting (so neither kernel can take the response off the server's
/// hands), the request goes out with the
/// session, and nothing is read for `wait`; then the whole response is.
pub fn get_slowly(addr: SocketAddr, path: &str, wait: Duration, rcvbuf: usize) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut s = connect_with_rcvbuf(addr, rcvbuf);
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(&with_session(addr, request.as_bytes()));
    std::thread::sleep(wait);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// The segment size a slow client announces (an old link's 536 bytes).
const SLOW_MSS: libc::c_int = 536;

/// A TCP connection to the IPv4 `addr` whose receive buffer was set to
/// `rcvbuf` bytes before the handshake (so the window it offers is small
/// from the start; std sets options only after connecting).
fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("{addr}: IPv4 only");
    };
    // SAFETY: plain socket(2), setsockopt(2) and connect(2) on a
    // descriptor owned here and handed to TcpStream (or closed) below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size = libc::c_int::try_from(rcvbuf).expect("a small buffer");
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        // A small segment size too: the server's kernel sizes its send
        // buffer from it (about 20 segments), and loopback's 64 KiB
        // segments would let it take 1 MiB+ off the server's hands.
        let mss: libc::c_int = SLOW_MSS;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mss as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect {addr}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// `GET path` with `Connection: close` (and the session, when known).
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// `GET path` without any session.
pub fn get_anon(addr: SocketAddr, path: &str) -> Response {
    request_anon(addr, "GET", path, &[], b"")
}

/// A request with extra headers and a body, `Connection: close`, carrying
/// the remembered session unless `headers` has a `Cookie`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let cookie = session(addr);
    let mut all = headers.to_vec();
    if let Some(c) = &cookie {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        {
            all.push(("Cookie", c));
        }
    }
    request_anon(addr, method, path, &all, body)
}

/// A request with exactly the given headers (no remembered session).
pub fn request_anon(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes, Duration::from_secs(30))
}

/// `POST path` with a JSON body and optional cookie and CSRF token.
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> Response {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    if let Some(t) = csrf {
        headers.push(("X-CSRF-Token", t));
    }
    request(addr, "POST", path, &headers, body.as_bytes())
}

/// Parses a complete response (chunked bodies are de-chunked).
pub fn parse(buf: &[u8]) -> Response {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: buf.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// Raises this process's open-file limit to its hard limit (the load tests
/// hold hundreds of sockets).
pub fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    l.rlim_cur
}
