//! Choosing a capture mode from what a V4L2 device offers.
//!
//! Pure functions over the device's enumerated formats and frame sizes, so
//! the choice is tested on this machine and `check-config` can show the mode
//! a running vigil would pick without touching a device that is streaming.

use crate::config::{PixelFormat, V4l2Request};
use std::fmt;

// The format is a configuration value (`config::PixelFormat`); what it is
// called on the wire and how large a driver's buffer for it is are the
// device's business, so those methods are here, beside the negotiation.
impl PixelFormat {
    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::H264 => *b"H264",
        }
    }

    /// The format a device's four-character code is, if vigil takes it.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"JPEG" => Some(PixelFormat::Mjpeg),
            _ => Self::ALL.into_iter().find(|f| f.fourcc() == code),
        }
    }

    /// The largest buffer a driver needs for one `width` x `height` frame:
    /// exact for the raw formats; for the compressed ones the bound drivers
    /// such as uvcvideo size their buffers with (two bytes per pixel).
    pub fn frame_bytes(self, width: u32, height: u32) -> usize {
        let px = width as usize * height as usize;
        match self {
            PixelFormat::Nv12 => {
                px + 2 * (width as usize).div_ceil(2) * (height as usize).div_ceil(2)
            }
            PixelFormat::Yuyv | PixelFormat::Mjpeg | PixelFormat::H264 => 2 * px,
        }
    }
}

/// A four-character code as text (`YUYV`), for messages.
pub fn fourcc_str(code: [u8; 4]) -> String {
    code.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// Frame sizes a device offers for one format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeRange {
    /// Exactly this size.
    Discrete {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Any size in the range on the step grid.
    Stepwise {
        /// Smallest width.
        min_width: u32,
        /// Largest width.
        max_width: u32,
        /// Width step.
        step_width: u32,
        /// Smallest height.
        min_height: u32,
        /// Largest height.
        max_height: u32,
        /// Height step.
        step_height: u32,
    },
}

impl SizeRange {
    /// The offered size nearest to `target` that fits in `max`, if any.
    fn nearest(&self, target: (u32, u32), max: (u32, u32)) -> Option<(u32, u32)> {
        match *self {
            SizeRange::Discrete { width, height } => {
                (width <= max.0 && height <= max.1).then_some((width, height))
            }
            SizeRange::Stepwise {
                min_width,
                max_width,
                step_width,
                min_height,
                max_height,
                step_height,
            } => {
                let w = on_grid(target.0, min_width, max_width.min(max.0), step_width)?;
                let h = on_grid(target.1, min_height, max_height.min(max.1), step_height)?;
                Some((w, h))
            }
        }
    }
}

/// `v` clamped to `lo..=hi` and rounded to the nearest `lo + k * step`
/// not above `hi`; `None` when the range is empty.
fn on_grid(v: u32, lo: u32, hi: u32, step: u32) -> Option<u32> {
    if hi < lo {
        return None;
    }
    let step = step.max(1);
    let v = v.clamp(lo, hi);
    let k = (v - lo + step / 2) / step;
    let top = (hi - lo) / step;
    Some(lo + k.min(top) * step)
}

/// One format a device offers, with its sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The four-character code as the device reports it.
    pub fourcc: [u8; 4],
    /// Its frame sizes (empty when the driver does not enumerate them:
    /// then the requested size is asked for and the driver adjusts it).
    pub sizes: Vec<SizeRange>,
}

/// The size asked for when the configuration names none: a common camera
/// mode that detectors downscale cheaply.
pub const DEFAULT_SIZE: (u32, u32) = (1280, 720);

