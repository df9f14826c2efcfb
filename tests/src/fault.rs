//! Fault injection from outside the product: an `LD_PRELOAD` shim
//! (`tests/fakes/slow_fsync.c`) that makes `fsync` and `fdatasync` slow,
//! switched on and off while vigil runs by writing a delay to a file.
//!
//! The binary is dynamically linked to glibc and Rust's `File::sync_all` /
//! `sync_data` (which redb's commits and the snapshot writes use) call those
//! two functions, so the shim delays every durable commit without any hook
//! in vigil itself.

use crate::media::TempDir;
use crate::process::root;
use std::path::PathBuf;
use std::process::Command;

/// The compiled shim and its control file.
pub struct SlowFsync {
    dir: TempDir,
}

impl SlowFsync {
    /// Compiles the shim (with `$CC`, default `cc`) into a fresh temporary
    /// directory; no delay until [`SlowFsync::set_delay_ms`].
    pub fn build() -> SlowFsync {
        let dir = TempDir::new("slow-fsync");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let src = root().join("tests/fakes/slow_fsync.c");
        let out = Command::new(&cc)
            .args([
                "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O2",
            ])
            .arg("-o")
            .arg(dir.join("slow_fsync.so"))
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| panic!("{cc}: {e}"));
        assert!(
            out.status.success(),
            "building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let s = SlowFsync { dir };
        s.set_delay_ms(0);
        s
    }

    /// The environment a process needs to run under the shim.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "LD_PRELOAD".into(),
                self.dir.join("slow_fsync.so").display().to_string(),
            ),
            (
                "SLOW_FSYNC_FILE".into(),
                self.control().display().to_string(),
            ),
        ]
    }

    /// Every later `fsync`/`fdatasync` of the process sleeps `ms`
    /// milliseconds after the real call (0: none).
    pub fn set_delay_ms(&self, ms: u64) {
        // Written whole and renamed, so the shim never reads half a number.
        let tmp = self.dir.join("delay.tmp");
        std::fs::write(&tmp, ms.to_string()).expect("write the delay");
        std::fs::rename(&tmp, self.control()).expect("install the delay");
    }

    /// Calls delayed so far (the shim counts them in `<control>.count`).
    pub fn delayed_calls(&self) -> u64 {
        let mut count = self.control().into_os_string();
        count.push(".count");
        std::fs::read_to_string(count)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    fn control(&self) -> PathBuf {
        self.dir.join("delay_ms")
    }
}
