//! The store's errors: what kind of failure it was (a full disk, a damaged
//! database, another I/O failure...), what the store was doing, and the
//! cause from redb or the filesystem underneath.
//!
//! Callers and tests act on the kind, never on the text: a full disk is
//! [`StoreError::Full`], whichever step met it. The text is what the status
//! page and `/api/status` show as `store.error` (and what the logs say), so
//! it is the one it was when errors were strings: `event store: <step>:
//! <cause>` for a step on the open database, `cannot open|create|list
//! <path>: <cause>` otherwise, where the cause is redb's or the OS's own
//! message (a full disk reads `... I/O error: No space left on device (os
//! error 28)`).

use std::fmt;
use std::io::ErrorKind;
use std::path::PathBuf;

/// A failed store operation, by kind; each holds what the store was doing
/// and the cause ([`std::error::Error::source`]).
#[derive(Debug)]
pub enum StoreError {
    /// The disk or the filesystem quota is full (ENOSPC, EDQUOT). The
    /// failed commit's events are lost and counted; the store works again
    /// once retention or the operator frees space.
    Full {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// The database file is damaged, or is not a redb database at all.
    Corrupt {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// Another read or write failed: a failing disk, a missing directory,
    /// or redb refusing use after an earlier I/O error (the store reopens
    /// the database after every failed write).
    Io {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// Another process holds the database open (a second vigil on the same
    /// data directory).
    InUse {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// A value exceeds what redb stores (records are a few hundred bytes;
    /// this would be a bug).
    TooLarge {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// The database was closed under the operation.
    Closed {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
    /// Anything else redb reports: a table of another type, a file format
    /// that needs an upgrade, a poisoned transaction.
    Database {
        /// What the store was doing.
        during: During,
        /// The error reporting it.
        source: Cause,
    },
}

/// What the store was doing when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum During {
    /// A step on the open database ("commit", "read clips", ...).
    Step(&'static str),
    /// Opening (or reopening) the database file.
    Open(PathBuf),
    /// Creating one of the store's directories.
    CreateDir(PathBuf),
    /// Listing one of the store's directories.
    ListDir(PathBuf),
}

/// The error underneath a [`StoreError`].
#[derive(Debug)]
pub enum Cause {
    /// redb's error (any redb error type, converted to its superset).
    Db(redb::Error),
    /// The filesystem's error (the store's directories).
    Fs(std::io::Error),
}

/// The kinds, for [`StoreError::new`] to pick one before moving the parts.
enum Kind {
    Full,
    Corrupt,
    Io,
    InUse,
    TooLarge,
    Closed,
    Database,
}

/// The kind of an OS error: ENOSPC and EDQUOT are a full disk.
fn io_kind(e: &std::io::Error) -> Kind {
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Kind::Full,
        _ => Kind::Io,
    }
}

impl StoreError {
    /// The error of `cause` met during `during`, by its kind.
    pub(super) fn new(during: During, source: Cause) -> StoreError {
        let kind = match &source {
            Cause::Fs(e) => io_kind(e),
            Cause::Db(e) => match e {
                // redb reports a file that holds no database as I/O of kind
                // InvalidData (redb 2.4 and later).
                redb::Error::Io(io) if io.kind() == ErrorKind::InvalidData => Kind::Corrupt,
                redb::Error::Io(io) => io_kind(io),
                redb::Error::Corrupted(_) => Kind::Corrupt,
                redb::Error::PreviousIo | redb::Error::Backend(_) => Kind::Io,
                redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Kind::InUse,
                redb::Error::ValueTooLarge(_) => Kind::TooLarge,
                redb::Error::DatabaseClosed => Kind::Closed,
                _ => Kind::Database,
            },
        };
        match kind {
            Kind::Full => StoreError::Full { during, source },
            Kind::Corrupt => StoreError::Corrupt { during, source },
            Kind::Io => StoreError::Io { during, source },
            Kind::InUse => StoreError::InUse { during, source },
            Kind::TooLarge => StoreError::TooLarge { during, source },
            Kind::Closed => StoreError::Closed { during, source },
            Kind::Database => StoreError::Database { during, source },
        }
    }

    /// What the store was doing and the cause, whatever the kind.
    fn parts(&self) -> (&During, &Cause) {
        match self {
            StoreError::Full { during, source }
            | StoreError::Corrupt { during, source }
            | StoreError::Io { during, source }
            | StoreError::InUse { during, source }
            | StoreError::TooLarge { during, source }
            | StoreError::Closed { during, source }
            | StoreError::Database { during, source } => (during, source),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (during, cause) = self.parts();
        match during {
            During::Step(what) => write!(f, "event store: {what}: {cause}"),
            During::Open(path) => write!(f, "cannot open {}: {cause}", path.display()),
            During::CreateDir(path) => write!(f, "cannot create {}: {cause}", path.display()),
            During::ListDir(path) => write!(f, "cannot list {}: {cause}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.parts().1 {
            Cause::Db(e) => Some(e),
            Cause::Fs(e) => Some(e),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Db(e) => fmt::Display::fmt(e, f),
            Cause::Fs(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Maps a redb error met at step `what` to a [`StoreError`]. Every redb
/// error type converts to `redb::Error` with the same message, so the text
/// is the one the step's own error type would print.
pub(super) fn ctx<E: Into<redb::Error>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::new(During::Step(what), Cause::Db(e.into()))
}
