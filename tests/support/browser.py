#!/usr/bin/env python3
"""Drive headless Chromium over the DevTools Protocol (python3 standard library only).

    python3 browser.py --url URL --until JS_EXPR [--timeout 30] [--screenshot OUT.png]
                       [--window 1280x900] [--then JS_EXPR]... [--eval JS_EXPR]...

Why: `chromium --headless --dump-dom --timeout=N` dumps the DOM before the page's fetch()
calls have completed when the page holds an open EventSource (SSE) stream, so black-box tests
of the status page evaluate JavaScript in the live page instead.

Starts /usr/bin/chromium ($CHROMIUM overrides) with a fresh profile, connects to the page
target (minimal RFC 6455 WebSocket), navigates to URL and evaluates JS_EXPR every 250 ms
until it is truthy (JS truthiness; a promise is awaited) or --timeout seconds pass. Each
--then is then polled the same way, in order, within the same --timeout (a step that acts and
returns true runs once; a wait returns its condition); the first that times out stops them. Then it
writes a PNG of the viewport (exactly --window) and evaluates each --eval.

stdout gets ONE JSON object:
  {"ok": bool, "elapsed_ms": n, "until": last value of JS_EXPR, "then": [last value of each
   --then reached], "evals": [values...],
   "exceptions": [...], "console_errors": [...], "network_errors": [...]}
A value that threw is {"error": message}. exceptions: uncaught page exceptions and unhandled
rejections; console_errors: console.error() and non-network Log errors; network_errors: Log
entries of source "network" (4xx/5xx loads, including Chromium's own /favicon.ico request) and
a failed navigation. Each is {"text", "url", "line" (1-based or null)}.
Exit status: 0 the condition (and every --then) became truthy, 1 it timed out, 2 driver failure (chromium missing
or crashed, hard limit of --timeout + 20 s; message on stderr, the JSON then has "error").
Chromium's process group is always killed and its temporary profile removed.
"""
import argparse, atexit, base64, hashlib, http.client, json, os, shutil, signal, socket
import struct, subprocess, sys, tempfile, time

class DriverError(Exception): pass
class CommandError(DriverError): pass  # CDP error reply to a command
class Timeout(Exception): pass

class WebSocket:
    """Minimal RFC 6455 client: masked frames out; fragmented frames, ping and close in."""
    def __init__(self, url):
        hostport, _, path = url.split("://", 1)[1].partition("/")
        self.sock = socket.create_connection(hostport.rsplit(":", 1), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if b" 101 " not in head.split(b"\r\n")[0] or accept not in head:
            raise DriverError(f"websocket handshake failed: {head[:200]!r}")

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise DriverError("DevTools connection closed (chromium crashed?)")
        self.buf += data

    def send(self, opcode, payload):
        n, mask = len(payload), os.urandom(4)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else struct.pack(
            "!BH", 0x80 | 126, n) if n < 65536 else struct.pack("!BQ", 0x80 | 127, n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _frame(self):
        """(fin, opcode, payload) of the first frame in buf, consumed; None while incomplete."""
        b = self.buf
        if len(b) < 2:
            return None
        n, i = b[1] & 0x7F, 2
        if n >= 126:
            i += 2 if n == 126 else 8
            if len(b) < i:
                return None
            n = int.from_bytes(b[2:i], "big")
        mask, i = (b[i:i + 4], i + 4) if b[1] & 0x80 else (None, i)
        if len(b) < i + n:
            return None
        payload, self.buf = b[i:i + n], b[i + n:]
        if mask:
            payload = bytes(x ^ mask[k % 4] for k, x in enumerate(payload))
        return b[0] & 0x80, b[0] & 0x0F, payload

    def recv(self, deadline):
        """Next complete message as str; Timeout if `deadline` (monotonic) passes first."""
        parts = []
        while True:
            frame = self._frame()
            while frame is None:  # a frame is consumed only when complete: timeouts never desync
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    self._fill()
                except socket.timeout:
                    raise Timeout() from None
                frame = self._frame()
            fin, opcode, payload = frame
            if opcode == 9:
                self.send(0xA, payload)  # pong
            elif opcode == 8:
                raise DriverError("DevTools websocket closed by chromium")
            elif opcode in (0, 1, 2):  # continuation, text, binary; pongs (0xA) are ignored
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode("utf-8", "replace")

class CDP:
    def __init__(self, ws_url):
        self.ws, self.next_id = WebSocket(ws_url), 0
        self.exceptions, self.console_errors, self.network_errors = [], [], []

    def call(self, method, params=None, deadline=None):
        """Send a command, return its reply (matched by id); events coming first are handled."""
        self.next_id += 1
        self.ws.send(1, json.dumps({"id": self.next_id, "method": method, "params": params or {}}).encode())
        msg = self._wait(self.next_id, deadline or time.monotonic() + 10)
        if "error" in msg:
            raise CommandError(f"{method}: {msg['error'].get('message', msg['error'])}")
        return msg.get("result", {})

    def _wait(self, my_id, deadline):  # my_id None: only handle events until the deadline
        while True:
            msg = json.loads(self.ws.recv(deadline))
            if "method" in msg:
                self._event(msg["method"], msg.get("params", {}))
            elif my_id is not None and msg.get("id") == my_id:
                return msg  # other ids: late replies to calls that timed out, dropped

    def _event(self, m, p):
        item = lambda text, d: {"text": text, "url": d.get("url", ""),
                                "line": None if d.get("lineNumber") is None else d["lineNumber"] + 1}
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or ""
            text = d.get("text", "") + (": " + desc if desc and desc not in d.get("text", "") else "")
            self.exceptions.append(item(text, d))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            text = " ".join(str(a["value"]) if "value" in a else a.get("description", a.get("type", ""))
                            for a in p.get("args", []))
            self.console_errors.append(item(text, (p.get("stackTrace", {}).get("callFrames") or [{}])[0]))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            (self.network_errors if e.get("source") == "network" else self.console_errors).append(
                item(e.get("text", ""), e))
        elif m in ("Inspector.targetCrashed", "Inspector.detached"):
            raise DriverError(f"page target lost: {m} {p}")

    def evaluate(self, expr, deadline):
        """(True, value), or (False, {"error": ...}) if it threw or cannot be returned by value."""
        try:
            r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                               "awaitPromise": True}, deadline)
        except CommandError as e:
            return False, {"error": str(e)}
        if "exceptionDetails" in r:
            d, ex = r["exceptionDetails"], r["exceptionDetails"].get("exception", {})
            return False, {"error": ex.get("description") or f"{d.get('text')} {ex.get('value', '')}"}
        v = r.get("result", {})
        return True, v.get("value", v.get("unserializableValue"))

