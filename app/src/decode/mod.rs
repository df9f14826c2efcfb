//! Decoding: access units in, pictures out.
//!
//! A [`Decoder`] lives for the whole life of its camera's decoder thread: on a
//! reconnect it is reset, never dropped and re-created (the Rockchip MPP
//! decoder grows memory on every destroy/create, MPP issues #367 and #623, and
//! the software twin follows the same rule). Pictures are lent to a callback
//! as borrowed [`I420`] views valid only during the call; the caller copies
//! the ones it keeps into its fixed frame pool.

pub mod openh264;

use crate::image::I420;
use crate::packet::{Codec, PacketBuf};

/// One decoded picture, borrowed from the decoder.
#[derive(Clone, Copy, Debug)]
pub struct DecodedPicture<'a> {
    /// The planes.
    pub image: I420<'a>,
    /// Presentation time in microseconds of stream time.
    pub pts_us: i64,
}

/// Why an access unit could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    /// The codec has no decoder in this build (H.265 without MPP).
    Unsupported(Codec),
    /// The bitstream was rejected; the decoder skips to the next key frame.
    Corrupt(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Unsupported(c) => write!(
                f,
                "{c} needs the hardware (MPP) decoder; the software backend decodes only h264"
            ),
            DecodeError::Corrupt(why) => write!(f, "corrupt bitstream: {why}"),
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
