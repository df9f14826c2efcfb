//! The admin password file: hashing, the strict parser, and the atomic write.
//!
//! The password is kept only as PBKDF2-HMAC-SHA256 with a 16-byte random
//! salt in `<data_dir>/admin-password`, one line
//! `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`. The file is written to
//! a temporary name with mode 0600, synced and renamed, so a power cut leaves
//! either the old password or the new one. It is parsed strictly: a damaged
//! file is a [`StorageError::Corrupt`] naming the file and the [`Defect`],
//! never a silently unset password that would let anyone claim the device.

use super::secret::{ct_eq, hex_decode, hex_encode, random};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// PBKDF2 iterations for new password hashes (OWASP 2023 for HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

const FILE_NAME: &str = "admin-password";
const TMP_NAME: &str = "admin-password.tmp";
const SCHEME: &str = "pbkdf2-sha256";
/// A valid file is at most 124 bytes; anything this long is not ours.
const MAX_FILE_LEN: u64 = 512;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Why the password file (or the randomness a new hash needs) failed; each
/// kind names the file it concerns.
#[derive(Debug)]
pub enum StorageError {
    /// The file exists but could not be read.
    Read {
        /// The password file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file was read but is not a password file vigil wrote.
    Corrupt {
        /// The password file.
        path: PathBuf,
        /// What is wrong with it.
        defect: Defect,
    },
    /// The temporary file could not be created, written or synced.
    Write {
        /// The temporary file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The temporary file could not be renamed over the password file.
    Rename {
        /// The password file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The data directory could not be synced after the rename.
    SyncDir {
        /// The data directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The kernel gave no random bytes (for a salt or a token).
    Random(io::Error),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Read { path, source } | StorageError::Write { path, source } => {
                write!(f, "{}: {source}", path.display())
            }
            StorageError::Corrupt { path, defect } => write!(f, "{}: {defect}", path.display()),
            StorageError::Rename { path, source } => {
                write!(
                    f,
                    "{}: rename from its temporary file: {source}",
                    path.display()
                )
            }
            StorageError::SyncDir { path, source } => {
                write!(f, "{}: fsync: {source}", path.display())
            }
            StorageError::Random(source) => write!(f, "getrandom: {source}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Read { source, .. }
            | StorageError::Write { source, .. }
            | StorageError::Rename { source, .. }
            | StorageError::SyncDir { source, .. }
            | StorageError::Random(source) => Some(source),
            StorageError::Corrupt { defect, .. } => Some(defect),
        }
    }
}

/// What is wrong with a password file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Longer than any file vigil writes.
    TooLong,
    /// Not UTF-8 text.
    NotUtf8,
    /// The line does not end with a newline (also: the file is empty).
    NoNewline,
    /// More than one line, or a carriage return.
    NotOneLine,
    /// Not 4 `$`-separated fields; holds how many there are.
    FieldCount(usize),
    /// A scheme other than `pbkdf2-sha256`; holds the one found.
    Scheme(String),
    /// The iteration count is not a number from 1 to `u32::MAX`; holds it.
    Iterations(String),
    /// The salt is not 32 lowercase hex digits; holds it.
    Salt(String),
    /// The hash is not 64 lowercase hex digits; holds it.
    Hash(String),
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::TooLong => write!(f, "longer than {MAX_FILE_LEN} bytes"),
            Defect::NotUtf8 => f.write_str("is not UTF-8 text"),
            Defect::NoNewline => f.write_str("does not end with a newline"),
            Defect::NotOneLine => f.write_str("is not a single line"),
            Defect::FieldCount(n) => write!(
                f,
                "has {n} '$'-separated fields, expected 4 ({SCHEME}$<iterations>$<salt>$<hash>)"
            ),
            Defect::Scheme(scheme) => write!(f, "unknown scheme {scheme:?}, expected {SCHEME:?}"),
            Defect::Iterations(text) => write!(
                f,
                "iteration count {text:?} is not a number from 1 to {}",
                u32::MAX
            ),
            Defect::Salt(text) => {
                write!(
                    f,
                    "salt {text:?} is not {} lowercase hex digits",
                    2 * SALT_LEN
                )
            }
            Defect::Hash(text) => {
                write!(
                    f,
                    "hash {text:?} is not {} lowercase hex digits",
                    2 * HASH_LEN
                )
            }
        }
    }
}

impl std::error::Error for Defect {}

pub(super) fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out);
}

