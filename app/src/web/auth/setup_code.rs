//! The one-time setup code: whoever reaches the box first on the network
//! cannot claim it without reading the log or the data directory.
//!
//! While no admin password is set, vigil keeps a code of three groups of
//! four characters (`K7QF-3MZA-T9PX`, 60 bits from the kernel's CSPRNG, in
//! an alphabet without 0/O and 1/I so it can be read off a serial console)
//! in `<data_dir>/setup-code` (mode 0600, written atomically) and prints it
//! in the log. The first `POST /api/setup` must carry it. A restart before
//! setup keeps the code in the file, so a code already read off the log
//! stays valid; a successful setup removes the file and voids the code.

use super::password::{write_atomic, StorageError};
use super::secret::{ct_eq, random};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "setup-code";
const TMP_NAME: &str = "setup-code.tmp";
/// 32 symbols, so a random byte's low 5 bits pick one without bias; no
/// 0, 1, I or O, which are misread.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const GROUPS: usize = 3;
const GROUP_LEN: usize = 4;
const SYMBOLS: usize = GROUPS * GROUP_LEN;

/// A setup code: [`SYMBOLS`] characters of [`ALPHABET`].
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SetupCode([u8; SYMBOLS]);

impl SetupCode {
    fn generate() -> Result<SetupCode, StorageError> {
        let bytes = random::<SYMBOLS>().map_err(StorageError::Random)?;
        Ok(SetupCode(bytes.map(|b| ALPHABET[usize::from(b & 31)])))
    }

    /// The code in any spelling a person types: case, dashes and spaces
    /// do not matter. `None` when it cannot be a code.
    fn parse(text: &str) -> Option<SetupCode> {
        let mut out = [0u8; SYMBOLS];
        let mut n = 0;
        for b in text
            .bytes()
            .filter(|b| *b != b'-' && !b.is_ascii_whitespace())
        {
            let b = b.to_ascii_uppercase();
            if n == SYMBOLS || !ALPHABET.contains(&b) {
                return None;
            }
            out[n] = b;
            n += 1;
        }
        (n == SYMBOLS).then_some(SetupCode(out))
    }

    /// Whether `given` (as typed) is this code; constant time in the code.
    pub(super) fn matches(&self, given: &str) -> bool {
        SetupCode::parse(given).is_some_and(|g| ct_eq(&g.0, &self.0))
    }
}

impl fmt::Display for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.0.chunks(GROUP_LEN).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).unwrap_or("?"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupCode(***)")
    }
}

/// Where the code lives: `<data_dir>/setup-code`.
#[derive(Debug)]
pub(super) struct CodeFile {
    pub(super) path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl CodeFile {
    pub(super) fn new(data_dir: &Path) -> CodeFile {
        CodeFile {
            path: data_dir.join(FILE_NAME),
            tmp: data_dir.join(TMP_NAME),
            dir: data_dir.to_path_buf(),
        }
    }

    /// The code in the file when it holds a valid one (a restart keeps the
    /// code), else a new one written to the file.
    pub(super) fn load_or_create(&self) -> Result<SetupCode, StorageError> {
        if let Some(code) = self.read() {
            return Ok(code);
        }
        let code = SetupCode::generate()?;
        write_atomic(
            &self.path,
            &self.tmp,
            &self.dir,
            format!("{code}\n").as_bytes(),
        )?;
        Ok(code)
    }

    /// A valid code from the file; anything else (absent, unreadable,
    /// damaged) is replaced by a new code.
    fn read(&self) -> Option<SetupCode> {
        let mut text = String::new();
        fs::File::open(&self.path)
            .ok()?
            .take(64)
            .read_to_string(&mut text)
            .ok()?;
        SetupCode::parse(text.trim_end())
    }

    /// Removes the file (absent is fine): the code is void.
    pub(super) fn remove(&self) -> Result<(), StorageError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::Write {
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_three_groups_of_four_in_the_alphabet_and_typed_loosely() {
        let code = SetupCode::generate().unwrap();
        let text = code.to_string();
        assert_eq!(text.len(), 14, "{text}");
        assert_eq!(text.matches('-').count(), 2, "{text}");
        assert!(text.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
        assert!(code.matches(&text));
        assert!(code.matches(&text.to_lowercase().replace('-', " ")));
        assert!(!code.matches(""));
        assert!(!code.matches(&text[..13]));
        assert!(!code.matches(&format!("{text}2")));
        assert_ne!(SetupCode::generate().unwrap(), code, "random");
        assert_eq!(format!("{code:?}"), "SetupCode(***)");
    }
}
