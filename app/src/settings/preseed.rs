//! The preseed file: what an owner writes on the SD card's boot partition
//! (`vigil-setup.toml`) before the first boot, the Raspberry Pi
//! `userconf.txt` pattern (docs/first-boot.md).
//!
//! It holds at most an `admin_password` (top level) and `[[camera]]` tables
//! written exactly as in config.toml. Nothing else is accepted, so a key
//! that would be ignored is an error with its line, not a surprise later.
//! The cameras are checked by the very parser the configuration file goes
//! through ([`Merged::parse`]): the current text with its `[[camera]]`
//! tables replaced by the preseed's, copied verbatim (comments included)
//! after the rest. Since they are copied line for line, an error on line 40
//! of that text is on a known line of the preseed, and every error is told
//! against the file the owner wrote.
//!
//! The password is kept in an [`AdminPassword`], whose `Debug` never shows
//! it and which has no `Display`; the errors never quote a value of the
//! password line (they use the parser's message, not its source snippet).
//! The password policy and the password file are the web's business
//! (`web::auth`), not this module's.

use super::{cameras, MAX_CONFIG_BYTES};
use crate::config::{redact_url, Config, ConfigError, ConfigErrors, HIDDEN};
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{Item, Table};

/// The preseed's name on the boot partition.
pub const FILE_NAME: &str = "vigil-setup.toml";

/// The admin password a preseed asks for.
pub struct AdminPassword {
    text: String,
    line: usize,
}

impl AdminPassword {
    /// The password itself, for the policy check and the hash only.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Its 1-based line in the preseed.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Debug for AdminPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminPassword(***, line {})", self.line)
    }
}

/// The `[[camera]]` tables of a preseed, as written.
struct CameraTables {
    /// The text from the line of the first `[[camera]]` to the end.
    text: String,
    /// The 1-based line that text starts on.
    first_line: usize,
    /// The line of each camera's `[[camera]]` header.
    headers: Vec<usize>,
}

/// A parsed preseed.
pub struct Preseed {
    /// The file, as errors name it.
    file: String,
    password: Option<AdminPassword>,
    cameras: Option<CameraTables>,
    /// Secret values and what errors show instead (`***`, a URL without
    /// its credentials), longest first.
    secrets: Vec<(String, String)>,
}

impl fmt::Debug for Preseed {
    // The cameras' text and the secrets list hold passwords: counts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Preseed")
            .field("file", &self.file)
            .field("password", &self.password)
            .field("cameras", &self.camera_count())
            .finish_non_exhaustive()
    }
}

/// Why a preseed cannot be used.
#[derive(Debug)]
pub enum PreseedError {
    /// It could not be read (or is not UTF-8 text).
    Read {
        /// The preseed.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// It is larger than [`MAX_CONFIG_BYTES`].
    TooLarge {
        /// The preseed.
        path: PathBuf,
    },
    /// It is not a valid preseed: every problem located by key and line.
    Invalid(ConfigErrors),
}

impl fmt::Display for PreseedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreseedError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            PreseedError::TooLarge { path } => write!(
                f,
                "{}: larger than {MAX_CONFIG_BYTES} bytes; a preseed holds a password and a few cameras",
                path.display()
            ),
            PreseedError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PreseedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PreseedError::Read { source, .. } => Some(source),
            PreseedError::Invalid(e) => Some(e),
            PreseedError::TooLarge { .. } => None,
        }
    }
}

