//! The size gate in front of every decoder: a camera's stream is checked
//! against its `max_resolution` from the parameter sets, before a key frame
//! reaches a decoder.
//!
//! A decoder sizes its memory from what the stream declares: OpenH264
//! allocates its reference pictures for the SPS's size, and MPP's info change
//! asks for buffers of the stream's size. Refusing the pictures afterwards
//! (as `FrameBuf::copy_from` does) is too late: a camera switched to 4K, a
//! firmware change or a hostile RTSP server would already have made the
//! decoder use many times its budget line. So [`SizeGate`] reads every SPS
//! in an access unit with [`crate::codec::parse_sps`] and lets units through
//! only while the last SPS seen was within the limit; nothing allocates.
//!
//! Two sizes are checked: the displayed one (what `max_resolution` means to
//! the person configuring it) and the coded one, which a cropping window can
//! make far larger than the displayed one. The coded size may exceed the
//! limit by the alignment of the codec's coding blocks (H.264 macroblocks of
//! 16, H.265 coding blocks of up to 64): a 1920x1080 stream is coded as
//! 1920x1088.

use crate::codec::{nal_type, nal_units, parse_sps, Codec, ParamKind};
use std::fmt;

/// The largest coding block of either codec: the coded size may exceed the
/// limit by this alignment.
const CODED_ALIGN: u32 = 64;

/// A stream larger than the camera's `max_resolution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// The stream's displayed width.
    pub width: u32,
    /// The stream's displayed height.
    pub height: u32,
    /// The coded size, when it is what exceeds the limit (the displayed
    /// size fits).
    pub coded: Option<(u32, u32)>,
    /// The camera's `max_resolution` width.
    pub max_width: u32,
    /// The camera's `max_resolution` height.
    pub max_height: u32,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}x{}", self.width, self.height)?;
        if let Some((w, h)) = self.coded {
            write!(f, " (coded as {w}x{h})")?;
        }
        write!(
            f,
            " exceeds max_resolution {}x{}",
            self.max_width, self.max_height
        )
    }
}

impl std::error::Error for TooLarge {}

/// What the parameter sets of one access unit say about its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Params {
    /// The unit carries no SPS.
    None,
    /// Every SPS in it is within the limit (the last one's displayed size).
    Within(u32, u32),
    /// An SPS in it is over the limit.
    TooLarge(TooLarge),
    /// An SPS in it could not be read far enough to know its size.
    Unreadable,
}

/// Reads every SPS of the Annex-B access unit `data` of `codec` and checks
/// it against `max` (width, height).
pub fn check_params(codec: Codec, data: &[u8], max: (u32, u32)) -> Params {
    let mut verdict = Params::None;
    for nal in nal_units(data) {
        if ParamKind::of(codec, nal_type(codec, nal[0])) != Some(ParamKind::Sps) {
            continue;
        }
        let Some(sps) = parse_sps(codec, nal) else {
            return Params::Unreadable;
        };
        let Some((w, h)) = sps.display_size() else {
            return Params::Unreadable;
        };
        let (w, h) = (u32::from(w), u32::from(h));
        let coded = (
            u32::try_from(sps.coded_width).unwrap_or(u32::MAX),
            u32::try_from(sps.coded_height).unwrap_or(u32::MAX),
        );
        let over = w > max.0 || h > max.1;
        let coded_over = coded.0 > max.0.next_multiple_of(CODED_ALIGN)
            || coded.1 > max.1.next_multiple_of(CODED_ALIGN);
        if over || coded_over {
            return Params::TooLarge(TooLarge {
                width: w,
                height: h,
                coded: (!over).then_some(coded),
                max_width: max.0,
                max_height: max.1,
            });
        }
        verdict = Params::Within(w, h);
    }
    verdict
}

/// Whether a camera's units may reach its decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No SPS seen yet: nothing is known of the size.
    Unknown,
    /// The last SPS was within the limit.
    Open,
    /// The last SPS, or the decoder, said the stream is too large. When the
    /// decoder said so (its own reading of the stream disagreed with ours),
    /// the SPS size we read then is kept: only an SPS of another size opens
    /// the gate again, not a repeat of the same one.
    Closed(Option<(u32, u32)>),
}

/// What [`SizeGate::admit`] decided for one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Feed the unit to the decoder.
    Feed,
    /// Feed it, after resetting the decoder: the gate was closed (the
    /// decoder missed units) and this unit opened it.
    Reopened,
    /// Do not feed it: no SPS has been seen yet.
    AwaitingParams,
    /// Do not feed it: the stream is too large (the reason).
    Refused(TooLarge),
    /// Do not feed it: its SPS is unreadable, so its size is unknown.
    Unreadable,
}

/// A camera's gate: units pass only while the stream's last SPS was within
/// `max_resolution` (see the module doc).
#[derive(Debug)]
pub struct SizeGate {
    max: (u32, u32),
    state: State,
    /// The last refusal, repeated for every unit while the gate is closed.
    refusal: Option<TooLarge>,
    /// The size the last SPS declared.
    size: Option<(u32, u32)>,
}

