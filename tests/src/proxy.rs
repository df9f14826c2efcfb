//! A TCP proxy that can cut every connection on demand: the test's way to
//! force a camera disconnect without restarting the RTSP server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    from_server: Arc<AtomicU64>,
}

/// A running proxy from a local port to `upstream`.
pub struct CuttingProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, a2, s2) = (conns.clone(), accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(up) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        let from_server = Arc::new(AtomicU64::new(0));
                        pump(
                            up.try_clone().unwrap(),
                            client.try_clone().unwrap(),
                            Some(from_server.clone()),
                        );
                        pump(client.try_clone().unwrap(), up.try_clone().unwrap(), None);
                        c2.lock().unwrap().push(Conn {
                            client,
                            upstream: up,
                            from_server,
                        });
                        a2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy {
            addr,
            conns,
            accepted,
            stop,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until connection number `n` (1-based) exists and has carried at
    /// least `bytes` from the server (the stream is flowing).
    pub fn wait_flowing(&self, n: u64, bytes: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            {
                let conns = self.conns.lock().unwrap();
                if self.accepted() >= n {
                    if let Some(c) = conns.last() {
                        if c.from_server.load(Ordering::Relaxed) >= bytes {
                            return true;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// One forced reconnect: waits until connection `n` streams (20 kB from
    /// the server within 30 s, else panics with the count), then cuts it.
    pub fn cut_when_flowing(&self, n: u64) {
        assert!(
            self.wait_flowing(n, 20_000, Duration::from_secs(30)),
            "connection {n} did not start streaming; accepted {}",
            self.accepted()
        );
        self.cut();
    }

    /// Closes every open connection, both directions.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, counter: Option<Arc<AtomicU64>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if let Some(c) = &counter {
                        c.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
