#!/usr/bin/python3
"""GStreamer RTSP server for vigil's system tests.

Run with Debian's interpreter (/usr/bin/python3): it needs python3-gi and
gir1.2-gst-rtsp-server-1.0 (scripts/install-deps.sh rtsp).

    /usr/bin/python3 tests/support/rtsp_server.py --port 0 --mode h264-test
    /usr/bin/python3 tests/support/rtsp_server.py --mode file --file bikes.mp4
    /usr/bin/python3 tests/support/rtsp_server.py --mode h265-test --user u --password p

Binds 127.0.0.1 only (RTSP and the RTP/RTCP UDP ports). Once it serves, prints
exactly one line on stdout, `READY rtsp://127.0.0.1:PORT/PATH`, and flushes it;
diagnostics go to stderr. SIGTERM or SIGINT stops it with exit status 0.

Modes (all through one shared media factory, so every client of the mount sees
the same pipeline):
  h264-test  videotestsrc is-live, WIDTHxHEIGHT @ FPS, x264enc zerolatency/ultrafast,
             key-int-max=FPS (an IDR every second), rtph264pay config-interval=1
  h265-test  the same with x265enc and rtph265pay
  file       an MP4 with H.264: filesrc ! qtdemux ! h264parse ! rtph264pay. Loops
             seamlessly by default (segment seeks, timestamps keep increasing);
             --no-loop ends the stream at the end of the file. Not seekable, like
             a camera: a client joining with `Range: npt=0-` does not rewind the
             stream for the others, it starts at the next IDR.
"""

import argparse
import os
import signal
import sys

try:
    import gi
except ImportError:
    # Started with another interpreter (a pyenv python3 on PATH, say): Debian's
    # is the one that has python3-gi.
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and os.access("/usr/bin/python3", os.X_OK):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("rtsp_server: python3-gi is missing (scripts/install-deps.sh rtsp)")

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# Before any subclass of a GStreamer type is declared (LoopingMedia below).
Gst.init(None)

HOST = "127.0.0.1"


def log(msg):
    print(f"rtsp_server: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="TCP port for RTSP; 0 picks a free one")
    p.add_argument("--mode", choices=["h264-test", "h265-test", "file"], default="h264-test")
    p.add_argument("--file", help="MP4 (H.264) for --mode file")
    p.add_argument("--path", default="/test", help="mount point (default /test)")
    p.add_argument("--user", help="require this user name")
    p.add_argument("--password", help="password for --user")
    p.add_argument("--auth", choices=["basic", "digest"], default="basic",
                   help="authentication scheme required with --user (default basic)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--pattern", default="smpte",
                   help="videotestsrc pattern for the test modes (smpte, ball, ...)")
    p.add_argument("--no-loop", action="store_true", help="file mode: stop at end of file")
    p.add_argument("--protocols", choices=["all", "tcp", "udp"], default="all",
                   help="RTP lower transports the server accepts (default all)")
    a = p.parse_args(argv)
    if a.mode == "file" and not a.file:
        p.error("--mode file needs --file PATH")
    if (a.user is None) != (a.password is None):
        p.error("--user and --password go together")
    if not a.path.startswith("/"):
        a.path = "/" + a.path
    return a


def launch_line(a):
    if a.mode == "file":
        loc = a.file.replace("\\", "\\\\").replace('"', '\\"')
        return (f'( filesrc location="{loc}" ! qtdemux name=demux demux.video_0 ! queue '
                "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    raw = (f"videotestsrc is-live=true pattern={a.pattern} "
           f"! video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 ! videoconvert")
    if a.mode == "h264-test":
        return (f"( {raw} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
                "! rtph264pay name=pay0 pt=96 config-interval=1 )")
    return (f"( {raw} ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
            "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=1 )")


class LoopingMedia(GstRtspServer.RTSPMedia):
    """Media that replays a file forever with segment seeks.

    A SEGMENT seek makes the demuxer post SEGMENT_DONE instead of EOS at the end
    of the file; answering with a non-flushing segment seek back to 0 continues
    playback with the running time (and so the RTP timestamps) still increasing.
    qtdemux starts each new loop at the running time of the last frame's *start*,
    one frame early, which would give the seam two frames with the same
    timestamp: a pad offset on the demuxer's source pad adds the missing
    (segment stop - last timestamp) on every loop.
    """

    def _demux(self):
        return self.get_element().get_by_name("demux")

    def _probe(self, _pad, info):
        if info.type & Gst.PadProbeType.BUFFER:
            pts = info.get_buffer().pts
            if pts != Gst.CLOCK_TIME_NONE and pts > self._max_pts:
                self._max_pts = pts
        else:
            ev = info.get_event()
            if ev is not None and ev.type == Gst.EventType.SEGMENT:
                self._seg_stop = ev.parse_segment().stop
        return Gst.PadProbeReturn.OK

    def _segment_seek(self, flush):
        flags = Gst.SeekFlags.SEGMENT | (Gst.SeekFlags.FLUSH if flush else Gst.SeekFlags.NONE)
        demux = self._demux()
        if demux is None:
            return False
        ok, duration = demux.query_duration(Gst.Format.TIME)
        stop_type = Gst.SeekType.SET if ok and duration > 0 else Gst.SeekType.NONE
        ok = demux.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0,
                        stop_type, duration if stop_type == Gst.SeekType.SET else -1)
        if not ok:
            log("segment seek failed; the file will play once")
        return ok

    def do_prepared(self):
        self._max_pts = 0
        self._seg_stop = Gst.CLOCK_TIME_NONE
        demux = self._demux()
        self._pad = demux.get_static_pad("video_0") if demux is not None else None
        if self._pad is not None:
            self._pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM,
                                self._probe)
        # Enter segment mode once the pipeline has prerolled.
        self._segment_seek(flush=True)

    def do_handle_message(self, message):
        if message.type == Gst.MessageType.SEGMENT_DONE:
            # The demuxer is idle until the next seek: safe to move the offset.
            if self._pad is not None and self._seg_stop not in (Gst.CLOCK_TIME_NONE, -1) \
                    and self._seg_stop > self._max_pts:
                self._pad.set_offset(self._pad.get_offset() + self._seg_stop - self._max_pts)
            self._max_pts = 0
            self._segment_seek(flush=False)
            return True
        return GstRtspServer.RTSPMedia.do_handle_message(self, message)