STATE = {"proc": None, "tmp": None}

def cleanup():
    """Kill chromium's process group (TERM, then KILL) and remove the temporary profile."""
    proc, tmp = STATE["proc"], STATE["tmp"]
    STATE["proc"] = STATE["tmp"] = None
    if proc is not None:
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 2)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
            except (OSError, subprocess.TimeoutExpired):
                pass
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)

def start_chromium(w, h, deadline):
    """Start chromium, return its DevTools port."""
    exe = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(exe, os.X_OK):
        raise DriverError(f"{exe} not found or not executable")
    STATE["tmp"] = tmp = tempfile.mkdtemp(prefix="cdp-browser-")
    profile, log_path = os.path.join(tmp, "profile"), os.path.join(tmp, "chromium.log")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
            "--mute-audio", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={w},{h}", "about:blank"]
    with open(log_path, "wb") as log:  # a file, not a pipe: nobody has to keep reading it
        STATE["proc"] = proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=log, start_new_session=True)
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(profile, "DevToolsActivePort")) as f:
                lines = f.read().split("\n")
            if len(lines) >= 2 and lines[0].isdigit():
                return int(lines[0])
        except OSError:
            pass
        with open(log_path, errors="replace") as f:
            log_text = f.read()
        for line in log_text.splitlines():  # fallback: "DevTools listening on ws://127.0.0.1:PORT/..."
            if line.startswith("DevTools listening on ws://"):
                return int(line.split(":")[2].split("/")[0])
        if proc.poll() is not None:
            raise DriverError(f"chromium exited with {proc.returncode} before DevTools was up:\n"
                              + log_text[-2000:])
        time.sleep(0.05)
    raise DriverError("chromium did not report a DevTools port in time")

