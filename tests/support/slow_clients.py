#!/usr/bin/env python3
"""Slow-client load against a local HTTP server (python3 standard library only).

Opens --connections TCP connections to --host:--port as fast as it can, then
keeps them open for --seconds while watching the server process --pid
(Threads and VmRSS from /proc/PID/status, open fds from /proc/PID/fd).

Modes (--mode):
  slow-header         (default) every --interval seconds send ONE byte of a
                      request header that never ends ("GET / HTTP/1.1\\r\\n
                      Host: x\\r\\nX-Slow: aaaa..."; no blank line is ever sent)
  idle-after-request  send one complete "GET /" at connect, read its response,
                      then send nothing more (an idle keep-alive connection)
  silent              connect and never send a byte

--reconnect replaces every connection the server closes with a new one at the
next interval (a client that keeps the server's connection slots full).

Every interval it also makes one normal "GET /" on a fresh connection (2 s
timeout) and reports whether it was served and how long it took.

Output, one line per interval:
  t=SEC open=N closed_by_server=M server_threads=T server_rss_kib=R server_fds=F
      normal_ok=1|0 normal_ms=X normal_result=ok|refused|closed|reset|timeout
A probe that has not finished when its line is printed shows normal_ok=pending
and gets its own "probe t0=SEC ..." line when it finishes.
After --seconds all load connections are closed, the server is watched for
--after seconds more ("after t=+SEC ..." lines), then one summary line:
  summary connections=N max_threads=T min_threads=T normal_ok=K/S ...

Only loopback addresses are accepted as --host (this is a local test tool).
"""

import argparse
import errno
import ipaddress
import os
import resource
import selectors
import socket
import sys
import time

HEADER_PREFIX = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
NORMAL_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PROBE_TIMEOUT = 2.0


def slow_byte(i):
    """The i-th byte of a request header that never ends."""
    if i < len(HEADER_PREFIX):
        return HEADER_PREFIX[i:i + 1]
    return b"a"


def proc_status(pid):
    """(threads, rss_kib, fds) of the server process, None where unreadable."""
    threads = rss = fds = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return threads, rss, fds


def nofile_of(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return f"{parts[3]}/{parts[4]}"
    except OSError:
        pass
    return "?"


class Conn:
    __slots__ = ("sock", "sent", "opened_at", "closed_at", "got", "first_bytes", "state")

    def __init__(self, sock, now):
        self.sock = sock
        self.sent = 0
        self.opened_at = now
        self.closed_at = None
        self.got = 0
        self.first_bytes = b""
        self.state = "open"


class Probe:
    """One normal GET / on a fresh non-blocking connection."""

    def __init__(self, host, port, t0, now):
        self.t0 = t0
        self.start = now
        self.deadline = now + PROBE_TIMEOUT
        self.buf = b""
        self.result = None
        self.ms = None
        self.reported = False
        self.sent = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        err = self.sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self.finish("refused" if err == errno.ECONNREFUSED else f"err{err}", now)

    def finish(self, result, now):
        self.result = result
        self.ms = (now - self.start) * 1000.0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def events(self):
        return selectors.EVENT_WRITE if not self.sent else selectors.EVENT_READ

    def on_event(self, now):
        if self.result is not None:
            return
        try:
            if not self.sent:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.finish("refused" if err == errno.ECONNREFUSED else f"err{err}", now)
                    return
                self.sock.sendall(NORMAL_REQUEST)
                self.sent = True
                return
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            self.finish("reset", now)
            return
        except BlockingIOError:
            return
        except OSError as e:
            self.finish(f"err{e.errno}", now)
            return
        if not data:
            self.finish("ok" if self.complete() else "closed", now)
            return
        self.buf += data
        if self.complete():
            self.finish("ok", now)

    def complete(self):
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/1.1 200"):
            return False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(body) >= int(value.strip())
        return False

    def ok(self):
        return 1 if self.result == "ok" else 0

    def describe(self):
        return f"normal_ok={self.ok()} normal_ms={self.ms:.1f} normal_result={self.result}"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--pid", type=int, required=True, help="server process to watch")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--mode", choices=["slow-header", "idle-after-request", "silent"],
                    default="slow-header")
    ap.add_argument("--after", type=int, default=15,
                    help="seconds to keep watching the server after closing all clients")
    ap.add_argument("--connect-timeout", type=float, default=5.0,
                    help="how long the initial connects may take before counting as timed out")
    ap.add_argument("--reconnect", action="store_true",
                    help="replace every connection the server closes with a new one")
    args = ap.parse_args()
    if not ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback:
        ap.error("--host must be a loopback address")
    return args


