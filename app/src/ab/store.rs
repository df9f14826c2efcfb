//! The two copies on the boot partition and the order they are read and
//! written in, which is what makes a torn write harmless (the module docs of
//! `ab` and docs/decisions/0009-ab-state.md): copy 0 is written and synced
//! before copy 1 is touched, and copy 0 wins whenever it is valid.
//!
//! A box flashed before the copies existed keeps its old boot script: RAUC
//! bundles replace root slots, never the boot partition. That script reads
//! and counts down only the text file `vigil-ab.env`, so on such a box the
//! store keeps to that file alone ([`Origin::OldScript`]), written as the old
//! backend wrote it; which script is there is read from `boot.scr` itself
//! (the new one names `vigil-ab.0`).
//!
//! Copies are rewritten in place at their fixed size (open without
//! truncation, write, sync): no rename and no new file once they exist, so
//! a write changes the copy's data sector and its directory entry's times,
//! never the FAT's cluster chains, exactly as U-Boot's `fatwrite` of the
//! same size does.

use super::format::{self, SIZE};
use super::mount::BootMount;
use super::{AbError, BootState};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// The copies' file names, in the order they are written and preferred.
pub const COPIES: [&str; 2] = ["vigil-ab.0", "vigil-ab.1"];
/// The text file older boot scripts kept the state in; read only when
/// neither copy is valid, or when the boot script is an old one.
pub const LEGACY: &str = "vigil-ab.env";
/// The boot script on the partition (`mkimage -C none`: its text is in the
/// file as it is).
pub const SCRIPT: &str = "boot.scr";

/// The most of the legacy file that is read: `env export -t` of three
/// variables is under 50 bytes; anything longer is not a state.
const LEGACY_MAX: usize = 4096;
/// The most of `boot.scr` searched (this repository's is under 8 KiB).
const SCRIPT_MAX: usize = 256 * 1024;

/// Where the state that was read came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Copy 0, the normal case.
    Copy0,
    /// Copy 1: copy 0 is missing or damaged (a power cut during its write,
    /// or worse); the next write repairs it.
    Copy1,
    /// Neither copy is valid; the legacy text file of an older image.
    Legacy,
    /// Nothing valid at all: the boot script's defaults (A first, 3 each).
    Defaults,
    /// The boot script on the partition predates the copies and reads only
    /// the legacy text file, so that file is the state, read and written
    /// (its defaults when it is missing or not a state).
    OldScript,
}

/// The A/B state on the boot partition (mounted while this lives), or in a
/// directory given by `VIGIL_AB_DIR` (tests).
pub struct AbStore {
    dir: PathBuf,
    /// Held across an update's read and writes: RAUC (set-primary during an
    /// install) and vigil-supervise (mark-good) may run at once, and each
    /// would otherwise write back a state without the other's change.
    lock: PathBuf,
    /// Unmounts on drop; `None` for a plain directory.
    _mount: Option<BootMount>,
}

impl AbStore {
    /// The directory `VIGIL_AB_DIR` names, or else the partition labelled
    /// `boot`, mounted until the store drops.
    pub fn open() -> Result<AbStore, AbError> {
        if let Some(dir) = std::env::var_os("VIGIL_AB_DIR") {
            return Ok(AbStore::at(dir));
        }
        let mount = BootMount::mount()?;
        Ok(AbStore {
            dir: mount.dir().to_path_buf(),
            lock: PathBuf::from("/run/vigil-ab.lock"),
            _mount: Some(mount),
        })
    }

    /// The copies in `dir` (already mounted, or a test's directory); the
    /// update lock is the file `<dir>.lock` beside it.
    pub fn at(dir: impl Into<PathBuf>) -> AbStore {
        let dir = dir.into();
        let mut lock = dir.clone().into_os_string();
        lock.push(".lock");
        AbStore {
            dir,
            lock: lock.into(),
            _mount: None,
        }
    }

    /// The state and where it came from: copy 0 if valid, else copy 1,
    /// else the legacy file, else the defaults. A copy that cannot be read
    /// counts as damaged; only a legacy file that exists but cannot be read
    /// is an error.
    pub fn read(&self) -> Result<(BootState, Origin), AbError> {
        if !self.script_reads_copies()? {
            let state = self.read_legacy()?.unwrap_or_default();
            return Ok((state, Origin::OldScript));
        }
        for (name, origin) in COPIES.iter().zip([Origin::Copy0, Origin::Copy1]) {
            let block = read_at_most(&self.dir.join(name), SIZE + 1).unwrap_or_default();
            if let Some(state) = format::decode(&block) {
                return Ok((state, origin));
            }
        }
        Ok(match self.read_legacy()? {
            Some(state) => (state, Origin::Legacy),
            None => (BootState::default(), Origin::Defaults),
        })
    }

