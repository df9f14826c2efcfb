//! Tests of the buffer and the copy, and the allocation proof for copying
//! and drawing.

use super::colour::rgb_to_yuv;
use super::*;
use crate::alloc_count::thread_counts;
use crate::image::{Nv12, Rgb8};

/// Planes of a synthetic I420 picture with padded strides: luma and both
/// chroma planes follow different patterns so a swapped or misplaced plane
/// shows.
struct Planes {
    width: u32,
    height: u32,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    y_stride: usize,
    uv_stride: usize,
}

fn luma_at(x: usize, y: usize) -> u8 {
    16 + ((x * 7 + y * 3) % 220) as u8
}
fn u_at(x: usize, y: usize) -> u8 {
    16 + ((x * 5 + y) % 224) as u8
}
fn v_at(x: usize, y: usize) -> u8 {
    16 + ((x + y * 3) % 224) as u8
}

fn planes(width: u32, height: u32) -> Planes {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (y_stride, uv_stride) = (w + 32, cw + 16);
    // Padding is 255 so reading it would show.
    let mut y = vec![255u8; y_stride * h];
    let mut u = vec![255u8; uv_stride * ch];
    let mut v = vec![255u8; uv_stride * ch];
    for row in 0..h {
        for col in 0..w {
            y[row * y_stride + col] = luma_at(col, row);
        }
    }
    for row in 0..ch {
        for col in 0..cw {
            u[row * uv_stride + col] = u_at(col, row);
            v[row * uv_stride + col] = v_at(col, row);
        }
    }
    Planes {
        width,
        height,
        y,
        u,
        v,
        y_stride,
        uv_stride,
    }
}

impl Planes {
    fn i420(&self) -> ImageRef<'_> {
        ImageRef::I420(I420 {
            width: self.width,
            height: self.height,
            y: &self.y,
            u: &self.u,
            v: &self.v,
            y_stride: self.y_stride,
            uv_stride: self.uv_stride,
        })
    }

    /// The same picture as NV12 in the layout MPP uses: stride and rows
    /// aligned to 64 and 16, padding full of garbage.
    fn nv12_data(&self) -> (Vec<u8>, usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let stride = w.next_multiple_of(64);
        let rows = h.next_multiple_of(16);
        let mut data = vec![1u8; stride * rows + stride * ch];
        for row in 0..h {
            data[row * stride..][..w].copy_from_slice(&self.y[row * self.y_stride..][..w]);
        }
        for row in 0..ch {
            for col in 0..cw {
                let at = stride * rows + row * stride + 2 * col;
                data[at] = self.u[row * self.uv_stride + col];
                data[at + 1] = self.v[row * self.uv_stride + col];
            }
        }
        (data, stride, rows)
    }
}

fn nv12<'a>(p: &Planes, data: &'a [u8], stride: usize, rows: usize) -> ImageRef<'a> {
    ImageRef::Nv12(Nv12 {
        width: p.width,
        height: p.height,
        data,
        stride,
        rows,
        dma: None,
    })
}

fn snapshot(max: (u32, u32), image: &ImageRef<'_>) -> SnapshotBuf {
    let mut s = SnapshotBuf::new(max.0, max.1);
    s.copy_from(image).unwrap();
    s
}

#[test]
fn sizes_follow_the_fit() {
    for (src, max, want) in [
        ((1920, 1080), (1280, 720), (1280, 720)),
        ((640, 480), (1280, 720), (640, 480)),
        ((1080, 1920), (1280, 720), (404, 720)),
        ((641, 481), (1280, 720), (640, 480)),
        ((3, 3), (1280, 720), (2, 2)),
        ((1920, 1080), (1279, 719), (1280, 720)),
    ] {
        let p = planes(src.0, src.1);
        let s = snapshot(max, &p.i420());
        assert_eq!(s.size(), want, "{src:?} into {max:?}");
        let img = s.image();
        assert_eq!((img.width, img.height), want);
        assert_eq!(img.y.len(), (want.0 * want.1) as usize);
        assert_eq!(img.u.len(), (want.0 * want.1 / 4) as usize);
    }
    assert_eq!(SnapshotBuf::new(7, 5).size(), (0, 0));
    assert_eq!(SnapshotBuf::bytes_for(1280, 720), 1280 * 720 * 3 / 2);
    assert_eq!(SnapshotBuf::bytes_for(1279, 719), 1280 * 720 * 3 / 2);
}

