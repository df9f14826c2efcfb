//! MP4 (ISO BMFF) files, played at their own timing and looped forever.
//!
//! A clip saved from a camera or a phone is most often an MP4, so the box can
//! replay one as a camera. The `mp4` crate parses the `moov` box (the sample
//! tables: `stsc`, `stco`/`co64`, `stsz`, `stts`, `ctts`, `stss`), which is
//! copied into compact tables once at open. Samples are *not* read through
//! the crate, whose `read_sample` allocates a buffer per sample: each
//! sample's file offset is computed from the tables as playback walks them,
//! and its bytes are read with one positioned read straight into the packet
//! buffer the sink lends. There the AVC/HEVC length prefixes (the size is in
//! the `avcC`/`hvcC` record, almost always 4 bytes) are rewritten into Annex-B
//! start codes in place; shorter prefixes are expanded inside the same buffer
//! with one bounded move. The parameter sets from the `avcC`/`hvcC` record
//! (VPS, SPS, PPS; read by [`crate::codec::config`]) are written in front of every sync sample, so each key
//! frame can start decoding on its own. The crate in this version does not
//! parse `hvcC` and knows no `hvc1`/`avc3` entries, so the sample entry and
//! its configuration record are found with a few positioned reads of the box
//! headers.
//!
//! Units are paced by their decode time (`stts`); presentation times add the
//! `ctts` offset; both keep increasing across loops (edit lists are ignored).
//! Fragmented MP4 is not supported. A damaged file never panics: samples past
//! the end of a truncated file end the pass, a bad length prefix makes the
//! rest of the sample one NAL unit for the decoder to reject, and a file
//! without a readable video sample is an error.

use super::sink::PacketSink;
use super::{FileSource, FileUnit, SourceError};
use crate::codec::config;
use crate::metrics::DropReason;
use crate::packet::{Codec, PacketBuf};
use crate::pool::Lease;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Largest `avcC`/`hvcC` record accepted (real ones are a few hundred bytes).
const MAX_CONFIG_RECORD: u64 = 64 * 1024;

/// A video track's sample tables, copied out of the parsed `moov`.
#[derive(Debug, Default)]
struct Tables {
    /// `stsc`: (first chunk, 1-based; samples per chunk).
    stsc: Vec<(u32, u32)>,
    chunk_offsets: Vec<u64>,
    /// `stsz`: the size of every sample when non-zero, else `sample_sizes`.
    sample_size: u32,
    sample_sizes: Vec<u32>,
    sample_count: u32,
    /// `stts`: (sample count, delta).
    stts: Vec<(u32, u32)>,
    /// `ctts`: (sample count, offset); empty when absent.
    ctts: Vec<(u32, i32)>,
    /// `stss`: 1-based sync sample numbers; `None` when every sample is sync.
    stss: Option<Vec<u32>>,
    /// Sum of the `stts` deltas: one pass in timescale units.
    duration: u64,
}

/// One sample's place and timing.
#[derive(Clone, Copy, Debug)]
struct Sample {
    offset: u64,
    size: u32,
    dts: u64,
    cts_offset: i32,
    sync: bool,
}

/// Where playback is in the sample tables; walks them without allocating.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    sample: u32,
    chunk: usize,
    in_chunk: u32,
    chunk_len: u32,
    stsc_i: usize,
    offset: u64,
    dts: u64,
    stts_i: usize,
    stts_used: u32,
    ctts_i: usize,
    ctts_used: u32,
    stss_i: usize,
}

impl Cursor {
    fn start(t: &Tables) -> Self {
        let mut c = Cursor::default();
        c.enter_chunk(t, 0);
        c
    }

    /// Moves to chunk `chunk` (0-based); false past the last chunk.
    fn enter_chunk(&mut self, t: &Tables, chunk: usize) -> bool {
        self.chunk = chunk;
        self.in_chunk = 0;
        let Some(&offset) = t.chunk_offsets.get(chunk) else {
            self.chunk_len = 0;
            return false;
        };
        while t
            .stsc
            .get(self.stsc_i + 1)
            .is_some_and(|e| e.0 as usize <= chunk + 1)
        {
            self.stsc_i += 1;
        }
        self.chunk_len = t.stsc.get(self.stsc_i).map_or(0, |e| e.1);
        self.offset = offset;
        true
    }