def main():
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = sys.stdout

    def emit(line):
        out.write(line + "\n")
        out.flush()

    b_threads, b_rss, b_fds = proc_status(args.pid)
    emit(f"start host={args.host} port={args.port} pid={args.pid} mode={args.mode} "
         f"connections={args.connections} seconds={args.seconds} interval={args.interval} "
         f"client_nofile={hard}/{hard} (was {soft}) server_nofile={nofile_of(args.pid)}")
    emit(f"before server_threads={b_threads} server_rss_kib={b_rss} server_fds={b_fds}")

    sel = selectors.DefaultSelector()
    conns = {}          # fd -> Conn, still open
    closed = []         # Conn closed by the server
    stats = {"connected": 0, "refused": 0, "reset": 0, "timeout": 0, "error": 0,
             "reconnects": 0}
    t_start = time.monotonic()

    def open_socket():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        return s, err

    def classify_fail(err):
        if err == errno.ECONNREFUSED:
            stats["refused"] += 1
        elif err == errno.ECONNRESET:
            stats["reset"] += 1
        else:
            stats["error"] += 1

    def mark_closed(c, now, first=b""):
        if c.state != "open":
            return
        c.state = "closed"
        c.closed_at = now
        if first and not c.first_bytes:
            c.first_bytes = first[:40]
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        conns.pop(c.sock.fileno(), None)
        try:
            c.sock.close()
        except OSError:
            pass
        closed.append(c)

    def adopt(s, now, opened_at=None):
        c = Conn(s, now if opened_at is None else opened_at)
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_READ, c)
        if args.mode == "idle-after-request":
            try:
                s.sendall(IDLE_REQUEST)
            except OSError:
                mark_closed(c, now)
        return c

    # Phase 1: open all connections as fast as possible.
    pending = {}
    for _ in range(args.connections):
        t_conn = time.monotonic()
        s, err = open_socket()
        if err in (0, errno.EINPROGRESS):
            pending[s.fileno()] = (s, t_conn)
        else:
            classify_fail(err)
            s.close()
    psel = selectors.DefaultSelector()
    for s, _ in pending.values():
        psel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + args.connect_timeout
    while pending and time.monotonic() < deadline:
        for key, _ in psel.select(timeout=max(0.0, deadline - time.monotonic())):
            s = key.fileobj
            psel.unregister(s)
            _, t_conn = pending.pop(s.fileno())
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                stats["connected"] += 1
                adopt(s, time.monotonic(), t_conn)
            else:
                classify_fail(err)
                s.close()
    for s, _ in pending.values():
        stats["timeout"] += 1
        psel.unregister(s)
        s.close()
    psel.close()
    connect_s = time.monotonic() - t_start
    emit(f"connect connected={stats['connected']} refused={stats['refused']} "
         f"reset={stats['reset']} timeout={stats['timeout']} error={stats['error']} "
         f"took_s={connect_s:.2f}")

    # Phase 2: the slow load.
    probes = []
    done_probes = []
    threads_seen, rss_seen = [], []
    load_start = time.monotonic()

    def read_ready(c, now):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError, OSError):
            mark_closed(c, now)
            return
        if not data:
            mark_closed(c, now)
            return
        c.got += len(data)
        if not c.first_bytes:
            c.first_bytes = data[:40]

    def pump(until):
        """Serve socket events until `until` (monotonic)."""
        while True:
            now = time.monotonic()
            for p in probes:
                if p.result is None and now >= p.deadline:
                    p.finish("timeout", now)
            for p in [p for p in probes if p.result is not None]:
                try:
                    sel.unregister(p.sock)
                except (KeyError, ValueError):
                    pass
                p.close()
                probes.remove(p)
                done_probes.append(p)
            if now >= until:
                return
            wait = until - now
            if probes:
                wait = min(wait, min(p.deadline for p in probes) - now)
            for key, _ in sel.select(timeout=max(0.0, wait)):
                obj = key.data
                now = time.monotonic()
                if isinstance(obj, Probe):
                    obj.on_event(now)
                    if obj.result is None:
                        sel.modify(obj.sock, obj.events(), obj)
                else:
                    read_ready(obj, now)

    tick = 0
    while True:
        tick_time = load_start + tick * args.interval
        now = time.monotonic()
        t_rel = tick * args.interval
        # One byte on every still-open connection.
        if args.mode == "slow-header":
            for c in list(conns.values()):
                try:
                    c.sock.send(slow_byte(c.sent))
                    c.sent += 1
                except BlockingIOError:
                    pass
                except OSError:
                    mark_closed(c, now)
        if args.reconnect:
            while len(conns) < args.connections:
                s, err = open_socket()
                stats["reconnects"] += 1
                if err in (0, errno.EINPROGRESS):
                    adopt(s, now)  # a failed connect shows up as a close
                else:
                    classify_fail(err)
                    s.close()
                    break
        if t_rel >= args.seconds:
            break
        # One normal request.
        p = Probe(args.host, args.port, t_rel, now)
        if p.result is None:
            sel.register(p.sock, p.events(), p)
            probes.append(p)
        else:
            p.close()
            done_probes.append(p)
        pump(tick_time + args.interval)
        tick += 1
        threads, rss, fds = proc_status(args.pid)
        if threads is not None:
            threads_seen.append(threads)
        if rss is not None:
            rss_seen.append(rss)
        line = (f"t={tick * args.interval:g} open={len(conns)} closed_by_server={len(closed)} "
                f"server_threads={threads} server_rss_kib={rss} server_fds={fds}")
        if p.result is not None:
            p.reported = True
            line += " " + p.describe()
        else:
            line += " normal_ok=pending"
        emit(line)
        for q in done_probes:
            if not q.reported:
                q.reported = True
                emit(f"probe t0={q.t0:g} {q.describe()}")
    # Let the last probes finish.
    if probes:
        pump(max(p.deadline for p in probes))
    for q in done_probes:
        if not q.reported:
            q.reported = True
            emit(f"probe t0={q.t0:g} {q.describe()}")

    open_at_end = len(conns)
    # Phase 3: close everything we hold and watch the server settle.
    for c in list(conns.values()):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
    conns.clear()
    after_start = time.monotonic()
    a_threads = a_rss = a_fds = None
    for i in range(1, args.after + 1):
        time.sleep(max(0.0, after_start + i - time.monotonic()))
        a_threads, a_rss, a_fds = proc_status(args.pid)
        emit(f"after t=+{i} server_threads={a_threads} server_rss_kib={a_rss} server_fds={a_fds}")

    # Summary.
    close_hist = {}
    first_seen = {}
    for c in closed:
        sec = int(c.closed_at - c.opened_at)
        close_hist[sec] = close_hist.get(sec, 0) + 1
        key = c.first_bytes.split(b"\r\n")[0].decode("latin-1") if c.first_bytes else "-"
        first_seen[key] = first_seen.get(key, 0) + 1
    hist = ",".join(f"{k}s:{v}" for k, v in sorted(close_hist.items())) or "none"
    firsts = ",".join(f"{k!r}:{v}" for k, v in sorted(first_seen.items()))
    late = sorted(c.closed_at - c.opened_at for c in closed if c.closed_at - c.opened_at >= 2)
    if late:
        emit(f"closes_after_2s n={len(late)} age_min_s={late[0]:.2f} age_max_s={late[-1]:.2f}")
    emit(f"closes_by_age {hist}  (whole seconds from the client's connect() to the close)")
    emit(f"closes_first_bytes {firsts or 'none'}")
    ok = sum(q.ok() for q in done_probes)
    results = {}
    for q in done_probes:
        results[q.result] = results.get(q.result, 0) + 1
    lat = sorted(q.ms for q in done_probes if q.result == "ok")
    p50 = f"{lat[len(lat) // 2]:.1f}" if lat else "-"
    pmax = f"{lat[-1]:.1f}" if lat else "-"
    emit(f"summary connections={stats['connected']} max_threads={max(threads_seen, default=None)} "
         f"min_threads={min(threads_seen, default=None)} normal_ok={ok}/{len(done_probes)} "
         f"refused={stats['refused']} reset={stats['reset']} connect_timeout={stats['timeout']} "
         f"closed_by_server={len(closed)} open_at_end={open_at_end} reconnects={stats['reconnects']} "
         f"before_threads={b_threads} after_threads={a_threads} "
         f"before_rss_kib={b_rss} max_rss_kib={max(rss_seen, default=None)} after_rss_kib={a_rss} "
         f"after_fds={a_fds} normal_results={results} normal_ok_ms_p50={p50} normal_ok_ms_max={pmax}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
