//! Test media made with ffmpeg (installed by `make test`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs ffmpeg with `args`, failing the test with its output on error.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg missing: run `make deps`");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A synthetic H.264 Annex-B clip (testsrc2, High profile with B-frames).
pub fn h264_clip(dir: &Path, name: &str, seconds: u32, size: &str, fps: u32) -> PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate={fps}"),
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        &fps.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
        p.to_str().unwrap(),
    ]);
    p
}

/// A synthetic H.265 Annex-B clip.
pub fn h265_clip(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "hevc",
        p.to_str().unwrap(),
    ]);
    p
}

/// Copies `src` to `dst` with bytes overwritten by a seeded generator:
/// every `every`-th byte past the first `keep` bytes is scrambled.
pub fn corrupt_copy(src: &Path, dst: &Path, keep: usize, every: usize, seed: u64) {
    let mut data = std::fs::read(src).expect("read clip");
    let mut x = seed | 1;
    for (i, b) in data.iter_mut().enumerate().skip(keep) {
        if i % every == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(dst, data).expect("write corrupt clip");
}

/// A fresh temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/tmp/vigil-test-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vigil-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to the file `name` inside it; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
