//! What an update leaves on the data partition for the next boot, in
//! `<data_dir>/update/`:
//!
//! - `pending.json`: written after a successful install, before the reboot:
//!   which slot and version should come up, and which cameras streamed
//!   before (what the new system must show again). Removed once the new
//!   system was judged, either way.
//! - `last.json`: the last update's result, shown on the page until the
//!   next update ("update to 0.3.0 failed: ...").
//! - `probation`: `SLOT SECONDS`, for the board's supervisor, which marks
//!   the slot bad and reboots when a vigil that cannot even start never
//!   removes it; `failed-to-start` is its reason, left for the old system's
//!   vigil to show.
//!
//! Every write is a temporary file, fsync and rename, so a power cut leaves
//! the old file or the new one. Reads are capped at [`MAX_FILE`]; a file
//! that does not parse is reported and treated as absent.

use super::UpdateError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest record read.
const MAX_FILE: u64 = 16 << 10;

/// An installed update waiting for its first boot to be judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The slot that installed it.
    pub from_slot: String,
    /// The version that installed it.
    pub from_version: String,
    /// The slot it installed into.
    pub to_slot: String,
    /// The version it installed.
    pub to_version: String,
    /// Cameras streaming when it was installed.
    pub streaming: Vec<String>,
    /// When it was installed (Unix seconds).
    pub installed_unix: i64,
}

/// How the last update ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastResult {
    /// Whether the new system was committed.
    pub ok: bool,
    /// The version it went from ("" when not known).
    pub from_version: String,
    /// The version it went to ("" when not known).
    pub to_version: String,
    /// The sentence for the page.
    pub message: String,
    /// When it was decided (Unix seconds).
    pub unix: i64,
}

/// The records in one directory.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records under `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Records {
        Records { dir: dir.into() }
    }

    /// The directory (uploads are written here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pending update, if one is recorded.
    pub fn pending(&self) -> Result<Option<Pending>, UpdateError> {
        self.read_json("pending.json")
    }

    /// Records `p` and the supervisor's deadline (`probation` plus the
    /// time a slow start takes, `grace`).
    pub fn set_pending(&self, p: &Pending, deadline: Duration) -> Result<(), UpdateError> {
        self.write_json("pending.json", p)?;
        self.write(
            "probation",
            format!("{} {}\n", p.to_slot, deadline.as_secs()).as_bytes(),
        )
    }

    /// Removes the pending update and the supervisor's deadline.
    pub fn clear_pending(&self) -> Result<(), UpdateError> {
        for name in ["probation", "pending.json"] {
            remove(&self.path(name))?;
        }
        Ok(())
    }

    /// The last update's result.
    pub fn last(&self) -> Result<Option<LastResult>, UpdateError> {
        self.read_json("last.json")
    }

    /// Records the last update's result.
    pub fn set_last(&self, r: &LastResult) -> Result<(), UpdateError> {
        self.write_json("last.json", r)
    }

    /// Removes an upload or bundle a power cut left behind (`upload.part`,
    /// `bundle.raucb`: nothing is receiving or installing at a start).
    pub fn remove_leftovers(&self) {
        for name in [super::upload::PART, super::upload::BUNDLE] {
            let path = self.path(name);
            match std::fs::remove_file(&path) {
                Ok(()) => log::warn!(
                    "update: removed {} left by an interrupted update",
                    path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("update: cannot remove {}: {e}", path.display()),
            }
        }
    }

    /// The supervisor's reason for giving up on a new system (read once:
    /// the file is removed).
    pub fn take_supervisor_reason(&self) -> Result<Option<String>, UpdateError> {
        let path = self.path("failed-to-start");
        let Some(text) = read_capped(&path)? else {
            return Ok(None);
        };
        remove(&path)?;
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        Ok((!text.is_empty()).then_some(text))
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, UpdateError> {
        let path = self.path(name);
        let Some(bytes) = read_capped(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            UpdateError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), UpdateError> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            UpdateError::io(
                self.path(name),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        self.write(name, &bytes)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), UpdateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| UpdateError::io(&self.dir, e))?;
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself survives a power cut once the directory is
            // synced.
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| UpdateError::io(&path, e))
    }
}

/// The file's bytes (at most [`MAX_FILE`]), or `None` when it is absent.
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, UpdateError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UpdateError::io(path, e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| UpdateError::io(path, e))?;
    Ok(Some(bytes))
}

fn remove(path: &Path) -> Result<(), UpdateError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpdateError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn pending() -> Pending {
        Pending {
            from_slot: "A".into(),
            from_version: "0.2.0".into(),
            to_slot: "B".into(),
            to_version: "0.3.0".into(),
            streaming: vec!["door".into()],
            installed_unix: 1_800_000_000,
        }
    }

    #[test]
    fn pending_round_trips_with_the_supervisor_s_deadline() {
        let dir = TempDir::new("update-records");
        let r = Records::new(dir.0.join("update"));
        assert_eq!(r.pending().expect("read"), None);
        r.set_pending(&pending(), Duration::from_secs(180))
            .expect("write");
        assert_eq!(r.pending().expect("read"), Some(pending()));
        assert_eq!(
            std::fs::read_to_string(dir.0.join("update/probation")).expect("deadline"),
            "B 180\n"
        );
        r.clear_pending().expect("clear");
        assert_eq!(r.pending().expect("read"), None);
        assert!(!dir.0.join("update/probation").exists());
        // Clearing twice is not an error.
        r.clear_pending().expect("clear again");
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file_and_a_huge_one_is_not_read_whole() {
        let dir = TempDir::new("update-records-bad");
        let r = Records::new(&dir.0);
        std::fs::write(dir.0.join("last.json"), b"{\"ok\": tru").expect("write");
        let e = r.last().unwrap_err();
        assert!(e.to_string().contains("last.json"), "{e}");
        std::fs::write(dir.0.join("last.json"), vec![b' '; 1 << 20]).expect("write");
        assert!(r.last().is_err());
    }

    #[test]
    fn the_supervisor_s_reason_is_read_once() {
        let dir = TempDir::new("update-records-reason");
        let r = Records::new(&dir.0);
        assert_eq!(r.take_supervisor_reason().expect("read"), None);
        std::fs::write(
            dir.0.join("failed-to-start"),
            "vigil did not start within 180 s\n",
        )
        .expect("write");
        assert_eq!(
            r.take_supervisor_reason().expect("read").as_deref(),
            Some("vigil did not start within 180 s")
        );
        assert_eq!(r.take_supervisor_reason().expect("read"), None);
    }
}
