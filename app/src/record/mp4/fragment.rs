//! The clip writer's one set of fragment buffers, fixed at construction and
//! shared by all clips in turn: units are converted from Annex-B to 4-byte
//! length prefixes straight into the sample area, and the `moof` is written
//! into room reserved in front of it, so a finished fragment is one
//! contiguous slice, made without a copy or an allocation.

use super::boxes::{self, Out, INIT_CAPACITY, MDAT_HEADER, MOOF_FIXED, TRUN_ENTRY};
use super::timeline::Sample;
use super::{ClipMux, Mp4Error, LEADING_SAMPLES};
use crate::codec::nal::{is_aud, nal_type};
use crate::codec::nal_units;
use crate::codec::sps::MAX_REORDER_FRAMES;

/// The writer thread's one set of buffers, fixed at construction and shared
/// by all clips in turn: one fragment is pending at a time. (No `Debug`:
/// it would print the whole sample area.)
pub struct FragmentBuilder {
    /// Room for the largest moof and the mdat header, then the sample area.
    buf: Box<[u8]>,
    /// Where the sample area starts in `buf`.
    data_start: usize,
    data_len: usize,
    samples: Box<[Sample]>,
    /// Scratch for sorting a fragment's pts with a clip's pending ones.
    sorted: Box<[i64]>,
    count: usize,
    /// The clip whose samples are pending (meaningful while `count > 0`).
    owner: u64,
    init: Box<[u8]>,
}

impl FragmentBuilder {
    /// Buffers for fragments of up to `max_fragment_bytes` of sample data
    /// (length-prefixed NAL units) and `max_samples` samples. The only
    /// allocations this module makes.
    ///
    /// # Panics
    /// When either is zero, or the sample area exceeds what a 32-bit mdat
    /// size can state (configuration bounds keep both far below).
    pub fn new(max_fragment_bytes: usize, max_samples: usize) -> Self {
        assert!(
            max_fragment_bytes > 0 && max_samples > 0,
            "a fragment must hold at least one sample and one byte"
        );
        assert!(
            max_fragment_bytes <= u32::MAX as usize - MDAT_HEADER,
            "fragments are limited to 4 GiB"
        );
        let data_start = Self::header_room(max_samples);
        FragmentBuilder {
            // Resident from the start, like the ring (see `pool::resident`).
            buf: crate::pool::resident(data_start + max_fragment_bytes),
            data_start,
            data_len: 0,
            samples: vec![Sample::default(); max_samples].into_boxed_slice(),
            sorted: vec![0; max_samples + MAX_REORDER_FRAMES as usize].into_boxed_slice(),
            count: 0,
            owner: 0,
            init: vec![0; INIT_CAPACITY].into_boxed_slice(),
        }
    }

    const fn header_room(max_samples: usize) -> usize {
        MOOF_FIXED + TRUN_ENTRY * max_samples + MDAT_HEADER
    }

    /// Bytes [`FragmentBuilder::new`] allocates (the memory budget's line).
    pub const fn bytes_for(max_fragment_bytes: usize, max_samples: usize) -> usize {
        Self::header_room(max_samples)
            + max_fragment_bytes
            + max_samples * (std::mem::size_of::<Sample>() + std::mem::size_of::<i64>())
            + MAX_REORDER_FRAMES as usize * std::mem::size_of::<i64>()
            + INIT_CAPACITY
    }

    /// Samples in the pending fragment.
    pub fn pending_samples(&self) -> usize {
        self.count
    }

    /// Bytes of sample data in the pending fragment.
    pub fn pending_bytes(&self) -> usize {
        self.data_len
    }

    /// Drops the pending fragment (its clip was abandoned, e.g. its file
    /// failed), so the builder can serve another clip.
    pub fn discard_pending(&mut self) {
        self.count = 0;
        self.data_len = 0;
    }

