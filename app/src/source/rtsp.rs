//! RTSP cameras, over TCP with the `retina` client, reconnecting forever.
//!
//! One task per camera ([`super::run`]) loops over sessions the way
//! Moonfire NVR's streamer does. Each session (`run_once`) sends DESCRIBE,
//! SETUP of the first H.264/H.265 video stream (interleaved over the RTSP TCP
//! connection) and PLAY, then copies every frame into a packet buffer from the
//! sink. Frames come in retina's [`FrameFormat::SIMPLE`]: Annex-B start codes
//! with the parameter sets in front of every key frame, exactly what the
//! decoders want. Any error, the server closing the stream, or a stall (no
//! frame for `stall_timeout`, which also bounds each request) ends the
//! session: it is dropped, which makes retina send one TEARDOWN on the
//! session's own connection and then close it ([`TeardownPolicy::Auto`]; for
//! UDP, or a live555 server with its stale-TCP-session bug, retina keeps
//! retrying on fresh connections until the session expires). The camera goes
//! to `connecting` with the error chain as its reason, the sink is told of the
//! discontinuity, and the next session starts after a jittered backoff. Before
//! each session the camera's [`SessionGroup`] is awaited until the previous
//! session's TEARDOWN has finished, so a camera that allows a single session
//! never sees two. Every await is raced against shutdown.
//!
//! Why not `TeardownPolicy::Always`: when the connection itself was lost, it
//! retries TEARDOWN on fresh connections until the server confirms, and
//! GStreamer's server (like most) has already dropped a TCP-interleaved
//! session with its connection and answers 454, so every reconnect waited out
//! the whole session timeout (60 s) in `await_stale_sessions`.
//!
//! Memory: the source itself allocates nothing per frame (one bounded copy
//! into a packet buffer), but retina assembles each frame in a `Vec` of its
//! own and frees it after the copy; that is the one per-frame allocation on
//! this path, bounded by the frame size, and it is retina's, not ours. No task
//! or thread is spawned per reconnect by this module; retina spawns one short
//! tokio task per dropped session to send its TEARDOWN, which ends when the
//! TEARDOWN is answered or the session expires. Name lookup: tokio resolves a
//! host name with `getaddrinfo` on its blocking pool; a URL with an IP
//! address literal needs no lookup at all, so on a box whose cameras are
//! configured by address the runtime's (start-up sized) blocking pool is never
//! used by sources.

use super::sink::PacketSink;
use super::{refuse, SourceSpec};
use crate::backoff::{seed_from, Backoff, Jitter};
use crate::metrics::{CameraState, DropReason};
use crate::packet::Codec;
use crate::shutdown::Shutdown;
use futures_util::StreamExt;
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, Stream,
    TcpTransportOptions, TeardownPolicy, Transport,
};
use retina::codec::{CodecItem, FrameFormat};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Sent as `User-Agent` with every request: `vigil/<version>`.
pub(crate) fn user_agent() -> String {
    format!("vigil/{}", crate::version::get())
}

/// A session that delivered frames for this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// How a session ended.
enum Ended {
    /// Retry after backoff, for this reason.
    Retry(String),
    /// The camera cannot be played; its state says why.
    Fatal,
}