    /// The legacy file's state; `None` when it is missing or not a state.
    fn read_legacy(&self) -> Result<Option<BootState>, AbError> {
        let legacy = self.dir.join(LEGACY);
        match read_at_most(&legacy, LEGACY_MAX + 1) {
            Ok(text) if text.len() > LEGACY_MAX => Ok(None),
            Ok(text) => Ok(format::decode_legacy(&text)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AbError::io(legacy, e)),
        }
    }

    /// Whether the boot script reads the copies: it names them, or there is
    /// no script here (a test's directory).
    fn script_reads_copies(&self) -> Result<bool, AbError> {
        let script = self.dir.join(SCRIPT);
        match read_at_most(&script, SCRIPT_MAX) {
            Ok(bytes) => Ok(bytes
                .windows(COPIES[0].len())
                .any(|w| w == COPIES[0].as_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(AbError::io(script, e)),
        }
    }

    /// Reads the state, applies `change`, and writes both copies (copy 0,
    /// synced, then copy 1); returns the state written. Also repairs a
    /// damaged copy when `change` changes nothing.
    pub fn update(&self, change: impl FnOnce(&mut BootState)) -> Result<BootState, AbError> {
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| AbError::io(&self.lock, e))?;
        let (mut state, origin) = self.read()?;
        change(&mut state);
        if origin == Origin::OldScript {
            write_legacy(&self.dir, &state)?;
            return Ok(state);
        }
        let block = format::encode(&state);
        for name in COPIES {
            write_copy(&self.dir, name, &block)?;
        }
        drop(lock);
        Ok(state)
    }
}

/// The first `limit` bytes of `path`: what is on the partition is read into
/// memory bounded by what a valid file can hold.
fn read_at_most(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes one copy in place and waits for it to reach the disk.
fn write_copy(dir: &Path, name: &str, block: &[u8; SIZE]) -> Result<(), AbError> {
    let path = dir.join(name);
    let fail = |e| AbError::io(&path, e);
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(fail)?;
    file.write_all(block).map_err(fail)?;
    if file.metadata().map_err(fail)?.len() != SIZE as u64 {
        file.set_len(SIZE as u64).map_err(fail)?;
    }
    file.sync_all().map_err(fail)?;
    if !existed {
        // A new directory entry (the first write on a box flashed before
        // the copies existed) must be on disk before copy 1 is begun.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AbError::io(dir, e))?;
    }
    Ok(())
}

/// The legacy text file as the old backend wrote it (a new file renamed
/// over the old one, then synced): what the old boot script reads.
fn write_legacy(dir: &Path, state: &BootState) -> Result<(), AbError> {
    let path = dir.join(LEGACY);
    let new = dir.join(format!("{LEGACY}.new"));
    let [first, second] = state.order();
    let text = format!(
        "BOOT_ORDER={first} {second}\nBOOT_A_LEFT={}\nBOOT_B_LEFT={}\n",
        state.attempts_left(super::Slot::A),
        state.attempts_left(super::Slot::B)
    );
    let mut file = std::fs::File::create(&new).map_err(|e| AbError::io(&new, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| AbError::io(&new, e))?;
    std::fs::rename(&new, &path).map_err(|e| AbError::io(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AbError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::Slot;
    use crate::test_dir::TempDir;
    use std::os::unix::fs::MetadataExt;

    fn state(first: Slot, a: u8, b: u8) -> BootState {
        let mut s = BootState::default();
        s.set_primary(first);
        s.left = [a, b];
        s
    }

    fn put(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn nothing_on_the_partition_reads_the_defaults_and_a_write_makes_both_copies() {
        let dir = TempDir::new("ab-empty");
        let store = AbStore::at(&dir.0);
        assert_eq!(
            store.read().unwrap(),
            (BootState::default(), Origin::Defaults)
        );
        let s = store.update(|s| s.set_primary(Slot::B)).unwrap();
        assert_eq!(s, state(Slot::B, 3, 3));
        for name in COPIES {
            assert_eq!(std::fs::read(dir.0.join(name)).unwrap(), format::encode(&s));
        }
        assert_eq!(store.read().unwrap(), (s, Origin::Copy0));
    }

    #[test]
    fn copies_are_rewritten_in_place() {
        let dir = TempDir::new("ab-inplace");
        let store = AbStore::at(&dir.0);
        store.update(|_| {}).unwrap();
        let inode = |n: &str| std::fs::metadata(dir.0.join(n)).unwrap().ino();
        let before = COPIES.map(inode);
        store.update(|s| s.mark_bad(Slot::A)).unwrap();
        assert_eq!(COPIES.map(inode), before);
        // A copy of the wrong length (not one this code or U-Boot wrote) is
        // brought back to the fixed size.
        put(&dir.0, COPIES[1], &[7u8; 2 * SIZE]);
        store.update(|_| {}).unwrap();
        assert_eq!(
            std::fs::metadata(dir.0.join(COPIES[1])).unwrap().len(),
            SIZE as u64
        );
    }

    #[test]
    fn every_truncation_and_byte_flip_of_copy_0_reads_copy_1() {
        let dir = TempDir::new("ab-flip");
        let store = AbStore::at(&dir.0);
        let good0 = format::encode(&state(Slot::B, 1, 3));
        let s1 = state(Slot::A, 2, 0);
        put(&dir.0, COPIES[1], &format::encode(&s1));
        for len in 0..SIZE {
            put(&dir.0, COPIES[0], &good0[..len]);
            assert_eq!(
                store.read().unwrap(),
                (s1, Origin::Copy1),
                "copy 0 cut at {len}"
            );
        }
        for at in 0..SIZE {
            let mut b = good0;
            b[at] ^= 0x5a;
            put(&dir.0, COPIES[0], &b);
            assert_eq!(
                store.read().unwrap(),
                (s1, Origin::Copy1),
                "byte {at} of copy 0"
            );
        }
        std::fs::remove_file(dir.0.join(COPIES[0])).unwrap();
        assert_eq!(store.read().unwrap(), (s1, Origin::Copy1));
        // The next write repairs copy 0 from copy 1's state.
        let written = store.update(|s| s.mark_good(Slot::B)).unwrap();
        assert_eq!(written, state(Slot::A, 2, 3));
        assert_eq!(store.read().unwrap(), (written, Origin::Copy0));
    }

    #[test]
    fn both_copies_bad_reads_the_legacy_file_then_the_defaults() {
        let dir = TempDir::new("ab-legacy");
        let store = AbStore::at(&dir.0);
        put(&dir.0, COPIES[0], &[0u8; SIZE]);
        let mut bad = format::encode(&state(Slot::B, 0, 0));
        bad[SIZE - 1] = 1;
        put(&dir.0, COPIES[1], &bad);
        put(
            &dir.0,
            LEGACY,
            b"BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n\0",
        );
        assert_eq!(
            store.read().unwrap(),
            (state(Slot::B, 3, 1), Origin::Legacy)
        );
        put(&dir.0, LEGACY, b"BOOT_ORDER=nonsense\n");
        assert_eq!(
            store.read().unwrap(),
            (BootState::default(), Origin::Defaults)
        );
        let mut long = b"BOOT_ORDER=B A\n".to_vec();
        long.resize(LEGACY_MAX + 1, b'\n');
        put(&dir.0, LEGACY, &long);
        assert_eq!(
            store.read().unwrap(),
            (BootState::default(), Origin::Defaults)
        );
        std::fs::remove_file(dir.0.join(LEGACY)).unwrap();
        assert_eq!(
            store.read().unwrap(),
            (BootState::default(), Origin::Defaults)
        );
        // A legacy file that is there but cannot be read is an error, not
        // the defaults (a directory stands in for an unreadable file).
        std::fs::create_dir(dir.0.join(LEGACY)).unwrap();
        assert!(matches!(store.read(), Err(AbError::Io { path, .. }) if path.ends_with(LEGACY)));
    }

    #[test]
    fn under_an_old_boot_script_only_the_legacy_file_is_used() {
        let dir = TempDir::new("ab-oldscript");
        let store = AbStore::at(&dir.0);
        // Copies a newer system left; the old script never reads them.
        put(&dir.0, COPIES[0], &format::encode(&state(Slot::A, 3, 3)));
        put(
            &dir.0,
            SCRIPT,
            b"\x27\x05\x19\x56...fatload ${devtype} ${devnum}:1 ${ramdisk_addr_r} vigil-ab.env",
        );
        put(
            &dir.0,
            LEGACY,
            b"BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=1\n\0",
        );
        assert_eq!(
            store.read().unwrap(),
            (state(Slot::B, 3, 1), Origin::OldScript)
        );
        let s = store.update(|s| s.mark_good(Slot::B)).unwrap();
        assert_eq!(s, state(Slot::B, 3, 3));
        assert_eq!(
            std::fs::read_to_string(dir.0.join(LEGACY)).unwrap(),
            "BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n"
        );
        assert_eq!(
            format::decode(&std::fs::read(dir.0.join(COPIES[0])).unwrap()),
            Some(state(Slot::A, 3, 3))
        );
        assert!(!dir.0.join(COPIES[1]).exists());
        // The new script names the copies: they are the state again.
        put(&dir.0, SCRIPT, b"... vigil-ab.0 ...");
        assert_eq!(store.read().unwrap(), (state(Slot::A, 3, 3), Origin::Copy0));
    }

    #[test]
    fn an_update_waits_for_the_one_in_progress() {
        let dir = TempDir::new("ab-lock");
        let store = AbStore::at(dir.0.join("boot"));
        std::fs::create_dir(dir.0.join("boot")).unwrap();
        let held = std::fs::File::create(&store.lock).unwrap();
        held.lock().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let r = store.update(|s| s.mark_bad(Slot::A)).map(|_| ());
            done_tx.send(()).unwrap();
            r
        });
        let wait = std::time::Duration::from_millis(200);
        assert!(
            done_rx.recv_timeout(wait).is_err(),
            "the update did not wait for the lock"
        );
        held.unlock().unwrap();
        done_rx
            .recv_timeout(10 * wait)
            .expect("the update went on once the lock was free");
        waiter.join().unwrap().unwrap();
    }

    /// Overwrites `name` with `new` where `torn` says a byte reached the
    /// disk, and with `old` elsewhere: a write cut short.
    fn tear(
        dir: &Path,
        name: &str,
        old: &[u8; SIZE],
        new: &[u8; SIZE],
        torn: impl Fn(usize) -> bool,
    ) {
        let bytes: Vec<u8> = (0..SIZE)
            .map(|i| if torn(i) { new[i] } else { old[i] })
            .collect();
        put(dir, name, &bytes);
    }

    #[test]
    fn a_torn_write_reads_the_old_or_the_new_state_never_another() {
        let dir = TempDir::new("ab-torn");
        let store = AbStore::at(&dir.0);
        let old = state(Slot::A, 2, 3);
        let new = state(Slot::B, 2, 3);
        let (o, n) = (format::encode(&old), format::encode(&new));
        let (mut saw_old, mut saw_new) = (0, 0);
        let mut check = |what: &str| {
            let (got, _) = store.read().unwrap();
            assert!(got == old || got == new, "{what}: read {got:?}");
            if got == old {
                saw_old += 1
            } else {
                saw_new += 1
            }
        };
        // Bytes reach the disk in order (a prefix), or out of order (a
        // suffix: a later sector before an earlier one).
        for cut in 0..=SIZE {
            // Cut during copy 0: copy 1 still holds the old state.
            put(&dir.0, COPIES[1], &o);
            tear(&dir.0, COPIES[0], &o, &n, |i| i < cut);
            check(&format!("copy 0 prefix {cut}"));
            tear(&dir.0, COPIES[0], &o, &n, |i| i >= cut);
            check(&format!("copy 0 suffix {cut}"));
            // Cut during copy 1: copy 0 is complete.
            put(&dir.0, COPIES[0], &n);
            tear(&dir.0, COPIES[1], &o, &n, |i| i < cut);
            check(&format!("copy 1 prefix {cut}"));
            tear(&dir.0, COPIES[1], &o, &n, |i| i >= cut);
            check(&format!("copy 1 suffix {cut}"));
        }
        assert!(saw_old > 0 && saw_new > 0);
        // A cut after copy 0 and before copy 1 reads the new state.
        put(&dir.0, COPIES[0], &n);
        put(&dir.0, COPIES[1], &o);
        assert_eq!(store.read().unwrap(), (new, Origin::Copy0));
    }
}
