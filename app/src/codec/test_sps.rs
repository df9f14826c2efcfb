//! Hand-built parameter sets for tests: a bit writer that encodes fields,
//! exp-Golomb codes and emulation prevention the way an encoder does, and
//! SPS builders for the sizes, croppings and VUIs the parsers must handle.
//! The clip muxer's tests build their streams from these too.

/// Bit writer for hand-built parameter sets.
#[derive(Default)]
pub(crate) struct Bits(Vec<bool>);

impl Bits {
    pub(crate) fn u(&mut self, n: u32, v: u64) -> &mut Self {
        for i in (0..n).rev() {
            self.0.push((v >> i) & 1 == 1);
        }
        self
    }
    pub(crate) fn ue(&mut self, v: u64) -> &mut Self {
        let len = 64 - (v + 1).leading_zeros();
        self.u(len - 1, 0).u(len, v + 1)
    }
    pub(crate) fn se(&mut self, v: i64) -> &mut Self {
        self.ue(if v > 0 {
            2 * v as u64 - 1
        } else {
            2 * v.unsigned_abs()
        })
    }
    /// The NAL unit: `header`, then the RBSP with its stop bit and
    /// emulation prevention, as an encoder writes it.
    pub(crate) fn nal(&self, header: &[u8]) -> Vec<u8> {
        let mut bits = self.0.clone();
        bits.push(true);
        while !bits.len().is_multiple_of(8) {
            bits.push(false);
        }
        let mut out = header.to_vec();
        let mut zeros = 0;
        for byte in bits.chunks(8) {
            let b = byte.iter().fold(0u8, |a, &x| (a << 1) | u8::from(x));
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

/// The fields of a hand-built H.264 SPS.
pub(crate) struct H264Sps {
    pub(crate) profile: u64,
    pub(crate) chroma: u64,
    pub(crate) width_mbs: u64,
    pub(crate) height_map_units: u64,
    pub(crate) frame_mbs_only: bool,
    pub(crate) crop: [u64; 4],
    /// A VUI with only max_num_reorder_frames, or none.
    pub(crate) reorder: Option<u64>,
}

/// An H.264 SPS NAL unit (Baseline or High) as `p` describes it.
pub(crate) fn h264_sps(p: &H264Sps) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(8, p.profile).u(8, 0).u(8, 40).ue(0);
    if p.profile == 100 {
        b.ue(p.chroma);
        if p.chroma == 3 {
            b.u(1, 0);
        }
        b.ue(2).ue(2).u(1, 0); // 10-bit, no transform bypass
        b.u(1, 1); // scaling matrices present: list 0 only, ended at once
        b.u(1, 1).se(-8);
        for _ in 1..(if p.chroma == 3 { 12 } else { 8 }) {
            b.u(1, 0);
        }
    }
    b.ue(0).ue(0).ue(0); // frame_num bits, poc type 0, poc lsb bits
    b.ue(1).u(1, 0);
    b.ue(p.width_mbs - 1).ue(p.height_map_units - 1);
    b.u(1, u64::from(p.frame_mbs_only));
    if !p.frame_mbs_only {
        b.u(1, 0);
    }
    b.u(1, 1);
    b.u(1, u64::from(p.crop != [0; 4]));
    if p.crop != [0; 4] {
        for c in p.crop {
            b.ue(c);
        }
    }
    match p.reorder {
        None => {
            b.u(1, 0); // no VUI
        }
        Some(n) => {
            // VUI: nothing but the bitstream restriction.
            b.u(1, 1).u(8, 0).u(1, 1).u(1, 1);
            b.ue(0).ue(0).ue(0).ue(0).ue(n).ue(n + 1);
        }
    }
    b.nal(&[0x67])
}

/// H.265 Main 4:2:0 SPS, level 3.1, with one sub-layer carrying a level.
pub(crate) fn h265_sps(width: u64, height: u64, window: [u64; 4]) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(4, 0).u(3, 1).u(1, 1); // vps id, max_sub_layers_minus1 = 1, nesting
    b.u(2, 0).u(1, 1).u(5, 1); // profile space 0, high tier, Main
    b.u(32, 0x6000_0000);
    b.u(4, 0b1001).u(44, 0); // progressive, frame only
    b.u(8, 93);
    b.u(1, 0).u(1, 1); // sub-layer 0: level only
    b.u(14, 0); // reserved_zero_2bits for sub-layers 1..8
    b.u(8, 90);
    b.ue(0).ue(1).ue(width).ue(height);
    b.u(1, u64::from(window != [0; 4]));
    if window != [0; 4] {
        for w in window {
            b.ue(w);
        }
    }
    b.ue(0).ue(0);
    b.nal(&[0x42, 0x01])
}

/// H.264 Baseline 1920x1080 (1088 coded, cropped by 8 lines), no VUI.
pub(crate) fn baseline_1080p() -> Vec<u8> {
    h264_sps(&H264Sps {
        profile: 66,
        chroma: 1,
        width_mbs: 120,
        height_map_units: 68,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        reorder: None,
    })
}

/// H.264 High (profile_idc 100, 10-bit) 640x360 (368 coded), with a VUI
/// stating only `reorder` as max_num_reorder_frames, or no VUI.
pub(crate) fn high_profile_sps(reorder: Option<u64>) -> Vec<u8> {
    h264_sps(&H264Sps {
        profile: 100,
        chroma: 1,
        width_mbs: 40,
        height_map_units: 23,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        reorder,
    })
}
