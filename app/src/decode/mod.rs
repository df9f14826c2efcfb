//! Decoding: access units in, pictures out.
//!
//! A [`Decoder`] lives for the whole life of its camera's decoder thread: on a
//! reconnect it is reset, never dropped and re-created (the Rockchip MPP
//! decoder grows memory on every destroy/create, MPP issues #367 and #623, and
//! the software twin follows the same rule). The software decoder lends
//! pictures to a callback as borrowed [`I420`] views valid only during the
//! call, and the caller copies the ones it keeps into its fixed frame pool;
//! the MPP decoder hands over frames of its own fixed buffer group, which
//! return to it when dropped, so the hardware path never copies a picture.

pub mod limit;
pub mod mpp;
pub mod openh264;

use crate::hw::mpp::MppPicture;
use crate::image::I420;
use crate::packet::{Codec, PacketBuf};

/// The pixels of a decoded picture.
pub enum Picture<'a> {
    /// Planes borrowed from the decoder for the duration of the callback.
    Borrowed(I420<'a>),
    /// A frame of the MPP decoder's buffer group, held until dropped.
    Mpp(MppPicture),
}

/// One decoded picture.
pub struct DecodedPicture<'a> {
    /// The pixels.
    pub image: Picture<'a>,
    /// Presentation time in microseconds of stream time.
    pub pts_us: i64,
}

impl DecodedPicture<'_> {
    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match &self.image {
            Picture::Borrowed(p) => (p.width, p.height),
            Picture::Mpp(p) => (p.geometry.width, p.geometry.height),
        }
    }
}

/// Why an access unit could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The codec has no decoder in this build (H.265 without MPP).
    Unsupported(Codec),
    /// The bitstream was rejected; the decoder skips to the next key frame.
    Corrupt(String),
    /// The hardware decoder failed (the call and its code).
    Device(String),
    /// Every decoder buffer stayed held downstream while the access unit
    /// waited: it was dropped rather than growing the buffer group.
    Stalled,
    /// The decoder found the stream larger than the camera's
    /// `max_resolution` (MPP's info change) and configured nothing for it.
    TooLarge(limit::TooLarge),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Unsupported(c) => write!(
                f,
                "{c} needs the hardware (MPP) decoder; the software backend decodes only h264"
            ),
            DecodeError::Corrupt(why) => write!(f, "corrupt bitstream: {why}"),
            DecodeError::Device(why) => write!(f, "hardware decoder: {why}"),
            DecodeError::Stalled => f.write_str(
                "hardware decoder stalled: every frame buffer is held downstream; access unit dropped",
            ),
            DecodeError::TooLarge(t) => t.fmt(f),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A stateful video decoder for one camera.
pub trait Decoder: Send {
    /// Decodes one access unit and calls `emit` for every picture it
    /// completes (none, one, or several when reordering flushes).
    fn decode(
        &mut self,
        packet: &PacketBuf,
        emit: &mut dyn FnMut(DecodedPicture<'_>),
    ) -> Result<(), DecodeError>;

    /// Forgets all stream state (after a reconnect or a gap) without
    /// releasing the decoder's resources.
    fn reset(&mut self);
}
