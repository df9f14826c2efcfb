//! The Rockchip MPP decoder behind the [`Decoder`] seam.
//!
//! MPP copies each access unit in, decodes into a frame of the camera's
//! limited buffer group, and hands the frame out as an [`MppPicture`] that
//! returns to the group when dropped, wherever that happens. So the group is
//! the hardware frame pool: when the pipeline holds every buffer, MPP's input
//! queue fills and `decode_put_packet` says so. The decoder then waits a
//! bounded time for a buffer to come back and drops the access unit if none
//! does ([`DecodeError::Stalled`], counted by the caller): a stall costs
//! frames, never memory. An info change to a picture over the camera's
//! `max_resolution` configures nothing and is [`DecodeError::TooLarge`].

use super::limit::TooLarge;
use super::{DecodeError, DecodedPicture, Decoder, Picture};
use crate::hw::mpp::{MppDecoder, MppError, PictureError, Put};
use crate::hw::mpp_sys::MppLib;
use crate::packet::{Codec, PacketBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long one wait for a free buffer lasts.
const STALL_WAIT: Duration = Duration::from_millis(2);

/// Waits before an access unit is dropped (100 ms in all: four frame times
/// at 25 fps, long enough for an inference worker to finish a picture).
const STALL_WAITS: u32 = 50;

/// A camera's MPP decoder for one codec.
pub struct MppVideoDecoder {
    mpp: MppDecoder,
    codec: Codec,
    /// The camera's `max_resolution` (width, height).
    max: (u32, u32),
}

impl MppVideoDecoder {
    /// Creates the decoder for `codec` with a group of `buffers` frames of
    /// at most `max` (width, height).
    pub fn new(
        lib: Arc<MppLib>,
        codec: Codec,
        buffers: usize,
        max: (u32, u32),
    ) -> Result<Self, DecodeError> {
        let mpp =
            MppDecoder::new(lib, codec, buffers).map_err(|e| DecodeError::Device(e.to_string()))?;
        Ok(MppVideoDecoder { mpp, codec, max })
    }

    /// Emits every picture MPP has ready; returns how many.
    fn drain(&mut self, emit: &mut dyn FnMut(DecodedPicture<'_>)) -> Result<usize, DecodeError> {
        let mut n = 0;
        while let Some(picture) = self.mpp.next_picture(self.max).map_err(picture_error)? {
            let pts_us = picture.pts;
            emit(DecodedPicture {
                image: Picture::Mpp(picture),
                pts_us,
            });
            n += 1;
        }
        Ok(n)
    }
}

fn device(e: MppError) -> DecodeError {
    DecodeError::Device(e.to_string())
}

fn picture_error(e: PictureError) -> DecodeError {
    match e {
        PictureError::Mpp(e) => device(e),
        PictureError::Oversize(o) => DecodeError::TooLarge(TooLarge {
            width: o.geometry.width,
            height: o.geometry.height,
            coded: None,
            max_width: o.max.0,
            max_height: o.max.1,
        }),
    }
}

impl Decoder for MppVideoDecoder {
    fn decode(
        &mut self,
        packet: &PacketBuf,
        emit: &mut dyn FnMut(DecodedPicture<'_>),
    ) -> Result<(), DecodeError> {
        if packet.codec != self.codec {
            return Err(DecodeError::Unsupported(packet.codec));
        }
        if packet.discontinuity {
            self.reset();
        }
        let mut waits = 0;
        while self
            .mpp
            .put(packet.as_slice(), packet.pts_us)
            .map_err(device)?
            == Put::Full
        {
            if self.drain(emit)? > 0 {
                continue;
            }
            if waits == STALL_WAITS {
                return Err(DecodeError::Stalled);
            }
            waits += 1;
            std::thread::sleep(STALL_WAIT);
        }
        self.drain(emit).map(|_| ())
    }

    fn reset(&mut self) {
        if let Err(e) = self.mpp.reset() {
            // The next put fails with the same cause and is counted there.
            log::warn!("{e}");
        }
    }
}