impl SizeGate {
    /// A closed gate for a camera whose `max_resolution` is `max`.
    pub fn new(max: (u32, u32)) -> Self {
        SizeGate {
            max,
            state: State::Unknown,
            refusal: None,
            size: None,
        }
    }

    /// Decides whether the access unit `data` of `codec` may be decoded.
    pub fn admit(&mut self, codec: Codec, data: &[u8]) -> Admit {
        let was = self.state;
        match check_params(codec, data, self.max) {
            Params::None => {}
            Params::Within(w, h) => {
                let repeat = matches!(self.state, State::Closed(Some(s)) if s == (w, h));
                if !repeat {
                    self.state = State::Open;
                    self.refusal = None;
                }
                self.size = Some((w, h));
            }
            Params::TooLarge(t) => {
                self.state = State::Closed(None);
                self.refusal = Some(t);
                self.size = Some((t.width, t.height));
            }
            Params::Unreadable => {
                self.state = State::Unknown;
                self.refusal = None;
                return Admit::Unreadable;
            }
        }
        match (was, self.state) {
            (_, State::Unknown) => Admit::AwaitingParams,
            (_, State::Closed(_)) => match self.refusal {
                Some(t) => Admit::Refused(t),
                None => Admit::AwaitingParams,
            },
            (State::Closed(_), State::Open) => Admit::Reopened,
            (_, State::Open) => Admit::Feed,
        }
    }

    /// Closes the gate because the decoder found the stream too large
    /// although its SPS seemed within the limit: it stays closed until an
    /// SPS of another size arrives.
    pub fn refused_by_decoder(&mut self, why: TooLarge) {
        self.state = State::Closed(self.size);
        self.refusal = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::test_sps::{h264_sps, H264Sps};

    /// An access unit: a Baseline SPS of `mbs` macroblocks cropped at the
    /// bottom by `crop` lines, then an IDR slice header byte.
    fn au(mbs: (u64, u64), crop: u64) -> Vec<u8> {
        let sps = h264_sps(&H264Sps {
            profile: 66,
            chroma: 1,
            width_mbs: mbs.0,
            height_map_units: mbs.1,
            frame_mbs_only: true,
            crop: [0, 0, 0, crop / 2],
            reorder: None,
        });
        let mut v = vec![0, 0, 0, 1];
        v.extend_from_slice(&sps);
        v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88]);
        v
    }

    #[test]
    fn the_gate_opens_closes_and_reopens_with_the_sps() {
        let small = au((20, 15), 0);
        let big = au((80, 45), 0);
        let slice = [0u8, 0, 0, 1, 0x41, 0x9a];
        let mut g = SizeGate::new((320, 240));
        assert_eq!(g.admit(Codec::H264, &slice), Admit::AwaitingParams);
        assert_eq!(g.admit(Codec::H264, &small), Admit::Feed);
        assert_eq!(g.admit(Codec::H264, &slice), Admit::Feed);
        let refused = g.admit(Codec::H264, &big);
        let Admit::Refused(t) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(
            t.to_string(),
            "stream 1280x720 exceeds max_resolution 320x240"
        );
        assert_eq!(g.admit(Codec::H264, &slice), refused);
        assert_eq!(g.admit(Codec::H264, &small), Admit::Reopened);
        assert_eq!(g.admit(Codec::H264, &slice), Admit::Feed);
        // The decoder disagreeing keeps it closed through repeats of the
        // same SPS; another size opens it.
        g.refused_by_decoder(t);
        assert_eq!(g.admit(Codec::H264, &small), refused);
        assert_eq!(g.admit(Codec::H264, &au((11, 9), 0)), Admit::Reopened);
        // A damaged SPS is not trusted.
        assert_eq!(
            g.admit(Codec::H264, &[0, 0, 1, 0x67, 0x42]),
            Admit::Unreadable
        );
        assert_eq!(g.admit(Codec::H264, &slice), Admit::AwaitingParams);
    }

    #[test]
    fn a_cropping_window_does_not_hide_a_large_coded_size() {
        // 1920x1080 is coded 1920x1088: within a 1920x1080 limit.
        assert_eq!(
            check_params(Codec::H264, &au((120, 68), 8), (1920, 1080)),
            Params::Within(1920, 1080)
        );
        // 320x240 shown, 320x4096 coded.
        let Params::TooLarge(t) = check_params(Codec::H264, &au((20, 256), 4096 - 240), (320, 240))
        else {
            panic!("not refused")
        };
        assert_eq!(
            t.to_string(),
            "stream 320x240 (coded as 320x4096) exceeds max_resolution 320x240"
        );
    }

    #[test]
    fn h265_parameter_sets_are_checked_too() {
        let mut big = vec![0, 0, 0, 1];
        big.extend_from_slice(&crate::codec::test_sps::h265_sps(3840, 2160, [0; 4]));
        assert!(matches!(
            check_params(Codec::H265, &big, (1920, 1080)),
            Params::TooLarge(TooLarge {
                width: 3840,
                height: 2160,
                coded: None,
                ..
            })
        ));
    }
}