#[test]
fn a_picture_that_fits_is_copied_exactly() {
    let p = planes(640, 480);
    let s = snapshot((1280, 720), &p.i420());
    let img = s.image();
    for y in 0..480 {
        for x in 0..640 {
            assert_eq!(img.y[y * 640 + x], luma_at(x, y), "({x},{y})");
        }
    }
    for y in 0..240 {
        for x in 0..320 {
            assert_eq!(img.u[y * 320 + x], u_at(x, y));
            assert_eq!(img.v[y * 320 + x], v_at(x, y));
        }
    }
}

#[test]
fn scaling_samples_pixel_centres() {
    // 8x4 into 4x2: columns 1, 3, 5, 7 and rows 1, 3; chroma 4x2 into 2x1:
    // chroma columns 1, 3 and row 1... of a 2-row plane: centre at 1.0 -> 1.
    let p = planes(8, 4);
    let s = snapshot((4, 2), &p.i420());
    let img = s.image();
    let want: Vec<u8> = [1, 3]
        .iter()
        .flat_map(|&y| [1, 3, 5, 7].map(|x| luma_at(x, y)))
        .collect();
    assert_eq!(img.y, &want[..]);
    assert_eq!(img.u, &[u_at(1, 1), u_at(3, 1)]);
    assert_eq!(img.v, &[v_at(1, 1), v_at(3, 1)]);
}

#[test]
fn nv12_and_i420_of_the_same_picture_give_the_same_snapshot() {
    for (src, max) in [
        ((1920, 1080), (1280, 720)),
        ((640, 480), (1280, 720)),
        ((637, 359), (320, 180)),
    ] {
        let p = planes(src.0, src.1);
        let (data, stride, rows) = p.nv12_data();
        let a = snapshot(max, &p.i420());
        let b = snapshot(max, &nv12(&p, &data, stride, rows));
        let (a, b) = (a.image(), b.image());
        assert_eq!((a.width, a.height), (b.width, b.height));
        assert_eq!(a.y, b.y, "{src:?}");
        assert_eq!(a.u, b.u, "{src:?}");
        assert_eq!(a.v, b.v, "{src:?}");
        // Not a vacuous comparison: the padding (255, 1) never shows and
        // the planes are not flat.
        for plane in [a.y, a.u, a.v] {
            assert!(!plane.contains(&255), "{src:?}: I420 padding read");
            assert!(!plane.contains(&1), "{src:?}: NV12 padding read");
            assert!(plane.iter().any(|&s| s != plane[0]));
        }
    }
}

fn flat_rgb(w: u32, h: u32, stride: usize, rgb: [u8; 3]) -> Vec<u8> {
    let mut data = vec![7u8; stride * h as usize];
    for row in data.chunks_exact_mut(stride) {
        for px in row[..3 * w as usize].chunks_exact_mut(3) {
            px.copy_from_slice(&rgb);
        }
    }
    data
}

