//! Compressed access units in fixed-size buffers.
//!
//! Every source writes each access unit (one picture's NAL units, Annex-B
//! framed, parameter sets in front of key frames) into a [`PacketBuf`] lent by
//! the camera's packet pool. The buffer's capacity is fixed when the pool is
//! filled at start; an access unit larger than that is refused with
//! [`PacketTooLarge`] and dropped by the caller, never grown into.

// The codec enum lives with the bitstream code; packets are where most of
// the crate meets it.
pub use crate::codec::Codec;

/// An access unit that does not fit its packet buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketTooLarge {
    /// Bytes the access unit needed (at least).
    pub needed: usize,
    /// The buffer's fixed capacity.
    pub capacity: usize,
}

impl std::fmt::Display for PacketTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "access unit of at least {} bytes exceeds the packet buffer size of {} bytes",
            self.needed, self.capacity
        )
    }
}

impl std::error::Error for PacketTooLarge {}

/// One access unit and its timing.
#[derive(Debug)]
pub struct PacketBuf {
    data: Box<[u8]>,
    len: usize,
    /// Codec of the payload.
    pub codec: Codec,
    /// Presentation time in microseconds of stream time (starts anywhere;
    /// may jump or wrap when the camera does).
    pub pts_us: i64,
    /// Whether this access unit starts a decodable picture sequence (IDR/IRAP).
    pub keyframe: bool,
    /// Set on the first unit after a reconnect or a dropped unit: the decoder
    /// resets (never re-creates) before decoding it.
    pub discontinuity: bool,
}

impl PacketBuf {
    /// A buffer that can hold access units of up to `capacity` bytes. This is
    /// the only allocation a packet ever makes, at start.
    pub fn with_capacity(capacity: usize) -> Self {
        PacketBuf {
            data: crate::pool::resident(capacity),
            len: 0,
            codec: Codec::H264,
            pts_us: 0,
            keyframe: false,
            discontinuity: false,
        }
    }

    /// Empties the buffer and sets the metadata for a new access unit.
    pub fn begin(&mut self, codec: Codec, pts_us: i64, keyframe: bool) {
        self.len = 0;
        self.codec = codec;
        self.pts_us = pts_us;
        self.keyframe = keyframe;
        self.discontinuity = false;
    }

    /// Appends bytes, or refuses (leaving the contents unchanged) when they
    /// would not fit.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), PacketTooLarge> {
        let end = self.len + bytes.len();
        if end > self.data.len() {
            return Err(PacketTooLarge {
                needed: end,
                capacity: self.data.len(),
            });
        }
        self.data[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Gives `n` bytes of writable space at the end (for reading from a file
    /// straight into the buffer); commit them with [`PacketBuf::commit`].
    pub fn spare(&mut self, n: usize) -> Result<&mut [u8], PacketTooLarge> {
        let end = self.len + n;
        if end > self.data.len() {
            return Err(PacketTooLarge {
                needed: end,
                capacity: self.data.len(),
            });
        }
        Ok(&mut self.data[self.len..end])
    }

    /// Marks `n` bytes written through [`PacketBuf::spare`] as part of the unit.
    pub fn commit(&mut self, n: usize) {
        assert!(self.len + n <= self.data.len(), "commit past spare space");
        self.len += n;
    }

    /// The access unit's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Mutable access to the access unit's bytes (for in-place rewriting,
    /// e.g. length prefixes into start codes).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fixed capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overflow_without_changing_contents() {
        let mut p = PacketBuf::with_capacity(8);
        p.begin(Codec::H264, 5, true);
        p.extend_from_slice(&[1, 2, 3]).unwrap();
        let err = p.extend_from_slice(&[0; 6]).unwrap_err();
        assert_eq!(
            err,
            PacketTooLarge {
                needed: 9,
                capacity: 8
            }
        );
        assert_eq!(p.as_slice(), &[1, 2, 3]);
        p.spare(5).unwrap().copy_from_slice(&[4, 5, 6, 7, 8]);
        p.commit(5);
        assert_eq!(p.len(), 8);
        assert!(p.spare(1).is_err());
        p.begin(Codec::H265, 6, false);
        assert!(p.is_empty());
    }
}