    /// The init segment (`ftyp`+`moov`, no samples) of `clip`: the first
    /// bytes of its file. Does not touch the pending fragment. The area is
    /// sized for the largest parameter sets a `ClipMux` keeps (a test
    /// proves it), so the error means that sizing is wrong.
    pub fn init_segment(&mut self, clip: &ClipMux) -> Result<&[u8], Mp4Error> {
        let mut o = Out::new(&mut self.init, 0);
        boxes::init_segment(&mut o, clip);
        if o.overflow {
            return Err(Mp4Error::InitSegmentTooLarge {
                capacity: INIT_CAPACITY,
            });
        }
        let len = o.pos;
        Ok(&self.init[..len])
    }

    /// Adds one access unit (Annex-B, as the packet ring holds it) to the
    /// pending fragment of `clip`, converted to 4-byte length-prefixed NAL
    /// units without access unit delimiters.
    ///
    /// In-band parameter sets are kept: they cost a few dozen bytes per key
    /// frame, FFmpeg and Chromium play avc1/hvc1 samples that repeat the
    /// configuration record's sets (the tests' streams do), and a camera
    /// that re-sends changed ones mid-clip still decodes instead of showing
    /// garbage.
    pub fn push(
        &mut self,
        clip: &ClipMux,
        unit: &[u8],
        pts_us: i64,
        key: bool,
    ) -> Result<(), Mp4Error> {
        if self.count > 0 && self.owner != clip.id {
            return Err(Mp4Error::OtherClipPending);
        }
        if clip.samples == 0 && self.count == 0 && !key {
            return Err(Mp4Error::FirstNotKey);
        }
        if clip.sps.reorders
            && !key
            && clip.samples + (self.count as u64) < LEADING_SAMPLES
            && pts_us < clip.start_pts_us
        {
            // A leading picture of the open GOP the clip starts in: it
            // refers to pictures before the clip and is shown before its
            // start, so it is left out (decoders drop it anyway).
            return Ok(());
        }
        let copied = || nal_units(unit).filter(|n| !is_aud(clip.codec, nal_type(clip.codec, n[0])));
        let size: usize = copied().map(|n| 4 + n.len()).sum();
        let capacity = self.buf.len() - self.data_start;
        if size == 0 {
            return Err(Mp4Error::EmptyUnit);
        }
        if size > capacity {
            return Err(Mp4Error::UnitTooLarge {
                bytes: size,
                capacity,
            });
        }
        if self.count == self.samples.len() || self.data_len + size > capacity {
            return Err(Mp4Error::FragmentFull);
        }
        let mut o = Out::new(&mut self.buf, self.data_start + self.data_len);
        for nal in copied() {
            // Fits: the sample area is below 4 GiB (checked in `new`).
            o.u32(nal.len() as u32);
            o.bytes(nal);
        }
        self.data_len += size;
        self.samples[self.count] = Sample {
            pts_us,
            dts: 0,
            cto: 0,
            size: size as u32,
            key,
        };
        self.count += 1;
        self.owner = clip.id;
        Ok(())
    }

    /// Finishes the pending fragment (`moof`+`mdat`) and returns its bytes,
    /// empty when no sample is pending. Afterwards the builder is empty and
    /// can serve another clip.
    ///
    /// # Panics
    /// When the pending samples belong to another clip: `push` never mixes
    /// clips, so only finishing with the wrong `ClipMux` gets here.
    pub fn finish_fragment(&mut self, clip: &mut ClipMux) -> &[u8] {
        if self.count == 0 {
            return &[];
        }
        assert!(
            self.owner == clip.id,
            "finish_fragment called with another clip than the pending samples'"
        );
        let samples = &mut self.samples[..self.count];
        if clip.sps.reorders {
            clip.time_reordered(samples, &mut self.sorted);
        } else {
            clip.time_in_order(samples);
        }
        clip.sequence += 1;
        clip.samples += self.count as u64;

        // The moof and mdat header end exactly where the sample area starts.
        let start = self.data_start - Self::header_room(self.count);
        let mut o = Out::new(&mut self.buf, start);
        boxes::moof(&mut o, clip, samples, self.data_len);
        debug_assert!(!o.overflow && o.pos == self.data_start);
        let end = self.data_start + self.data_len;
        self.discard_pending();
        &self.buf[start..end]
    }
}
