//! Which backend runs here, and the parts it brings: the detectors (one per
//! inference worker) and the decoder factory.
//!
//! The RK3588 backend (MPP decoding, RGA + RKNN detection) is chosen when
//! its device nodes and libraries are present; the software twins
//! (openh264, a CPU detector) otherwise, unless the configuration insists on
//! the hardware or its model only runs on the NPU. Loading a model is the
//! slowest step of a start, so the caller checks everything cheap (the
//! budget, the port, the data directory) before [`make_parts`].

use super::StartError;
use crate::config::{Config, DetectorKind};
use crate::decode::{self, DecodeError, Decoder};
use crate::detect::{self, Detector};
use crate::hw::mpp_sys::MppLib;
use crate::hw::npu::NpuDetector;
use crate::hw::rga::RgaLib;
use crate::hw::rknn_sys::RknnLib;
use crate::hw::{self, Backend, BackendChoice};
use crate::packet::Codec;
use std::sync::Arc;

/// Makes a camera's decoder for a codec and the camera's `max_resolution`
/// (called once per camera, from the camera's decoder thread).
pub type DecoderFactory =
    Arc<dyn Fn(Codec, (u32, u32)) -> Result<Box<dyn Decoder>, DecodeError> + Send + Sync>;

/// What the pipeline needs besides the configuration.
pub struct Parts {
    /// Which backends these parts are (for the status and metrics). The
    /// hardware backend's decoded pictures stay in MPP's buffer group; the
    /// software backend's are copied into each camera's frame pool.
    pub backend: Backend,
    /// One detector per inference worker (`config.detector.workers`).
    pub detectors: Vec<Box<dyn Detector>>,
    /// Makes a camera's decoder once its codec is known.
    pub decoder_factory: DecoderFactory,
    /// Which codecs `decoder_factory` can decode.
    pub accepts: fn(Codec) -> bool,
    /// Play file sources at their frame rate (false: as fast as decoded,
    /// for benchmarks and tests).
    pub paced: bool,
}

/// The parts for this machine: software decoding, the given CPU detectors.
pub fn software_parts(detectors: Vec<Box<dyn Detector>>, paced: bool) -> Parts {
    Parts {
        backend: Backend::Software,
        detectors,
        // OpenH264 has no size limit of its own: the decode stage's size
        // gate is what keeps an oversize stream away from it.
        decoder_factory: Arc::new(|codec, _max| decode::openh264::new_software_decoder(codec)),
        accepts: decode::openh264::software_accepts,
        paced,
    }
}

/// The parts for an RK3588: MPP decoding into groups of `decoder_buffers`
/// frames per camera, and the given detectors (NPU or CPU).
pub fn hardware_parts(
    mpp: Arc<MppLib>,
    decoder_buffers: usize,
    detectors: Vec<Box<dyn Detector>>,
    paced: bool,
) -> Parts {
    Parts {
        backend: Backend::Hardware,
        detectors,
        decoder_factory: Arc::new(move |codec, max| {
            let decoder =
                decode::mpp::MppVideoDecoder::new(mpp.clone(), codec, decoder_buffers, max)?;
            Ok(Box::new(decoder) as Box<dyn Decoder>)
        }),
        // MPP decodes both codecs vigil's sources deliver.
        accepts: |_| true,
        paced,
    }
}

/// The size of the detector model file (for the memory budget).
pub fn model_bytes(config: &Config) -> Result<u64, StartError> {
    std::fs::metadata(&config.detector.model)
        .map(|m| m.len())
        .map_err(|source| StartError::ModelMissing {
            path: config.detector.model.clone(),
            source,
        })
}

/// What the hardware backend lacks on this machine, as sentences (empty:
/// nothing).
pub fn hardware_missing(config: &Config) -> Vec<String> {
    let mut missing = hw::missing_device_nodes(&config.hardware.dev_dir);
    missing.extend(hw::missing_libraries(config.hardware.lib_dir.as_deref()));
    missing
}