def make_factory(a):
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(a))
    factory.set_shared(True)
    if a.mode == "file":
        # The file plays like a camera: rtsp-media treats a media whose clock is
        # published with an offset as not seekable, so a client that joins the
        # shared stream with `Range: npt=0-` in its PLAY (ffmpeg sends one) does
        # not rewind it for the clients already watching.
        factory.set_publish_clock_mode(GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET)
        if not a.no_loop:
            factory.set_media_gtype(LoopingMedia.__gtype__)
    lower = {
        "all": GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP,
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
    }[a.protocols]
    factory.set_protocols(lower)
    # Keep the RTP/RTCP UDP sockets on loopback too.
    pool = GstRtspServer.RTSPAddressPool()
    pool.add_range(HOST, HOST, 40000, 59999, 0)
    factory.set_address_pool(pool)
    return factory


def setup_auth(server, factory, a):
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    # set_supported_methods() takes one value here (PyGObject refuses the
    # BASIC|DIGEST bit mask), so the server offers one scheme at a time.
    if a.auth == "basic":
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    else:
        auth.add_digest(a.user, a.password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    perms.add_permission_for_role("user", "media.factory.access", True)
    perms.add_permission_for_role("user", "media.factory.construct", True)
    factory.set_permissions(perms)


def main(argv):
    a = parse_args(argv)
    for name in {"h264-test": ["videotestsrc", "x264enc", "rtph264pay"],
                 "h265-test": ["videotestsrc", "x265enc", "rtph265pay"],
                 "file": ["filesrc", "qtdemux", "h264parse", "rtph264pay"]}[a.mode]:
        if Gst.ElementFactory.find(name) is None:
            log(f"GStreamer element {name} is missing (scripts/install-deps.sh rtsp)")
            return 2
    if a.mode == "file":
        try:
            open(a.file, "rb").close()
        except OSError as e:
            log(f"cannot read --file: {e}")
            return 2

    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    # Port 0: the server binds itself and get_bound_port() tells the port.
    server.set_service(str(a.port))
    factory = make_factory(a)
    if a.user is not None:
        setup_auth(server, factory, a)
    server.get_mount_points().add_factory(a.path, factory)

    loop = GLib.MainLoop()
    try:
        source_id = server.attach(None)
    except GLib.Error as e:
        source_id = 0
        log(f"attach failed: {e.message}")
    if not source_id:
        log(f"cannot listen on {HOST}:{a.port}")
        return 1
    port = server.get_bound_port()

    stopping = []

    def on_signal(signame):
        if not stopping:
            log(f"{signame}: stopping")
            stopping.append(signame)
            # Close the sessions so clients see the connection end.
            server.client_filter(lambda _s, _c, *_: GstRtspServer.RTSPFilterResult.REMOVE, None)
            loop.quit()
        return GLib.SOURCE_CONTINUE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_signal, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_signal, "SIGINT")

    log(f"mode {a.mode}: {launch_line(a)}")
    sys.stdout.write(f"READY rtsp://{HOST}:{port}{a.path}\n")
    sys.stdout.flush()
    loop.run()
    GLib.source_remove(source_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
