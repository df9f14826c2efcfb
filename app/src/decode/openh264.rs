//! The software H.264 decoder: Cisco's OpenH264 through the `openh264` crate.
//!
//! It is the decoder of the software backend (hosts, CI, emulated boards) and
//! the twin of the board's MPP decoder: created once per camera, [`reset`]
//! on every discontinuity, never dropped and re-created while the camera
//! lives. H.265 has no software decoder here; [`new_software_decoder`] says
//! so with [`DecodeError::Unsupported`].
//!
//! OpenH264 must run without its flush-after-every-call default
//! (`Flush::NoFlush`): flushing per access unit throws away pictures still
//! waiting for reordering, and a B-frame stream loses most of its frames
//! (bikes.mp4: 53 of 250). Without it, each call returns at most one picture,
//! in display order, once the picture's successors have arrived.
//!
//! Timestamps: the crate feeds OpenH264 no input timestamp, so output
//! pictures carry none. Each input's pts joins a fixed-capacity set of pending
//! times and each output picture takes the smallest pending one (display
//! order is increasing pts). The set is kept in step with the pictures
//! OpenH264 holds (its `DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER`), so
//! an access unit that yields no picture (corrupt, or parameter sets only)
//! cannot shift the times of the pictures after it.
//!
//! Allocation: the crate's `decode` path makes no Rust allocation (its
//! buffers are on the stack and pictures are borrowed from OpenH264); its
//! `flush_remaining` builds a `Vec`, so it is not used. OpenH264's C++ code
//! allocates its picture buffers when it first sees a stream (and again only
//! if the resolution changes), with `malloc`, outside Rust's allocator.
//!
//! [`reset`]: Decoder::reset

use super::{DecodeError, DecodedPicture, Decoder, Picture};
use crate::image::I420;
use crate::packet::{Codec, PacketBuf};
use ::openh264::decoder::{DecodedYUV, DecoderConfig, Flush};
use ::openh264::formats::YUVSource;
use ::openh264::OpenH264API;

/// Times of pictures that may still come out of the decoder. H.264 holds
/// at most 16 reference pictures plus the one being decoded; OpenH264's
/// reorder queue has 16 slots.
const MAX_PENDING: usize = 32;

/// `DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER` from OpenH264's
/// `codec_app_def.h` (the crate does not re-export its `-sys` constants).
const OPTION_FRAMES_REMAINING: i32 = 18;

/// Whether the software backend can decode `codec` (only H.264).
pub fn software_accepts(codec: Codec) -> bool {
    codec == Codec::H264
}

/// The software decoder for `codec`: OpenH264 for H.264; H.265 is
/// [`DecodeError::Unsupported`].
pub fn new_software_decoder(codec: Codec) -> Result<Box<dyn Decoder>, DecodeError> {
    match codec {
        Codec::H264 => Ok(Box::new(SoftwareH264::new()?)),
        Codec::H265 => Err(DecodeError::Unsupported(codec)),
    }
}

