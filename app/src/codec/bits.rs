//! The RBSP bit reader every parameter-set parser uses: fixed-width fields
//! and exp-Golomb codes (H.264 / H.265 clause 9.2), most significant bit
//! first, with emulation-prevention bytes (`00 00 03`) skipped on the fly so
//! no unescaped copy of the NAL unit is ever made.

/// Reads RBSP bits from a NAL unit payload, skipping emulation-prevention
/// bytes (`00 00 03`). Every read returns `None` past the end.
#[derive(Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    zeros: u32,
    cur: u8,
    left: u8,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data` (a NAL unit after its header).
    pub fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            zeros: 0,
            cur: 0,
            left: 0,
        }
    }

    fn byte(&mut self) -> Option<u8> {
        let mut b = *self.data.get(self.pos)?;
        self.pos += 1;
        if self.zeros >= 2 && b == 3 {
            self.zeros = 0;
            b = *self.data.get(self.pos)?;
            self.pos += 1;
        }
        self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        Some(b)
    }

    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            self.cur = self.byte()?;
            self.left = 8;
        }
        self.left -= 1;
        Some(u32::from((self.cur >> self.left) & 1))
    }

    /// `n` (at most 32) bits, most significant first.
    pub fn u(&mut self, n: u32) -> Option<u32> {
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    /// One bit as a flag.
    pub fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// Unsigned exp-Golomb.
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.u(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// Unsigned exp-Golomb no larger than `max` (bounds loop counts).
    pub fn ue_max(&mut self, max: u32) -> Option<u32> {
        self.ue().filter(|v| *v <= max)
    }

    /// Signed exp-Golomb.
    pub fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_reader_skips_emulation_prevention() {
        let mut r = BitReader::new(&[0x00, 0x00, 0x03, 0x01, 0xA0]);
        assert_eq!(r.u(24), Some(1));
        assert_eq!(r.ue(), Some(0)); // 1
        assert_eq!(r.ue(), Some(1)); // 010
        assert_eq!(r.u(4), Some(0));
        assert_eq!(r.u(1), None);
        let mut r = BitReader::new(&[0b0010_1000]);
        assert_eq!(r.ue(), Some(4)); // 00101
        assert_eq!(r.se(), None); // "000" and then the end
        let mut r = BitReader::new(&[0b0110_0100]);
        assert_eq!(r.se(), Some(-1)); // 011: ue 2
        assert_eq!(r.se(), Some(2)); // 00100: ue 3
    }
}