/// The format and size chosen from a device's offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Picks the format and size to ask the device for.
///
/// The format is the requested one, which the device must offer, or the
/// first of [`PixelFormat::ALL`] it offers. The size is the offered one
/// nearest the request (by the sum of the width and height differences, the
/// larger on a tie) among those that fit in `max` (the camera's pool frames);
/// a format whose sizes are not enumerated gets the request clamped to `max`.
pub fn choose(
    offers: &[Offer],
    request: &V4l2Request,
    max: (u32, u32),
) -> Result<Choice, ChooseError> {
    let usable = |f: PixelFormat| {
        offers
            .iter()
            .find(|o| PixelFormat::from_fourcc(o.fourcc) == Some(f))
    };
    let offered = || offers.iter().map(|o| o.fourcc).collect();
    let (format, offer) = match request.format {
        Some(f) => match usable(f) {
            Some(o) => (f, o),
            None => {
                return Err(ChooseError::NotOffered {
                    format: f,
                    offered: offered(),
                })
            }
        },
        None => match PixelFormat::ALL
            .into_iter()
            .find_map(|f| usable(f).map(|o| (f, o)))
        {
            Some(found) => found,
            None => return Err(ChooseError::NoneUsable { offered: offered() }),
        },
    };
    let target = request.size.unwrap_or(DEFAULT_SIZE);
    if offer.sizes.is_empty() {
        return Ok(Choice {
            format,
            width: target.0.min(max.0),
            height: target.1.min(max.1),
        });
    }
    let distance = |(w, h): (u32, u32)| w.abs_diff(target.0) as u64 + h.abs_diff(target.1) as u64;
    let best = offer
        .sizes
        .iter()
        .filter_map(|s| s.nearest(target, max))
        .min_by(|a, b| {
            distance(*a)
                .cmp(&distance(*b))
                .then((b.0 as u64 * b.1 as u64).cmp(&(a.0 as u64 * a.1 as u64)))
        });
    match best {
        Some((width, height)) => Ok(Choice {
            format,
            width,
            height,
        }),
        None => Err(ChooseError::TooLarge { format, max }),
    }
}

/// Why no mode could be chosen from what a device offers. Each kind keeps
/// what the message names: the formats the device offers are in the
/// message because the person reading it is choosing a `format` to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChooseError {
    /// The configured format is not among the device's.
    NotOffered {
        /// The configured format.
        format: PixelFormat,
        /// The four-character codes the device offers.
        offered: Vec<[u8; 4]>,
    },
    /// No format was configured and the device offers none vigil takes.
    NoneUsable {
        /// The four-character codes the device offers.
        offered: Vec<[u8; 4]>,
    },
    /// Every size of the format is larger than the camera's pool frames.
    TooLarge {
        /// The format chosen.
        format: PixelFormat,
        /// The camera's `max_resolution`.
        max: (u32, u32),
    },
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChooseError::NotOffered { format, offered } => write!(
                f,
                "the device does not offer {format} ({}); it offers {}",
                fourcc_str(format.fourcc()),
                Offered(offered)
            ),
            ChooseError::NoneUsable { offered } => write!(
                f,
                "the device offers none of NV12, YUYV, MJPG, H264; it offers {}",
                Offered(offered)
            ),
            ChooseError::TooLarge { format, max } => write!(
                f,
                "every {format} size the device offers is larger than max_resolution {}x{}",
                max.0, max.1
            ),
        }
    }
}

impl std::error::Error for ChooseError {}

/// A device's formats as a message lists them: `YUYV, MJPG`.
struct Offered<'a>(&'a [[u8; 4]]);

impl fmt::Display for Offered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no capture format");
        }
        for (i, code) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&fourcc_str(*code))?;
        }
        Ok(())
    }
}

impl fmt::Display for Choice {
    /// `yuyv 1280x720`, as `check-config` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.format, self.width, self.height)
    }
}

