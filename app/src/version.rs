//! vigil's version, read from a section of its own ELF file.
//!
//! An update bundle carries a version in its manifest, and the vigil inside
//! must report the same one (`vigil version`, `/api/status`, the start line):
//! that is how an owner, and a test, tell which slot's software runs. The
//! emulated board's bundles are made for several versions from one
//! cross-built binary (`make bundle VERSION=0.3.0`), and compiling vigil for
//! aarch64 again per version takes over ten minutes. So the version lives in
//! [`SECTION`], 64 bytes that `scripts/stamp-version.sh` rewrites in a copy of
//! the finished binary (`objcopy --update-section`); it starts as
//! `CARGO_PKG_VERSION`, NUL-padded.
//!
//! The bytes are read with a volatile load, so the compiler cannot replace
//! them with the constant it initialised them to. The section is allocated
//! (loaded at run time), which `strip` keeps. A stamp that is not a semantic
//! version (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`, at most [`MAX_LEN`] bytes
//! followed by NULs) is refused, and vigil reports `CARGO_PKG_VERSION`
//! instead; [`stamp_error`] says why, for the start line.

use std::fmt;
use std::sync::OnceLock;

/// The section's name in the ELF file (what stamp-version.sh updates).
pub const SECTION: &str = ".vigil_version";
/// The section's size in bytes.
pub const SECTION_LEN: usize = 64;
/// The longest version a stamp holds: one byte stays NUL, so the end is
/// always marked.
pub const MAX_LEN: usize = SECTION_LEN - 1;

/// The version compiled in; what vigil reports when the stamp is refused.
pub const BUILT: &str = env!("CARGO_PKG_VERSION");

const fn padded(v: &str) -> [u8; SECTION_LEN] {
    let b = v.as_bytes();
    assert!(
        b.len() <= MAX_LEN,
        "CARGO_PKG_VERSION is longer than the version section"
    );
    let mut out = [0u8; SECTION_LEN];
    let mut i = 0;
    while i < b.len() {
        out[i] = b[i];
        i += 1;
    }
    out
}

#[used]
#[link_section = ".vigil_version"]
static STAMP: [u8; SECTION_LEN] = padded(BUILT);

/// Why a stamp was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampError {
    /// The section starts with a NUL: nothing was stamped.
    Empty,
    /// No NUL within the section: the stamp runs over its end.
    Unterminated,
    /// Bytes after the first NUL are not NUL (a stamp written over a longer one).
    TrailingBytes,
    /// The bytes are not UTF-8.
    NotUtf8,
    /// The text is not a semantic version; the string is the refused text.
    NotSemver(String),
}

impl fmt::Display for StampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "the version section is empty"),
            Self::Unterminated => write!(
                f,
                "the version section holds no NUL: longer than {MAX_LEN} bytes"
            ),
            Self::TrailingBytes => write!(f, "the version section has bytes after its NUL"),
            Self::NotUtf8 => write!(f, "the version section is not UTF-8"),
            Self::NotSemver(s) => write!(
                f,
                "'{s}' is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])"
            ),
        }
    }
}

impl std::error::Error for StampError {}

/// The version vigil reports: the stamp, or [`BUILT`] when it was refused.
pub fn get() -> &'static str {
    match read() {
        Ok(v) => v,
        Err(_) => BUILT,
    }
}

/// Why the stamp was refused, if it was (logged once at start).
pub fn stamp_error() -> Option<&'static StampError> {
    read().as_ref().err()
}

fn read() -> &'static Result<&'static str, StampError> {
    static READ: OnceLock<Result<&'static str, StampError>> = OnceLock::new();
    READ.get_or_init(|| {
        // SAFETY: STAMP is a valid, aligned, initialised static; the volatile
        // load only stops the compiler from assuming its initial value.
        let bytes: [u8; SECTION_LEN] = unsafe { std::ptr::read_volatile(&raw const STAMP) };
        parse(&bytes).map(|v| &*Box::leak(v.to_owned().into_boxed_str()))
    })
}

/// Checks a section's bytes: a semantic version, then NULs to the end.
pub fn parse(bytes: &[u8]) -> Result<&str, StampError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(StampError::Unterminated)?;
    if end == 0 {
        return Err(StampError::Empty);
    }
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(StampError::TrailingBytes);
    }
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| StampError::NotUtf8)?;
    if is_semver(text) {
        Ok(text)
    } else {
        Err(StampError::NotSemver(text.to_owned()))
    }
}

