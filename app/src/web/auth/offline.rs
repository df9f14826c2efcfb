//! The admin password and the setup code handled with no server running:
//! what `vigil setup-code`, `vigil preseed` and `vigil factory-reset` do to
//! the data directory at boot, before vigil starts (docs/first-boot.md).
//!
//! The rules are the server's: the setup code is the one [`super::Auth::open`]
//! shows (the same file, created the same way, so a code written to the boot
//! partition is the one the page accepts), a preset password passes the
//! setup page's policy, never replaces a password already set and voids the
//! code, as a setup on the page does. These functions assume no vigil runs
//! on the same data directory: its state in memory would not see them.

use super::password::{PasswordFile, StorageError, Stored};
use super::setup_code::{CodeFile, SetupCode};
use super::{check_policy, AuthError};
use std::io;
use std::path::Path;

/// The setup code while no password is set: the one in the file if it is
/// valid, else a new one written there; the file is removed once a
/// password is set. Shared with [`super::Auth::open`].
pub(super) fn pending_code(
    code_file: &CodeFile,
    password_set: bool,
) -> Result<Option<SetupCode>, StorageError> {
    if password_set {
        // Left over when a setup's removal failed: void already.
        code_file.remove()?;
        Ok(None)
    } else {
        code_file.load_or_create().map(Some)
    }
}

/// The setup code of `data_dir` as printed (`K7QF-3MZA-T9PX`), created if
/// there is none yet; `None` once an admin password is set.
///
/// # Errors
/// A password file that cannot be read or is corrupt, or a code that
/// cannot be written; each names its file.
pub fn setup_code_of(data_dir: &Path) -> Result<Option<String>, StorageError> {
    let set = PasswordFile::new(data_dir).read()?.is_some();
    Ok(pending_code(&CodeFile::new(data_dir), set)?.map(|c| c.to_string()))
}

/// What [`preset_password`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The password is stored and the setup code void.
    Stored,
    /// A password was already set; it is left as it was.
    AlreadySet,
}

/// Sets the admin password of `data_dir` when none is set (hashed with
/// `iterations`, as a setup on the page would), and voids the setup code.
/// Slow (hashes).
///
/// # Errors
/// [`AuthError::WeakPassword`] (checked first, even when a password is
/// set), [`AuthError::Storage`].
pub fn preset_password(
    data_dir: &Path,
    password: &str,
    iterations: u32,
) -> Result<Preset, AuthError> {
    check_policy(password)?;
    let file = PasswordFile::new(data_dir);
    if file.read()?.is_some() {
        return Ok(Preset::AlreadySet);
    }
    let stored = Stored::derive(password, iterations.max(1))?;
    file.write(&stored)?;
    // A password is set, so the code is void; a file left behind is
    // removed by the next start.
    if let Err(e) = CodeFile::new(data_dir).remove() {
        log::warn!("setup code: {e}");
    }
    Ok(Preset::Stored)
}

/// Removes the admin password of `data_dir` and its setup code, so the next
/// start makes a new code and the box can be claimed again. Returns whether
/// a password was set.
///
/// # Errors
/// A file that exists and cannot be removed.
pub fn forget_admin(data_dir: &Path) -> Result<bool, StorageError> {
    let password = PasswordFile::new(data_dir).path;
    let existed = password.exists();
    for path in [
        password.clone(),
        password.with_extension("tmp"),
        CodeFile::new(data_dir).path,
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StorageError::Write { path, source: e })
            }
            _ => {}
        }
    }
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[test]
    fn the_code_is_kept_until_a_preset_password_voids_it() {
        let dir = TempDir::new("offline-code");
        let code = setup_code_of(&dir.0).unwrap().expect("a code");
        assert_eq!(
            setup_code_of(&dir.0).unwrap().as_deref(),
            Some(code.as_str())
        );
        // The server shows the same code.
        let auth = super::super::Auth::open(&dir.0, Default::default()).unwrap();
        assert_eq!(auth.setup_code().as_deref(), Some(code.as_str()));
        drop(auth);
        assert!(matches!(
            preset_password(&dir.0, "short", 1),
            Err(AuthError::WeakPassword(_))
        ));
        assert_eq!(
            setup_code_of(&dir.0).unwrap().as_deref(),
            Some(code.as_str())
        );
        assert_eq!(
            preset_password(&dir.0, "first-password", 1).unwrap(),
            Preset::Stored
        );
        assert_eq!(setup_code_of(&dir.0).unwrap(), None);
        assert!(!dir.0.join("setup-code").exists());
        // Never overwritten.
        let before = std::fs::read(dir.0.join("admin-password")).unwrap();
        assert_eq!(
            preset_password(&dir.0, "second-password", 1).unwrap(),
            Preset::AlreadySet
        );
        assert_eq!(std::fs::read(dir.0.join("admin-password")).unwrap(), before);
        let text = String::from_utf8(before).unwrap();
        assert!(!text.contains("first-password"), "hashed");
    }

    #[test]
    fn forgetting_the_admin_makes_a_new_code() {
        let dir = TempDir::new("offline-forget");
        let first = setup_code_of(&dir.0).unwrap().unwrap();
        preset_password(&dir.0, "first-password", 1).unwrap();
        assert!(forget_admin(&dir.0).unwrap());
        assert!(!forget_admin(&dir.0).unwrap(), "nothing left");
        let second = setup_code_of(&dir.0).unwrap().expect("claimable again");
        assert_ne!(first, second, "a new code");
        let auth = super::super::Auth::open(&dir.0, Default::default()).unwrap();
        assert!(!auth.admin_set());
    }
}
