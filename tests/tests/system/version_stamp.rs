//! The version stamped into a built binary (scripts/stamp-version.sh, the
//! `.vigil_version` section of app/src/version.rs) is the one `vigil
//! version` prints, also after `strip`; a stamp that is not a semantic
//! version is refused by the script, and a section holding one anyway
//! (written around the script) leaves vigil on its built-in version.

use std::path::Path;
use std::process::Command;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{binary, root};

const BUILT: &str = env!("CARGO_PKG_VERSION");

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .expect("run vigil version");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stamp(version: &str, input: &Path, output: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg(root().join("scripts/stamp-version.sh"))
        .args([version.as_ref(), input.as_os_str(), output.as_os_str()])
        .output()
        .expect("run stamp-version.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_stamped_copy_reports_the_stamp_and_the_original_is_unchanged() {
    let dir = TempDir::new("stamp");
    let original = dir.join("vigil");
    std::fs::copy(binary(), &original).unwrap();
    assert_eq!(version_of(&original), format!("vigil {BUILT}"));

    let stamped = dir.join("vigil-stamped");
    let (ok, err) = stamp("3.4.5-rc.1+ci.7", &original, &stamped);
    assert!(ok, "{err}");
    assert_eq!(version_of(&stamped), "vigil 3.4.5-rc.1+ci.7");
    assert_eq!(version_of(&original), format!("vigil {BUILT}"));

    // The section is loaded at run time, so strip keeps it.
    let stripped = dir.join("vigil-stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&stamped)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(version_of(&stripped), "vigil 3.4.5-rc.1+ci.7");
    let (ok, err) = stamp("0.2.0", &stripped, &stripped);
    assert!(ok, "{err}");
    assert_eq!(version_of(&stripped), "vigil 0.2.0");
}

#[test]
fn the_script_refuses_what_is_not_a_short_semantic_version() {
    let dir = TempDir::new("stamp-bad");
    let input = dir.join("vigil");
    std::fs::copy(binary(), &input).unwrap();
    let long = format!("1.0.0-{}", "a".repeat(58));
    for bad in ["1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3 ", long.as_str()] {
        let out = dir.join("out");
        let (ok, err) = stamp(bad, &input, &out);
        assert!(!ok, "'{bad}' was stamped");
        assert!(err.contains("error"), "'{bad}': {err}");
        assert!(!out.exists(), "'{bad}' left an output");
    }
}

#[test]
fn a_section_that_is_not_a_version_leaves_the_built_one() {
    let dir = TempDir::new("stamp-raw");
    let input = dir.join("vigil");
    std::fs::copy(binary(), &input).unwrap();
    let raw = dir.join("section");
    let mut bytes = b"not a version".to_vec();
    bytes.resize(64, 0);
    std::fs::write(&raw, bytes).unwrap();
    let output = dir.join("vigil-raw");
    let st = Command::new("objcopy")
        .arg(format!("--update-section=.vigil_version={}", raw.display()))
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(version_of(&output), format!("vigil {BUILT}"));
}
