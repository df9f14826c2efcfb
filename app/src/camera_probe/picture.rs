//! The camera test's picture: one key frame decoded, scaled into the
//! preview and encoded as a JPEG `data:` URL, in buffers of fixed sizes.
//!
//! Runs as a disk-thread job (the web route's choice): decoding a 1080p key
//! frame takes tens of milliseconds of CPU, which must not hold a runtime
//! worker that the cameras' sources share. The decoder is OpenH264, created
//! for this one frame and dropped after it (`decode::openh264`), only for
//! H.264 within [`DECODER_BYTES`]; the picture goes into a
//! [`SnapshotBuf`] of [`PREVIEW`] size and the JPEG into a
//! [`JpegWriter`]'s buffer of [`JPEG_CAPACITY`] bytes, so the answer's size
//! is fixed before the camera is heard.

use super::session::KeyFrame;
use super::{base64_len, decoder_bytes, Facts, DECODER_BYTES, PREVIEW};
use crate::codec::Codec;
use crate::decode::openh264::decode_key_frame;
use crate::image::ImageRef;
use crate::snapshot::{JpegWriter, SnapshotBuf, DEFAULT_QUALITY};
use base64::Engine;

/// The preview JPEG's buffer: `JpegWriter::capacity_for(PREVIEW)`, one
/// byte per pixel (every picture fits at the default quality, see there).
pub const JPEG_CAPACITY: usize = PREVIEW.0 as usize * PREVIEW.1 as usize;

/// What the answer's picture starts with.
const PREFIX: &str = "data:image/jpeg;base64,";

/// The key frame as a `data:image/jpeg;base64,` URL, or a note saying why
/// there is none (for the answer's `picture_note`).
pub fn render(key: &KeyFrame, facts: &Facts) -> Result<String, String> {
    if key.codec != Codec::H264 {
        return Err(format!(
            "no picture: {} has no CPU decoder here (on the board the MPP decoder plays it); codec and size are read from the stream's SPS",
            key.codec
        ));
    }
    let need = decoder_bytes(facts.width, facts.height, facts.ref_frames);
    if need > DECODER_BYTES {
        return Err(format!(
            "no picture: decoding a {}x{} stream with {} reference frames takes about {} MiB, more than the test's {} MiB",
            facts.width,
            facts.height,
            facts.ref_frames,
            need.div_ceil(1 << 20),
            DECODER_BYTES >> 20
        ));
    }
    let mut preview = SnapshotBuf::new(PREVIEW.0, PREVIEW.1);
    let mut copied = Ok(());
    decode_key_frame(&key.data, &mut |image| {
        copied = preview.copy_from(&ImageRef::I420(image));
    })
    .map_err(|e| format!("no picture: the key frame did not decode: {e}"))?;
    copied.map_err(|e| format!("no picture: {e}"))?;
    let mut writer = JpegWriter::new(JPEG_CAPACITY, DEFAULT_QUALITY);
    let jpeg = writer
        .encode(&preview)
        .map_err(|e| format!("no picture: {e}"))?;
    let mut url = String::with_capacity(PREFIX.len() + base64_len(jpeg.len()));
    url.push_str(PREFIX);
    base64::engine::general_purpose::STANDARD.encode_string(jpeg, &mut url);
    Ok(url)
}