impl Preseed {
    /// Reads and parses the preseed at `path` (at most
    /// [`MAX_CONFIG_BYTES`], read no further).
    pub fn read(path: &Path) -> Result<Preseed, PreseedError> {
        let read_err = |source| PreseedError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() > MAX_CONFIG_BYTES {
            return Err(PreseedError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Preseed::parse(&text, &path.display().to_string()).map_err(PreseedError::Invalid)
    }

    /// Parses a preseed's text; `file` is how errors name it. A byte-order
    /// mark and Windows line ends (a card written with Notepad) are fine.
    pub fn parse(text: &str, file: &str) -> Result<Preseed, ConfigErrors> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.replace("\r\n", "\n");
        let mut out = Preseed {
            file: file.to_owned(),
            password: None,
            cameras: None,
            secrets: Vec::new(),
        };
        let doc = match toml_edit::Document::parse(text.as_str()) {
            Ok(doc) => doc,
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start));
                // The message only: the parser's full text quotes the line,
                // which may be the password's.
                return Err(ConfigErrors(vec![out.error(line, "", e.message())]));
            }
        };
        let mut errors = Vec::new();
        let root = doc.as_table();
        if let Some(tables) = root.get("camera").and_then(Item::as_array_of_tables) {
            // Before any error is made, so none can quote them.
            tables.iter().for_each(|t| out.note_secrets(t));
        }
        let key_line = |table: &Table, key: &str| {
            let span = table
                .key(key)
                .and_then(toml_edit::Key::span)
                .or_else(|| table.get(key).and_then(Item::span));
            span.map(|s| line_of(&text, s.start))
        };
        for (key, item) in root.iter() {
            let line = key_line(root, key);
            match key {
                "admin_password" => match item.as_str() {
                    Some(p) => {
                        out.secrets.push((p.to_owned(), HIDDEN.to_owned()));
                        out.password = Some(AdminPassword {
                            text: p.to_owned(),
                            line: line.unwrap_or(1),
                        })
                    }
                    None => errors.push(out.error(
                        line,
                        key,
                        "must be a string in quotes: admin_password = \"...\"",
                    )),
                },
                "camera" => match item.as_array_of_tables() {
                    Some(tables) => {
                        let mut headers = Vec::new();
                        let mut start = usize::MAX;
                        for (i, t) in tables.iter().enumerate() {
                            let span: Range<usize> = t.span().unwrap_or(0..0);
                            start = start.min(span.start);
                            headers.push(line_of(&text, span.start));
                            if t.contains_key("admin_password") {
                                errors.push(out.error(
                                    key_line(t, "admin_password"),
                                    &format!("camera[{i}].admin_password"),
                                    "`admin_password` goes at the top of the file, before the first [[camera]]",
                                ));
                            }
                        }
                        // From the start of the first header's line.
                        let start = text[..start.min(text.len())]
                            .rfind('\n')
                            .map_or(0, |n| n + 1);
                        out.cameras = Some(CameraTables {
                            text: text[start..].to_owned(),
                            first_line: line_of(&text, start),
                            headers,
                        });
                    }
                    None => errors.push(out.error(
                        line,
                        key,
                        "write each camera as a [[camera]] table, as in config.toml",
                    )),
                },
                other => errors.push(out.error(
                    line,
                    other,
                    &format!(
                        "unknown key `{other}`: {FILE_NAME} takes `admin_password` and [[camera]] tables (other settings are made on the page)"
                    ),
                )),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The admin password, if the preseed sets one.
    pub fn password(&self) -> Option<&AdminPassword> {
        self.password.as_ref()
    }

    /// How many cameras it lists (`None`: it leaves the cameras alone).
    pub fn camera_count(&self) -> Option<usize> {
        self.cameras.as_ref().map(|c| c.headers.len())
    }

    /// The line of its first `[[camera]]`, if any.
    pub fn cameras_line(&self) -> Option<usize> {
        self.cameras
            .as_ref()
            .and_then(|c| c.headers.first().copied())
    }

    /// An error located in the preseed.
    pub fn error(&self, line: Option<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_owned(),
            message: self.scrub(message),
        }
    }

    /// A camera's password and URL, to keep out of error messages (the
    /// parser's URL errors quote the URL as written).
    fn note_secrets(&mut self, camera: &Table) {
        if let Some(p) = camera.get("password").and_then(Item::as_str) {
            self.secrets.push((p.to_owned(), HIDDEN.to_owned()));
        }
        if let Some(u) = camera.get("url").and_then(Item::as_str) {
            self.secrets.push((u.to_owned(), redact_url(u)));
        }
        self.secrets
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    }

    /// `message` with every secret of the preseed replaced. Secrets under
    /// 4 bytes are left: replacing every `a` would garble the message, and
    /// such a password is refused by the policy anyway.
    fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for (secret, shown) in &self.secrets {
            if secret.len() >= 4 && secret != shown {
                out = out.replace(secret.as_str(), shown);
            }
        }
        out
    }

    /// The configuration `current` (the text of `config_file`) with its
    /// cameras replaced by the preseed's; `current` itself when the preseed
    /// has none.
    pub fn merge(&self, current: &str, config_file: &str) -> Result<Merged<'_>, ConfigErrors> {
        let Some(cams) = &self.cameras else {
            return Ok(Merged {
                text: current.to_owned(),
                prefix_lines: usize::MAX,
                preseed: self,
                config_file: config_file.to_owned(),
            });
        };
        let mut text = cameras::with_cameras(current, &[]).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: config_file.to_owned(),
                line: None,
                key: String::new(),
                message: format!("is not TOML: {}", e.message()),
            }])
        })?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
        let prefix_lines = text.matches('\n').count();
        debug_assert!(cams.first_line >= 1);
        text.push_str(&cams.text);
        Ok(Merged {
            text,
            prefix_lines,
            preseed: self,
            config_file: config_file.to_owned(),
        })
    }
}

/// A configuration text with a preseed's cameras in it.
pub struct Merged<'a> {
    /// The text, as it is checked and saved.
    pub text: String,
    /// Lines before the preseed's cameras (`usize::MAX`: it has none).
    prefix_lines: usize,
    preseed: &'a Preseed,
    config_file: String,
}

impl fmt::Debug for Merged<'_> {
    // The text holds the cameras' passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merged")
            .field("bytes", &self.text.len())
            .field("preseed", self.preseed)
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

impl Merged<'_> {
    /// Parses the text with the configuration file's parser; errors in the
    /// cameras are located in the preseed, the rest in the configuration.
    pub fn parse(&self) -> Result<Config, ConfigErrors> {
        Config::parse(&self.text, &self.config_file)
            .map_err(|e| ConfigErrors(e.0.into_iter().map(|e| self.locate(e)).collect()))
    }

    /// Where an error of the merged text is in the files the owner knows.
    fn locate(&self, mut e: ConfigError) -> ConfigError {
        e.message = self.preseed.scrub(&e.message);
        let Some(cams) = &self.preseed.cameras else {
            return e;
        };
        let camera = e
            .key
            .strip_prefix("camera[")
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok());
        match (e.line, camera) {
            (Some(line), _) if line > self.prefix_lines => {
                e.line = Some(line - self.prefix_lines - 1 + cams.first_line);
                e.file.clone_from(&self.preseed.file);
            }
            // A camera's error pointing elsewhere (a missing key, or the
            // setting it clashes with): its header in the preseed.
            (_, Some(i)) => {
                e.line = cams.headers.get(i).copied();
                e.file.clone_from(&self.preseed.file);
            }
            // A line of the text without its cameras, not of the file.
            _ => e.line = None,
        }
        e
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
