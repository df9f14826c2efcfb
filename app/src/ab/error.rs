//! The A/B state's errors, by kind: what failed (no boot partition, the
//! mount, a read or write, the kernel command line) and, for I/O, the path
//! and the OS's cause. The `vigil ab` commands print them as they are;
//! callers act on the kind.

use std::fmt;
use std::path::PathBuf;

/// A failed A/B state operation.
#[derive(Debug)]
pub enum AbError {
    /// No partition labelled `boot` in /sys/class/block.
    NoBootPartition,
    /// The boot partition would not mount (or its mount point could not be
    /// made).
    Mount {
        /// The partition's device node.
        device: PathBuf,
        /// Where it was to be mounted.
        target: PathBuf,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// Reading or writing a file failed (a state copy, the legacy file, the
    /// command line).
    Io {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// The kernel command line has no `rauc.slot=`: this system was not
    /// booted by the A/B boot script.
    NotBooted,
    /// A slot name that is neither `A` nor `B`.
    UnknownSlot(String),
    /// No slot has boot attempts left (both marked bad).
    NoPrimary,
}

impl fmt::Display for AbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbError::NoBootPartition => f.write_str("no partition labelled boot"),
            AbError::Mount {
                device,
                target,
                source,
            } => write!(
                f,
                "cannot mount {} on {}: {source}",
                device.display(),
                target.display()
            ),
            AbError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            AbError::NotBooted => f.write_str("no rauc.slot= on the kernel command line"),
            AbError::UnknownSlot(s) => write!(f, "unknown slot '{s}' (A or B)"),
            AbError::NoPrimary => f.write_str("no slot has attempts left"),
        }
    }
}

impl std::error::Error for AbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AbError::Mount { source, .. } | AbError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl AbError {
    /// An I/O failure on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AbError {
        AbError::Io {
            path: path.into(),
            source,
        }
    }
}
