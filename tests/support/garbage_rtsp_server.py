#!/usr/bin/env python3
"""A misbehaving RTSP server for vigil's failure-path tests (standard library only).

    python3 tests/support/garbage_rtsp_server.py --port 0 --kind truncated-sdp

Listens on 127.0.0.1 only. Once listening, prints exactly one line on stdout,
`READY rtsp://127.0.0.1:PORT/PATH`, and flushes it; one line per connection and
a summary at exit go to stderr. SIGTERM or SIGINT stops it with exit status 0.

Kinds of answer (`--kind`):
  junk           every request is answered with random bytes (not RTSP at all)
  bad-status     every request gets `RTSP/1.0 500 Internal Server Error`
  truncated-sdp  OPTIONS gets a normal 200; DESCRIBE gets `200 OK` with an SDP
                 body shorter than its Content-Length, then the connection closes
  hang           accepts, reads and discards, never answers
  close          accepts and closes at once

One thread, one selector: at most --max-conns (default 16) connections are
kept; accepting one more closes the oldest. Each connection buffers at most
64 KiB in and 64 KiB out, so nothing grows without bound whatever the client does.
"""

import argparse
import collections
import os
import random
import selectors
import signal
import socket
import sys

HOST = "127.0.0.1"
MAX_IN = 64 * 1024
MAX_OUT = 64 * 1024
KINDS = ("junk", "bad-status", "truncated-sdp", "hang", "close")

SDP = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 127.0.0.1\r\n"
    "s=vigil garbage server\r\n"
    "t=0 0\r\n"
    "a=control:*\r\n"
    "m=video 0 RTP/AVP 96\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=42c01e;"
    "sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADIPFi5I,aMuDyyA=\r\n"
    "a=control:stream=0\r\n"
)


def log(msg):
    print(f"garbage_rtsp_server: {msg}", file=sys.stderr, flush=True)


class Conn:
    def __init__(self, sock, addr, number):
        self.sock = sock
        self.addr = addr
        self.number = number
        self.inbuf = b""
        self.outbuf = b""
        self.close_after_send = False


