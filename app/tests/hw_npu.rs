//! RGA letterboxing into the NPU's input and RKNN inference read in place,
//! against C doubles of librga.so and librknnrt.so (`tests/fakes/`) built
//! here: the path an MPP picture takes on the board, with the same YOLO
//! postprocessing as the CPU backend, and every import/release,
//! create_mem/destroy_mem and init/destroy pair checked by the doubles.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use vigil::detect::yolo::{YoloPostprocess, Yolov5Head, Yolov8Head, YOLOV5_COCO_ANCHORS};
use vigil::detect::{Detections, Detector};
use vigil::hw::loader::Lib;
use vigil::hw::npu::{NpuDetector, YoloLayout};
use vigil::hw::rga::{self, RgaBuffer, RgaLib};
use vigil::hw::rknn::RknnModel;
use vigil::hw::rknn_sys::RknnLib;
use vigil::image::{DmaBuf, ImageRef, Nv12};

fn fakes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-npu");
        std::fs::create_dir_all(&dir).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        for (src, lib) in [("fake_rga.c", "librga.so"), ("fake_rknn.c", "librknnrt.so")] {
            let out = Command::new(&cc)
                .args([
                    "-std=c11", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                ])
                .arg("-o")
                .arg(dir.join(lib))
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fakes")
                        .join(src),
                )
                .output()
                .unwrap_or_else(|e| panic!("{cc}: {e}"));
            assert!(
                out.status.success(),
                "building {src} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The doubles' test entry points.
struct Doubles {
    rga: Lib,
    rknn: Lib,
}

impl Doubles {
    fn open() -> Doubles {
        let d = Doubles {
            rga: Lib::open(Some(fakes()), "librga.so").unwrap(),
            rknn: Lib::open(Some(fakes()), "librknnrt.so").unwrap(),
        };
        // SAFETY: `void fake_*_reset(void)`.
        unsafe {
            d.rga
                .sym::<unsafe extern "C" fn()>("fake_rga_reset")
                .unwrap()();
            d.rknn
                .sym::<unsafe extern "C" fn()>("fake_rknn_reset")
                .unwrap()();
        }
        d
    }

    fn report(lib: &Lib, symbol: &'static str) -> serde_json::Value {
        // SAFETY: `size_t fake_*_report(char*, size_t)` writes at most cap bytes.
        let text = unsafe {
            let f: unsafe extern "C" fn(*mut u8, usize) -> usize = lib.sym(symbol).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let n = f(buf.as_mut_ptr(), buf.len());
            buf.truncate(n.min(buf.len() - 1));
            String::from_utf8(buf).unwrap()
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report ({e}): {text}"))
    }

    fn rga(&self) -> serde_json::Value {
        Self::report(&self.rga, "fake_rga_report")
    }

    fn rknn(&self) -> serde_json::Value {
        Self::report(&self.rknn, "fake_rknn_report")
    }
}

fn assert_clean(r: &serde_json::Value) {
    assert_eq!(r["violations"].as_array().map(Vec::len), Some(0), "{r}");
    for (k, v) in r["live"].as_object().unwrap() {
        assert_eq!(v.as_u64(), Some(0), "live {k}: {r}");
    }
}

/// A memfd holding an NV12 picture of flat grey `y` (a decoder's dma-buf).
fn nv12_picture(width: usize, height: usize, y: u8) -> std::fs::File {
    use std::io::Write;
    // SAFETY: memfd_create with a static name; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"nv12".as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut data = vec![y; width * height];
    data.resize(width * height * 3 / 2, 128);
    f.write_all(&data).unwrap();
    f
}

fn model_file(kind: &str) -> Vec<u8> {
    format!("FAKE-RKNN {kind}\n").into_bytes()
}

/// Letterboxes a 640x360 grey picture into the model input with RGA,
/// runs the model `runs` times, and returns the detections of the last run.
/// `kind` is a fake model's name: "yolov5" or "yolov8", optionally followed
/// by " nc1hwc2" (native NC1HWC2 outputs, read in place).
fn infer(kind: &str, runs: usize, doubles: &Doubles) -> Detections {
    use std::os::fd::AsRawFd;
    let rga = Arc::new(RgaLib::load(Some(fakes())).unwrap());
    let rknn = Arc::new(RknnLib::load(Some(fakes())).unwrap());
    let mut model = RknnModel::load(rknn, &model_file(kind), 1).expect("model");
    let (w, h, c) = model.input_shape();
    assert_eq!((w, h, c), (640, 640, 3));
    let yolov5 = kind.starts_with("yolov5");
    let native = kind.ends_with(" nc1hwc2");
    for i in 0..model.outputs() {
        assert_eq!(model.output_is_native(i), native, "output {i} of {kind}");
    }
    // Cells of the three grids: 80^2 + 40^2 + 20^2. NC1HWC2 pads channels
    // to blocks of 16: yolov5 255 -> 256; yolov8 64 + 80 + 1 -> 64 + 80 + 16.
    let channels = match (yolov5, native) {
        (true, false) => 255,
        (true, true) => 256,
        (false, false) => 64 + 80 + 1,
        (false, true) => 64 + 80 + 16,
    };
    assert_eq!(model.bound_bytes(), 640 * 640 * 3 + channels * 8400);
    let picture = nv12_picture(640, 360, 100);
    let src = RgaBuffer::import(
        rga.clone(),
        picture.as_raw_fd(),
        (640, 360),
        (640, 360),
        rga::FORMAT_NV12,
    )
    .expect("import the picture");
    let mut dst = RgaBuffer::import(rga, model.input_fd(), (w, h), (w, h), rga::FORMAT_RGB_888)
        .expect("import the NPU input");
    let mut post = YoloPostprocess::new(w, h, 80, 0.45);
    let mut out = Detections::new();
    for _ in 0..runs {
        // The border by the CPU, the picture by RGA (as `hw::npu` does).
        model.input_mut().fill(114);
        model.flush_input().expect("flush");
        dst.scale_into(&src, rga::letterbox_rect(640, 360, w, h))
            .expect("letterbox");
        model.run().expect("run");
        let t = |i: usize| model.output(i).expect("output");
        let grid = |dims: &[u32]| (dims[2] as usize, dims[3] as usize);
        match yolov5 {
            true => {
                let heads: Vec<Yolov5Head<'_>> = (0..3)
                    .map(|i| {
                        let (tensor, dims) = t(i);
                        let (grid_h, grid_w) = grid(dims);
                        Yolov5Head {
                            tensor,
                            grid_h,
                            grid_w,
                            anchors: YOLOV5_COCO_ANCHORS[i],
                        }
                    })
                    .collect();
                post.yolov5(&heads, 0.5, &mut out).expect("decode");
            }
            false => {
                let heads: Vec<Yolov8Head<'_>> = (0..3)
                    .map(|i| {
                        let (boxes, dims) = t(3 * i);
                        let (grid_h, grid_w) = grid(dims);
                        Yolov8Head {
                            boxes,
                            scores: t(3 * i + 1).0,
                            score_sum: Some(t(3 * i + 2).0),
                            grid_h,
                            grid_w,
                        }
                    })
                    .collect();
                post.yolov8(&heads, 0.5, &mut out).expect("decode");
            }
        }
        // While running: one context, input + outputs bound, two imports.
        let r = doubles.rknn();
        assert_eq!(r["live"]["contexts"], 1, "{r}");
        assert_eq!(r["live"]["outputs"], 0, "nothing from outputs_get: {r}");
    }
    let mean = doubles.rknn()["last_input_mean"].as_f64().unwrap();
    // 280 border rows of 114 and 360 picture rows of grey 100 in limited
    // range (98 in RGB): the RGA wrote the picture where the NPU reads.
    let want = (280.0 * 114.0 + 360.0 * 98.0) / 640.0;
    assert!((mean - want).abs() < 0.5, "input mean {mean}, want {want}");
    assert_eq!(doubles.rga()["live"]["handles"], 2);
    drop((src, dst, model));
    out
}

#[test]
fn yolov5_through_rga_and_rknn_in_place() {
    let _turn = serial();
    let doubles = Doubles::open();
    let out = infer("yolov5", 200, &doubles);
    assert_eq!(out.len(), 1, "{out:?}");
    let d = &out[0];
    assert_eq!(d.class_id, 0);
    assert!((d.score - 0.902).abs() < 0.01, "{d:?}");
    let b = d.bbox;
    for (got, want) in [(b.x0, 269.9), (b.y0, 219.9), (b.x1, 370.1), (b.y1, 420.1)] {
        assert!((got * 640.0 - want).abs() < 1.0, "{b:?}");
    }
    assert_clean(&doubles.rga());
    let r = doubles.rknn();
    assert_clean(&r);
    assert_eq!(r["calls"]["rknn_init"], 1);
    assert_eq!(r["calls"]["rknn_run"], 200);
    assert_eq!(r["calls"]["rknn_destroy"], 1);
    assert_eq!(r["calls"]["rknn_outputs_get"], 0);
}

#[test]
fn yolov8_through_rga_and_rknn_in_place() {
    let _turn = serial();
    let doubles = Doubles::open();
    let out = infer("yolov8", 50, &doubles);
    assert_eq!(out.len(), 1, "{out:?}");
    let b = out[0].bbox;
    for (got, want) in [(b.x0, 270.0), (b.y0, 220.0), (b.x1, 370.0), (b.y1, 420.0)] {
        assert!((got * 640.0 - want).abs() < 0.5, "{b:?}");
    }
    assert_clean(&doubles.rga());
    assert_clean(&doubles.rknn());
}

/// Same detections (class, score within 0.01, box within 1 px).
fn assert_same(native: &Detections, nchw: &Detections) {
    assert_eq!(native.len(), nchw.len(), "{native:?} vs {nchw:?}");
    for (a, b) in native.iter().zip(nchw) {
        assert_eq!(a.class_id, b.class_id, "{a:?} vs {b:?}");
        assert!((a.score - b.score).abs() < 0.01, "{a:?} vs {b:?}");
        for (x, y) in [
            (a.bbox.x0, b.bbox.x0),
            (a.bbox.y0, b.bbox.y0),
            (a.bbox.x1, b.bbox.x1),
            (a.bbox.y1, b.bbox.y1),
        ] {
            assert!((x - y).abs() * 640.0 < 1.0, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn yolov5_nc1hwc2_outputs_read_in_place_decode_like_nchw() {
    let _turn = serial();
    let doubles = Doubles::open();
    let nchw = infer("yolov5", 5, &doubles);
    let native = infer("yolov5 nc1hwc2", 20, &doubles);
    assert_eq!(native.len(), 1, "{native:?}");
    assert_eq!(native[0].class_id, 0);
    assert_same(&native, &nchw);
    assert_clean(&doubles.rga());
    let r = doubles.rknn();
    assert_clean(&r);
    assert_eq!(r["calls"]["rknn_init"], 2);
    assert_eq!(r["calls"]["rknn_outputs_get"], 0);
}

#[test]
fn yolov8_nc1hwc2_outputs_read_in_place_decode_like_nchw() {
    let _turn = serial();
    let doubles = Doubles::open();
    let nchw = infer("yolov8", 5, &doubles);
    let native = infer("yolov8 nc1hwc2", 20, &doubles);
    assert_eq!(native.len(), 1, "{native:?}");
    assert_same(&native, &nchw);
    let b = native[0].bbox;
    for (got, want) in [(b.x0, 270.0), (b.y0, 220.0), (b.x1, 370.0), (b.y1, 420.0)] {
        assert!((got * 640.0 - want).abs() < 0.5, "{b:?}");
    }
    assert_clean(&doubles.rga());
    assert_clean(&doubles.rknn());
}

#[test]
fn a_bad_model_is_a_clear_error_and_leaks_nothing() {
    let _turn = serial();
    let doubles = Doubles::open();
    let rknn = Arc::new(RknnLib::load(Some(fakes())).unwrap());
    let e = RknnModel::load(rknn, b"not a model", 1)
        .err()
        .expect("refused");
    assert_eq!(e.call, "rknn_init");
    assert_clean(&doubles.rknn());
}

/// An NV12 view of a memfd picture (as an MPP frame would give it).
fn nv12_view<'a>(
    data: &'a [u8],
    (width, height, stride, rows): (u32, u32, usize, usize),
    dma: DmaBuf,
) -> ImageRef<'a> {
    ImageRef::Nv12(Nv12 {
        width,
        height,
        data,
        stride,
        rows,
        dma: Some(dma),
    })
}

#[test]
fn the_npu_detector_imports_each_buffer_once_and_forgets_old_generations() {
    use std::os::fd::AsRawFd;
    let _turn = serial();
    let doubles = Doubles::open();
    let rga = Arc::new(RgaLib::load(Some(fakes())).unwrap());
    let rknn = Arc::new(RknnLib::load(Some(fakes())).unwrap());
    let mut det = NpuDetector::new(rknn, rga, &model_file("yolov5"), 2, YoloLayout::Yolov5, 2)
        .expect("detector");
    let geometry = (640, 360, 640, 368);
    let bytes = vec![100u8; 640 * 368 * 3 / 2];
    let (a, b, c) = (
        nv12_picture(640, 368, 100),
        nv12_picture(640, 368, 100),
        nv12_picture(640, 368, 100),
    );
    let dma = |f: &std::fs::File, source, generation| DmaBuf {
        fd: f.as_raw_fd(),
        source,
        generation,
    };
    let mut out = Detections::new();
    for _ in 0..20 {
        det.detect(nv12_view(&bytes, geometry, dma(&a, 1, 0)), 0.5, &mut out)
            .expect("detect");
    }
    // The person of the fake model, mapped back through the letterbox.
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(det.class_name(out[0].class_id), "person");
    let b0 = out[0].bbox;
    assert!((b0.y0 * 360.0 - (219.9 - 140.0)).abs() < 1.0, "{b0:?}");
    // 20 pictures of one buffer: the model input and that buffer imported.
    assert_eq!(doubles.rga()["calls"]["importbuffer_fd"], 2);
    // The decoder re-made its buffers: the old generation's import goes.
    det.detect(nv12_view(&bytes, geometry, dma(&b, 1, 1)), 0.5, &mut out)
        .unwrap();
    assert_eq!(det.imports(), 1);
    assert_eq!(doubles.rga()["live"]["handles"], 2);
    // A full table (2 imports) evicts the least recently used.
    det.detect(nv12_view(&bytes, geometry, dma(&c, 2, 0)), 0.5, &mut out)
        .unwrap();
    det.detect(nv12_view(&bytes, geometry, dma(&a, 3, 0)), 0.5, &mut out)
        .unwrap();
    assert_eq!((det.imports(), det.evicted_imports), (2, 1));
    assert_eq!(doubles.rga()["live"]["handles"], 3);
    // A stride RGA3 cannot read is refused before any import.
    let e = det
        .detect(
            nv12_view(&bytes, (630, 360, 630, 368), dma(&a, 4, 0)),
            0.5,
            &mut out,
        )
        .unwrap_err();
    assert!(e.to_string().contains("multiple of 16"), "{e}");
    // A picture without a dma-buf cannot go to RGA.
    let cpu = ImageRef::Nv12(Nv12 {
        width: 640,
        height: 360,
        data: &bytes,
        stride: 640,
        rows: 368,
        dma: None,
    });
    assert!(det.detect(cpu, 0.5, &mut out).is_err());
    drop(det);
    assert_clean(&doubles.rga());
    assert_clean(&doubles.rknn());
}

#[test]
fn the_double_refuses_an_nc1hwc2_binding_other_than_the_native_attr() {
    use vigil::hw::rknn_sys::{self as sys, TensorAttr};
    let _turn = serial();
    let doubles = Doubles::open();
    let lib = RknnLib::load(Some(fakes())).unwrap();
    for kind in ["yolov5", "yolov5 nc1hwc2"] {
        let model = model_file(kind);
        let mut ctx = 0;
        // SAFETY: the C signatures of rknn_sys; every pointer outlives its call.
        unsafe {
            let init = (lib.init)(
                &mut ctx,
                model.as_ptr() as *mut _,
                model.len() as u32,
                0,
                std::ptr::null_mut(),
            );
            assert_eq!(init, 0, "{kind}");
            let mut attr = TensorAttr::default();
            let q = (lib.query)(
                ctx,
                sys::QUERY_NATIVE_OUTPUT_ATTR,
                (&mut attr as *mut TensorAttr).cast(),
                size_of::<TensorAttr>() as u32,
            );
            assert_eq!(q, 0, "{kind}");
            if kind == "yolov5" {
                // An NCHW native model: NC1HWC2 is no attr of it.
                assert_eq!(attr.fmt, sys::FORMAT_NCHW);
                attr.fmt = sys::FORMAT_NC1HWC2;
            } else {
                assert_eq!(attr.fmt, sys::FORMAT_NC1HWC2);
                assert_eq!(&attr.dims[..5], [1, 16, 80, 80, 16]);
                assert_eq!(attr.size_with_stride, 16 * 80 * 80 * 16);
                // C2 8 is not this model's native layout.
                attr.dims[4] = 8;
            }
            let mem = (lib.create_mem)(ctx, 1 << 22);
            assert!(!mem.is_null());
            assert_ne!((lib.set_io_mem)(ctx, mem, &mut attr), 0, "{kind}");
            assert_eq!((lib.destroy_mem)(ctx, mem), 0);
            assert_eq!((lib.destroy)(ctx), 0);
        }
    }
    let r = doubles.rknn();
    let v: Vec<&str> = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(v.len(), 2, "{r}");
    assert!(v[0].contains("native output layout is NCHW"), "{r}");
    assert!(v[1].contains("is not the native attr"), "{r}");
    for (k, n) in r["live"].as_object().unwrap() {
        assert_eq!(n.as_u64(), Some(0), "live {k}: {r}");
    }
}

/// The RGA double's releases that came after their fd's memory was freed.
fn released_after_memory(r: &serde_json::Value) -> Vec<String> {
    r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| v.contains("was closed before its import was released"))
        .map(str::to_owned)
        .collect()
}

/// Issue 16 item 13, the double's side: an import of the NPU input released
/// after `rknn_destroy_mem` freed that input is reported, so the test below
/// can fail.
#[test]
fn the_rga_double_catches_an_import_released_after_its_memory() {
    let _turn = serial();
    let doubles = Doubles::open();
    let rga = Arc::new(RgaLib::load(Some(fakes())).unwrap());
    let rknn = Arc::new(RknnLib::load(Some(fakes())).unwrap());
    let model = RknnModel::load(rknn, &model_file("yolov5"), 1).expect("model");
    let (w, h, _) = model.input_shape();
    let input = RgaBuffer::import(rga, model.input_fd(), (w, h), (w, h), rga::FORMAT_RGB_888)
        .expect("import the NPU input");
    // The wrong order: the memory first, then the import pointing into it.
    drop(model);
    drop(input);
    let r = doubles.rga();
    let late = released_after_memory(&r);
    assert_eq!(late.len(), 1, "{r}");
    assert!(late[0].starts_with("releasebuffer_handle: handle "), "{r}");
    assert_eq!(r["live"]["handles"], 0, "{r}");
    assert_clean(&doubles.rknn());
}

/// Issue 16 item 13: `NpuDetector` releases the RGA import of its input (and
/// of every decoder buffer) before the RKNN memory the input import points
/// into.
#[test]
fn the_npu_detector_releases_its_input_import_before_the_model_memory() {
    use std::os::fd::AsRawFd;
    let _turn = serial();
    let doubles = Doubles::open();
    let rga = Arc::new(RgaLib::load(Some(fakes())).unwrap());
    let rknn = Arc::new(RknnLib::load(Some(fakes())).unwrap());
    let picture = nv12_picture(640, 368, 100);
    let bytes = vec![100u8; 640 * 368 * 3 / 2];
    let dma = DmaBuf {
        fd: picture.as_raw_fd(),
        source: 1,
        generation: 0,
    };
    for detect in [false, true] {
        let mut det = NpuDetector::new(
            rknn.clone(),
            rga.clone(),
            &model_file("yolov5"),
            1,
            YoloLayout::Yolov5,
            2,
        )
        .expect("detector");
        if detect {
            let mut out = Detections::new();
            det.detect(nv12_view(&bytes, (640, 360, 640, 368), dma), 0.5, &mut out)
                .expect("detect");
            assert_eq!(out.len(), 1, "{out:?}");
        }
        drop(det);
        let r = doubles.rga();
        assert_eq!(released_after_memory(&r), Vec::<String>::new(), "{r}");
        assert_clean(&r);
        assert_clean(&doubles.rknn());
    }
    let r = doubles.rga();
    assert_eq!(r["calls"]["importbuffer_fd"], 3, "{r}");
    assert_eq!(r["calls"]["releasebuffer_handle"], 3, "{r}");
}
