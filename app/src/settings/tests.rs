use super::*;
use crate::test_dir::TempDir as TestDir;
use std::os::unix::fs::PermissionsExt;

const GOOD: &str =
    "memory_limit = \"600MiB\"\n[[camera]]\nname = \"a\"\nurl = \"rtsp://10.0.0.5/s\"\n";
const OTHER: &str = "memory_limit = \"700MiB\"\n";

fn file(dir: &TestDir, factory: Option<&str>) -> ConfigFile {
    let factory = factory.map(|text| {
        let p = dir.0.join("factory.toml");
        std::fs::write(&p, text).unwrap();
        p
    });
    ConfigFile {
        path: dir.0.join("data/config.toml"),
        factory,
    }
}

#[test]
fn a_missing_file_is_seeded_from_the_factory_default_private() {
    let dir = TestDir::new("settings-seed");
    let f = file(&dir, Some(GOOD));
    let loaded = f.load().unwrap();
    assert_eq!(loaded.text, GOOD);
    assert!(loaded.fallback.is_none());
    assert_eq!(loaded.config.memory_limit, 600 << 20);
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Seeded once: a changed file is not overwritten.
    f.save(OTHER).unwrap();
    assert_eq!(f.load().unwrap().text, OTHER);
}

#[test]
fn without_a_factory_a_missing_file_is_an_error_naming_it() {
    let dir = TestDir::new("settings-missing");
    let e = file(&dir, None).load().unwrap_err();
    assert!(e.to_string().contains("config.toml"), "{e}");
}

#[test]
fn a_broken_file_falls_back_on_the_last_good_one_and_says_why() {
    let dir = TestDir::new("settings-fallback");
    let f = file(&dir, Some(GOOD));
    f.load().unwrap();
    f.mark_good(GOOD).unwrap();
    std::fs::write(&f.path, "memory_limit = \"600MiB\"\n[[camera]]\nurl = 5\n").unwrap();
    let loaded = f.load().unwrap();
    assert_eq!(loaded.text, GOOD);
    let why = loaded.fallback.unwrap().to_string();
    assert!(
        why.contains("config.toml:3") && why.contains("camera[0].url"),
        "{why}"
    );
    // The broken file is left for its owner to see.
    assert!(std::fs::read_to_string(&f.path)
        .unwrap()
        .contains("url = 5"));
    // No good one: the file's own errors.
    std::fs::remove_file(f.sibling(".good")).unwrap();
    assert!(f.load().unwrap_err().to_string().contains("camera[0].url"));
}

#[test]
fn saving_validates_first_and_keeps_the_previous_file() {
    let dir = TestDir::new("settings-save");
    let f = file(&dir, Some(GOOD));
    f.load().unwrap();
    match f.save("memory_limit = \"lots\"\n") {
        Err(SettingsError::Invalid(e)) => assert_eq!(e.0[0].key, "memory_limit"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.read().unwrap(), GOOD, "an invalid text changes nothing");
    f.save(OTHER).unwrap();
    assert_eq!(f.read().unwrap(), OTHER);
    assert_eq!(std::fs::read_to_string(f.sibling(".prev")).unwrap(), GOOD);
    let leftovers: Vec<_> = std::fs::read_dir(f.path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn oversized_texts_are_refused_before_parsing() {
    let dir = TestDir::new("settings-big");
    let f = file(&dir, Some(GOOD));
    let big = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    assert!(matches!(f.save(&big), Err(SettingsError::TooLarge { .. })));
    std::fs::create_dir_all(f.path.parent().unwrap()).unwrap();
    std::fs::write(&f.path, &big).unwrap();
    assert!(f.load().unwrap_err().to_string().contains("larger than"));
}

#[test]
fn the_factory_text_needs_a_factory() {
    let dir = TestDir::new("settings-factory");
    assert!(matches!(
        file(&dir, None).factory_text(),
        Err(SettingsError::NoFactory)
    ));
    assert_eq!(file(&dir, Some(GOOD)).factory_text().unwrap(), GOOD);
}
