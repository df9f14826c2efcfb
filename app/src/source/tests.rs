//! Tests of `source::run` over files: no allocation after warm-up, pacing,
//! unpaced playback, unplayable sources and their reasons (moved out of
//! mod.rs, which was over 700 lines with them).

use super::*;
use crate::decode::openh264::software_accepts;
use crate::source::annexb::tests::harness;
use tokio::time::Instant;

fn spec(url: &str) -> SourceSpec {
    SourceSpec {
        url: url.to_owned(),
        codec_hint: None,
        username: None,
        password: None,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(2),
        paced: true,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Fails unless the test binary counts allocations (lib.rs installs the
/// counting allocator under cfg(test)); a zero count would prove nothing.
fn assert_allocations_are_counted() {
    let before = crate::alloc_count::thread_counts().ours;
    drop(std::hint::black_box(Box::new(7u64)));
    assert!(
        crate::alloc_count::thread_counts().ours > before,
        "alloc_count::CountingAllocator is not the test binary's global allocator"
    );
}

fn open(path: &Path, codec: Option<Codec>) -> Box<dyn FileSource> {
    match codec {
        Some(c) => Box::new(annexb::AnnexBFile::open(path, c).unwrap()),
        None => Box::new(mp4file::Mp4File::open(path).unwrap()),
    }
}

impl FileSource for Box<dyn FileSource> {
    fn codec(&self) -> Codec {
        (**self).codec()
    }
    fn next_unit(&mut self, sink: &mut PacketSink) -> Result<FileUnit, SourceError> {
        (**self).next_unit(sink)
    }
}

#[test]
fn file_sources_allocate_nothing_after_warm_up() {
    assert_allocations_are_counted();
    let h265_mp4 = test_media::ffmpeg(
        "main-h265-copy.mp4",
        &format!("-i {} -c copy -f mp4 {{out}}", test_media::h265().display()),
    );
    let files = [
        (
            "annexb h264",
            test_media::h264_high(),
            Some(Codec::H264),
            60,
        ),
        ("annexb h265", test_media::h265(), Some(Codec::H265), 40),
        ("mp4 h264", test_media::h264_high_mp4(), None, 60),
        ("mp4 h265", h265_mp4, None, 40),
    ];
    for (name, path, codec, per_pass) in files {
        let mut h = harness(1 << 20);
        let mut src = open(&path, codec);
        let mut pass = |src: &mut Box<dyn FileSource>| {
            let mut sent = 0;
            for _ in 0..per_pass {
                if let Some(p) = src.next_unit(&mut h.sink).unwrap().packet {
                    h.sink.send(p);
                }
                sent += usize::from(h.queue.try_pop().is_some());
            }
            sent
        };
        pass(&mut src); // warm-up
        let before = crate::alloc_count::thread_counts().ours;
        let sent: usize = (0..3).map(|_| pass(&mut src)).sum();
        let allocations = crate::alloc_count::thread_counts().ours - before;
        assert_eq!(sent, 3 * per_pass, "{name}");
        assert_eq!(
            allocations, 0,
            "{name}: allocations in three passes after warm-up"
        );
    }
}

/// 10 frames at 100 fps: a pass takes 0.1 s of playback.
fn fast_clip(kind: &str) -> PathBuf {
    test_media::ffmpeg(
        &format!("fast.{kind}"),
        &format!(
            "-f lavfi -i testsrc2=size=320x240:rate=100 -frames:v 10 -c:v \
             libx264 -bf 2 -g 5 -f {kind} {{out}}",
        ),
    )
}

/// Plays `src` in real time until `watch` returns.
async fn play_until<T>(
    src: &mut Box<dyn FileSource>,
    sink: &mut PacketSink,
    watch: impl std::future::Future<Output = T>,
) -> T {
    let (_trigger, mut shutdown) = crate::shutdown::channel();
    tokio::select! {
        _ = play_file(src, sink, true, &mut shutdown) => panic!("playback ended"),
        t = watch => t,
    }
}

#[test]
fn paced_playback_allocates_nothing_after_warm_up() {
    assert_allocations_are_counted();
    for (path, codec) in [
        (fast_clip("h264"), Some(Codec::H264)),
        (fast_clip("mp4"), None),
    ] {
        let mut h = harness(1 << 20);
        let queue = h.queue.clone();
        let mut src = open(&path, codec);
        let allocations = runtime().block_on(async {
            let watch = async {
                let (mut n, mut before) = (0, 0);
                while n < 60 {
                    while queue.try_pop().is_some() {
                        n += 1;
                    }
                    if n < 10 {
                        before = crate::alloc_count::thread_counts().ours;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                crate::alloc_count::thread_counts().ours - before
            };
            play_until(&mut src, &mut h.sink, watch).await
        });
        assert_eq!(
            allocations,
            0,
            "{}: allocations while playing",
            path.display()
        );
    }
}

#[test]
fn unpaced_playback_drops_nothing_and_allocates_nothing() {
    assert_allocations_are_counted();
    let files = [
        (test_media::h264_high(), Some(Codec::H264)),
        (test_media::h264_high_mp4(), None),
    ];
    for (path, codec) in files {
        let mut h = harness(1 << 20);
        let (queue, metrics) = (h.queue.clone(), h.metrics.clone());
        let mut src = open(&path, codec);
        let (_trigger, mut shutdown) = crate::shutdown::channel();
        let (allocations, elapsed) = runtime().block_on(async {
            let watch = async {
                let start = Instant::now();
                let (mut n, mut before) = (0, 0);
                while n < 600 {
                    while queue.try_pop().is_some() {
                        n += 1;
                    }
                    if n < 60 {
                        before = crate::alloc_count::thread_counts().ours;
                    }
                    tokio::task::yield_now().await;
                }
                let after = crate::alloc_count::thread_counts().ours;
                (after - before, start.elapsed())
            };
            tokio::select! {
                _ = play_file(&mut src, &mut h.sink, false, &mut shutdown) => unreachable!(),
                r = watch => r,
            }
        });
        let name = path.display();
        assert_eq!(metrics.packets_dropped.lost(), 0, "{name}: dropped units");
        assert_eq!(allocations, 0, "{name}: allocations after warm-up");
        // Paced, 600 units take 24 s.
        assert!(elapsed < Duration::from_secs(4), "{name}: {elapsed:?}");
    }
}

#[test]
fn files_play_at_their_own_frame_rate() {
    // 25 fps (H.264, from the SPS), 30 fps (H.265), 100 fps, an MP4's stts.
    let files = [
        (test_media::h264_high(), Some(Codec::H264), 40_000),
        (test_media::h265(), Some(Codec::H265), 33_333),
        (fast_clip("h264"), Some(Codec::H264), 10_000),
        (test_media::h264_high_mp4(), None, 40_000),
    ];
    for (path, codec, frame_us) in files {
        let mut h = harness(1 << 20);
        let queue = h.queue.clone();
        let mut src = open(&path, codec);
        let elapsed = runtime().block_on(async {
            let watch = async {
                let mut times = Vec::new();
                while times.len() < 12 {
                    if queue.try_pop().is_some() {
                        times.push(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                times[11] - times[1]
            };
            play_until(&mut src, &mut h.sink, watch).await
        });
        let expected = Duration::from_micros(10 * frame_us);
        let diff = elapsed.abs_diff(expected);
        assert!(
            diff < Duration::from_millis(15),
            "{}: {elapsed:?} vs {expected:?}",
            path.display()
        );
    }
}

async fn run_to_end(url: &str, accepts: fn(Codec) -> bool) -> crate::metrics::CameraStatus {
    let h = harness(1 << 20);
    let metrics = h.metrics.clone();
    let (_trigger, shutdown) = crate::shutdown::channel();
    tokio::time::timeout(
        Duration::from_secs(10),
        run(spec(url), h.sink, accepts, shutdown),
    )
    .await
    .expect("run returns by itself");
    metrics.status()
}

#[test]
fn unplayable_sources_end_in_error_state_with_the_reason() {
    runtime().block_on(async {
        let s = run_to_end("/nonexistent/cam.h264", software_accepts).await;
        assert_eq!(s.state, CameraState::Error);
        assert!(s.reason.contains("/nonexistent/cam.h264"), "{}", s.reason);

        let s = run_to_end("ftp://cam/x", software_accepts).await;
        assert_eq!(s.state, CameraState::Error);
        assert!(s.reason.contains("ftp://cam/x"), "{}", s.reason);

        let unsupported = crate::decode::DecodeError::Unsupported(Codec::H265).to_string();
        let s = run_to_end(test_media::h265().to_str().unwrap(), software_accepts).await;
        assert_eq!(
            (s.state, s.reason.as_str()),
            (CameraState::Error, unsupported.as_str())
        );
        let mp4 = test_media::ffmpeg(
            "refused-h265.mp4",
            &format!("-i {} -c copy -f mp4 {{out}}", test_media::h265().display()),
        );
        let s = run_to_end(mp4.to_str().unwrap(), software_accepts).await;
        assert_eq!(
            (s.state, s.reason.as_str()),
            (CameraState::Error, unsupported.as_str())
        );

        let empty = test_media::dir().join("empty-file.h264");
        std::fs::write(&empty, b"").unwrap();
        let s = run_to_end(empty.to_str().unwrap(), software_accepts).await;
        assert_eq!(s.state, CameraState::Error);
        assert!(s.reason.contains("no h264 access unit"), "{}", s.reason);
    });
}

#[test]
fn a_playing_file_streams_until_shutdown() {
    let h = harness(1 << 20);
    let (metrics, queue) = (h.metrics.clone(), h.queue.clone());
    let (trigger, shutdown) = crate::shutdown::channel();
    let url = format!("file://{}", test_media::h264_high_mp4().display());
    runtime().block_on(async move {
        let task = tokio::spawn(run(spec(&url), h.sink, software_accepts, shutdown));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(metrics.status().state, CameraState::Streaming);
        assert!(!queue.is_empty());
        trigger.trigger();
        task.await.unwrap();
        assert_eq!(metrics.status().state, CameraState::Stopped);
    });
}

#[test]
fn debug_output_hides_the_password() {
    let mut s = spec("rtsp://cam/x");
    s.password = Some("hunter2".into());
    assert!(!format!("{s:?}").contains("hunter2"));
}
