//! `vigil detect`: run the CPU detector over JPEG files and print JSON lines.
//!
//! This is the bench tool for checking a model install and comparing the
//! detector with reference runs, not part of the per-frame path, so it
//! allocates freely (one decoded picture at a time). Each detection is one
//! line `{"image", "class", "class_id", "score", "box": [x0, y0, x1, y1]}` with
//! the box in pixels of that picture (a path that is not UTF-8 is written
//! lossily). A file that cannot be read or decoded does not stop the run: it
//! becomes a line `{"image", "error"}` in the same stream, is logged, and is
//! counted in the returned number.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ssd::SsdMobilenetV2;
use super::{DetectError, Detections, Detector};
use crate::image::{ImageRef, Rgb8};

#[derive(Serialize)]
struct DetectionLine<'a> {
    image: Cow<'a, str>,
    class: &'a str,
    class_id: u16,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    image: Cow<'a, str>,
    error: String,
}

/// Decodes the JPEG file at `path` into packed RGB: `(pixels, width,
/// height)`. Grayscale and CMYK pictures are converted; 16-bit (lossless)
/// ones are refused.
pub fn decode_jpeg(path: &Path) -> Result<(Vec<u8>, u32, u32), DetectError> {
    let bad = |why: String| DetectError::BadImage(format!("{}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut decoder = jpeg_decoder::Decoder::new(std::io::BufReader::new(file));
    let pixels = decoder.decode().map_err(|e| bad(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| bad("no frame header".into()))?;
    let rgb = to_rgb(pixels, info.pixel_format).map_err(bad)?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if rgb.len() != 3 * width as usize * height as usize {
        return Err(bad(format!(
            "decoder gave {} bytes for {width}x{height} RGB",
            rgb.len()
        )));
    }
    Ok((rgb, width, height))
}

/// Converts decoded JPEG samples to packed RGB.
fn to_rgb(pixels: Vec<u8>, format: jpeg_decoder::PixelFormat) -> Result<Vec<u8>, String> {
    use jpeg_decoder::PixelFormat;
    Ok(match format {
        PixelFormat::RGB24 => pixels,
        PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        // jpeg-decoder has already undone Adobe's inversion: these are ink
        // amounts, 255 = full ink.
        PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let white = 255 - u16::from(p[3]);
                [p[0], p[1], p[2]].map(|ink| ((255 - u16::from(ink)) * white / 255) as u8)
            })
            .collect(),
        PixelFormat::L16 => return Err("16-bit grayscale JPEG is not supported".into()),
    })
}

/// Rounds to `decimals` decimal places, for readable JSON.
fn round(v: f32, decimals: i32) -> f32 {
    let f = 10f32.powi(decimals);
    (v * f).round() / f
}

/// Loads the SSD model at `model`, runs it on each JPEG in `images` and
/// writes one JSON line per detection scoring at least `min_score` to `out`.
///
/// Returns the number of images that failed (each also written as an error
/// line naming the file); a model that cannot be loaded or an `out` that
/// cannot be written is an `Err`.
pub fn detect_images(
    model: &Path,
    images: &[PathBuf],
    min_score: f32,
    out: &mut dyn Write,
) -> Result<usize, DetectError> {
    let mut detector = SsdMobilenetV2::load(model)?;
    let mut detections = Detections::new();
    let mut failures = 0;
    for path in images {
        let result = decode_jpeg(path).and_then(|(data, width, height)| {
            let image = ImageRef::Rgb8(Rgb8 {
                width,
                height,
                data: &data,
                stride: 3 * width as usize,
            });
            detector.detect(image, min_score, &mut detections)?;
            Ok((width as f32, height as f32))
        });
        match result {
            Ok((width, height)) => {
                for d in &detections {
                    let line = DetectionLine {
                        image: path.to_string_lossy(),
                        class: detector.class_name(d.class_id),
                        class_id: d.class_id,
                        score: round(d.score, 3),
                        bbox: [
                            round(d.bbox.x0 * width, 1),
                            round(d.bbox.y0 * height, 1),
                            round(d.bbox.x1 * width, 1),
                            round(d.bbox.y1 * height, 1),
                        ],
                    };
                    write_line(out, &line)?;
                }
            }
            Err(e) => {
                log::error!("{e}");
                failures += 1;
                let line = ErrorLine {
                    image: path.to_string_lossy(),
                    error: e.to_string(),
                };
                write_line(out, &line)?;
            }
        }
    }
    out.flush().map_err(DetectError::Output)?;
    Ok(failures)
}

fn write_line(out: &mut dyn Write, line: &impl Serialize) -> Result<(), DetectError> {
    serde_json::to_writer(&mut *out, line)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(DetectError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::default_model_path;

    const DOG: &str = "/usr/share/darknet/data/dog.jpg";

    fn fixture(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("vigil-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn unreadable_and_non_jpeg_files_are_bad_images_naming_the_file() {
        let text = fixture("text.jpg", b"not a jpeg");
        for path in [Path::new("/nonexistent/x.jpg"), &text] {
            match decode_jpeg(path) {
                Err(e @ DetectError::BadImage(_)) => {
                    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        std::fs::remove_file(text).unwrap();
    }

    #[test]
    fn bad_images_are_reported_and_counted_and_the_rest_still_run() {
        let model = default_model_path();
        assert!(
            model.is_file(),
            "model {} is missing: run `make model`",
            model.display()
        );
        assert!(
            Path::new(DOG).is_file(),
            "{DOG} missing: apt-get install darknet"
        );
        let broken = fixture("broken.jpg", b"\xff\xd8\xff\xe0 truncated");
        let images = [broken.clone(), PathBuf::from(DOG)];
        let mut out = Vec::new();
        let failures = detect_images(&model, &images, 0.5, &mut out).unwrap();
        std::fs::remove_file(&broken).unwrap();
        assert_eq!(failures, 1);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["image"], broken.to_string_lossy().as_ref());
        assert!(lines[0]["error"].as_str().unwrap().contains("broken.jpg"));
        let classes: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l["class"].as_str().unwrap())
            .collect();
        assert!(
            classes.contains(&"bicycle") && classes.contains(&"dog"),
            "{lines:?}"
        );
        let dog = lines[1..].iter().find(|l| l["class"] == "dog").unwrap();
        assert_eq!(dog["image"], DOG);
        assert_eq!(dog["class_id"], 18);
        let b: Vec<f64> = dog["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // dog.jpg is 768x576; the dog sits in the lower left.
        assert!(
            b[0] < b[2] && b[1] < b[3] && b[2] <= 768.0 && b[3] <= 576.0,
            "{b:?}"
        );
        assert!(b[0] < 384.0 && b[1] > 150.0, "{b:?}");
    }

    #[test]
    fn grayscale_jpeg_becomes_rgb() {
        let gray = fixture("gray.jpg", GRAY_8X8);
        let decoded = decode_jpeg(&gray);
        std::fs::remove_file(gray).unwrap();
        let (rgb, w, h) = decoded.unwrap();
        assert_eq!((w, h, rgb.len()), (8, 8, 8 * 8 * 3));
        let (top, bottom) = rgb.split_at(rgb.len() / 2);
        assert!(top.iter().all(|&v| v.abs_diff(100) <= 2), "{top:?}");
        assert!(bottom.iter().all(|&v| v.abs_diff(200) <= 2), "{bottom:?}");
    }

    #[test]
    fn cmyk_and_l16_samples() {
        use jpeg_decoder::PixelFormat;
        // No ink is white, full K is black, full M + Y is red.
        let cmyk = vec![0, 0, 0, 0, 0, 0, 0, 255, 0, 255, 255, 0, 0, 0, 0, 128];
        let rgb = to_rgb(cmyk, PixelFormat::CMYK32).unwrap();
        assert_eq!(rgb, [255, 255, 255, 0, 0, 0, 255, 0, 0, 127, 127, 127]);
        assert!(to_rgb(vec![0; 4], PixelFormat::L16).is_err());
    }

    /// `cjpeg -grayscale -optimize` of an 8x8 picture, rows 0-3 at 100 and
    /// rows 4-7 at 200, JFIF header removed: a one-component baseline JPEG.
    const GRAY_8X8: &[u8] = &[
        0xff, 0xd8, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0xff, 0xc0, 0x00, 0x0b,
        0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x14, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0xff, 0xc4, 0x00, 0x18, 0x10, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x19, 0x67, 0xa7, 0xe7, 0xff, 0xda, 0x00,
        0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x58, 0x29, 0x49, 0xfe, 0xaa, 0xd2, 0x0f, 0xff,
        0xd9,
    ];
}