    /// The sample at the cursor, or `None` at the end of the track.
    fn sample(&mut self, t: &Tables) -> Option<Sample> {
        if self.sample >= t.sample_count {
            return None;
        }
        while self.in_chunk >= self.chunk_len {
            if !self.enter_chunk(t, self.chunk + 1) {
                return None;
            }
        }
        let size = if t.sample_size != 0 {
            t.sample_size
        } else {
            *t.sample_sizes.get(self.sample as usize)?
        };
        let sync = match &t.stss {
            None => true,
            Some(stss) => {
                while stss.get(self.stss_i).is_some_and(|&n| n <= self.sample) {
                    self.stss_i += 1;
                }
                stss.get(self.stss_i) == Some(&(self.sample + 1))
            }
        };
        Some(Sample {
            offset: self.offset,
            size,
            dts: self.dts,
            cts_offset: t.ctts.get(self.ctts_i).map_or(0, |e| e.1),
            sync,
        })
    }

    /// Steps past `s`, the sample at the cursor.
    fn advance(&mut self, t: &Tables, s: &Sample) {
        self.offset = self.offset.saturating_add(u64::from(s.size));
        self.in_chunk += 1;
        self.sample += 1;
        if let Some(&(_, delta)) = t.stts.get(self.stts_i) {
            self.dts = self.dts.saturating_add(u64::from(delta));
        }
        self.stts_used += 1;
        while t
            .stts
            .get(self.stts_i)
            .is_some_and(|e| self.stts_used >= e.0)
        {
            self.stts_i += 1;
            self.stts_used = 0;
        }
        self.ctts_used += 1;
        while t
            .ctts
            .get(self.ctts_i)
            .is_some_and(|e| self.ctts_used >= e.0)
        {
            self.ctts_i += 1;
            self.ctts_used = 0;
        }
    }
}

/// An MP4 file being played.
pub struct Mp4File {
    path: PathBuf,
    file: File,
    file_len: u64,
    codec: Codec,
    /// Bytes of each NAL unit's length prefix (1..=4).
    length_size: usize,
    /// The configuration record's parameter sets, Annex-B framed.
    param_sets: Box<[u8]>,
    timescale: u32,
    tables: Tables,
    cursor: Cursor,
    /// Timescale units of the passes already played.
    pass_base: u64,
    units_this_pass: u64,
}

impl Mp4File {
    /// Opens `path`, finds its first H.264/H.265 video track and reads its
    /// tables (the only allocations it makes).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| SourceError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| SourceError::io(path, e))?.len();
        let entry = find_video_entry(&file, file_len)
            .map_err(|e| SourceError::io(path, e))?
            .ok_or_else(|| {
                SourceError::media(
                    path,
                    "no H.264 or H.265 video track (avc1, avc3, hvc1 or hev1 sample entry)",
                )
            })?;
        let (length_size, param_sets) = match entry.codec {
            Codec::H264 => config::read_avcc(&entry.config),
            Codec::H265 => config::read_hvcc(&entry.config),
        }
        .ok_or_else(|| {
            SourceError::media(path, format!("bad {} configuration record", entry.codec))
        })?;

