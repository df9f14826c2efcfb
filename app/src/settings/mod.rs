//! The configuration as the box's owner edits it from the status page.
//!
//! On a board the running configuration is a file on the writable data
//! partition (`/data/vigil/config.toml`), seeded on first start from the
//! image's factory default; on a host it is whatever `--config` names. The
//! page never edits the model ([`Config`]): it edits the TOML text, and a
//! text is saved only if [`Config::parse`], the very parser `vigil run`
//! uses, accepts it. So there is one validation, and what the page shows as
//! an error is what `check-config` would print.
//!
//! Beside the file, with the same name and a suffix:
//! - `.prev`, the file before the last save (one step of undo by hand);
//! - `.good`, the last file a start got through with, which a start falls
//!   back on when the file was broken by hand ([`ConfigFile::load`]);
//! - `.log`, the change log ([`changes`]): what each save changed, secrets
//!   never written.
//!
//! Saving is atomic (temporary file, fsync, rename, fsync of the directory),
//! so a power cut leaves the old file or the new one, never half of each.
//! Files are created `0600`: they hold camera passwords.
//!
//! This module knows nothing of budgets, the web or the pipeline: the memory
//! check of a new configuration is a [`Checker`] handed in by the caller
//! (`cli`), because pricing a configuration needs the pipeline's view.

pub mod cameras;
pub mod changes;
pub mod preseed;
pub mod secrets;
pub mod sections;
mod service;

pub use service::{Outcome, Problem, Service, View};

use crate::config::{Config, ConfigError, ConfigErrors};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest configuration file accepted from the page (an import) or
/// read at start: a config with 64 cameras is about 20 KiB, and the page
/// sends it in a request body of at most `web.max_body` (64 KiB by default).
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// The running configuration's file and its siblings.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// The file `vigil run --config` names.
    pub path: PathBuf,
    /// The factory default it is seeded from and reset to, if any.
    pub factory: Option<PathBuf>,
}

/// A configuration read at start.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration running.
    pub config: Config,
    /// Its text.
    pub text: String,
    /// Why the file itself was not used, when the start fell back on the
    /// last good one (shown on the page until the next save).
    pub fallback: Option<ConfigErrors>,
}

/// What went wrong handling the configuration file.
#[derive(Debug)]
pub enum SettingsError {
    /// Reading, writing or renaming `path` failed.
    Io {
        /// What was being done ("write", "read", "rename", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The text is not a valid configuration (every error located).
    Invalid(ConfigErrors),
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A factory reset was asked for, but no factory file is configured.
    NoFactory,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            SettingsError::Invalid(e) => write!(f, "{e}"),
            SettingsError::TooLarge { bytes } => write!(
                f,
                "the configuration is {bytes} bytes; at most {MAX_CONFIG_BYTES} are accepted"
            ),
            SettingsError::NoFactory => {
                f.write_str("no factory configuration: vigil was started without --factory")
            }
        }
    }
}

impl std::error::Error for SettingsError {}

/// Prices a configuration: supplied by the caller, so this module needs no
/// budget of its own.
pub trait Checker: Send + Sync {
    /// The memory verdict for `config`.
    fn check(&self, config: &Config) -> Verdict;
}

/// A configuration's memory budget, as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// What it needs, in bytes.
    pub total: u64,
    /// Its `memory_limit`.
    pub limit: u64,
    /// The budget's lines, as `check-config` prints them.
    pub lines: Vec<String>,
    /// What stops it from starting besides the budget (a missing model).
    pub problem: Option<String>,
}

impl Verdict {
    /// Whether the configuration may be saved.
    pub fn accepted(&self) -> bool {
        self.total <= self.limit && self.problem.is_none()
    }
}

impl ConfigFile {
    /// A sibling: the path with `suffix` appended (`config.toml.good`).
    pub fn sibling(&self, suffix: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }

    /// The change log.
    pub fn log_path(&self) -> PathBuf {
        self.sibling(".log")
    }

    /// Reads the configuration to start with. A missing file is seeded from
    /// the factory default first. A file that does not parse falls back on
    /// the last good one (`.good`), reporting why; with no good one its
    /// errors are the answer.
    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        if !self.path.exists() {
            if let Some(factory) = &self.factory {
                let text = read_text(factory).map_err(|e| located(factory, e.to_string()))?;
                write_atomic(&self.path, text.as_bytes())
                    .map_err(|e| located(&self.path, e.to_string()))?;
                log::info!(
                    "configuration {} created from the factory default {}",
                    self.path.display(),
                    factory.display()
                );
            }
        }
        let file = self.path.display().to_string();
        let own = read_text(&self.path)
            .map_err(|e| located(&self.path, e.to_string()))
            .and_then(|text| Config::parse(&text, &file).map(|c| (c, text)));
        match own {
            Ok((config, text)) => Ok(Loaded {
                config,
                text,
                fallback: None,
            }),
            Err(errors) => {
                let good = self.sibling(".good");
                let Ok(text) = read_text(&good) else {
                    return Err(errors);
                };
                match Config::parse(&text, &good.display().to_string()) {
                    Ok(config) => {
                        for e in &errors.0 {
                            log::error!("config error: {e}");
                        }
                        log::warn!("starting on the last good configuration {}", good.display());
                        Ok(Loaded {
                            config,
                            text,
                            fallback: Some(errors),
                        })
                    }
                    Err(_) => Err(errors),
                }
            }
        }
    }

    /// Records `text` as the last configuration a start got through with.
    pub fn mark_good(&self, text: &str) -> Result<(), SettingsError> {
        let good = self.sibling(".good");
        write_atomic(&good, text.as_bytes()).map_err(|source| SettingsError::Io {
            action: "write",
            path: good,
            source,
        })
    }

    /// The file's text now.
    pub fn read(&self) -> Result<String, SettingsError> {
        read_text(&self.path).map_err(|source| SettingsError::Io {
            action: "read",
            path: self.path.clone(),
            source,
        })
    }

    /// The factory default's text.
    pub fn factory_text(&self) -> Result<String, SettingsError> {
        let factory = self.factory.as_ref().ok_or(SettingsError::NoFactory)?;
        read_text(factory).map_err(|source| SettingsError::Io {
            action: "read",
            path: factory.clone(),
            source,
        })
    }

    /// Validates `text` with the file's parser and, if it is valid, writes
    /// it in place of the file, keeping the file it replaces as `.prev`.
    /// Nothing is written when it is invalid.
    pub fn save(&self, text: &str) -> Result<Config, SettingsError> {
        let config = parse(text, &self.path)?;
        if let Ok(old) = read_text(&self.path) {
            let prev = self.sibling(".prev");
            write_atomic(&prev, old.as_bytes()).map_err(|source| SettingsError::Io {
                action: "write",
                path: prev,
                source,
            })?;
        }
        write_atomic(&self.path, text.as_bytes()).map_err(|source| SettingsError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })?;
        Ok(config)
    }
}

/// Parses `text` as the file at `path` would be, refusing an oversized one
/// before looking at it.
pub fn parse(text: &str, path: &Path) -> Result<Config, SettingsError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(SettingsError::TooLarge { bytes: text.len() });
    }
    Config::parse(text, &path.display().to_string()).map_err(SettingsError::Invalid)
}

fn located(path: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        message,
    }])
}

/// Reads a text file of at most [`MAX_CONFIG_BYTES`].
fn read_text(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Replaces `path` with `bytes` so that a crash leaves one or the other:
/// a temporary file beside it, written and fsynced, renamed over it, and
/// the directory fsynced so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
