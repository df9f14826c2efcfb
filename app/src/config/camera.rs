//! Validation of one `[[camera]]` table: where the stream comes from, what a
//! V4L2 device is asked for, and the camera's pools and timings.
//!
//! A camera is named by its `url` or, for V4L2, its `device`; the URL is
//! classified here ([`classify`]) so a camera that could never play is a
//! configuration error with a line, not a camera stuck in state error after
//! start. The V4L2-only keys are refused on other cameras so that a key that
//! would be ignored is never accepted silently.

use super::error::Report;
use super::raw::RawCamera;
use super::{classify, CameraConfig, PixelFormat, SourceKind, V4l2Request, DEFAULT_CLASSES};
use crate::packet::Codec;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

impl RawCamera {
    /// The validated camera and the span of its name (or URL when unnamed).
    pub(super) fn validate(
        self,
        i: usize,
        report: &mut Report<'_>,
    ) -> (CameraConfig, Range<usize>) {
        let key = |k: &str| format!("camera[{i}].{k}");
        let (url, url_span) = match (self.url, &self.device) {
            (Some(u), None) => {
                let span = u.span();
                (u.into_inner(), span)
            }
            (None, Some(d)) => (format!("v4l://{}", d.get_ref()), d.span()),
            (Some(u), Some(d)) => {
                report(
                    key("device"),
                    d.span(),
                    "give either `url` or `device`, not both".into(),
                );
                let span = u.span();
                (u.into_inner(), span)
            }
            (None, None) => {
                let span = self.name.as_ref().map_or(0..0, |n| n.span());
                report(
                    key("url"),
                    span.clone(),
                    "missing: every camera needs a `url` (rtsp://, a file, v4l:///dev/videoN) or a V4L2 `device`".into(),
                );
                (String::new(), span)
            }
        };
        let name = match &self.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= 64
                    && n.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    report(
                        key("name"),
                        n.span(),
                        format!(
                            "`{}` must be 1-64 characters of letters, digits, `-` or `_`",
                            n.get_ref()
                        ),
                    );
                }
                n.get_ref().clone()
            }
            None => format!("camera-{}", i + 1),
        };
        let name_span = self.name.as_ref().map_or(url_span.clone(), |n| n.span());
        let codec = match &self.codec {
            None => None,
            Some(c) => match c.get_ref().as_str() {
                "auto" => None,
                "h264" => Some(Codec::H264),
                "h265" | "hevc" => Some(Codec::H265),
                other => {
                    report(
                        key("codec"),
                        c.span(),
                        format!("unknown codec `{other}`; use auto, h264 or h265"),
                    );
                    None
                }
            },
        };
        let kind = match classify(&url, codec) {
            Ok(kind) => Some(kind),
            Err(e) => {
                if !url.is_empty() {
                    report(key("url"), url_span.clone(), e.to_string());
                }
                None
            }
        };
        let is_v4l2 = matches!(kind, Some(SourceKind::V4l2(_)));
        let v4l2_only = |k: &str, span: Range<usize>, report: &mut Report<'_>| {
            if !is_v4l2 {
                report(
                    key(k),
                    span,
                    format!("`{k}` is only for V4L2 cameras (`device`, or a v4l:// url)"),
                );
            }
        };
        let format = match &self.format {
            None => None,
            Some(f) => {
                v4l2_only("format", f.span(), report);
                match f.get_ref().as_str() {
                    "auto" => None,
                    name => match PixelFormat::parse(name) {
                        Some(p) => Some(p),
                        None => {
                            report(
                                key("format"),
                                f.span(),
                                format!("unknown V4L2 format `{name}`; use auto, nv12, yuyv, mjpeg or h264"),
                            );
                            None
                        }
                    },
                }
            }
        };
        for (k, given) in [
            ("size", self.size.is_some()),
            ("fps", self.fps.is_some()),
            ("buffers", self.buffers.is_some()),
        ] {
            if given {
                v4l2_only(k, url_span.clone(), report);
            }
        }
        let v4l2 = is_v4l2.then(|| V4l2Request {
            format,
            size: self.size.map(|r| (r.0, r.1)),
            fps: self.fps.map(|c| c.0 as u32),
            buffers: self.buffers.map_or(4, |c| c.0 as u32),
        });
        let detect_fps = self.detect_fps.map_or(5.0, |r| {
            if !(0.1..=60.0).contains(&r.value) {
                report(
                    key("detect_fps"),
                    r.span.clone(),
                    format!("must be between 0.1 and 60, got {}", r.value),
                );
            }
            r.value as f32
        });
        let min_score = self.min_score.map_or(0.5, |r| {
            if !(r.value > 0.0 && r.value <= 1.0) {
                report(
                    key("min_score"),
                    r.span.clone(),
                    format!("must be in (0, 1], got {}", r.value),
                );
            }
            r.value as f32
        });
        let classes = match self.classes {
            None => DEFAULT_CLASSES.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                for c in &list {
                    if crate::detect::coco::CocoLabels::Ids91
                        .id(c.get_ref())
                        .is_none()
                    {
                        report(
                            key("classes"),
                            c.span(),
                            format!("unknown class `{}`; classes are COCO names such as person, car, dog", c.get_ref()),
                        );
                    }
                }
                list.into_iter().map(Spanned::into_inner).collect()
            }
        };
        let (max_width, max_height) = self.max_resolution.map_or((1920, 1080), |r| (r.0, r.1));
        if let Some((w, h)) = v4l2.as_ref().and_then(|r| r.size) {
            if w > max_width || h > max_height {
                report(
                    key("size"),
                    url_span.clone(),
                    format!("{w}x{h} is larger than max_resolution {max_width}x{max_height} (the camera's frame buffers)"),
                );
            }
        }
        let reconnect_min = self.reconnect_min.map_or(Duration::from_secs(1), |s| s.0);
        let reconnect_max = self.reconnect_max.map_or(Duration::from_secs(30), |s| s.0);
        if reconnect_max < reconnect_min {
            report(
                key("reconnect_max"),
                url_span.clone(),
                format!("must not be below reconnect_min ({reconnect_min:?})"),
            );
        }
        let packet_size = self.packet_size.map_or(1 << 20, |b| b.0);
        if !(4096..=64 << 20).contains(&packet_size) {
            report(
                key("packet_size"),
                url_span,
                "must be between 4KiB and 64MiB".into(),
            );
        }
        let camera = CameraConfig {
            name,
            url,
            codec,
            detect_fps,
            classes,
            min_score,
            username: self.username,
            password: self.password,
            max_width,
            max_height,
            frame_pool: self.frame_pool.map_or(4, |c| c.0),
            packet_pool: self.packet_pool.map_or(8, |c| c.0),
            packet_size: packet_size as usize,
            reconnect_min,
            reconnect_max,
            stall_timeout: self.stall_timeout.map_or(Duration::from_secs(10), |s| s.0),
            v4l2,
        };
        (camera, name_span)
    }
}