#[test]
fn rgb_converts_to_bt601_limited_range() {
    // (R, G, B) -> (Y, U, V) from the BT.601 equations, to within one level.
    let cases = [
        ([0, 0, 0], [16, 128, 128]),
        ([255, 255, 255], [235, 128, 128]),
        ([128, 128, 128], [126, 128, 128]),
        ([255, 0, 0], [82, 90, 240]),
        ([0, 255, 0], [145, 54, 34]),
        ([0, 0, 255], [41, 240, 110]),
        ([255, 255, 0], [210, 16, 146]),
    ];
    for (rgb, yuv) in cases {
        // Odd size and a padded stride, scaled and not.
        for (w, h, max) in [(31, 17, (64, 64)), (300, 200, (100, 100))] {
            let data = flat_rgb(w, h, 3 * w as usize + 5, rgb);
            let image = ImageRef::Rgb8(Rgb8 {
                width: w,
                height: h,
                data: &data,
                stride: 3 * w as usize + 5,
            });
            let s = snapshot(max, &image);
            let img = s.image();
            for (plane, want) in [(img.y, yuv[0]), (img.u, yuv[1]), (img.v, yuv[2])] {
                for &got in plane {
                    assert!((got as i32 - want).abs() <= 1, "{rgb:?}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn rgb_chroma_averages_the_four_pixels() {
    // A 2x2 picture: red, blue / red, blue. Luma per pixel, chroma of purple.
    let data = [255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255];
    let image = ImageRef::Rgb8(Rgb8 {
        width: 2,
        height: 2,
        data: &data,
        stride: 6,
    });
    let s = snapshot((64, 64), &image);
    let img = s.image();
    let (red, blue, purple) = (
        rgb_to_yuv(255, 0, 0),
        rgb_to_yuv(0, 0, 255),
        rgb_to_yuv(128, 0, 128),
    );
    assert_eq!(img.y, &[red.y, blue.y, red.y, blue.y]);
    assert_eq!((img.u[0], img.v[0]), (purple.u, purple.v));
}

#[test]
fn unreadable_pictures_are_refused_and_the_old_picture_kept() {
    let p = planes(64, 48);
    let mut s = snapshot((64, 64), &p.i420());
    let kept = s.image().y.to_vec();
    let short = ImageRef::I420(I420 {
        width: 64,
        height: 48,
        y: &p.y[..100],
        u: &p.u,
        v: &p.v,
        y_stride: p.y_stride,
        uv_stride: p.uv_stride,
    });
    let e = s.copy_from(&short).unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::UnsupportedImage {
                width: 64,
                height: 48,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("64x48"), "{e}");
    let empty = ImageRef::Rgb8(Rgb8 {
        width: 0,
        height: 10,
        data: &[],
        stride: 0,
    });
    assert!(s.copy_from(&empty).is_err());
    assert_eq!(s.size(), (64, 48));
    assert_eq!(s.image().y, &kept[..]);
}

#[test]
fn copy_and_draw_never_allocate() {
    let big = planes(1920, 1080);
    let (data, stride, rows) = big.nv12_data();
    let small = planes(640, 480);
    let rgb = flat_rgb(1280, 720, 3 * 1280, [10, 200, 30]);
    let rgb = ImageRef::Rgb8(Rgb8 {
        width: 1280,
        height: 720,
        data: &rgb,
        stride: 3 * 1280,
    });
    let sources = [
        big.i420(),
        nv12(&big, &data, stride, rows),
        small.i420(),
        rgb,
    ];
    let bbox = BBox {
        x0: 0.1,
        y0: 0.05,
        x1: 0.6,
        y1: 0.7,
    };
    let mut s = SnapshotBuf::new(1280, 720);

    // The counter works on this thread: a box is one allocation.
    let before = thread_counts();
    let boxed = std::hint::black_box(Box::new(5u64));
    assert_eq!(thread_counts().ours - before.ours, 1);
    drop(boxed);

    let mut copied = 0;
    let before = thread_counts();
    for image in &sources {
        s.copy_from(image).unwrap();
        s.draw_detection(&bbox, "person", 0.87, false);
        s.draw_detection(&bbox, "a label with ünïcode", f32::NAN, true);
        copied += s.size().0;
    }
    let after = thread_counts();
    assert_eq!(copied, 1280 + 1280 + 640 + 1280);
    assert_eq!(
        after.ours - before.ours,
        0,
        "copy_from/draw_detection allocated"
    );
    assert_eq!(after.engine - before.engine, 0);
}
