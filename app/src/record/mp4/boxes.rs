//! Box writing: the init segment (`ftyp`+`moov` with an empty sample table,
//! `mvex`, and the avc1/hvc1 sample entry) and each fragment's `moof` and
//! `mdat` header, big-endian into fixed slices through [`Out`], which
//! refuses to write past the end instead of growing or panicking.

use super::timeline::Sample;
use super::{ClipMux, PARAM_CAPACITY, TIMESCALE};
use crate::codec::config::{self, RecordWriter};
use crate::codec::{Codec, ParamKind};

/// Room for `ftyp`+`moov`: about 660 bytes of boxes plus the parameter sets
/// and their length fields (checked by a test with the largest case).
pub(super) const INIT_CAPACITY: usize = 1024 + PARAM_CAPACITY;

/// `moof` bytes besides the `trun` entries: moof 8, mfhd 16, traf 8,
/// tfhd 16, tfdt (version 1) 20, trun header 20.
pub(super) const MOOF_FIXED: usize = 88;

/// Bytes per `trun` entry: duration, size, flags, composition offset.
pub(super) const TRUN_ENTRY: usize = 16;

/// `trun` flags: data offset, then per sample duration, size, flags and
/// composition time offset (signed: version 1).
const TRUN_FLAGS: u32 = 0x01 | 0x100 | 0x200 | 0x400 | 0x800;

/// Bytes of an `mdat` header with a 32-bit size.
pub(super) const MDAT_HEADER: usize = 8;

/// `sample_depends_on` = 2 (depends on no other sample): a sync sample.
pub(super) const SYNC_FLAGS: u32 = 0x0200_0000;

/// `sample_depends_on` = 1 plus `sample_is_non_sync_sample`.
pub(super) const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// Identity matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Big-endian box writer over a fixed slice. Writing past the end writes
/// nothing and sets `overflow`, so a sample entry larger than planned is an
/// error for one clip rather than a panic in the writer thread.
pub(super) struct Out<'a> {
    buf: &'a mut [u8],
    /// Where the next byte goes.
    pub(super) pos: usize,
    /// Something did not fit: nothing was written from there on.
    pub(super) overflow: bool,
}

impl<'a> Out<'a> {
    pub(super) fn new(buf: &'a mut [u8], pos: usize) -> Self {
        Out {
            buf,
            pos,
            overflow: false,
        }
    }
    pub(super) fn bytes(&mut self, b: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + b.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.pos += b.len();
            }
            _ => self.overflow = true,
        }
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    pub(super) fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.u8(0);
        }
    }
    /// Opens a box; [`Out::close`] fills in its size.
    pub(super) fn open(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.pos;
        self.u32(0);
        self.bytes(kind);
        at
    }
    /// Opens a full box (version and flags).
    pub(super) fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.open(kind);
        self.u32(u32::from(version) << 24 | flags);
        at
    }
    pub(super) fn close(&mut self, at: usize) {
        if !self.overflow {
            // Below 4 GiB: the buffers are (checked in `FragmentBuilder::new`).
            let size = (self.pos - at) as u32;
            self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
        }
    }
    pub(super) fn matrix(&mut self) {
        for v in MATRIX {
            self.u32(v);
        }
    }
}

impl RecordWriter for Out<'_> {
    fn put(&mut self, b: &[u8]) {
        self.bytes(b);
    }
}

