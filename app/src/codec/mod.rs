//! H.264 and H.265 bitstream syntax: the one place vigil reads (and writes)
//! what a stream says about itself.
//!
//! Three parts of vigil look inside a stream: the file sources split
//! Annex-B into access units and take their frame rate from the SPS, the MP4
//! file source turns an `avcC`/`hvcC` record into Annex-B parameter sets, and
//! the clip muxer reads the SPS for its sample entry and timeline and writes
//! the configuration record back. They all use this module:
//!
//! - [`bits`]: the RBSP bit reader (emulation prevention, exp-Golomb).
//! - [`nal`]: NAL unit types, start-code scanning and access unit
//!   boundaries, by name instead of `& 0x1f` / `>> 1 & 0x3f`.
//! - [`sps`]: H.264 and H.265 sequence parameter sets parsed into one
//!   [`SpsInfo`]: coded size and cropping, VUI timing, reorder depth, and
//!   the fields a configuration record copies.
//! - [`config`]: `avcC` and `hvcC` configuration records, read and written.
//!
//! It is a leaf: it imports nothing from the rest of the crate ([`Codec`]
//! lives here and `packet` re-exports it), allocates only where a caller asks
//! for a `Vec` (reading a configuration record at file open), and never
//! panics on damaged input: every parser returns `None` instead.
//!
//! Why not `h264-reader` (0.8, in Cargo.lock through retina): it reads H.264
//! only, so H.265 would still need this bit reader and exp-Golomb code, and
//! the SPS syntax would again be walked by two parsers. And it allocates where
//! vigil must not: `decode_nal` copies an RBSP with emulation-prevention
//! bytes into a `Vec`, and its `SeqParameterSet` keeps scaling lists,
//! `offset_for_ref_frame` and HRD `cpb_specs` in `Vec`s. A clip's SPS is
//! parsed on the clip writer thread, whose muxing is proven allocation-free
//! (`record::mp4`'s `muxing_allocates_nothing_after_construction`), and
//! V4L2 key-frame detection ([`nal::has_key_slice`]) runs per frame. The
//! subset read here is a few hundred lines of the specifications' own
//! syntax tables, tested against hand-built and ffmpeg-made streams.

pub mod bits;
pub mod config;
pub mod nal;
pub mod sps;

pub use bits::BitReader;
pub use nal::{find_start_code, has_key_slice, nal_type, nal_units, NalHead, ParamKind};
pub use sps::{parse_sps, SpsInfo};

/// Video codecs vigil understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl Codec {
    /// The lower-case name used in configs, logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
pub(crate) mod test_sps;
#[cfg(test)]
mod tests;
