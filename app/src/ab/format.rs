//! The bytes of one state copy, in U-Boot's own checksummed environment
//! format, so the boot script reads and writes it with `env import -c` /
//! `env export -c -s 512` and the host makes it with `mkenvimage -p 0 -s 512`:
//! a CRC-32 (zlib's) of the rest, little-endian, then `NAME=value\0` entries
//! ending in an empty one, zero-padded to [`SIZE`]. U-Boot exports names in
//! sorted order, so [`encode`] does too and the bytes are identical.
//!
//! [`decode`] refuses a block that is not exactly [`SIZE`] bytes, whose CRC
//! does not match, or whose values are not a state (an order other than
//! `A B` / `B A`, a count that is not a small decimal number): the reader
//! then takes the other copy. A name that is missing keeps its default, as
//! in the boot script (`env import` of a list leaves a variable that is not
//! in the block untouched). The legacy text file (`env export -t`, lines,
//! perhaps a trailing NUL) goes through the same value checks.

use super::{BootState, Slot, ATTEMPTS};

/// The size of one copy: one 512-byte sector, so a copy is a single sector
/// write on the card and U-Boot loads and writes it in one piece. The three
/// variables take under 50 bytes.
pub const SIZE: usize = 512;

/// The state's variables, in the order U-Boot's `env export` writes them.
const A_LEFT: &str = "BOOT_A_LEFT";
const B_LEFT: &str = "BOOT_B_LEFT";
const ORDER: &str = "BOOT_ORDER";

/// zlib's CRC-32 (polynomial 0xEDB88320 reflected, initial and final value
/// all ones), the one U-Boot's `crc32()` and mkenvimage compute.
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// One copy's bytes for `state`.
pub fn encode(state: &BootState) -> [u8; SIZE] {
    let [first, second] = state.order();
    let text = format!(
        "{A_LEFT}={}\0{B_LEFT}={}\0{ORDER}={first} {second}\0\0",
        state.attempts_left(Slot::A),
        state.attempts_left(Slot::B),
    );
    let mut block = [0u8; SIZE];
    // At most 2 * (12 + 3) + 14 bytes: always fits.
    block[4..4 + text.len()].copy_from_slice(text.as_bytes());
    let crc = crc32(&block[4..]);
    block[..4].copy_from_slice(&crc.to_le_bytes());
    block
}

/// The state in one copy's bytes, or `None` when the copy is not a valid
/// one (wrong size, CRC mismatch, values that are not a state).
pub fn decode(block: &[u8]) -> Option<BootState> {
    if block.len() != SIZE {
        return None;
    }
    let (crc, data) = block.split_at(4);
    if u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) != crc32(data) {
        return None;
    }
    // Entries up to the empty one (U-Boot stops there too); the padding
    // after it, zeros from U-Boot or 0xff from a plain mkenvimage, is not read.
    let entries = data.split(|&b| b == 0).take_while(|e| !e.is_empty());
    apply(entries)
}

/// The state in the legacy text file (`NAME=value` lines as `env export -t`
/// wrote them, NUL bytes ignored), or `None` when a value is not a state.
pub fn decode_legacy(text: &[u8]) -> Option<BootState> {
    let lines = text
        .split(|&b| b == b'\n' || b == 0)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty());
    apply(lines)
}

/// The defaults with each `NAME=value` entry applied in turn (a later one
/// wins, as with `env import`); other names are ignored.
fn apply<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Option<BootState> {
    let mut order = [Slot::A, Slot::B];
    let mut left = [ATTEMPTS; 2];
    for entry in entries {
        let text = std::str::from_utf8(entry).ok()?;
        let (name, value) = text.split_once('=')?;
        match name {
            A_LEFT => left[0] = count(value)?,
            B_LEFT => left[1] = count(value)?,
            ORDER => order = slot_order(value)?,
            _ => {}
        }
    }
    Some(BootState { order, left })
}

