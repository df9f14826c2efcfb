//! The configuration error: what is wrong, located by file, line and key.
//!
//! The people who read these errors are installing a box, often over a
//! serial console, so every problem names the key path
//! (`camera[1].detect_fps`) and the line it is on. Syntax and type errors
//! stop parsing at the first one; the semantic checks report each problem
//! through a [`Report`] callback, so one run of `check-config` lists them all.

use std::fmt;
use std::ops::Range;

/// How validation reports one problem: the key path, the byte span of the
/// value in the file (turned into a line by the caller) and the message.
pub(super) type Report<'a> = dyn FnMut(String, Range<usize>, String) + 'a;

/// A configuration error, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `--camera` for command-line cameras).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key path, e.g. `camera[1].detect_fps`.
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: ", self.file, line)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All errors found in one file (parsing stops at the first syntax or type
/// error; semantic checks report every problem).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