        // The crate is not known to be panic-free on hostile input; a file
        // must never take the process down.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mp4::Mp4Reader::read_header(std::io::BufReader::new(&file), file_len)
        }));
        let mut moov = match parsed {
            Ok(Ok(reader)) => reader.moov,
            Ok(Err(e)) => return Err(SourceError::media(path, format!("not a playable MP4: {e}"))),
            Err(_) => {
                return Err(SourceError::media(
                    path,
                    "the MP4 parser failed on this file",
                ))
            }
        };
        if entry.track >= moov.traks.len() {
            return Err(SourceError::media(
                path,
                "the video track's tables could not be parsed",
            ));
        }
        let trak = moov.traks.swap_remove(entry.track);
        let timescale = trak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(SourceError::media(
                path,
                "the video track has a zero timescale",
            ));
        }
        let stbl = trak.mdia.minf.stbl;
        let chunk_offsets: Vec<u64> = match (stbl.stco, stbl.co64) {
            (Some(stco), _) => stco.entries.into_iter().map(u64::from).collect(),
            (None, Some(co64)) => co64.entries,
            (None, None) => Vec::new(),
        };
        let stts: Vec<(u32, u32)> = stbl
            .stts
            .entries
            .iter()
            .map(|e| (e.sample_count, e.sample_delta))
            .collect();
        let tables = Tables {
            stsc: stbl
                .stsc
                .entries
                .iter()
                .map(|e| (e.first_chunk, e.samples_per_chunk))
                .collect(),
            chunk_offsets,
            sample_size: stbl.stsz.sample_size,
            sample_sizes: stbl.stsz.sample_sizes,
            sample_count: stbl.stsz.sample_count,
            duration: stts.iter().fold(0u64, |sum, &(n, d)| {
                sum.saturating_add(u64::from(n) * u64::from(d))
            }),
            stts,
            ctts: stbl.ctts.map_or_else(Vec::new, |c| {
                c.entries
                    .iter()
                    .map(|e| (e.sample_count, e.sample_offset))
                    .collect()
            }),
            stss: stbl.stss.map(|s| s.entries),
        };
        if tables.sample_count == 0 {
            let why = if moov.mvex.is_some() {
                "fragmented MP4 is not supported"
            } else {
                "the video track has no samples"
            };
            return Err(SourceError::media(path, why));
        }
        let cursor = Cursor::start(&tables);
        Ok(Mp4File {
            path: path.to_owned(),
            file,
            file_len,
            codec: entry.codec,
            length_size,
            param_sets: param_sets.into_boxed_slice(),
            timescale,
            tables,
            cursor,
            pass_base: 0,
            units_this_pass: 0,
        })
    }

    fn ticks_to_us(&self, ticks: i128) -> i64 {
        let us = ticks * 1_000_000 / i128::from(self.timescale);
        i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
    }

    /// Fills `p` with sample `s` (parameter sets first on sync samples),
    /// or abandons it when it does not fit.
    fn fill(
        &self,
        mut p: Lease<PacketBuf>,
        s: &Sample,
        sink: &mut PacketSink,
    ) -> Result<Option<Lease<PacketBuf>>, SourceError> {
        if s.sync && p.extend_from_slice(&self.param_sets).is_err() {
            sink.abandon(p, DropReason::Oversize);
            return Ok(None);
        }
        let size = s.size as usize;
        let Ok(raw) = p.spare(size) else {
            sink.abandon(p, DropReason::Oversize);
            return Ok(None);
        };
        self.file
            .read_exact_at(raw, s.offset)
            .map_err(|e| SourceError::io(&self.path, e))?;
        let grow = count_nals(raw, self.length_size) * (4 - self.length_size);
        let Ok(region) = p.spare(size + grow) else {
            sink.abandon(p, DropReason::Oversize);
            return Ok(None);
        };
        to_annex_b(region, grow, self.length_size);
        p.commit(size + grow);
        Ok(Some(p))
    }
}

impl FileSource for Mp4File {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn next_unit(&mut self, sink: &mut PacketSink) -> Result<FileUnit, SourceError> {
        loop {
            let sample = self
                .cursor
                .sample(&self.tables)
                // A sample past the end of a truncated file ends the pass.
                .filter(|s| s.offset.saturating_add(u64::from(s.size)) <= self.file_len);
            let Some(s) = sample else {
                if self.units_this_pass == 0 {
                    return Err(SourceError::media(
                        &self.path,
                        "no readable video sample in the file",
                    ));
                }
                self.pass_base = self.pass_base.saturating_add(self.tables.duration);
                self.cursor = Cursor::start(&self.tables);
                self.units_this_pass = 0;
                continue;
            };
            self.cursor.advance(&self.tables, &s);
            if s.size == 0 {
                continue;
            }
            self.units_this_pass += 1;
            let dts = i128::from(self.pass_base) + i128::from(s.dts);
            let pts_us = self.ticks_to_us(dts + i128::from(s.cts_offset));
            let packet = match sink.begin(self.codec, pts_us, s.sync) {
                Some(p) => self.fill(p, &s, sink)?,
                None => None,
            };
            return Ok(FileUnit {
                due_us: self.ticks_to_us(dts),
                packet,
            });
        }
    }
}