/// Decodes the one H.264 key frame `data` (Annex-B, its parameter sets in
/// front) with a decoder of its own, dropped on return, and lends the
/// picture to `emit`. For the settings page's camera test, which sees one
/// access unit and nothing after it: this decoder flushes after the call
/// (a camera decoder must not, see the module doc), so a stream with
/// reordering still yields its key frame at once. The caller checks the
/// SPS against its memory limit first: OpenH264 sizes its pictures from it.
pub fn decode_key_frame(data: &[u8], emit: &mut dyn FnMut(I420<'_>)) -> Result<(), DecodeError> {
    let config = DecoderConfig::new().flush_after_decode(Flush::Flush);
    let mut decoder =
        ::openh264::decoder::Decoder::with_api_config(OpenH264API::from_source(), config).map_err(
            |e| DecodeError::Corrupt(format!("cannot create the OpenH264 decoder: {e}")),
        )?;
    match decoder.decode(data) {
        Ok(Some(yuv)) => match view(&yuv) {
            Some(image) => {
                emit(image);
                Ok(())
            }
            None => Err(DecodeError::Corrupt(
                "decoder returned malformed planes".to_owned(),
            )),
        },
        Ok(None) => Err(DecodeError::Corrupt(
            "the key frame decoded to no picture".to_owned(),
        )),
        Err(e) => Err(DecodeError::Corrupt(e.to_string())),
    }
}

/// OpenH264 as a [`Decoder`].
pub struct SoftwareH264 {
    decoder: ::openh264::decoder::Decoder,
    pending: heapless::Vec<i64, MAX_PENDING>,
    /// Pictures from before the last reset still to come out and be dropped.
    discard: usize,
}

impl SoftwareH264 {
    /// Creates the decoder (single-threaded, no flush per call).
    pub fn new() -> Result<Self, DecodeError> {
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder =
            ::openh264::decoder::Decoder::with_api_config(OpenH264API::from_source(), config)
                .map_err(|e| {
                    DecodeError::Corrupt(format!("cannot create the OpenH264 decoder: {e}"))
                })?;
        Ok(SoftwareH264 {
            decoder,
            pending: heapless::Vec::new(),
            discard: 0,
        })
    }

    /// Pictures OpenH264 holds for reordering (0 if it cannot say).
    fn frames_held(&mut self) -> usize {
        let mut n: i32 = 0;
        // SAFETY: GetOption with this option id writes one int through the
        // pointer, which points at `n` for the duration of the call; no
        // decoder parameter is changed.
        let rc = unsafe {
            self.decoder
                .raw_api()
                .get_option(OPTION_FRAMES_REMAINING, (&raw mut n).cast())
        };
        if rc == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }

    /// Drops pending times no held picture can take: the input's own first
    /// (an access unit that produced nothing), then the oldest (a picture
    /// lost with an error).
    fn forget_stale(&mut self, input_pts: i64) {
        let held = self.frames_held();
        self.discard = self.discard.min(held);
        while self.pending.len() > held - self.discard {
            match self.pending.iter().position(|&p| p == input_pts) {
                Some(i) => {
                    self.pending.swap_remove(i);
                }
                None => {
                    take_smallest(&mut self.pending);
                }
            }
        }
    }
}

/// Removes and returns the smallest time.
fn take_smallest(pending: &mut heapless::Vec<i64, MAX_PENDING>) -> Option<i64> {
    let (i, _) = pending.iter().enumerate().min_by_key(|(_, p)| **p)?;
    Some(pending.swap_remove(i))
}

/// Adds a time, evicting the smallest when full (it can only be stale).
fn push_pending(pending: &mut heapless::Vec<i64, MAX_PENDING>, pts: i64) {
    if pending.is_full() {
        take_smallest(pending);
    }
    let _ = pending.push(pts);
}

/// The picture as an [`I420`] view, or `None` if OpenH264 reported planes
/// too small for its own dimensions.
fn view<'a>(yuv: &'a DecodedYUV<'a>) -> Option<I420<'a>> {
    let (w, h) = yuv.dimensions();
    let (y_stride, uv_stride, _) = yuv.strides();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let fits = |len: usize, stride: usize, rows: usize, width: usize| {
        rows == 0 || (stride >= width && len >= stride * (rows - 1) + width)
    };
    let ok = w > 0
        && h > 0
        && fits(yuv.y().len(), y_stride, h, w)
        && fits(yuv.u().len(), uv_stride, ch, cw)
        && fits(yuv.v().len(), uv_stride, ch, cw);
    ok.then(|| I420 {
        width: u32::try_from(w).unwrap_or(0),
        height: u32::try_from(h).unwrap_or(0),
        y: yuv.y(),
        u: yuv.u(),
        v: yuv.v(),
        y_stride,
        uv_stride,
    })
}

impl Decoder for SoftwareH264 {
    /// Decodes one access unit. A unit marked `discontinuity` resets the
    /// decoder first (so calling [`Decoder::reset`] as well is harmless).
    fn decode(
        &mut self,
        packet: &PacketBuf,
        emit: &mut dyn FnMut(DecodedPicture<'_>),
    ) -> Result<(), DecodeError> {
        if packet.codec != Codec::H264 {
            return Err(DecodeError::Unsupported(packet.codec));
        }
        if packet.discontinuity {
            self.reset();
        }
        push_pending(&mut self.pending, packet.pts_us);
        let result = match self.decoder.decode(packet.as_slice()) {
            Ok(Some(_)) if self.discard > 0 => {
                self.discard -= 1;
                Ok(())
            }
            Ok(Some(yuv)) => {
                let pts_us = take_smallest(&mut self.pending).unwrap_or(packet.pts_us);
                match view(&yuv) {
                    Some(image) => {
                        emit(DecodedPicture {
                            image: Picture::Borrowed(image),
                            pts_us,
                        });
                        Ok(())
                    }
                    None => Err(DecodeError::Corrupt(
                        "decoder returned malformed planes".to_owned(),
                    )),
                }
            }
            Ok(None) => Ok(()),
            Err(e) => Err(DecodeError::Corrupt(e.to_string())),
        };
        self.forget_stale(packet.pts_us);
        result
    }

    /// Forgets the stream: the pictures OpenH264 still holds for reordering
    /// will be discarded as they come out (they leave before any picture of
    /// the new stream: OpenH264 orders by IDR period first), and their times
    /// are dropped. The decoder object, its picture buffers and its
    /// parameter sets stay; the next key frame (an IDR, which sources send
    /// with its SPS/PPS in front) clears the references and restarts picture
    /// order.
    ///
    /// OpenH264 has no public reset (its internal `ResetDecoder` runs only on
    /// its own errors). Draining it through its end-of-stream flush instead
    /// is not safe to repeat: after a few flush-and-continue cycles it fails
    /// to find a free picture buffer and reports out-of-memory.
    fn reset(&mut self) {
        self.pending.clear();
        self.discard = self.frames_held();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::annexb::tests::harness;
    use crate::source::annexb::AnnexBFile;
    use crate::source::mp4file::Mp4File;
    use crate::source::test_media;
    use crate::source::FileSource;
    use std::path::{Path, PathBuf};

    /// Reads `n` access units from a file source into owned packets.
    fn packets(src: &mut impl FileSource, n: usize) -> Vec<PacketBuf> {
        let mut h = harness(4 << 20);
        let mut out = Vec::new();
        while out.len() < n {
            let unit = src.next_unit(&mut h.sink).unwrap();
            if let Some(p) = unit.packet {
                h.sink.send(p);
            }
            if let Some(p) = h.queue.try_pop() {
                let mut copy = PacketBuf::with_capacity(p.len());
                copy.begin(p.codec, p.pts_us, p.keyframe);
                copy.extend_from_slice(p.as_slice()).unwrap();
                copy.discontinuity = p.discontinuity;
                out.push(copy);
            }
        }
        out
    }

    /// Decodes all `packets` and returns the output pts; panics on errors.
    fn decode_all(d: &mut SoftwareH264, packets: &[PacketBuf]) -> Vec<i64> {
        let mut out = Vec::new();
        for p in packets {
            d.decode(p, &mut |pic| {
                assert_eq!(pic.size(), (640, 272));
                out.push(pic.pts_us);
            })
            .unwrap();
        }
        out
    }

    /// Pictures still held when the input ends (a live source never ends;
    /// tests drain them the way `reset` does).
    fn held(d: &mut SoftwareH264) -> usize {
        d.frames_held()
    }

    fn bikes_mp4() -> Option<PathBuf> {
        let cache = std::env::var_os("VIGIL_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/vigil")))?;
        Some(cache.join("media/bikes.mp4")).filter(|p| p.exists())
    }

    #[test]
    fn decodes_every_frame_of_a_b_frame_stream_in_display_order() {
        // 640x272 High profile with B-frames, like bikes.mp4; 60 frames.
        let mut src = AnnexBFile::open(&test_media::h264_high(), Codec::H264).unwrap();
        let input = packets(&mut src, 60);
        let mut d = SoftwareH264::new().unwrap();
        let out = decode_all(&mut d, &input);
        assert_eq!(out.len() + held(&mut d), 60);
        assert!(out.len() >= 55, "{}", out.len());
        // Display order: increasing, each a distinct input time.
        assert!(out.windows(2).all(|w| w[0] < w[1]), "{out:?}");
        let mut inputs: Vec<i64> = input.iter().map(|p| p.pts_us).collect();
        inputs.sort_unstable();
        assert_eq!(out[..], inputs[..out.len()]);
    }

    #[test]
    fn decodes_mp4_with_ctts_times_in_display_order() {
        let mut src = Mp4File::open(&test_media::h264_high_mp4()).unwrap();
        let input = packets(&mut src, 60);
        assert!(
            input.windows(2).any(|w| w[1].pts_us < w[0].pts_us),
            "no B-frame reordering"
        );
        let mut d = SoftwareH264::new().unwrap();
        let out = decode_all(&mut d, &input);
        assert_eq!(out.len() + held(&mut d), 60);
        // Every picture gets its own presentation time, in display order.
        let mut inputs: Vec<i64> = input.iter().map(|p| p.pts_us).collect();
        inputs.sort_unstable();
        assert_eq!(out[..], inputs[..out.len()]);
    }

    #[test]
    fn decodes_bikes_mp4_when_present() {
        let Some(path) = bikes_mp4() else {
            eprintln!("bikes.mp4 not in the cache; scripts/fetch-sample.sh fetches it");
            return;
        };
        let mut src = Mp4File::open(&path).unwrap();
        let input = packets(&mut src, 250);
        let mut d = SoftwareH264::new().unwrap();
        let out = decode_all(&mut d, &input);
        assert_eq!(out.len() + held(&mut d), 250);
    }

    #[test]
    fn corrupt_data_is_an_error_and_the_next_key_frame_decodes() {
        let mut src = AnnexBFile::open(&test_media::h264_high(), Codec::H264).unwrap();
        let mut input = packets(&mut src, 60);
        let mut d = SoftwareH264::new().unwrap();
        let mut errors = 0;
        let mut rng = crate::backoff::XorShift64::new(11);
        // Garble units 5..20 (after their headers).
        for p in &mut input[5..20] {
            let data = p.as_mut_slice();
            for _ in 0..20 {
                let i = rng.between(12, data.len() as u64 - 1) as usize;
                data[i] = rng.next_u64() as u8;
            }
        }
        let mut after_key = 0;
        for (i, p) in input.iter().enumerate() {
            let r = d.decode(p, &mut |_| {
                if i >= 25 {
                    after_key += 1;
                }
            });
            if let Err(e) = r {
                assert!(matches!(e, DecodeError::Corrupt(_)));
                errors += 1;
            }
        }
        // Pure garbage is an error, never a panic.
        let mut junk = PacketBuf::with_capacity(4096);
        junk.begin(Codec::H264, 0, true);
        let bytes: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        junk.extend_from_slice(&bytes).unwrap();
        let _ = d.decode(&junk, &mut |_| {});
        assert!(errors > 0, "garbled units decoded without error");
        // Units 25.. start at a key frame: decoding recovered.
        assert!(
            after_key >= 30,
            "only {after_key} pictures after the key frame"
        );
    }

    #[test]
    fn h265_is_unsupported() {
        assert!(software_accepts(Codec::H264));
        assert!(!software_accepts(Codec::H265));
        assert!(matches!(
            new_software_decoder(Codec::H265),
            Err(DecodeError::Unsupported(Codec::H265))
        ));
        let mut d = new_software_decoder(Codec::H264).unwrap();
        let mut p = PacketBuf::with_capacity(16);
        p.begin(Codec::H265, 0, true);
        assert!(matches!(
            d.decode(&p, &mut |_| {}),
            Err(DecodeError::Unsupported(_))
        ));
    }

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// RSS is per process: the measurement runs alone in a child process
    /// (this test binary again, filtered to this test).
    #[test]
    fn reset_keeps_the_decoder_and_does_not_grow_memory() {
        const CHILD: &str = "VIGIL_RESET_MEMORY_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "decode::openh264::tests::reset_keeps_the_decoder_and_does_not_grow_memory";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        let mut src = AnnexBFile::open(&test_media::h264_high(), Codec::H264).unwrap();
        let input = packets(&mut src, 30);
        let mut d = SoftwareH264::new().unwrap();
        let cycle = |d: &mut SoftwareH264| {
            // No Vec here: the loop is checked for allocations.
            let (mut out, mut n) = ([0i64; 8], 0);
            // A key frame and a few following units, then a reset mid-GOP.
            for p in &input[..8] {
                d.decode(p, &mut |pic| {
                    out[n] = pic.pts_us;
                    n += 1;
                })
                .unwrap();
            }
            // Pictures held before the last reset never show up here.
            assert!(n >= 5, "{out:?}");
            assert!(
                out[..n].iter().zip(&input).all(|(o, i)| *o == i.pts_us),
                "{out:?}"
            );
            d.reset();
            assert!(d.pending.is_empty());
            let held = d.frames_held();
            assert_eq!(d.discard, held);
            n
        };
        for _ in 0..50 {
            cycle(&mut d);
        }
        let rss_before = rss_kib();
        let allocs_before = crate::alloc_count::thread_counts().ours;
        let mut pictures = 0;
        for _ in 0..500 {
            pictures += cycle(&mut d);
        }
        let allocs = crate::alloc_count::thread_counts().ours - allocs_before;
        let grew = rss_kib().saturating_sub(rss_before);
        assert!(pictures >= 500 * 5, "{pictures}");
        eprintln!("500 resets: RSS +{grew} KiB, {allocs} Rust allocations");
        assert!(grew < 256, "RSS grew {grew} KiB over 500 resets");
        assert_eq!(allocs, 0, "Rust allocations in decode/reset");
    }

    /// Decode speed on one core: `cargo test --release -- --ignored decode_speed --nocapture`.
    #[test]
    #[ignore = "benchmark: run in release with --ignored"]
    fn decode_speed() {
        let (path, frames) = match bikes_mp4() {
            Some(p) => (p, 250),
            None => (test_media::h264_high_mp4(), 60),
        };
        let mut src = Mp4File::open(&path).unwrap();
        let input = packets(&mut src, frames);
        let mut d = SoftwareH264::new().unwrap();
        decode_all(&mut d, &input); // warm-up
        let rounds = 8;
        let start = std::time::Instant::now();
        let mut pictures = 0;
        for _ in 0..rounds {
            d.reset();
            for p in &input {
                d.decode(p, &mut |_| pictures += 1).unwrap();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "{}: {pictures} pictures in {secs:.2} s = {:.0} fps (one thread)",
            path.display(),
            pictures as f64 / secs
        );
    }
}