/// Decides between the RK3588 backends and the software twins, and says
/// which and why in the log. `hardware` refuses to start without the
/// hardware rather than silently running on the CPU; a model that only runs
/// on the NPU refuses to start without it whatever `backend` says.
pub fn choose_backend(config: &Config) -> Result<Backend, StartError> {
    let kind = config.detector.kind;
    if config.backend == BackendChoice::Software {
        log::info!("backend software (backend = \"software\")");
        return Ok(Backend::Software);
    }
    let missing = hardware_missing(config);
    if missing.is_empty() {
        if let Some(cam) = config
            .cameras
            .iter()
            .find(|c| c.frame_pool >= config.hardware.decoder_buffers)
        {
            return Err(StartError::FramePool {
                camera: cam.name.clone(),
                frame_pool: cam.frame_pool,
                decoder_buffers: config.hardware.decoder_buffers,
            });
        }
        log::info!(
            "backend hardware (backend = \"{}\"): MPP decoding, {} detection",
            config.backend.as_str(),
            if kind.needs_npu() {
                "RGA + RKNN"
            } else {
                "CPU"
            }
        );
        return Ok(Backend::Hardware);
    }
    if config.backend == BackendChoice::Hardware {
        Err(StartError::HardwareUnavailable { missing })
    } else if kind.needs_npu() {
        Err(StartError::NpuUnavailable {
            kind: kind.as_str(),
            missing,
        })
    } else {
        log::info!(
            "backend software (auto: no RK3588 hardware: {})",
            missing.join("; ")
        );
        Ok(Backend::Software)
    }
}

/// Loads the detectors (one per worker) and the decoder library for
/// `backend`.
pub fn make_parts(config: &Config, backend: Backend, paced: bool) -> Result<Parts, StartError> {
    let workers = config.detector.workers;
    let mut detectors: Vec<Box<dyn Detector>> = Vec::with_capacity(workers);
    let model = &config.detector.model;
    match config.detector.kind {
        DetectorKind::SsdMobilenetV2 => {
            for _ in 0..workers {
                let d = detect::ssd::SsdMobilenetV2::load(model).map_err(|source| {
                    StartError::Detector {
                        // The detector's error names the model itself.
                        path: None,
                        source,
                    }
                })?;
                detectors.push(Box::new(d));
            }
        }
        DetectorKind::Yolo(layout) => {
            let lib_dir = config.hardware.lib_dir.as_deref();
            let rknn = Arc::new(RknnLib::load(lib_dir).map_err(StartError::Library)?);
            let rga = Arc::new(RgaLib::load(lib_dir).map_err(StartError::Library)?);
            let bytes = std::fs::read(model).map_err(|source| StartError::ModelRead {
                path: model.clone(),
                source,
            })?;
            let imports = config.cameras.len() * config.hardware.decoder_buffers;
            for w in 0..workers {
                // One context per NPU core: cores 0, 1, 2 (masks 1, 2, 4).
                let core_mask = 1 << (w % 3);
                let d = NpuDetector::new(
                    rknn.clone(),
                    rga.clone(),
                    &bytes,
                    core_mask,
                    layout,
                    imports,
                )
                .map_err(|source| StartError::Detector {
                    path: Some(model.clone()),
                    source,
                })?;
                detectors.push(Box::new(d));
            }
        }
    }
    Ok(match backend {
        Backend::Software => software_parts(detectors, paced),
        Backend::Hardware => {
            let mpp =
                MppLib::load(config.hardware.lib_dir.as_deref()).map_err(StartError::Library)?;
            hardware_parts(
                Arc::new(mpp),
                config.hardware.decoder_buffers,
                detectors,
                paced,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn config(text: &str) -> Config {
        Config::parse(text, "t").unwrap()
    }

    #[test]
    fn a_missing_model_is_its_own_kind_with_the_io_error_beneath() {
        let c = config(
            "[detector]\nmodel = \"/nonexistent/vigil/model.pb\"\n[[camera]]\nurl = \"a.h264\"\n",
        );
        let e = model_bytes(&c).unwrap_err();
        assert!(matches!(e, StartError::ModelMissing { .. }), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
        // The operator is told how to get one.
        assert!(e.to_string().contains("make model"), "{e}");
    }

    #[test]
    fn missing_hardware_is_a_backend_kind_unless_auto_may_fall_back() {
        let hw = "[hardware]\ndev_dir = \"/nonexistent/vigil-dev\"\n[[camera]]\nurl = \"a.h264\"\n";
        let e = choose_backend(&config(&format!("backend = \"hardware\"\n{hw}"))).unwrap_err();
        assert!(
            matches!(&e, StartError::HardwareUnavailable { missing } if !missing.is_empty()),
            "{e}"
        );
        let e =
            choose_backend(&config(&format!("[detector]\nkind = \"yolox\"\n{hw}"))).unwrap_err();
        assert!(
            matches!(e, StartError::NpuUnavailable { kind: "yolox", .. }),
            "{e}"
        );
        assert!(matches!(choose_backend(&config(hw)), Ok(Backend::Software)));
    }
}
