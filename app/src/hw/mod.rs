//! The RK3588 hardware blocks (MPP decoder, RGA, RKNN NPU) behind small
//! safe types, loaded at run time, and the choice between them and the
//! software twins.
//!
//! `backend = "auto"` uses the hardware only when both its libraries load
//! and its device nodes exist; otherwise the software backends run, and the
//! log, `/api/status` and `/metrics` say which and why. On this machine the
//! libraries are C test doubles (`app/tests/fakes/`) that check call order
//! and pairing; nothing in this module has run on an RK3588 yet
//! (docs/hardware.md lists what to verify on a board).

pub mod loader;
pub mod mpp;
pub mod mpp_sys;
pub mod npu;
pub mod rga;
pub mod rknn;
pub mod rknn_sys;

use std::path::{Path, PathBuf};

/// Which backends the configuration asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Hardware when present, else software.
    Auto,
    /// Hardware or refuse to start.
    Hardware,
    /// Software only.
    Software,
}

impl BackendChoice {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Hardware => "hardware",
            BackendChoice::Software => "software",
        }
    }
}

/// The backends a run uses, once chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// openh264 and the CPU detector.
    Software,
    /// MPP decoding, and RGA + RKNN for `.rknn` models.
    Hardware,
}

impl Backend {
    /// The name shown in the log, `/api/status` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Software => "software",
            Backend::Hardware => "hardware",
        }
    }
}

/// Device nodes the hardware backend needs: (what, the paths any of which
/// will do, relative to the device root).
pub const DEVICE_NODES: [(&str, &[&str]); 3] = [
    ("MPP decoder", &["mpp_service"]),
    ("RGA", &["rga"]),
    ("NPU", &["rknpu", "dri/renderD129", "dri/renderD128"]),
];

/// What is missing for the hardware backend, as sentences (empty: none).
pub fn missing_device_nodes(dev_root: &Path) -> Vec<String> {
    DEVICE_NODES
        .iter()
        .filter(|(_, paths)| !paths.iter().any(|p| dev_root.join(p).exists()))
        .map(|(what, paths)| {
            let tried: Vec<PathBuf> = paths.iter().map(|p| dev_root.join(p)).collect();
            format!(
                "{what}: none of {}",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect()
}

/// The libraries that could not be loaded from `lib_dir` (or the loader's
/// path), as the loader's errors.
pub fn missing_libraries(lib_dir: Option<&Path>) -> Vec<String> {
    let mut missing = Vec::new();
    if let Err(e) = mpp_sys::MppLib::load(lib_dir) {
        missing.push(e.to_string());
    }
    for file in ["librga.so", "librknnrt.so"] {
        if let Err(e) = loader::Lib::open(lib_dir, file) {
            missing.push(e.to_string());
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_nodes_are_found_under_the_root() {
        let root = std::env::temp_dir().join(format!("vigil-dev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dri")).unwrap();
        assert_eq!(missing_device_nodes(&root).len(), 3);
        std::fs::write(root.join("mpp_service"), b"").unwrap();
        std::fs::write(root.join("dri/renderD129"), b"").unwrap();
        let missing = missing_device_nodes(&root);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].starts_with("RGA: none of "), "{missing:?}");
        std::fs::write(root.join("rga"), b"").unwrap();
        assert!(missing_device_nodes(&root).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn this_machine_has_no_rockchip_libraries() {
        let missing = missing_libraries(Some(Path::new("/nonexistent")));
        assert_eq!(missing.len(), 3);
        assert!(missing[0].contains("librockchip_mpp.so"), "{missing:?}");
    }
}