/// A count of attempts: decimal digits, as the script's `test -gt` reads
/// them (it only ever writes 0 to 3).
fn count(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `A B` or `B A`, the only orders the script writes.
fn slot_order(value: &str) -> Option<[Slot; 2]> {
    let mut words = value.split(' ');
    let first: Slot = words.next()?.parse().ok()?;
    let second: Slot = words.next()?.parse().ok()?;
    (words.next().is_none() && first != second).then_some([first, second])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mkenvimage -p 0 -s 512` of `BOOT_A_LEFT=2`, `BOOT_B_LEFT=1`,
    /// `BOOT_ORDER=B A` (made once on the host; board/common/test-vigil-ab.sh
    /// compares against a live mkenvimage as well). U-Boot's own
    /// `env export -c -s 0x200` of the same variables is byte-identical
    /// (checked on the emulated board's U-Boot 2023.01).
    const GOLDEN: &[u8] = include_bytes!("testdata/mkenvimage-B-A-2-1.bin");
    /// The same with mkenvimage's default padding (0xff).
    const GOLDEN_FF: &[u8] = include_bytes!("testdata/mkenvimage-ff-A-B-1-0.bin");

    fn state(first: Slot, a: u8, b: u8) -> BootState {
        BootState {
            order: [first, first.other()],
            left: [a, b],
        }
    }

    #[test]
    fn crc32_is_zlibs() {
        // The check value every CRC-32 (zlib, PNG, Ethernet) gives.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip() {
        for first in [Slot::A, Slot::B] {
            for a in 0..=ATTEMPTS {
                for b in 0..=ATTEMPTS {
                    let s = state(first, a, b);
                    assert_eq!(decode(&encode(&s)), Some(s));
                }
            }
        }
    }

    #[test]
    fn encode_is_byte_identical_to_mkenvimage() {
        assert_eq!(encode(&state(Slot::B, 2, 1)).as_slice(), GOLDEN);
        assert_eq!(decode(GOLDEN), Some(state(Slot::B, 2, 1)));
        assert_eq!(decode(GOLDEN_FF), Some(state(Slot::A, 1, 0)));
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused() {
        let block = encode(&state(Slot::B, 0, 3));
        for len in 0..SIZE {
            assert_eq!(decode(&block[..len]), None, "truncated to {len}");
        }
        let mut longer = block.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        // CRC-32 detects every error burst of up to 32 bits.
        for at in 0..SIZE {
            for bit in 0..8 {
                let mut b = block;
                b[at] ^= 1 << bit;
                assert_eq!(decode(&b), None, "bit {bit} of byte {at} flipped");
            }
            let mut b = block;
            b[at] = !b[at];
            assert_eq!(decode(&b), None, "byte {at} inverted");
        }
    }

    /// A block with a good CRC around `text` (what a buggy writer could make).
    fn signed(text: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; SIZE - 4];
        body[..text.len()].copy_from_slice(text);
        signed_body(&body)
    }

    #[test]
    fn values_that_are_not_a_state_are_refused() {
        for text in [
            &b"BOOT_ORDER=A A\0\0"[..],
            b"BOOT_ORDER=A\0\0",
            b"BOOT_ORDER=A B C\0\0",
            b"BOOT_ORDER=A  B\0\0",
            b"BOOT_ORDER=C A\0\0",
            b"BOOT_A_LEFT=\0\0",
            b"BOOT_A_LEFT=x\0\0",
            b"BOOT_B_LEFT=-1\0\0",
            b"BOOT_B_LEFT=256\0\0",
            b"BOOT_B_LEFT=0x3\0\0",
            b"no equals sign\0\0",
            b"BOOT_A_LEFT=\xff\0\0",
        ] {
            assert_eq!(
                decode(&signed(text)),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Missing names keep the defaults; unknown ones are ignored.
        assert_eq!(
            decode(&signed(b"BOOT_B_LEFT=1\0other=x\0\0")),
            Some(state(Slot::A, ATTEMPTS, 1))
        );
    }

    #[test]
    fn legacy_text_as_env_export_t_wrote_it() {
        assert_eq!(
            decode_legacy(b"BOOT_ORDER=B A\nBOOT_A_LEFT=2\nBOOT_B_LEFT=0\n\0"),
            Some(state(Slot::B, 2, 0))
        );
        assert_eq!(decode_legacy(b""), Some(BootState::default()));
        assert_eq!(decode_legacy(b"BOOT_ORDER=B B\n"), None);
    }

    #[test]
    fn mutated_blocks_never_panic() {
        // The CRC refuses nearly every mutation, so each mutated body is
        // signed again: what the entry parser sees is arbitrary.
        let seed = encode(&state(Slot::B, 2, 3));
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut parsed, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut body = seed[4..].to_vec();
            for _ in 0..1 + next() % 4 {
                // Mostly within the entries, sometimes in the padding.
                let at = (next() % if next() % 4 == 0 { 508 } else { 48 }) as usize;
                body[at] = match next() % 4 {
                    0 => next() as u8,
                    1 => 0,
                    2 => b'=',
                    _ => b"AB 0123456789"[(next() % 13) as usize],
                };
            }
            let block = signed_body(&body);
            match decode(&block) {
                Some(s) => {
                    parsed += 1;
                    assert_eq!(decode(&encode(&s)), Some(s));
                }
                None => refused += 1,
            }
            let _ = decode_legacy(&body);
        }
        assert!(
            parsed > 100 && refused > 100,
            "parsed {parsed}, refused {refused}"
        );
    }

    fn signed_body(body: &[u8]) -> Vec<u8> {
        let mut block = vec![0u8; 4];
        block.extend_from_slice(body);
        let crc = crc32(body);
        block[..4].copy_from_slice(&crc.to_le_bytes());
        block
    }
}