/// How many length-prefixed NAL units `data` holds (the last one cut at the
/// end of the data if its length says more); must match [`to_annex_b`].
fn count_nals(data: &[u8], length_size: usize) -> usize {
    let (mut i, mut n) = (0, 0);
    while i + length_size <= data.len() {
        let len = be(&data[i..i + length_size]).min(data.len() - i - length_size);
        i += length_size + len;
        n += 1;
    }
    n
}

fn be(b: &[u8]) -> usize {
    b.iter().fold(0usize, |v, &x| (v << 8) | usize::from(x))
}

/// Rewrites length-prefixed NAL units into Annex-B. `region[grow..]` holds
/// the sample; the result fills all of `region`, whose length is the
/// sample's plus `grow`, which is [`count_nals`] × (4 − `length_size`).
/// With 4-byte prefixes (`grow == 0`) only the prefixes are overwritten.
fn to_annex_b(region: &mut [u8], grow: usize, length_size: usize) {
    let end = region.len();
    let (mut src, mut dst) = (grow, 0);
    while src + length_size <= end {
        let len = be(&region[src..src + length_size]).min(end - src - length_size);
        // dst + 4 <= src + length_size while units remain: the prefix being
        // overwritten has been read and no unread byte is touched.
        region[dst..dst + 4].copy_from_slice(&START_CODE);
        if src + length_size != dst + 4 {
            region.copy_within(src + length_size..src + length_size + len, dst + 4);
        }
        src += length_size + len;
        dst += 4 + len;
    }
    // Fewer bytes than a prefix left over: kept as they are.
    if src != dst {
        region.copy_within(src..end, dst);
    }
}

/// The first H.264/H.265 track found by walking box headers.
struct VideoEntry {
    /// Index of its `trak` among the `moov`'s.
    track: usize,
    codec: Codec,
    /// The `avcC`/`hvcC` record's body.
    config: Vec<u8>,
}

/// A box header at `at` inside `..limit`: (type, body start, end), or `None`
/// when there is no complete, well-formed header there.
fn box_at(f: &File, at: u64, limit: u64) -> std::io::Result<Option<([u8; 4], u64, u64)>> {
    if at.saturating_add(8) > limit {
        return Ok(None);
    }
    let mut h = [0u8; 8];
    f.read_exact_at(&mut h, at)?;
    let kind = [h[4], h[5], h[6], h[7]];
    let (body, end) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
        0 => (at + 8, Some(limit)),
        1 => {
            if at + 16 > limit {
                return Ok(None);
            }
            let mut big = [0u8; 8];
            f.read_exact_at(&mut big, at + 8)?;
            (at + 16, at.checked_add(u64::from_be_bytes(big)))
        }
        size => (at + 8, at.checked_add(u64::from(size))),
    };
    Ok(end
        .filter(|&end| end >= body && end <= limit)
        .map(|end| (kind, body, end)))
}

/// The body range of the first child of type `kind` in `start..end`.
fn child(f: &File, start: u64, end: u64, kind: &[u8; 4]) -> std::io::Result<Option<(u64, u64)>> {
    let mut at = start;
    while let Some((k, body, next)) = box_at(f, at, end)? {
        if &k == kind {
            return Ok(Some((body, next)));
        }
        at = next;
    }
    Ok(None)
}

