//! Why the clip writer stopped writing a clip, by kind: the muxer refused
//! it, its file could not be created or written (a full disk), or the
//! store's quota or transaction said no. The writer puts the message on the
//! camera's recording state and moves on to the next clip.

use super::mp4::Mp4Error;
use crate::store::StoreError;
use std::path::PathBuf;

/// Why the writer stopped writing a clip. The message carries the cause's
/// text too, because the camera's recording state shows only this line.
#[derive(Debug)]
pub enum ClipWriteError {
    /// The clip has no stream yet: its first unit never reached the muxer.
    NoStream,
    /// The muxer refused the clip (its init segment does not fit).
    Mux(Mp4Error),
    /// The clip's file could not be created.
    Create {
        /// The clip's file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing to the clip's file failed (a full disk, a read-only file
    /// system).
    Write {
        /// The clip's file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A fragment came before the file was created.
    NotOpen {
        /// The clip's file.
        path: PathBuf,
    },
    /// Retention deleted the clip: it does not fit the store quota.
    Evicted,
    /// The store could not reserve the clip's bytes (boxed: a `StoreError`
    /// carries its path and cause, and would make every `Result` large).
    Store(Box<StoreError>),
}

impl std::fmt::Display for ClipWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClipWriteError::NoStream => f.write_str("clip has no stream yet"),
            ClipWriteError::Mux(e) => write!(f, "{e}"),
            ClipWriteError::Create { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            ClipWriteError::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
            ClipWriteError::NotOpen { path } => write!(f, "{} is not open", path.display()),
            ClipWriteError::Evicted => f.write_str(
                "the clip does not fit the store quota (store.max_bytes); it was deleted",
            ),
            ClipWriteError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ClipWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClipWriteError::Mux(e) => Some(e),
            ClipWriteError::Create { source, .. } | ClipWriteError::Write { source, .. } => {
                Some(source)
            }
            ClipWriteError::Store(e) => Some(e.as_ref()),
            ClipWriteError::NoStream | ClipWriteError::NotOpen { .. } | ClipWriteError::Evicted => {
                None
            }
        }
    }
}
