//! The primitives the password file and the session tokens share:
//! comparison in constant time, randomness from the kernel, and hex.
//!
//! They live apart so that neither the password file nor the sessions has
//! its own copy of code whose timing or entropy matters.

use std::fs::File;
use std::io::{self, Read};

/// Whether `a` equals `b`, in time that depends only on the lengths, which
/// are public (hex tokens and hashes have fixed sizes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Fills `buf` from the kernel's CSPRNG.
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: the pointer and length describe `rest`, a live writable
            // slice; getrandom writes at most `rest.len()` bytes into it.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            match usize::try_from(n) {
                Ok(n) => filled += n,
                Err(_) => {
                    let err = io::Error::last_os_error();
                    match err.raw_os_error() {
                        Some(libc::EINTR) => {}
                        Some(libc::ENOSYS) => return File::open("/dev/urandom")?.read_exact(rest),
                        _ => return Err(err),
                    }
                }
            }
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        File::open("/dev/urandom")?.read_exact(buf)
    }
}

/// `N` random bytes from the kernel.
pub(super) fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// Lowercase hex of `bytes`; `M` must be `2 * N`.
pub(super) fn hex_encode<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(M, 2 * N);
    let mut out = [0u8; M];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// Decodes exactly `N` bytes of lowercase hex.
pub(super) fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (b, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *b = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}
