//! `vigil detect IMAGE...` with the real SSD-MobileNetV2 model.

use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::run_to_end;

const DOG: &str = "/usr/share/darknet/data/dog.jpg";

#[test]
fn dog_jpg_shows_a_bicycle_a_dog_and_a_car() {
    assert!(
        std::path::Path::new(DOG).exists(),
        "{DOG} missing: run `make deps`"
    );
    let (code, out, err) = run_to_end(&["detect", DOG]);
    assert_eq!(code, 0, "{err}");
    let mut classes = Vec::new();
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["image"], DOG);
        let score = v["score"].as_f64().unwrap();
        assert!((0.3..=1.0).contains(&score), "{line}");
        let b: Vec<f64> = v["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        // dog.jpg is 768x576.
        assert!(
            0.0 <= b[0]
                && b[0] < b[2]
                && b[2] <= 768.0
                && 0.0 <= b[1]
                && b[1] < b[3]
                && b[3] <= 576.0,
            "{line}"
        );
        classes.push(v["class"].as_str().unwrap().to_owned());
    }
    for want in ["bicycle", "dog", "car"] {
        assert!(
            classes.iter().any(|c| c == want),
            "{want} not in {classes:?}\n{out}"
        );
    }
}

#[test]
fn a_bad_image_is_named_and_the_others_still_run() {
    let dir = TempDir::new("detect");
    let bad = dir.join("not-a.jpg");
    std::fs::write(&bad, b"GIF89a nonsense").unwrap();
    let (code, out, err) = run_to_end(&["detect", bad.to_str().unwrap(), DOG]);
    assert_eq!(code, 1, "one image failed: {out}\n{err}");
    assert!(err.contains("not-a.jpg"), "{err}");
    assert!(out.contains("\"dog\""), "the good image still ran: {out}");
}