def page_ws_url(port, deadline):
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/json/list")
            pages = [t for t in json.loads(conn.getresponse().read()) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise DriverError("no page target in /json/list")

def pump(cdp, until):
    try:
        cdp._wait(None, until)
    except Timeout:
        pass

def poll(cdp, expr, not_yet, deadline):
    """Evaluates expr every 250 ms until truthy (a promise is awaited): (truthy, last value)."""
    wrapped = (f"(async () => {{ if ({not_yet}) return [false, null]; const v = await (\n{expr}\n);"
               " try { JSON.stringify(v); return [!!v, v]; } catch (e) { return [!!v, String(v)]; } })()")
    last = None
    while True:
        try:
            ok, v = cdp.evaluate(wrapped, deadline)
        except Timeout:  # page busy, or navigation still pending, until the end
            return False, last
        last = v[1] if ok else v
        if ok and v[0]:
            return True, last
        if time.monotonic() >= deadline:
            return False, last
        pump(cdp, min(deadline, time.monotonic() + 0.25))

def run(a, out, hard):
    w, h = (int(x) for x in a.window.lower().split("x"))
    cdp = CDP(page_ws_url(start_chromium(w, h, min(hard, time.monotonic() + 20)),
                          min(hard, time.monotonic() + 10)))
    out["cdp"] = cdp
    for m in ("Runtime.enable", "Log.enable", "Page.enable", "Inspector.enable"):
        cdp.call(m)
    cdp.call("Emulation.setDeviceMetricsOverride",  # headless' viewport is smaller than its window
             {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})
    for c in a.cookies:  # e.g. the admin session: vigil shows data only when logged in
        name, _, value = c.partition("=")
        cdp.call("Network.setCookie", {"name": name, "value": value, "url": a.url,
                                       "httpOnly": True, "sameSite": "Strict"})
    out["t0"] = t0 = time.monotonic()
    until_deadline = t0 + a.timeout
    try:
        nav = cdp.call("Page.navigate", {"url": a.url}, until_deadline)
    except Timeout:
        nav = {"errorText": "no reply to Page.navigate within --timeout"}
    if nav.get("errorText"):
        cdp.network_errors.append({"text": f"navigation failed: {nav['errorText']}", "url": a.url, "line": None})
    not_yet = "location.href === 'about:blank'" if a.url != "about:blank" else "false"
    out["ok"], out["until"] = poll(cdp, a.until, not_yet, until_deadline)
    for expr in a.thens if out["ok"] else []:  # each step in turn, within the same --timeout
        ok, v = poll(cdp, expr, "false", until_deadline)
        out["then"].append(v)
        if not ok:
            out["ok"] = False
            break
    out["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    if a.screenshot:
        try:
            shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                            min(hard - 2, time.monotonic() + 10))
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        except Timeout:
            out["screenshot_error"] = "Page.captureScreenshot timed out (page hung?)"
    for expr in a.evals:
        try:
            out["evals"].append(cdp.evaluate(expr, min(hard - 2, time.monotonic() + 5))[1])
        except Timeout:
            out["evals"].append({"error": "evaluation timed out"})
    pump(cdp, time.monotonic() + 0.05)  # late console/exception events
    return 0 if out["ok"] else 1

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--until", required=True, help="JS expression, polled until truthy")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    ap.add_argument("--screenshot", metavar="OUT.png")
    ap.add_argument("--window", default="1280x900", help="viewport WxH (default 1280x900)")
    ap.add_argument("--then", action="append", default=[], dest="thens", metavar="JS_EXPR",
                    help="after --until: each polled in turn until truthy (an action that returns "
                         "true runs once); all share --timeout")
    ap.add_argument("--eval", action="append", default=[], dest="evals", metavar="JS_EXPR")
    ap.add_argument("--cookie", action="append", default=[], dest="cookies", metavar="NAME=VALUE",
                    help="a cookie set for --url before navigating")
    a = ap.parse_args()
    hard = time.monotonic() + a.timeout + 20
    out = {"ok": False, "elapsed_ms": 0, "until": None, "then": [], "evals": []}
    atexit.register(cleanup)
    def on_signal(signum, _frame):
        raise DriverError(f"signal {signum} (hard limit of --timeout + 20 s, or terminated)")
    signal.signal(signal.SIGALRM, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.alarm(int(a.timeout + 20) + 1)  # backstop: every wait in run() is bounded by `hard`
    code = 2
    try:
        code = run(a, out, hard)
    except (DriverError, Timeout, OSError, ValueError, KeyError) as e:
        msg = "timed out talking to chromium" if isinstance(e, Timeout) else f"{type(e).__name__}: {e}"
        print(f"browser.py: {msg}", file=sys.stderr)
        out["error"] = msg
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleanup takes at most ~5 s
        cdp, t0 = out.pop("cdp", None), out.pop("t0", None)
        if t0 and not out["elapsed_ms"]:
            out["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
        for k in ("exceptions", "console_errors", "network_errors"):
            out[k] = getattr(cdp, k, [])
        try:
            cleanup()
        finally:
            print(json.dumps(out), flush=True)
    return code

if __name__ == "__main__":
    sys.exit(main())