fn find_video_entry(f: &File, file_len: u64) -> std::io::Result<Option<VideoEntry>> {
    let Some((moov, moov_end)) = child(f, 0, file_len, b"moov")? else {
        return Ok(None);
    };
    let (mut at, mut track) = (moov, 0);
    while let Some((kind, trak, next)) = box_at(f, at, moov_end)? {
        at = next;
        if &kind != b"trak" {
            continue;
        }
        track += 1;
        let mut range = Some((trak, next));
        for kind in [b"mdia", b"minf", b"stbl", b"stsd"] {
            range = match range {
                Some((s, e)) => child(f, s, e, kind)?,
                None => None,
            };
        }
        // stsd: version and flags, entry count, then the first entry.
        let Some((stsd, stsd_end)) = range else {
            continue;
        };
        let Some((entry, body, entry_end)) = box_at(f, stsd + 8, stsd_end)? else {
            continue;
        };
        let (codec, record) = match &entry {
            b"avc1" | b"avc3" => (Codec::H264, b"avcC"),
            b"hvc1" | b"hev1" => (Codec::H265, b"hvcC"),
            _ => continue,
        };
        // A VisualSampleEntry's fixed fields take 78 bytes before its boxes.
        let Some((cfg, cfg_end)) = child(f, body + 78, entry_end, record)? else {
            continue;
        };
        if cfg_end - cfg > MAX_CONFIG_RECORD {
            continue;
        }
        let mut config = vec![0; (cfg_end - cfg) as usize];
        f.read_exact_at(&mut config, cfg)?;
        return Ok(Some(VideoEntry {
            track: track - 1,
            codec,
            config,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::annexb::tests::{harness, read_units};
    use super::super::annexb::AnnexBFile;
    use super::super::test_media;
    use super::*;
    use crate::codec::nal::{is_aud, nal_type};
    use crate::codec::{nal_units, ParamKind};

    fn mp4_of(annexb: &Path, name: &str) -> PathBuf {
        test_media::ffmpeg(
            name,
            &format!(
                "-f h264 -framerate 25 -i {} -c copy -f mp4 {{out}}",
                annexb.display()
            ),
        )
    }

    /// The NAL units of each unit, parameter sets (which the MP4 source puts
    /// in front of every key frame) and AUDs removed.
    fn slices(codec: Codec, data: &[u8]) -> Vec<Vec<u8>> {
        nal_units(data)
            .filter(|n| {
                let t = nal_type(codec, n[0]);
                ParamKind::of(codec, t).is_none() && !is_aud(codec, t)
            })
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn same_units_as_annexb(codec: Codec, annexb: &Path, mp4: &Path) {
        let frames = test_media::probe_packets(annexb).len();
        let mut a = AnnexBFile::open(annexb, codec).unwrap();
        let mut m = Mp4File::open(mp4).unwrap();
        assert_eq!(m.codec(), codec);
        let (mut ha, mut hm) = (harness(1 << 20), harness(1 << 20));
        let ua = read_units(&mut a, &mut ha, frames + 5);
        let um = read_units(&mut m, &mut hm, frames + 5);
        assert_eq!(ua.len(), um.len());
        for (i, (x, y)) in ua.iter().zip(&um).enumerate() {
            assert_eq!(x.key, y.key, "unit {i}");
            assert_eq!(slices(codec, &x.data), slices(codec, &y.data), "unit {i}");
            if y.key {
                // Parameter sets from the configuration record lead.
                let first = nal_units(&y.data).next().unwrap()[0];
                let kind = ParamKind::of(codec, nal_type(codec, first));
                let lead = match codec {
                    Codec::H264 => ParamKind::Sps,
                    Codec::H265 => ParamKind::Vps,
                };
                assert_eq!(kind, Some(lead), "unit {i} starts with {first:x}");
            }
        }
        // Decode-time pacing: 25 fps, increasing across the loop.
        let dues: Vec<i64> = {
            let mut m = Mp4File::open(mp4).unwrap();
            let mut h = harness(1 << 20);
            (0..frames + 3)
                .map(|_| m.next_unit(&mut h.sink).unwrap().due_us)
                .collect()
        };
        let step = 1_000_000 / if codec == Codec::H265 { 30 } else { 25 };
        for w in dues.windows(2) {
            assert!((w[1] - w[0] - step).abs() <= 1, "{dues:?}");
        }
    }

    #[test]
    fn h264_mp4_yields_the_annexb_units() {
        // Annex-B -> MP4 by stream copy.
        let annexb = test_media::h264_high();
        let mp4 = mp4_of(&annexb, "high-h264.mp4");
        same_units_as_annexb(Codec::H264, &annexb, &mp4);
        // MP4 -> Annex-B by stream copy (ffmpeg's own conversion).
        let mp4 = test_media::h264_high_mp4();
        let annexb = test_media::ffmpeg(
            "high-from-mp4.h264",
            &format!("-i {} -c copy -f h264 {{out}}", mp4.display()),
        );
        same_units_as_annexb(Codec::H264, &annexb, &mp4);
    }

    #[test]
    fn h265_mp4_yields_the_annexb_units() {
        let annexb = test_media::h265();
        let mp4 = test_media::ffmpeg(
            "main-h265.mp4",
            &format!(
                "-f hevc -framerate 30 -i {} -c copy -tag:v hvc1 -f mp4 {{out}}",
                annexb.display()
            ),
        );
        same_units_as_annexb(Codec::H265, &annexb, &mp4);
    }

    #[test]
    fn b_frames_get_presentation_times_from_ctts() {
        let mut m = Mp4File::open(&test_media::h264_high_mp4()).unwrap();
        let mut h = harness(1 << 20);
        let units = read_units(&mut m, &mut h, 60);
        let mut pts: Vec<i64> = units.iter().map(|u| u.pts_us).collect();
        assert!(pts.windows(2).any(|w| w[1] < w[0]), "no reordering seen");
        pts.sort_unstable();
        assert!(
            pts.windows(2).all(|w| (w[1] - w[0] - 40_000).abs() <= 1),
            "{pts:?}"
        );
    }

    #[test]
    fn converts_short_length_prefixes() {
        // Three units with 2-byte prefixes, the last one's length too long.
        let sample = [0, 2, 0xAA, 0xBB, 0, 0, 0, 9, 0xCC, 0xDD];
        let n = count_nals(&sample, 2);
        assert_eq!(n, 3);
        let mut region = vec![0u8; sample.len() + n * 2];
        region[n * 2..].copy_from_slice(&sample);
        to_annex_b(&mut region, n * 2, 2);
        assert_eq!(
            region,
            [0, 0, 0, 1, 0xAA, 0xBB, 0, 0, 0, 1, 0, 0, 0, 1, 0xCC, 0xDD]
        );
        // 4-byte prefixes are rewritten in place; a stray tail byte is kept.
        let mut s = vec![0, 0, 0, 2, 1, 2, 0, 0, 0, 1, 3, 7];
        assert_eq!(count_nals(&s, 4), 2);
        to_annex_b(&mut s, 0, 4);
        assert_eq!(s, [0, 0, 0, 1, 1, 2, 0, 0, 0, 1, 3, 7]);
        // One-byte prefixes.
        let sample = [1, 9, 2, 8, 7];
        let n = count_nals(&sample, 1);
        let mut region = vec![0u8; sample.len() + n * 3];
        region[n * 3..].copy_from_slice(&sample);
        to_annex_b(&mut region, n * 3, 1);
        assert_eq!(region, [0, 0, 0, 1, 9, 0, 0, 0, 1, 8, 7]);
    }

    #[test]
    fn damaged_mp4_files_never_panic() {
        let good = std::fs::read(mp4_of(&test_media::h264_high(), "high-h264.mp4")).unwrap();
        let mut rng = crate::backoff::XorShift64::new(77);
        let mut opened = 0;
        for trial in 0..60 {
            let mut bytes = good.clone();
            if trial % 3 == 0 {
                bytes.truncate(rng.between(0, good.len() as u64) as usize);
            }
            for _ in 0..trial {
                let i = rng.between(0, bytes.len().max(1) as u64 - 1) as usize;
                if let Some(b) = bytes.get_mut(i) {
                    *b = rng.next_u64() as u8;
                }
            }
            let path = test_media::dir().join(format!("damaged-{trial}.mp4"));
            std::fs::write(&path, &bytes).unwrap();
            let Ok(mut m) = Mp4File::open(&path) else {
                continue;
            };
            opened += 1;
            let mut h = harness(256 * 1024);
            for _ in 0..100 {
                if m.next_unit(&mut h.sink).is_err() {
                    break;
                }
                drop(h.queue.try_pop());
            }
        }
        assert!(opened > 10, "only {opened} damaged files opened");
        let garbage: Vec<u8> = (0..100_000).map(|_| rng.next_u64() as u8).collect();
        let path = test_media::dir().join("garbage.mp4");
        std::fs::write(&path, garbage).unwrap();
        let err = Mp4File::open(&path).err().expect("garbage is no mp4");
        assert!(err.to_string().contains("garbage.mp4"), "{err}");
        assert!(Mp4File::open(Path::new("/nonexistent.mp4")).is_err());
    }
}
