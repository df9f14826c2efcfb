//! Error tests: each failure the store meets has its kind, its cause as
//! `source()`, and the text the status page has always shown.

use super::*;
use std::error::Error as _;

/// A full disk is a kind whichever error type redb reports it in; so is a
/// full quota; another OS error is I/O.
#[test]
fn a_full_disk_or_quota_is_full_other_os_errors_are_io() {
    let os = std::io::Error::from_raw_os_error;
    let err = ctx("commit")(redb::Error::Io(os(libc::ENOSPC)));
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "event store: commit: I/O error: No space left on device (os error 28)"
    );
    let source = err.source().expect("the cause is the source");
    assert!(source.downcast_ref::<redb::Error>().is_some());
    // The same failure as a step's own redb error type: same kind and text.
    let storage = ctx("insert event")(redb::StorageError::Io(os(libc::ENOSPC)));
    assert!(matches!(storage, StoreError::Full { .. }), "{storage:?}");
    assert_eq!(
        storage.to_string(),
        "event store: insert event: I/O error: No space left on device (os error 28)"
    );
    let quota = ctx("commit")(redb::CommitError::Storage(redb::StorageError::Io(os(
        libc::EDQUOT,
    ))));
    assert!(matches!(quota, StoreError::Full { .. }), "{quota:?}");
    let eio = ctx("commit")(redb::Error::Io(os(libc::EIO)));
    assert!(matches!(eio, StoreError::Io { .. }), "{eio:?}");
    let previous = ctx("begin")(redb::Error::PreviousIo);
    assert!(matches!(previous, StoreError::Io { .. }), "{previous:?}");
    let fs = StoreError::new(During::ListDir("/x".into()), Cause::Fs(os(libc::ENOSPC)));
    assert!(matches!(fs, StoreError::Full { .. }), "{fs:?}");
    assert_eq!(
        fs.to_string(),
        "cannot list /x: No space left on device (os error 28)"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = TempDir::new("err-corrupt");
    std::fs::write(dir.0.join(DB_FILE), vec![0x5A; 8192]).unwrap();
    let err = match Store::open(&dir.0, limits(), [false, false]) {
        Err(e) => e,
        Ok(_) => panic!("a garbage database file opened"),
    };
    match &err {
        StoreError::Corrupt {
            during: During::Open(path),
            ..
        } => assert_eq!(path, &dir.0.join(DB_FILE)),
        other => panic!("not a corrupt database: {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot open {}: ", dir.0.join(DB_FILE).display())),
        "{text}"
    );
}

#[test]
fn a_data_directory_open_twice_is_in_use() {
    let dir = TempDir::new("err-in-use");
    let _first = Store::open(&dir.0, limits(), [false, false]).unwrap();
    let err = match Store::open(&dir.0, limits(), [false, false]) {
        Err(e) => e,
        Ok(_) => panic!("the database opened twice"),
    };
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open {}: Database already open. Cannot acquire lock.",
            dir.0.join(DB_FILE).display()
        )
    );
}

#[test]
fn a_data_directory_that_cannot_be_created_is_io() {
    let dir = TempDir::new("err-mkdir");
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = match Store::open(&file, limits(), [false, false]) {
        Err(e) => e,
        Ok(_) => panic!("a store opened under a file"),
    };
    match &err {
        StoreError::Io {
            during: During::CreateDir(path),
            source: Cause::Fs(e),
        } => {
            assert_eq!(path, &file.join(SNAPSHOT_DIR));
            assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        }
        other => panic!("not an I/O error creating the directory: {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create {}: Not a directory (os error 20)",
            file.join(SNAPSHOT_DIR).display()
        )
    );
}

/// Errors cross threads (the pipeline logs them, the drainers and the
/// recorder report them), and callers may box them.
#[test]
fn store_errors_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<StoreError>();
}
