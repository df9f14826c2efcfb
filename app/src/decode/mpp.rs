//! The Rockchip MPP decoder behind the [`Decoder`] seam.
//!
//! MPP copies each access unit in, decodes into a frame of the camera's
//! limited buffer group, and hands the frame out as an [`MppPicture`] that
//! returns to the group when dropped, wherever that happens. So the group is
//! the hardware frame pool: when the pipeline holds every buffer, MPP's input
//! queue fills and `decode_put_packet` says so. The decoder then waits a
//! bounded time for a buffer to come back and drops the access unit if none
//! does ([`DecodeError::Stalled`], counted by the caller): a stall costs
//! frames, never memory.

use super::{DecodeError, DecodedPicture, Decoder, Picture};
use crate::hw::mpp::{MppDecoder, MppError, Put};
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
}

impl MppVideoDecoder {
    /// Creates the decoder for `codec` with a group of `buffers` frames.
    pub fn new(lib: Arc<MppLib>, codec: Codec, buffers: usize) -> Result<Self, DecodeError> {
        let mpp = MppDecoder::new(lib, codec, buffers).map_err(device)?;
        Ok(MppVideoDecoder { mpp, codec })
    }

    /// Emits every picture MPP has ready; returns how many.
    fn drain(&mut self, emit: &mut dyn FnMut(DecodedPicture<'_>)) -> Result<usize, DecodeError> {
        let mut n = 0;
        while let Some(picture) = self.mpp.next_picture().map_err(device)? {
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