/// Semantic Versioning 2.0.0: three numbers without leading zeros, then an
/// optional `-` and dot-separated pre-release identifiers (numeric ones
/// without leading zeros) and an optional `+` and build identifiers, all of
/// `[0-9A-Za-z-]` and none empty.
pub fn is_semver(s: &str) -> bool {
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let mut numbers = core.split('.');
    (0..3).all(|_| numbers.next().is_some_and(numeric))
        && numbers.next().is_none()
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|id| ident(id) && (!all_digits(id) || numeric(id)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn numeric(s: &str) -> bool {
    all_digits(s) && (s == "0" || !s.starts_with('0'))
}

fn ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(v: &str) -> [u8; SECTION_LEN] {
        let mut b = [0u8; SECTION_LEN];
        b[..v.len()].copy_from_slice(v.as_bytes());
        b
    }

    #[test]
    fn the_built_binary_reports_its_cargo_version() {
        assert_eq!(get(), BUILT);
        assert_eq!(stamp_error(), None);
    }

    /// The section is in this test binary's ELF file under its name, 64 bytes
    /// holding the Cargo version: what stamp-version.sh finds and rewrites.
    #[test]
    fn the_section_is_in_the_elf_file() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let found =
            elf_section(&exe, SECTION).expect("no .vigil_version section in the test binary");
        assert_eq!(found.len(), SECTION_LEN);
        assert_eq!(parse(found), Ok(BUILT));
    }

    /// The contents of a named section of a 64-bit little-endian ELF file.
    fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
        let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
        assert_eq!(
            &elf[..6],
            b"\x7fELF\x02\x01",
            "a 64-bit little-endian ELF file"
        );
        let (shoff, shentsize, shnum, shstrndx) =
            (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
        let header = |i: usize| shoff + i * shentsize;
        let names = u64_at(header(shstrndx) + 0x18);
        (0..shnum).find_map(|i| {
            let h = header(i);
            let at = names + u32_at(h);
            let len = elf[at..].iter().position(|&b| b == 0)?;
            (&elf[at..at + len] == name.as_bytes()).then(|| {
                let (off, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
                &elf[off..off + size]
            })
        })
    }

    #[test]
    fn semantic_versions_are_taken() {
        for v in [
            "0.1.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha-a.b-c",
            "1.0.0+build.5",
            "1.0.0-0.3.7+exp.sha.5114f85",
            "0.0.0",
        ] {
            assert_eq!(parse(&section(v)), Ok(v), "{v}");
        }
        let longest = format!("1.0.0-{}", "a".repeat(MAX_LEN - 6));
        assert_eq!(parse(&section(&longest)), Ok(longest.as_str()));
    }

    #[test]
    fn other_text_is_refused() {
        for v in [
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3-é",
            " 1.2.3",
            "1.2.3 ",
            "1.a.3",
            "...",
        ] {
            assert_eq!(
                parse(&section(v)),
                Err(StampError::NotSemver(v.into())),
                "{v}"
            );
        }
    }

    #[test]
    fn broken_sections_are_refused_with_their_kind() {
        assert_eq!(parse(&[0; SECTION_LEN]), Err(StampError::Empty));
        assert_eq!(parse(&[b'1'; SECTION_LEN]), Err(StampError::Unterminated));
        let mut b = section("1.2.3");
        b[40] = b'x';
        assert_eq!(parse(&b), Err(StampError::TrailingBytes));
        let mut b = section("1.2.3");
        b[1] = 0xff;
        assert_eq!(parse(&b), Err(StampError::NotUtf8));
    }

    /// Random changes to a valid stamp never panic the check, and whatever it
    /// accepts is a semantic version with nothing but NULs after it.
    #[test]
    fn mutated_stamps_never_panic() {
        let seed = section("1.20.3-rc.1+b7");
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut taken, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = seed;
            for _ in 0..1 + next() % 3 {
                let at = (next() % SECTION_LEN as u64) as usize;
                bytes[at] = match next() % 3 {
                    0 => next() as u8,
                    1 => 0,
                    _ => b"0123456789.-+aZ"[(next() % 15) as usize],
                };
            }
            match parse(&bytes) {
                Ok(v) => {
                    assert!(is_semver(v));
                    assert!(bytes[v.len()..].iter().all(|&b| b == 0));
                    taken += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            taken > 100 && refused > 100,
            "taken {taken}, refused {refused}"
        );
    }
}