/// A password hash as kept in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stored {
    pub(super) iterations: u32,
    pub(super) salt: [u8; SALT_LEN],
    pub(super) hash: [u8; HASH_LEN],
}

impl Stored {
    /// Hashes `password` with a new random salt. Slow.
    pub(super) fn derive(password: &str, iterations: u32) -> Result<Stored, StorageError> {
        let salt = random::<SALT_LEN>().map_err(StorageError::Random)?;
        let mut hash = [0u8; HASH_LEN];
        pbkdf2_sha256(password.as_bytes(), &salt, iterations, &mut hash);
        Ok(Stored {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` hashes to this. Slow.
    pub(super) fn verify(&self, password: &str) -> bool {
        let mut hash = [0u8; HASH_LEN];
        pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations, &mut hash);
        ct_eq(&hash, &self.hash)
    }

    pub(super) fn to_line(self) -> String {
        let salt: [u8; 2 * SALT_LEN] = hex_encode(&self.salt);
        let hash: [u8; 2 * HASH_LEN] = hex_encode(&self.hash);
        format!(
            "{SCHEME}${}${}${}\n",
            self.iterations,
            String::from_utf8_lossy(&salt),
            String::from_utf8_lossy(&hash)
        )
    }

    /// Parses the file's content strictly; the error says what is wrong.
    pub(super) fn parse(text: &str) -> Result<Stored, Defect> {
        let line = text.strip_suffix('\n').ok_or(Defect::NoNewline)?;
        if line.contains(['\n', '\r']) {
            return Err(Defect::NotOneLine);
        }
        let fields: Vec<&str> = line.split('$').collect();
        let [scheme, iterations, salt, hash] = fields[..] else {
            return Err(Defect::FieldCount(fields.len()));
        };
        if scheme != SCHEME {
            return Err(Defect::Scheme(scheme.into()));
        }
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 && iterations.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => return Err(Defect::Iterations(iterations.into())),
        };
        let salt = hex_decode(salt).ok_or_else(|| Defect::Salt(salt.into()))?;
        let hash = hex_decode(hash).ok_or_else(|| Defect::Hash(hash.into()))?;
        Ok(Stored {
            iterations,
            salt,
            hash,
        })
    }
}

/// Where the password file lives: the file, its temporary twin and the
/// directory whose entry the rename changes.
#[derive(Debug)]
pub(super) struct PasswordFile {
    pub(super) path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl PasswordFile {
    /// The password file of `data_dir` (nothing is opened yet).
    pub(super) fn new(data_dir: &Path) -> PasswordFile {
        PasswordFile {
            path: data_dir.join(FILE_NAME),
            tmp: data_dir.join(TMP_NAME),
            dir: data_dir.to_path_buf(),
        }
    }

    /// Reads the file: `None` when absent, an error naming the file when
    /// unreadable or corrupt.
    pub(super) fn read(&self) -> Result<Option<Stored>, StorageError> {
        let path = &self.path;
        let read_err = |source| StorageError::Read {
            path: path.clone(),
            source,
        };
        let corrupt = |defect| StorageError::Corrupt {
            path: path.clone(),
            defect,
        };
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let mut bytes = Vec::new();
        f.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(corrupt(Defect::TooLong));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt(Defect::NotUtf8))?;
        Stored::parse(text).map(Some).map_err(corrupt)
    }

    /// Replaces the file atomically: temporary file with mode 0600, fsync,
    /// rename, fsync of the directory.
    pub(super) fn write(&self, stored: &Stored) -> Result<(), StorageError> {
        write_atomic(
            &self.path,
            &self.tmp,
            &self.dir,
            stored.to_line().as_bytes(),
        )
    }
}

/// Writes `bytes` to `path` so that a power cut leaves the old content or
/// the new: `tmp` created with mode 0600, synced, renamed over `path`, then
/// `dir` synced. The password file and the setup code share it.
pub(super) fn write_atomic(
    path: &Path,
    tmp: &Path,
    dir: &Path,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let tmp_err = |source| StorageError::Write {
        path: tmp.to_path_buf(),
        source,
    };
    // A leftover from a crash may have other permissions; start afresh.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(tmp_err(e)),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)?;
        // The umask can only clear bits, but make the mode exact anyway.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(tmp);
        return Err(tmp_err(e));
    }
    fs::rename(tmp, path).map_err(|source| {
        let _ = fs::remove_file(tmp);
        StorageError::Rename {
            path: path.to_path_buf(),
            source,
        }
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StorageError::SyncDir {
            path: dir.to_path_buf(),
            source,
        })
}