/// The error and its sources, joined with ": ".
fn chain(what: &str, e: &dyn std::error::Error) -> String {
    let mut s = format!("{what}: {e}");
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

/// Decodes `%XX` escapes (URL user info is percent-encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL without user info (retina refuses it there) and the credentials:
/// the configured ones, else those the URL carried.
pub(crate) fn split_credentials(
    mut url: url::Url,
    spec: &SourceSpec,
) -> (url::Url, Option<Credentials>) {
    let from_url = (!url.username().is_empty()).then(|| Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let creds = match &spec.username {
        Some(username) => Some(Credentials {
            username: username.clone(),
            password: spec.password.clone().unwrap_or_default(),
        }),
        None => from_url,
    };
    (url, creds)
}

/// The index and codec of the first H.264/H.265 video stream.
pub(crate) fn pick_stream(streams: &[Stream]) -> Option<(usize, Codec)> {
    streams
        .iter()
        .enumerate()
        .find_map(|(i, s)| match (s.media(), s.encoding_name()) {
            ("video", "h264") => Some((i, Codec::H264)),
            ("video", "h265") => Some((i, Codec::H265)),
            _ => None,
        })
}

/// Plays the RTSP stream at `url` until shutdown, reconnecting after every
/// failure; returns early only when the stream cannot be played at all (no
/// H.264/H.265 video, or a codec `accepts` refuses), with the camera in
/// state error.
pub(crate) async fn run(
    url: url::Url,
    spec: &SourceSpec,
    sink: &mut PacketSink,
    accepts: fn(Codec) -> bool,
    shutdown: &mut Shutdown,
) {
    let (url, creds) = split_credentials(url, spec);
    let name = sink.metrics().name.clone();
    let group = Arc::new(SessionGroup::default().named(name.clone()));
    let mut backoff = Backoff::new(
        spec.backoff_min,
        spec.backoff_max,
        Jitter::Decorrelated,
        HEALTHY_SESSION,
        seed_from(&name),
    );
    let mut first = true;
    loop {
        // The previous session's TEARDOWN comes first.
        let stale = group.stale_sessions();
        if stale.num_sessions > 0 {
            tokio::select! {
                _ = group.await_stale_sessions(&stale) => {}
                _ = shutdown.requested() => return,
            }
        }
        if !first {
            sink.metrics().reconnects.inc();
        }
        first = false;
        let mut streamed = Duration::ZERO;
        let ended = tokio::select! {
            ended = run_once(&url, &creds, &group, spec, sink, accepts, &mut streamed) => ended,
            _ = shutdown.requested() => return,
        };
        let reason = match ended {
            Ended::Fatal => return,
            Ended::Retry(reason) => reason,
        };
        sink.metrics().set_state(CameraState::Connecting, &reason);
        sink.discontinuity();
        backoff.session_ended(streamed);
        let delay = backoff.next_delay();
        log::debug!("camera {name}: reconnecting in {delay:?}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.requested() => return,
        }
    }
}

/// One session: open, play, and copy frames to `sink` until it fails.
/// `streamed` is kept at how long frames have been flowing.
async fn run_once(
    url: &url::Url,
    creds: &Option<Credentials>,
    group: &Arc<SessionGroup>,
    spec: &SourceSpec,
    sink: &mut PacketSink,
    accepts: fn(Codec) -> bool,
    streamed: &mut Duration,
) -> Ended {
    let step = spec.stall_timeout;
    let timed_out = |what: &str| Ended::Retry(format!("{what}: no answer within {step:?}"));
    let options = SessionOptions::default()
        .creds(creds.clone())
        .user_agent(user_agent())
        .session_group(Arc::clone(group))
        .teardown(TeardownPolicy::Auto);
    let mut session =
        match tokio::time::timeout(step, Session::describe(url.clone(), options)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ended::Retry(chain("DESCRIBE", &e)),
            Err(_) => return timed_out("DESCRIBE"),
        };
    let Some((stream, codec)) = pick_stream(session.streams()) else {
        let offered: Vec<String> = session
            .streams()
            .iter()
            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
            .collect();
        let reason = format!(
            "no H.264 or H.265 video stream (offered: {})",
            offered.join(", ")
        );
        sink.metrics().set_state(CameraState::Error, &reason);
        return Ended::Fatal;
    };
    if refuse(sink, codec, accepts) {
        return Ended::Fatal;
    }
    let setup = SetupOptions::default()
        .transport(Transport::Tcp(TcpTransportOptions::default()))
        .frame_format(FrameFormat::SIMPLE);
    match tokio::time::timeout(step, session.setup(stream, setup)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Ended::Retry(chain("SETUP", &e)),
        Err(_) => return timed_out("SETUP"),
    }
    let playing = match tokio::time::timeout(step, session.play(PlayOptions::default())).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Ended::Retry(chain("PLAY", &e)),
        Err(_) => return timed_out("PLAY"),
    };
    let mut frames = match playing.demuxed() {
        Ok(d) => d,
        Err(e) => return Ended::Retry(chain("stream", &e)),
    };
    let stall = tokio::time::sleep(step);
    tokio::pin!(stall);
    let mut started: Option<Instant> = None;
    loop {
        let item = tokio::select! {
            item = frames.next() => item,
            _ = &mut stall => return Ended::Retry(format!("stalled: no frame for {step:?}")),
        };
        let frame = match item {
            None => return Ended::Retry("the server ended the stream".to_owned()),
            Some(Err(e)) => return Ended::Retry(chain("stream", &e)),
            Some(Ok(CodecItem::VideoFrame(f))) if f.stream_id() == stream => f,
            Some(Ok(_)) => continue,
        };
        let now = Instant::now();
        stall.as_mut().reset(now + step);
        let since = *started.get_or_insert_with(|| {
            sink.metrics().set_state(CameraState::Streaming, "");
            now
        });
        *streamed = now - since;
        if frame.loss() > 0 {
            // Lost packets: this and later frames may miss references.
            sink.discontinuity();
        }
        let ts = frame.timestamp();
        let us = i128::from(ts.elapsed()) * 1_000_000 / i128::from(ts.clock_rate().get());
        let pts_us = i64::try_from(us).unwrap_or(0);
        if let Some(mut p) = sink.begin(codec, pts_us, frame.is_random_access_point()) {
            if p.extend_from_slice(frame.data()).is_ok() {
                sink.send(p);
            } else {
                sink.abandon(p, DropReason::Oversize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::openh264::software_accepts;
    use crate::metrics::CameraMetrics;
    use crate::source::annexb::tests::harness;
    use crate::source::sink::PacketQueue;
    use std::io::BufRead;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    fn spec(url: &str) -> SourceSpec {
        SourceSpec {
            url: url.to_owned(),
            codec_hint: None,
            username: None,
            password: None,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(3),
            paced: true,
        }
    }

    #[test]
    fn credentials_move_out_of_the_url() {
        let url = url::Url::parse("rtsp://adm%40n:p%3Ass@10.1.1.1:554/live").unwrap();
        let (clean, creds) = split_credentials(url.clone(), &spec("x"));
        assert_eq!(clean.as_str(), "rtsp://10.1.1.1:554/live");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("adm@n", "p:ss")
        );
        let mut s = spec("x");
        s.username = Some("cfg".into());
        let (_, creds) = split_credentials(url, &s);
        assert_eq!(creds.unwrap().username, "cfg");
        let (_, none) = split_credentials(url::Url::parse("rtsp://h/x").unwrap(), &spec("x"));
        assert!(none.is_none());
    }

    async fn wait_for(
        what: &str,
        metrics: &CameraMetrics,
        limit: Duration,
        mut done: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; camera: {:?}",
                metrics.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `n` units and returns their (key frame, discontinuity) flags.
    async fn frames(queue: &PacketQueue, metrics: &CameraMetrics, n: usize) -> Vec<(bool, bool)> {
        let mut got = Vec::new();
        wait_for("frames", metrics, Duration::from_secs(30), || {
            while let Some(p) = queue.try_pop() {
                got.push((p.keyframe, p.discontinuity));
            }
            got.len() >= n
        })
        .await;
        got
    }

    #[test]
    fn a_server_that_never_answers_is_retried_with_backoff() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Accepts connections and never says a word.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("rtsp://{}/x", listener.local_addr().unwrap());
            let acceptor = tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((c, _)) = listener.accept().await {
                    held.push(c);
                }
            });
            let mut h = harness(1024);
            let mut s = spec(&url);
            s.stall_timeout = Duration::from_millis(200);
            s.backoff_min = Duration::from_millis(10);
            s.backoff_max = Duration::from_millis(50);
            let (trigger, shutdown) = crate::shutdown::channel();
            let metrics = h.metrics.clone();
            let sink = std::mem::replace(&mut h.sink, harness(16).sink);
            let task = tokio::spawn(crate::source::run(s, sink, software_accepts, shutdown));
            wait_for("3 reconnects", &metrics, Duration::from_secs(10), || {
                metrics.reconnects.get() >= 3
            })
            .await;
            let status = metrics.status();
            assert_eq!(status.state, CameraState::Connecting);
            assert!(
                status.reason.starts_with("DESCRIBE: no answer within"),
                "{}",
                status.reason
            );
            trigger.trigger();
            task.await.unwrap();
            acceptor.abort();
            assert_eq!(metrics.status().state, CameraState::Stopped);
        });
    }

    /// tests/support/rtsp_server.py, or `$VIGIL_RTSP_SERVER`.
    fn server_script() -> PathBuf {
        std::env::var_os("VIGIL_RTSP_SERVER").map_or_else(
            || {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/support/rtsp_server.py"
                ))
            },
            PathBuf::from,
        )
    }

    /// A GStreamer RTSP server on 127.0.0.1, killed when dropped.
    struct Server {
        child: Child,
        url: String,
    }

    impl Server {
        fn start(args: &[&str]) -> Server {
            let script = server_script();
            assert!(
                script.exists(),
                "RTSP server script {} missing (set VIGIL_RTSP_SERVER)",
                script.display()
            );
            let mut child = Command::new("/usr/bin/python3")
                .arg(&script)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} with /usr/bin/python3: {e} (scripts/install-deps.sh rtsp)",
                        script.display()
                    )
                });
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    panic!(
                        "the RTSP server printed no READY line \
                     (is GStreamer installed? scripts/install-deps.sh rtsp)"
                    )
                });
            let url = line.strip_prefix("READY ").expect("READY line").to_owned();
            Server { child, url }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn streams_from_a_real_server_and_reconnects_when_it_returns() {
        let auth = [
            "--user",
            "vigil",
            "--password",
            "s3cret",
            "--auth",
            "digest",
        ];
        let first = Server::start(&[&["--port", "0", "--mode", "h264-test"][..], &auth].concat());
        let port = url::Url::parse(&first.url)
            .unwrap()
            .port()
            .unwrap()
            .to_string();
        let mut s = spec(&first.url);
        s.username = Some("vigil".into());
        s.password = Some("s3cret".into());
        let h = harness(1 << 20);
        let (queue, metrics) = (h.queue.clone(), h.metrics.clone());
        let (trigger, shutdown) = crate::shutdown::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let task = tokio::spawn(crate::source::run(s, h.sink, software_accepts, shutdown));
            let got = frames(&queue, &metrics, 51).await;
            assert_eq!(
                got[0],
                (true, true),
                "a key frame first, marked as a discontinuity"
            );
            assert!(got[1..].iter().all(|f| !f.1));
            assert_eq!(metrics.status().state, CameraState::Streaming);
            assert_eq!(metrics.reconnects.get(), 0);

            drop(first);
            wait_for("connecting", &metrics, Duration::from_secs(10), || {
                metrics.status().state == CameraState::Connecting
            })
            .await;
            let reason = metrics.status().reason;
            assert!(!reason.is_empty());
            eprintln!("after the kill: {reason}");
            while queue.try_pop().is_some() {}

            let _second =
                Server::start(&[&["--port", &port, "--mode", "h264-test"][..], &auth].concat());
            let got = frames(&queue, &metrics, 10).await;
            assert_eq!(
                got[0],
                (true, true),
                "the new session starts at a key frame"
            );
            assert!(metrics.reconnects.get() >= 1);
            assert_eq!(metrics.status().state, CameraState::Streaming);

            trigger.trigger();
            task.await.unwrap();
            assert_eq!(metrics.status().state, CameraState::Stopped);
        });
    }

    #[test]
    fn an_h265_camera_is_refused_by_the_software_backend() {
        let server = Server::start(&[
            "--port",
            "0",
            "--mode",
            "h265-test",
            "--width",
            "320",
            "--height",
            "240",
        ]);
        let h = harness(1 << 20);
        let metrics = h.metrics.clone();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let run = crate::source::run(spec(&server.url), h.sink, software_accepts, shutdown);
            tokio::time::timeout(Duration::from_secs(20), run)
                .await
                .expect("run returns");
        });
        let status = metrics.status();
        assert_eq!(status.state, CameraState::Error);
        let expected = crate::decode::DecodeError::Unsupported(Codec::H265).to_string();
        assert_eq!(status.reason, expected);
        assert_eq!(metrics.reconnects.get(), 0);
    }
}
