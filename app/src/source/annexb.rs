//! H.264/H.265 Annex-B elementary-stream files, played at their own frame
//! rate and looped forever.
//!
//! Raw `.h264`/`.h265` files are what ffmpeg, GStreamer and cameras' own
//! recorders dump, so they are the simplest way to feed a box a known stream.
//! The file is read through one fixed buffer of [`READ_BUF_SIZE`] bytes,
//! split into NAL units at start codes and grouped into access units (H.264
//! 7.4.1.2.3, H.265 7.4.2.4.4, as [`crate::codec::NalHead`] reads them): a new unit starts at an access unit
//! delimiter, parameter set, SEI (prefix SEI for H.265) or reserved
//! "first NAL" type after a slice of the current unit, or at a slice that
//! begins a picture (`first_mb_in_slice == 0`,
//! `first_slice_segment_in_pic_flag == 1`) after one. A unit is a key frame
//! when its slices are IDR (H.264 type 5) or IRAP (H.265 types 16..=23).
//!
//! Units are written straight from the read buffer into the packet buffer the
//! sink lends; the non-slice NAL units in front of a picture's first slice
//! wait in a fixed [`PREFIX_BUF_SIZE`] buffer until that slice tells whether
//! the unit is a key frame (the sink needs to know before it lends). Nothing
//! is allocated per unit.
//!
//! Timing comes from the first SPS's VUI (`num_units_in_tick`, `time_scale`,
//! read by [`crate::codec::parse_sps`]), else [`DEFAULT_FPS`]; presentation times count units in decode order and
//! keep increasing across loops (each loop restarts at the file's first key
//! frame, so it is no discontinuity). Damaged files never panic: bytes
//! between start codes are passed on as they are (the decoder reports
//! garbage), a start code with nothing after it is dropped, a unit too big
//! for a packet buffer is dropped as oversize, and a pass over the file that
//! finds no access unit at all is an error. A NAL unit cut off by the end of
//! a truncated file cannot be told from a complete last one (Annex-B carries
//! no lengths), so it too goes to the decoder, which rejects or conceals it.

use super::sink::PacketSink;
use super::{FileSource, FileUnit, SourceError};
use crate::codec::{find_start_code, NalHead};
use crate::metrics::DropReason;
use crate::packet::{Codec, PacketBuf};
use crate::pool::Lease;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes of the fixed buffer a file is read through.
pub const READ_BUF_SIZE: usize = 256 * 1024;

/// Bytes of non-slice NAL units (delimiter, parameter sets, SEI) that may
/// precede a picture's first slice; a unit with more is dropped as oversize.
pub const PREFIX_BUF_SIZE: usize = 64 * 1024;

/// Frame rate assumed when the SPS carries no timing.
pub const DEFAULT_FPS: u64 = 25;

/// Bytes of a NAL unit examined to classify it (header plus the first slice
/// header bits).
const LOOKAHEAD: usize = 8;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The access unit being assembled.
struct Assembly {
    /// Non-slice NAL units seen before the first slice, Annex-B framed.
    prefix: Box<[u8]>,
    prefix_len: usize,
    prefix_overflow: bool,
    /// Whether the unit has a slice yet (after which bytes go to `packet`).
    vcl_seen: bool,
    /// The packet being filled; `None` once a slice was seen means the unit
    /// is being skipped.
    packet: Option<Lease<PacketBuf>>,
}