class Server:
    def __init__(self, args):
        self.kind = args.kind
        self.max_conns = args.max_conns
        self.junk_size = args.junk_size
        self.rng = random.Random(args.seed)
        self.sel = selectors.DefaultSelector()
        self.conns = collections.OrderedDict()  # socket -> Conn, oldest first
        self.accepted = 0
        self.evicted = 0
        self.requests = 0
        self.stopping = False

        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, args.port))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel.register(self.lsock, selectors.EVENT_READ, "listen")

        # Signals wake the selector through a socketpair.
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_signal(self, signum, _frame):
        self.stopping = True

    # --- connections -----------------------------------------------------
    def close(self, conn, why):
        if conn.sock not in self.conns:
            return
        del self.conns[conn.sock]
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass
        log(f"conn {conn.number} closed ({why})")

    def accept(self):
        while True:
            try:
                sock, addr = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: drop this round, keep serving
                log(f"accept failed: {e}")
                return
            self.accepted += 1
            while len(self.conns) >= self.max_conns:
                oldest = next(iter(self.conns.values()))
                self.evicted += 1
                self.close(oldest, "evicted: connection cap")
            sock.setblocking(False)
            conn = Conn(sock, addr, self.accepted)
            self.conns[sock] = conn
            log(f"conn {conn.number} from {addr[0]}:{addr[1]} ({self.kind})")
            if self.kind == "close":
                self.close(conn, "kind close")
                continue
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def send(self, conn, data, close_after=False):
        if len(conn.outbuf) + len(data) > MAX_OUT:
            self.close(conn, "client is not reading its answers")
            return
        conn.outbuf += data
        conn.close_after_send = conn.close_after_send or close_after
        self.flush(conn)

    def flush(self, conn):
        while conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.close(conn, f"send: {e.strerror or e}")
                return
            conn.outbuf = conn.outbuf[n:]
        if conn.sock not in self.conns:
            return
        if not conn.outbuf and conn.close_after_send:
            self.close(conn, "answer sent")
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        self.sel.modify(conn.sock, events, conn)

    def readable(self, conn):
        try:
            data = conn.sock.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.close(conn, f"recv: {e.strerror or e}")
            return
        if not data:
            self.close(conn, "peer closed")
            return
        if self.kind == "hang":
            return  # read and discard: the buffer never grows
        conn.inbuf += data
        if len(conn.inbuf) > MAX_IN:
            self.close(conn, "request too large")
            return
        while conn.sock in self.conns:
            req = self.take_request(conn)
            if req is None:
                break
            self.answer(conn, *req)

    @staticmethod
    def take_request(conn):
        """Split one request (head + Content-Length body) off the input buffer."""
        end = conn.inbuf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = conn.inbuf[:end].decode("latin-1")
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            body_len = max(0, int(headers.get("content-length", "0")))
        except ValueError:
            body_len = 0
        if len(conn.inbuf) < end + 4 + body_len:
            return None
        conn.inbuf = conn.inbuf[end + 4 + body_len:]
        method = lines[0].split(" ", 1)[0].upper() if lines[0] else ""
        return method, headers.get("cseq", "0")

    def answer(self, conn, method, cseq):
        self.requests += 1
        if self.kind == "junk":
            self.send(conn, self.rng.randbytes(self.junk_size))
        elif self.kind == "bad-status":
            self.send(conn, (f"RTSP/1.0 500 Internal Server Error\r\nCSeq: {cseq}\r\n"
                             "Content-Length: 0\r\n\r\n").encode())
        elif self.kind == "truncated-sdp":
            if method == "OPTIONS":
                self.send(conn, (f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
                                 "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n").encode())
            elif method == "DESCRIBE":
                body = SDP.encode()
                sent = body[: len(body) // 2]
                self.send(conn, (f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
                                 "Content-Type: application/sdp\r\n"
                                 f"Content-Length: {len(body) + 200}\r\n\r\n").encode() + sent,
                          close_after=True)
            else:
                self.send(conn, (f"RTSP/1.0 455 Method Not Valid in This State\r\n"
                                 f"CSeq: {cseq}\r\n\r\n").encode())

    # --- main loop ------------------------------------------------------------
    def run(self):
        while not self.stopping:
            for key, events in self.sel.select(timeout=1.0):
                if key.data == "listen":
                    self.accept()
                elif key.data == "wake":
                    try:
                        while self.wake_r.recv(64):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                else:
                    conn = key.data
                    if events & selectors.EVENT_READ and conn.sock in self.conns:
                        self.readable(conn)
                    if events & selectors.EVENT_WRITE and conn.sock in self.conns:
                        self.flush(conn)
        for conn in list(self.conns.values()):
            self.close(conn, "server stopping")
        self.lsock.close()
        log(f"stopped: {self.accepted} connections, {self.evicted} evicted, "
            f"{self.requests} requests answered")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    p.add_argument("--kind", choices=KINDS, default="junk")
    p.add_argument("--path", default="/test", help="path printed in the READY URL")
    p.add_argument("--max-conns", type=int, default=16,
                   help="connections kept at once; the oldest is closed beyond (default 16)")
    p.add_argument("--junk-size", type=int, default=512, help="bytes per junk answer")
    p.add_argument("--seed", type=int, default=None, help="seed for the junk bytes")
    a = p.parse_args(argv)
    if a.max_conns < 1:
        p.error("--max-conns must be at least 1")
    a.junk_size = max(1, min(a.junk_size, MAX_OUT))
    path = a.path if a.path.startswith("/") else "/" + a.path
    try:
        server = Server(a)
    except OSError as e:
        log(f"cannot listen on {HOST}:{a.port}: {e.strerror or e}")
        return 1
    sys.stdout.write(f"READY rtsp://{HOST}:{server.port}{path}\n")
    sys.stdout.flush()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
