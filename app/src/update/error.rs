//! Why an update was refused or failed: one kind per cause, each with what
//! the page needs to say it (sizes, the installer's own words).

use std::fmt;
use std::path::PathBuf;

/// A refused or failed update.
#[derive(Debug)]
pub enum UpdateError {
    /// Another upload or install is under way, or one waits for its reboot.
    Busy(&'static str),
    /// The upload did not say its size up front.
    LengthRequired,
    /// The declared size is over `update.max_bundle`.
    TooLarge {
        /// The declared size.
        len: u64,
        /// `update.max_bundle`.
        max: u64,
    },
    /// The declared size does not fit the data partition.
    NoSpace {
        /// The declared size.
        len: u64,
        /// Bytes free on the data partition.
        free: u64,
        /// Bytes kept free for events.
        reserve: u64,
    },
    /// The body ended before its declared size (a dropped upload).
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes declared.
        want: u64,
    },
    /// The body ran past its declared size.
    Overlong {
        /// Bytes declared.
        want: u64,
    },
    /// Reading the body failed (the client went away or stalled).
    Body(String),
    /// A file of the update could not be written or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The installer could not be run at all.
    Spawn {
        /// The client's path (`update.rauc`).
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The installer refused or failed; its last error as it said it.
    Refused(String),
    /// The installer's answer could not be read.
    Answer(String),
    /// This box cannot take updates (no RAUC, or RAUC not working).
    Unavailable(String),
    /// The disk thread refused the job or stopped.
    Disk(crate::disk::DiskError),
}

impl UpdateError {
    /// The error for `source` on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> UpdateError {
        UpdateError::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Busy(why) => f.write_str(why),
            UpdateError::LengthRequired => f.write_str(
                "send the bundle with a Content-Length header: its size is checked before a byte is written",
            ),
            UpdateError::TooLarge { len, max } => write!(
                f,
                "the bundle is {len} bytes, over update.max_bundle ({max} bytes)"
            ),
            UpdateError::NoSpace { len, free, reserve } => write!(
                f,
                "the bundle is {len} bytes but the data partition has {free} bytes free (keeping {reserve} for events)"
            ),
            UpdateError::Truncated { got, want } => {
                write!(f, "the upload ended after {got} of {want} bytes")
            }
            UpdateError::Overlong { want } => write!(
                f,
                "the upload sent more than its Content-Length of {want} bytes"
            ),
            UpdateError::Body(why) => write!(f, "the upload failed: {why}"),
            UpdateError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            UpdateError::Spawn { program, source } => {
                write!(f, "cannot run {}: {source}", program.display())
            }
            UpdateError::Refused(why) => f.write_str(why),
            UpdateError::Answer(why) => write!(f, "unexpected answer from RAUC: {why}"),
            UpdateError::Unavailable(why) => write!(f, "updates are not available here: {why}"),
            UpdateError::Disk(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpdateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpdateError::Io { source, .. } | UpdateError::Spawn { source, .. } => Some(source),
            UpdateError::Disk(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::disk::DiskError> for UpdateError {
    fn from(e: crate::disk::DiskError) -> UpdateError {
        UpdateError::Disk(e)
    }
}