impl Assembly {
    fn put(&mut self, bytes: &[u8], sink: &mut PacketSink) {
        if !self.vcl_seen {
            let end = self.prefix_len + bytes.len();
            if self.prefix_overflow || end > self.prefix.len() {
                self.prefix_overflow = true;
            } else {
                self.prefix[self.prefix_len..end].copy_from_slice(bytes);
                self.prefix_len = end;
            }
        } else if let Some(p) = self.packet.as_mut() {
            if p.extend_from_slice(bytes).is_err() {
                if let Some(p) = self.packet.take() {
                    sink.abandon(p, DropReason::Oversize);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.prefix_len = 0;
        self.prefix_overflow = false;
        self.vcl_seen = false;
        self.packet = None;
    }
}

/// An Annex-B file being played.
pub struct AnnexBFile {
    path: PathBuf,
    file: File,
    codec: Codec,
    buf: Box<[u8]>,
    /// First unconsumed byte of `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    end: usize,
    eof: bool,
    /// `pos` is the first byte of a NAL unit (just after a start code).
    at_nal: bool,
    au: Assembly,
    /// Frame duration in seconds as a fraction.
    frame_secs: (u64, u64),
    timing_known: bool,
    /// Units found since the file was opened (the next unit's index).
    units: u64,
    units_this_pass: u64,
}

impl AnnexBFile {
    /// Opens `path` as an Annex-B stream of `codec` and allocates its buffers
    /// (the only allocation it makes).
    pub fn open(path: &Path, codec: Codec) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| SourceError::io(path, e))?;
        Ok(AnnexBFile {
            path: path.to_owned(),
            file,
            codec,
            buf: vec![0; READ_BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            at_nal: false,
            au: Assembly {
                prefix: vec![0; PREFIX_BUF_SIZE].into_boxed_slice(),
                prefix_len: 0,
                prefix_overflow: false,
                vcl_seen: false,
                packet: None,
            },
            frame_secs: (1, DEFAULT_FPS),
            timing_known: false,
            units: 0,
            units_this_pass: 0,
        })
    }

    /// The duration of one frame in microseconds (from the SPS once the first
    /// one has been read).
    pub fn frame_duration_us(&self) -> f64 {
        self.frame_secs.0 as f64 * 1e6 / self.frame_secs.1 as f64
    }

    fn pts_us(&self, unit: u64) -> i64 {
        let (num, den) = self.frame_secs;
        let us = i128::from(unit) * 1_000_000 * i128::from(num) / i128::from(den);
        i64::try_from(us).unwrap_or(i64::MAX)
    }

    /// Moves the unconsumed bytes to the front and reads until the buffer is
    /// full or the file ends.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end < self.buf.len() && !self.eof {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn rewind(&mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.pos = 0;
        self.end = 0;
        self.eof = false;
        self.at_nal = false;
        self.units_this_pass = 0;
        Ok(())
    }

    /// Positions `pos` at the next non-empty NAL unit and classifies it, or
    /// returns `None` at the end of the file.
    fn next_nal(&mut self) -> std::io::Result<Option<NalHead>> {
        loop {
            while !self.at_nal {
                if let Some(o) = find_start_code(&self.buf[self.pos..self.end]) {
                    self.pos += o + 3;
                    self.at_nal = true;
                } else if self.eof {
                    self.pos = self.end;
                    return Ok(None);
                } else {
                    // Keep two bytes: a start code may straddle the refill.
                    self.pos = self.pos.max(self.end.saturating_sub(2));
                    self.fill()?;
                }
            }
            if self.end - self.pos < LOOKAHEAD && !self.eof {
                self.fill()?;
            }
            let head = &self.buf[self.pos..self.end.min(self.pos + LOOKAHEAD)];
            if head.is_empty() {
                self.at_nal = false;
                return Ok(None);
            }
            match find_start_code(head) {
                // Nothing but zero bytes before the next start code.
                Some(o) if head[..o].iter().all(|&b| b == 0) => self.pos += o + 3,
                _ => return Ok(Some(NalHead::classify(self.codec, head))),
            }
        }
    }

    /// Copies the NAL unit at `pos` (with a 4-byte start code, trailing zero
    /// bytes dropped) into the unit being assembled and moves past it.
    fn copy_nal(&mut self, parse_sps: bool, sink: &mut PacketSink) -> std::io::Result<()> {
        let nal_start = self.pos;
        let mut chunk = self.pos;
        let mut whole = true;
        let mut started = false;
        loop {
            let found = find_start_code(&self.buf[chunk..self.end]).map(|o| chunk + o);
            let stop = match found {
                Some(sc) => sc,
                None if self.eof => self.end,
                None => {
                    // The unit runs past the buffer: pass on what is here,
                    // keeping three bytes in case a start code straddles.
                    let keep = chunk.max(self.end.saturating_sub(3));
                    if keep > chunk {
                        if !started {
                            self.au.put(&START_CODE, sink);
                            started = true;
                        }
                        self.au.put(&self.buf[chunk..keep], sink);
                    }
                    self.pos = keep;
                    self.fill()?;
                    chunk = self.pos;
                    whole = false;
                    continue;
                }
            };
            let mut e = stop;
            while e > chunk && self.buf[e - 1] == 0 {
                e -= 1;
            }
            if e > chunk {
                if !started {
                    self.au.put(&START_CODE, sink);
                }
                self.au.put(&self.buf[chunk..e], sink);
            }
            if parse_sps && whole {
                self.timing_known = true;
                let sps = crate::codec::parse_sps(self.codec, &self.buf[nal_start..e]);
                if let Some(t) = sps.and_then(|sps| sps.frame_duration()) {
                    self.frame_secs = t;
                }
            }
            match found {
                Some(sc) => self.pos = sc + 3,
                None => {
                    self.pos = self.end;
                    self.at_nal = false;
                }
            }
            return Ok(());
        }
    }

    /// The first slice of a unit: asks the sink for a packet and moves the
    /// prefix into it.
    fn start_packet(&mut self, key: bool, sink: &mut PacketSink) {
        self.au.vcl_seen = true;
        let pts = self.pts_us(self.units);
        if self.au.prefix_overflow {
            sink.metrics().packets_dropped.inc(DropReason::Oversize);
            sink.discontinuity();
            return;
        }
        if let Some(mut p) = sink.begin(self.codec, pts, key) {
            if p.extend_from_slice(&self.au.prefix[..self.au.prefix_len])
                .is_ok()
            {
                self.au.packet = Some(p);
            } else {
                sink.abandon(p, DropReason::Oversize);
            }
        }
    }

    fn finish_unit(&mut self) -> FileUnit {
        let unit = FileUnit {
            due_us: self.pts_us(self.units),
            packet: self.au.packet.take(),
        };
        self.au.clear();
        self.units += 1;
        self.units_this_pass += 1;
        unit
    }
}

impl FileSource for AnnexBFile {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn next_unit(&mut self, sink: &mut PacketSink) -> Result<FileUnit, SourceError> {
        loop {
            let head = match self.next_nal() {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if self.au.vcl_seen {
                        return Ok(self.finish_unit());
                    }
                    self.au.clear();
                    if self.units_this_pass == 0 {
                        return Err(SourceError::media(
                            &self.path,
                            format!("no {} access unit in the file", self.codec),
                        ));
                    }
                    self.rewind().map_err(|e| SourceError::io(&self.path, e))?;
                    continue;
                }
                Err(e) => return Err(SourceError::io(&self.path, e)),
            };
            if self.au.vcl_seen && head.starts_au {
                return Ok(self.finish_unit());
            }
            if head.vcl && !self.au.vcl_seen {
                self.start_packet(head.key, sink);
            }
            let parse_sps = head.sps && !self.timing_known;
            self.copy_nal(parse_sps, sink)
                .map_err(|e| SourceError::io(&self.path, e))?;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_media;
    use super::*;
    use crate::codec::nal_units;
    use crate::metrics::CameraMetrics;
    use crate::pool::Pool;
    use crate::queue::WhenFull;
    use crate::source::sink::PacketQueue;
    use std::sync::Arc;

