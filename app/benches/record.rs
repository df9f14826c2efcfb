//! Recording figures (`make bench-record`): what copying each access unit
//! into the pre-roll ring costs the decoder thread, and how fast the clip
//! writer turns clips into fsynced MP4 files in a real store on this
//! machine's disk. Figures only, no assertions.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::config::{ClipDelivery, RecordConfig};
use vigil::metrics::CameraMetrics;
use vigil::packet::{Codec, PacketBuf};
use vigil::record::recorder::{camera_bytes, writer_bytes, CameraRecorder, ClipWriter};
use vigil::store::{Store, StoreLimits};

/// A 1080p25 H.264 stream of `seconds`, about 6 Mbit/s, a key frame every
/// 2 s, cut into access units `(bytes, key)` at its AUDs.
fn access_units(dir: &Path, seconds: u32) -> Vec<(Vec<u8>, bool)> {
    let path = dir.join("cam.h264");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=1920x1080:rate=25",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "6M",
            "-g",
            "50",
        ])
        .args([
            "-x264-params",
            "repeat-headers=1",
            "-bsf:v",
            "h264_metadata=aud=insert",
        ])
        .args(["-f", "h264"])
        .arg(&path)
        .output()
        .expect("ffmpeg is needed (make deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = std::fs::read(&path).unwrap();
    let mut starts = Vec::new();
    for i in 0..stream.len().saturating_sub(3) {
        if stream[i..i + 3] == [0, 0, 1] {
            let at = if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            starts.push((at, stream[i + 3] & 0x1f));
        }
    }
    let mut units: Vec<(Vec<u8>, bool)> = Vec::new();
    for (n, &(start, kind)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(stream.len(), |&(s, _)| s);
        if kind == 9 || units.is_empty() {
            units.push((Vec::new(), false));
        }
        let unit = units.last_mut().unwrap();
        unit.0.extend_from_slice(&stream[start..end]);
        unit.1 |= kind == 5;
    }
    units
}

fn main() {
    let dir = std::env::temp_dir().join(format!("vigil-bench-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let units = access_units(&dir, 20);
    let bytes: usize = units.iter().map(|u| u.0.len()).sum();
    println!(
        "stream: {} units of 1920x1080 H.264, {:.1} Mbit/s",
        units.len(),
        bytes as f64 * 8.0 / 20.0 / 1e6
    );

    let config = RecordConfig {
        enabled: true,
        pre_roll: Duration::from_secs(5),
        post_roll: Duration::from_secs(5),
        max_length: Duration::from_secs(60),
        silence: Duration::from_secs(5),
        jump: Duration::from_secs(10),
        ring_size: 8 << 20,
        ring_units: 2048,
        fragment: Duration::from_secs(1),
        fragment_size: 4 << 20,
        upstream: ClipDelivery::Link,
    };
    println!(
        "fixed memory: {:.1} MiB per camera (ring), {:.1} MiB for the writer",
        camera_bytes(&config) as f64 / 1048576.0,
        writer_bytes(&config, 1) as f64 / 1048576.0
    );

    // 1. The decoder thread's share: the tracker and one copy into the ring.
    let metrics = Arc::new(CameraMetrics::new("bench"));
    let recorder = CameraRecorder::new(&config, metrics.clone());
    let mut packet = PacketBuf::with_capacity(4 << 20);
    let rounds = 20;
    let t = Instant::now();
    for round in 0..rounds {
        for (i, (data, key)) in units.iter().enumerate() {
            let n = (round * units.len() + i) as i64;
            packet.begin(Codec::H264, n * 40_000, *key);
            packet.extend_from_slice(data).unwrap();
            recorder.on_packet(&packet, (n * 40) as u64);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let n = rounds * units.len();
    println!(
        "ring: {n} units in {:.3} s: {:.1} µs per unit, {:.0} MiB/s copied",
        dt,
        dt * 1e6 / n as f64,
        (rounds * bytes) as f64 / 1048576.0 / dt
    );

    // 2. The writer: 10 s clips (5 s pre-roll, 5 s post-roll) of this
    // stream, written and fsynced into a store on disk.
    let store = Arc::new(
        Store::open(
            &dir.join("data"),
            StoreLimits {
                max_bytes: 1 << 30,
                max_events: 100_000,
                max_age: Duration::from_secs(86_400),
                outbox_max_bytes: 1 << 20,
                cache_bytes: 4 << 20,
            },
            [false, false],
        )
        .unwrap(),
    );
    let metrics = Arc::new(CameraMetrics::new("bench"));
    let recorder = Arc::new(CameraRecorder::new(&config, metrics.clone()));
    let mut writer = ClipWriter::new(
        &config,
        vec![recorder.clone()],
        store.clone(),
        Instant::now(),
        Arc::new(AtomicBool::new(false)),
    );
    let clips = 12;
    let mut busy = Duration::ZERO;
    let (mut now_ms, mut seq) = (0u64, 0i64);
    for clip in 0..clips {
        // 250 units (10 s): the event at 5 s opens the clip with 5 s of pre-roll.
        for i in 0..250 {
            let (data, key) = &units[(seq as usize) % units.len()];
            packet.begin(Codec::H264, seq * 40_000, *key);
            packet.extend_from_slice(data).unwrap();
            recorder.on_packet(&packet, now_ms);
            if i == 125 {
                recorder.on_event(clip + 1, seq * 40_000, now_ms);
            }
            seq += 1;
            now_ms += 40;
            if now_ms.is_multiple_of(200) {
                let t = Instant::now();
                writer.step(now_ms);
                busy += t.elapsed();
            }
        }
    }
    let t = Instant::now();
    writer.finish_all();
    busy += t.elapsed();
    let r = &metrics.record;
    let written = r.bytes_written.get() as f64 / 1048576.0;
    println!(
        "writer: {} clips ({} finished), {:.1} MiB, {} units: {:.2} s of writer time, \
         {:.0} MiB/s, {:.1} clips/s (each fsynced and committed to the store)",
        r.clips_opened.get(),
        r.clips_finished.get(),
        written,
        r.units_written.get(),
        busy.as_secs_f64(),
        written / busy.as_secs_f64(),
        r.clips_finished.get() as f64 / busy.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