/// Writes the init segment of `clip` (the first bytes of its file) from
/// `o`'s position.
pub(super) fn init_segment(o: &mut Out<'_>, clip: &ClipMux) {
    let b = o.open(b"ftyp");
    o.bytes(b"isom");
    o.u32(0x200);
    // iso5/iso6 for default-base-is-moof and tfdt.
    for brand in [b"isom", b"iso5", b"iso6", b"mp41"] {
        o.bytes(brand);
    }
    o.close(b);

    let moov = o.open(b"moov");
    let b = o.open_full(b"mvhd", 0, 0);
    o.zeros(8); // creation and modification time
    o.u32(1000); // movie timescale
    o.u32(0); // duration unknown: fragments follow
    o.u32(0x0001_0000); // rate 1.0
    o.u16(0x0100); // volume 1.0
    o.zeros(10);
    o.matrix();
    o.zeros(24); // pre_defined
    o.u32(2); // next_track_ID
    o.close(b);

    let trak = o.open(b"trak");
    let b = o.open_full(b"tkhd", 0, 0x3); // enabled, in movie
    o.zeros(8);
    o.u32(1); // track_ID
    o.zeros(4);
    o.u32(0); // duration
    o.zeros(8);
    o.u16(0); // layer
    o.u16(0); // alternate_group
    o.u16(0); // volume (video)
    o.zeros(2);
    o.matrix();
    o.u32(u32::from(clip.width) << 16);
    o.u32(u32::from(clip.height) << 16);
    o.close(b);

    let mdia = o.open(b"mdia");
    let b = o.open_full(b"mdhd", 0, 0);
    o.zeros(8);
    o.u32(TIMESCALE);
    o.u32(0);
    o.u16(0x55c4); // language "und"
    o.u16(0);
    o.close(b);
    let b = o.open_full(b"hdlr", 0, 0);
    o.u32(0);
    o.bytes(b"vide");
    o.zeros(12);
    o.bytes(b"VideoHandler\0");
    o.close(b);

    let minf = o.open(b"minf");
    let b = o.open_full(b"vmhd", 0, 1);
    o.zeros(8); // graphicsmode, opcolor
    o.close(b);
    let dinf = o.open(b"dinf");
    let dref = o.open_full(b"dref", 0, 0);
    o.u32(1);
    let b = o.open_full(b"url ", 0, 1); // media in this file
    o.close(b);
    o.close(dref);
    o.close(dinf);

    let stbl = o.open(b"stbl");
    let stsd = o.open_full(b"stsd", 0, 0);
    o.u32(1);
    sample_entry(o, clip);
    o.close(stsd);
    // Empty tables: every sample is in a fragment.
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = o.open_full(kind, 0, 0);
        o.u32(0);
        o.close(b);
    }
    let b = o.open_full(b"stsz", 0, 0);
    o.u32(0);
    o.u32(0);
    o.close(b);
    o.close(stbl);
    o.close(minf);
    o.close(mdia);
    o.close(trak);

    let mvex = o.open(b"mvex");
    let b = o.open_full(b"trex", 0, 0);
    o.u32(1); // track_ID
    o.u32(1); // default_sample_description_index
    o.zeros(12); // duration, size, flags: every trun states its own
    o.close(b);
    o.close(mvex);
    o.close(moov);
}

/// avc1 with avcC, or hvc1 with hvcC. The parameter sets go in the
/// configuration record, as hvc1/avc1 require; their in-band copies stay in
/// the samples too (see `FragmentBuilder::push`).
fn sample_entry(o: &mut Out<'_>, clip: &ClipMux) {
    let entry = o.open(match clip.codec {
        Codec::H264 => b"avc1",
        Codec::H265 => b"hvc1",
    });
    o.zeros(6);
    o.u16(1); // data_reference_index
    o.zeros(16); // pre_defined, reserved
    o.u16(clip.width);
    o.u16(clip.height);
    o.u32(0x0048_0000); // 72 dpi
    o.u32(0x0048_0000);
    o.u32(0);
    o.u16(1); // frame_count
    o.zeros(32); // compressorname
    o.u16(0x0018); // depth
    o.u16(0xffff); // pre_defined = -1
    match clip.codec {
        Codec::H264 => {
            let b = o.open(b"avcC");
            // The first SPS has at least 4 bytes: `ClipMux::new` parsed past them.
            config::write_avcc(
                o,
                &clip.sps,
                clip.param_sets(ParamKind::Sps),
                clip.param_sets(ParamKind::Pps),
            );
            o.close(b);
        }
        Codec::H265 => {
            let b = o.open(b"hvcC");
            config::write_hvcc(o, &clip.sps, |kind| clip.param_sets(kind));
            o.close(b);
        }
    }
    o.close(entry);
}

/// Writes the `moof` of a fragment with `samples` (timed already) and the
/// `mdat` header for their `data_len` bytes, which follow.
pub(super) fn moof(o: &mut Out<'_>, clip: &ClipMux, samples: &[Sample], data_len: usize) {
    let moof_len = MOOF_FIXED + TRUN_ENTRY * samples.len();
    let moof = o.open(b"moof");
    let b = o.open_full(b"mfhd", 0, 0);
    o.u32(clip.sequence);
    o.close(b);
    let traf = o.open(b"traf");
    let b = o.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    o.u32(1); // track_ID
    o.close(b);
    let b = o.open_full(b"tfdt", 1, 0);
    o.u64(samples[0].dts);
    o.close(b);
    // Data offset, then per-sample duration, size, flags and offset.
    let b = o.open_full(b"trun", 1, TRUN_FLAGS);
    o.u32(samples.len() as u32);
    o.u32((moof_len + MDAT_HEADER) as u32);
    for (i, s) in samples.iter().enumerate() {
        let next = samples.get(i + 1).map_or(clip.end_dts, |n| n.dts);
        o.u32((next - s.dts) as u32);
        o.u32(s.size);
        o.u32(if s.key { SYNC_FLAGS } else { NON_SYNC_FLAGS });
        o.u32(s.cto as u32);
    }
    o.close(b);
    o.close(traf);
    o.close(moof);
    o.u32((MDAT_HEADER + data_len) as u32);
    o.bytes(b"mdat");
}