    pub(crate) struct Harness {
        pub sink: PacketSink,
        pub queue: Arc<PacketQueue>,
        pub metrics: Arc<CameraMetrics>,
    }

    pub(crate) fn harness(packet_size: usize) -> Harness {
        let pool = Pool::with("packets", 8, || PacketBuf::with_capacity(packet_size));
        let queue = Arc::new(PacketQueue::new(8, WhenFull::DropNewest));
        let metrics = Arc::new(CameraMetrics::new("test"));
        Harness {
            sink: PacketSink::new(pool, queue.clone(), metrics.clone()),
            queue,
            metrics,
        }
    }

    /// One unit as a test sees it.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Seen {
        pub key: bool,
        pub pts_us: i64,
        pub data: Vec<u8>,
    }

    /// Reads `n` units, sending and immediately collecting each.
    pub(crate) fn read_units(src: &mut impl FileSource, h: &mut Harness, n: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        for _ in 0..n {
            let unit = src.next_unit(&mut h.sink).expect("next unit");
            if let Some(p) = unit.packet {
                h.sink.send(p);
            }
            if let Some(p) = h.queue.try_pop() {
                out.push(Seen {
                    key: p.keyframe,
                    pts_us: p.pts_us,
                    data: p.as_slice().to_vec(),
                });
            }
        }
        out
    }

