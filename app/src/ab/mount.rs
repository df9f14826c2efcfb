//! The FAT boot partition, mounted for the length of one command: found by
//! its GPT name `boot` in /sys/class/block (as rcS and the boot script find
//! it), mounted `sync` at /run/vigil-ab.<pid>, unmounted and the directory
//! removed when the guard drops, on success and on error alike. Nothing
//! keeps it mounted: between commands the boot loader is its only writer.

use super::AbError;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The partition, mounted while this lives.
pub(super) struct BootMount {
    target: PathBuf,
}

impl BootMount {
    /// Finds and mounts the partition named `boot`.
    pub(super) fn mount() -> Result<BootMount, AbError> {
        let device = find_partition(Path::new("/sys/class/block"), "boot")?;
        let target = PathBuf::from(format!("/run/vigil-ab.{}", std::process::id()));
        let fail = |source| AbError::Mount {
            device: device.clone(),
            target: target.clone(),
            source,
        };
        std::fs::create_dir_all(&target).map_err(fail)?;
        let (Ok(dev), Ok(dir)) = (
            CString::new(device.as_os_str().as_bytes()),
            CString::new(target.as_os_str().as_bytes()),
        ) else {
            let _ = std::fs::remove_dir(&target);
            return Err(fail(std::io::ErrorKind::InvalidInput.into()));
        };
        // SAFETY: every pointer is a NUL-terminated string that outlives
        // the call; vfat takes no data argument here.
        let rc = unsafe {
            libc::mount(
                dev.as_ptr(),
                dir.as_ptr(),
                c"vfat".as_ptr(),
                libc::MS_SYNCHRONOUS | libc::MS_NOATIME,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&target);
            return Err(fail(err));
        }
        Ok(BootMount { target })
    }

    /// Where the partition is mounted.
    pub(super) fn dir(&self) -> &Path {
        &self.target
    }
}

impl Drop for BootMount {
    fn drop(&mut self) {
        if let Ok(dir) = CString::new(self.target.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path that outlives the call.
            let rc = unsafe { libc::umount2(dir.as_ptr(), 0) };
            if rc != 0 {
                log::warn!(
                    "vigil-ab: cannot unmount {}: {}",
                    self.target.display(),
                    std::io::Error::last_os_error()
                );
                return;
            }
        }
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// The device node of the partition whose GPT name is `name`, from the
/// kernel's `uevent` files under `sys_block` (`PARTNAME=`, `DEVNAME=`).
fn find_partition(sys_block: &Path, name: &str) -> Result<PathBuf, AbError> {
    let entries = std::fs::read_dir(sys_block).map_err(|e| AbError::io(sys_block, e))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter_map(|entry| {
            let uevent = std::fs::read_to_string(entry.path().join("uevent")).ok()?;
            let field = |key: &str| {
                uevent
                    .lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
            };
            if field("PARTNAME")? != name {
                return None;
            }
            Some(Path::new("/dev").join(field("DEVNAME")?))
        })
        .collect();
    // read_dir's order is the filesystem's; the lowest name is what the
    // shell's glob found first.
    found.sort();
    found.into_iter().next().ok_or(AbError::NoBootPartition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[test]
    fn the_partition_named_boot() {
        let sys = TempDir::new("ab-sys");
        let dev = |name: &str, uevent: &str| {
            std::fs::create_dir_all(sys.0.join(name)).unwrap();
            std::fs::write(sys.0.join(name).join("uevent"), uevent).unwrap();
        };
        dev("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n");
        dev(
            "vda2",
            "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=rootfs_a\n",
        );
        assert!(matches!(
            find_partition(&sys.0, "boot"),
            Err(AbError::NoBootPartition)
        ));
        dev(
            "vda1",
            "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=boot\n",
        );
        // A name that only starts like it is not it.
        dev("vdb1", "DEVNAME=vdb1\nPARTNAME=bootloader\n");
        assert_eq!(
            find_partition(&sys.0, "boot").unwrap(),
            Path::new("/dev/vda1")
        );
    }
}