/// The mode a device is streaming in, as it confirmed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Mode {
    /// The format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane.
    pub stride: u32,
    /// Bytes of one frame as the driver sizes it.
    pub frame_bytes: u32,
    /// Frames per second the device reports (0 when it does not say).
    pub fps: f64,
    /// mmap'ed buffers the driver granted.
    pub buffers: u32,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} @ {:.1} fps, {} buffers of {} bytes",
            self.format, self.width, self.height, self.fps, self.buffers, self.frame_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discrete(sizes: &[(u32, u32)]) -> Vec<SizeRange> {
        sizes
            .iter()
            .map(|&(width, height)| SizeRange::Discrete { width, height })
            .collect()
    }

    fn request(format: Option<PixelFormat>, size: Option<(u32, u32)>) -> V4l2Request {
        V4l2Request {
            format,
            size,
            fps: None,
            buffers: 4,
        }
    }

    #[test]
    fn the_requested_format_must_be_offered() {
        let offers = [Offer {
            fourcc: *b"YUYV",
            sizes: discrete(&[(640, 480)]),
        }];
        let err = choose(
            &offers,
            &request(Some(PixelFormat::Nv12), None),
            (1920, 1080),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ChooseError::NotOffered {
                format: PixelFormat::Nv12,
                offered: vec![*b"YUYV"]
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("nv12") && text.contains("offers YUYV"),
            "{text}"
        );
        let c = choose(
            &offers,
            &request(Some(PixelFormat::Yuyv), None),
            (1920, 1080),
        )
        .unwrap();
        assert_eq!((c.format, c.width, c.height), (PixelFormat::Yuyv, 640, 480));
    }

    #[test]
    fn without_a_format_raw_is_preferred_and_unknown_codes_are_skipped() {
        let offers = [
            Offer {
                fourcc: *b"MJPG",
                sizes: discrete(&[(1280, 720)]),
            },
            Offer {
                fourcc: *b"RGGB",
                sizes: vec![],
            },
            Offer {
                fourcc: *b"YUYV",
                sizes: discrete(&[(640, 480)]),
            },
        ];
        let c = choose(&offers, &request(None, None), (1920, 1080)).unwrap();
        assert_eq!(c.format, PixelFormat::Yuyv);
        let none = [Offer {
            fourcc: *b"RGGB",
            sizes: vec![],
        }];
        let err = choose(&none, &request(None, None), (1920, 1080)).unwrap_err();
        assert!(matches!(err, ChooseError::NoneUsable { .. }), "{err}");
        assert!(err.to_string().contains("offers RGGB"), "{err}");
        let err = choose(&[], &request(None, None), (1920, 1080)).unwrap_err();
        assert!(
            err.to_string().ends_with("offers no capture format"),
            "{err}"
        );
        assert_eq!(PixelFormat::from_fourcc(*b"JPEG"), Some(PixelFormat::Mjpeg));
    }

    #[test]
    fn the_nearest_size_that_fits_the_pool_frames_is_chosen() {
        let offers = [Offer {
            fourcc: *b"NV12",
            sizes: discrete(&[
                (320, 240),
                (640, 480),
                (1280, 720),
                (1920, 1080),
                (3840, 2160),
            ]),
        }];
        let pick = |size, max| {
            let c = choose(&offers, &request(None, size), max).unwrap();
            (c.width, c.height)
        };
        assert_eq!(pick(Some((640, 480)), (1920, 1080)), (640, 480));
        assert_eq!(pick(Some((700, 500)), (1920, 1080)), (640, 480));
        assert_eq!(pick(None, (1920, 1080)), DEFAULT_SIZE);
        // 4K is nearest but does not fit the frames: the largest that does.
        assert_eq!(pick(Some((3840, 2160)), (1920, 1080)), (1920, 1080));
        let err = choose(&offers, &request(None, None), (200, 200)).unwrap_err();
        assert_eq!(
            err,
            ChooseError::TooLarge {
                format: PixelFormat::Nv12,
                max: (200, 200)
            }
        );
        assert!(err.to_string().contains("max_resolution 200x200"), "{err}");
    }

    #[test]
    fn stepwise_sizes_snap_to_the_grid_inside_the_limits() {
        let offers = [Offer {
            fourcc: *b"YUYV",
            sizes: vec![SizeRange::Stepwise {
                min_width: 16,
                max_width: 4096,
                step_width: 16,
                min_height: 16,
                max_height: 2160,
                step_height: 2,
            }],
        }];
        let c = choose(&offers, &request(None, Some((1000, 601))), (1920, 1080)).unwrap();
        assert_eq!((c.width, c.height), (1008, 602));
        let c = choose(&offers, &request(None, Some((5000, 5000))), (1920, 1080)).unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        let c = choose(&offers, &request(None, Some((1, 1))), (1920, 1080)).unwrap();
        assert_eq!((c.width, c.height), (16, 16));
        assert_eq!(on_grid(50, 100, 90, 1), None);
        // A grid that cannot reach the limit stops below it.
        assert_eq!(on_grid(1000, 10, 1000, 100), Some(910));
    }

    #[test]
    fn unenumerated_sizes_ask_for_the_request_within_the_limits() {
        let offers = [Offer {
            fourcc: *b"H264",
            sizes: vec![],
        }];
        let c = choose(&offers, &request(None, Some((4000, 3000))), (1920, 1080)).unwrap();
        assert_eq!(
            (c.format, c.width, c.height),
            (PixelFormat::H264, 1920, 1080)
        );
    }

    #[test]
    fn frame_bytes_cover_each_format() {
        assert_eq!(PixelFormat::Yuyv.frame_bytes(640, 480), 614_400);
        assert_eq!(PixelFormat::Nv12.frame_bytes(640, 480), 460_800);
        assert_eq!(PixelFormat::Nv12.frame_bytes(3, 3), 9 + 2 * 4);
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::parse(f.as_str()), Some(f));
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
        }
    }
}