    fn units_in(path: &Path, codec: Codec, count: usize) -> Vec<Seen> {
        let mut f = AnnexBFile::open(path, codec).unwrap();
        let mut h = harness(1 << 20);
        read_units(&mut f, &mut h, count)
    }

    #[test]
    fn splits_h264_high_with_b_frames_like_ffprobe() {
        let path = test_media::h264_high();
        let expected = test_media::probe_packets(&path);
        assert_eq!(expected.len(), 60);
        let units = units_in(&path, Codec::H264, expected.len());
        let keys: Vec<bool> = units.iter().map(|u| u.key).collect();
        assert_eq!(keys, expected);
        // 25 fps from the SPS VUI, decode order, no gaps.
        for (i, u) in units.iter().enumerate() {
            assert_eq!(u.pts_us, i as i64 * 40_000);
            assert!(u.data.starts_with(&START_CODE));
        }
        // The file's bytes are all accounted for (start codes normalised).
        let file = std::fs::read(&path).unwrap();
        let nals = |b: &[u8]| nal_units(b).count();
        assert_eq!(
            units.iter().map(|u| nals(&u.data)).sum::<usize>(),
            nals(&file)
        );
    }

    #[test]
    fn splits_h265_like_ffprobe_and_reads_its_frame_rate() {
        let path = test_media::h265();
        let expected = test_media::probe_packets(&path);
        assert_eq!(expected.len(), 40);
        let units = units_in(&path, Codec::H265, expected.len());
        assert_eq!(units.iter().map(|u| u.key).collect::<Vec<_>>(), expected);
        assert_eq!(units[3].pts_us, 100_000); // 30 fps
    }

    #[test]
    fn reads_h264_frame_rate_from_vui() {
        let path = test_media::ffmpeg(
            "rate30.h264",
            "-f lavfi -i testsrc2=size=160x120:rate=30 -frames:v 5 -c:v libx264 -f h264 {out}",
        );
        let mut f = AnnexBFile::open(&path, Codec::H264).unwrap();
        let mut h = harness(1 << 20);
        read_units(&mut f, &mut h, 1);
        assert!(
            (f.frame_duration_us() - 33_333.3).abs() < 1.0,
            "{}",
            f.frame_duration_us()
        );
    }

    #[test]
    fn loops_with_increasing_pts() {
        let path = test_media::h264_high();
        let units = units_in(&path, Codec::H264, 150);
        assert_eq!(units.len(), 150);
        assert!(units
            .windows(2)
            .all(|w| w[1].pts_us - w[0].pts_us == 40_000));
        assert!(units[60].key && units[120].key);
        assert_eq!(units[61].data, units[1].data);
    }

    fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = test_media::dir().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn truncated_and_corrupted_files_never_panic() {
        let good = std::fs::read(test_media::h264_high()).unwrap();
        let mut rng = crate::backoff::XorShift64::new(1234);
        for trial in 0..40 {
            let mut bytes = good.clone();
            let cut = rng.between(1, bytes.len() as u64 - 1) as usize;
            if trial % 2 == 0 {
                bytes.truncate(cut);
            }
            for _ in 0..(trial * 5) {
                let i = rng.between(0, bytes.len() as u64 - 1) as usize;
                bytes[i] = rng.next_u64() as u8;
            }
            let path = write_temp(&format!("damaged-{trial}.h264"), &bytes);
            for codec in [Codec::H264, Codec::H265] {
                let mut f = AnnexBFile::open(&path, codec).unwrap();
                let mut h = harness(64 * 1024);
                for _ in 0..200 {
                    match f.next_unit(&mut h.sink) {
                        Ok(u) => drop(u),
                        Err(e) => panic!("damaged file with start codes failed: {e}"),
                    }
                    drop(h.queue.try_pop());
                }
            }
        }
    }

    #[test]
    fn garbage_without_access_units_is_an_error_not_a_hang() {
        let mut rng = crate::backoff::XorShift64::new(99);
        let garbage: Vec<u8> = (0..300_000)
            .map(|_| (rng.next_u64() % 255 + 1) as u8)
            .collect();
        for (name, bytes) in [
            ("garbage.h264", &garbage[..]),
            ("empty.h264", &[][..]),
            ("zeros.h264", &[0u8; 1000][..]),
            // Only parameter sets: no slice, so no access unit.
            (
                "sps-only.h264",
                &[0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce][..],
            ),
        ] {
            let path = write_temp(name, bytes);
            let mut f = AnnexBFile::open(&path, Codec::H264).unwrap();
            let mut h = harness(1024);
            let err = f.next_unit(&mut h.sink).unwrap_err();
            assert!(
                err.to_string().contains("no h264 access unit"),
                "{name}: {err}"
            );
        }
        assert!(AnnexBFile::open(Path::new("/nonexistent/x.h264"), Codec::H264).is_err());
    }

    #[test]
    fn random_garbage_with_start_codes_is_passed_on() {
        let mut rng = crate::backoff::XorShift64::new(5);
        let mut bytes = Vec::new();
        for _ in 0..500 {
            bytes.extend_from_slice(&[0, 0, 1]);
            let n = rng.between(0, 3000);
            bytes.extend((0..n).map(|_| rng.next_u64() as u8));
        }
        let path = write_temp("random-nals.h264", &bytes);
        let mut f = AnnexBFile::open(&path, Codec::H264).unwrap();
        let mut h = harness(16 * 1024);
        let units = read_units(&mut f, &mut h, 300);
        assert!(!units.is_empty());
    }

    #[test]
    fn oversize_units_are_dropped_and_counted() {
        let path = test_media::h264_high();
        let mut f = AnnexBFile::open(&path, Codec::H264).unwrap();
        let mut h = harness(2048); // smaller than the key frames
        let units = read_units(&mut f, &mut h, 60);
        assert!(h.metrics.packets_dropped.get(DropReason::Oversize) >= 3);
        assert!(units.iter().all(|u| u.data.len() <= 2048));
    }

    #[test]
    fn nal_units_larger_than_the_read_buffer_stream_through() {
        // One 700 KB slice between an SPS and the next picture.
        let mut bytes = vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e];
        let mut rng = crate::backoff::XorShift64::new(3);
        for pic in 0..2 {
            bytes.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88]);
            let n = 700_000 + pic;
            bytes.extend((0..n).map(|_| (rng.next_u64() % 254 + 2) as u8));
        }
        let path = write_temp("big-nal.h264", &bytes);
        let mut f = AnnexBFile::open(&path, Codec::H264).unwrap();
        let mut h = harness(2 << 20);
        let units = read_units(&mut f, &mut h, 2);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].data.len(), 8 + 6 + 700_000);
        assert_eq!(units[1].data.len(), 6 + 700_001);
        assert_eq!(units[0].data[..], bytes[..8 + 6 + 700_000]);
    }
}
