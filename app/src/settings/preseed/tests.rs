//! The preseed's parser and its merge into a configuration: every mistake
//! named by key and line of the preseed, and the password never shown.

use super::*;

const CURRENT: &str = "# the box\nmemory_limit = \"768MiB\"\n\n[[camera]]\nname = \"sample\"\nurl = \"/x/sample.mp4\"\n\n# kept\n[events]\nqueue = 64\n";
const PASSWORD: &str = "correct-horse-battery";

fn parse(text: &str) -> Result<Preseed, ConfigErrors> {
    Preseed::parse(text, "vigil-setup.toml")
}

fn only(e: ConfigErrors) -> ConfigError {
    assert_eq!(e.0.len(), 1, "{e}");
    e.0.into_iter().next().unwrap()
}

#[test]
fn a_password_and_cameras_are_read_and_merged_verbatim() {
    let text = format!(
        "\u{feff}# written on a PC\r\nadmin_password = \"{PASSWORD}\"\r\n\r\n[[camera]]\r\nname = \"door\"\r\nurl = \"rtsp://u:campass@10.0.0.5/s\"\r\n# the yard\r\n[[camera]]\r\nname = \"yard\"\r\nurl = \"rtsp://10.0.0.6/s\"\r\ndetect_fps = 2\r\n"
    );
    let p = parse(&text).unwrap();
    assert_eq!(p.password().unwrap().expose(), PASSWORD);
    assert_eq!(p.password().unwrap().line(), 2);
    assert_eq!(p.camera_count(), Some(2));
    assert_eq!(p.cameras_line(), Some(4));
    let m = p.merge(CURRENT, "config.toml").unwrap();
    let config = m.parse().unwrap();
    let names: Vec<&str> = config.cameras.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["door", "yard"], "{}", m.text);
    assert_eq!(config.events.queue, 64, "the rest is kept");
    assert!(m.text.contains("# kept\n[events]") && m.text.contains("# the yard"));
    assert!(!m.text.contains("sample") && !m.text.contains(PASSWORD));
    // Never shown by Debug.
    let shown = format!("{p:?} {m:?}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains("campass"),
        "{shown}"
    );
}

#[test]
fn no_cameras_leaves_the_configuration_as_it_is() {
    let p = parse(&format!("admin_password = '{PASSWORD}'\n")).unwrap();
    assert_eq!(p.camera_count(), None);
    let m = p.merge(CURRENT, "config.toml").unwrap();
    assert_eq!(m.text, CURRENT);
    assert!(parse("").unwrap().password().is_none());
}

#[test]
fn camera_mistakes_are_named_by_key_and_preseed_line() {
    let text = "admin_password = \"long-enough-pw\"\n\n[[camera]]\nname = \"door\"\nurl = \"rtsp://10.0.0.5/s\"\n\n[[camera]]\nname = \"yard\"\ndetect_fps = 2\n[[camera]]\nname = \"gate\"\nurl = \"rtsp://10.0.0.7/s\"\nbogus = 1\n";
    let p = parse(text).unwrap();
    let m = p.merge(CURRENT, "config.toml").unwrap();
    let e = m.parse().unwrap_err();
    // An unknown key stops the parser: it is the first error.
    let bad = only(e);
    assert_eq!(bad.file, "vigil-setup.toml");
    assert!(bad.key.starts_with("camera[2]"), "{bad}");
    assert!(bad.message.contains("bogus"), "{bad}");
    assert_eq!(bad.line, Some(13), "{bad}");
    let text = text.replace("bogus = 1\n", "");
    let p = parse(&text).unwrap();
    let e = only(
        p.merge(CURRENT, "config.toml")
            .unwrap()
            .parse()
            .unwrap_err(),
    );
    assert_eq!(e.key, "camera[1].url", "{e}");
    assert_eq!(e.file, "vigil-setup.toml");
    assert!(matches!(e.line, Some(7) | Some(8)), "{e}");
    assert!(e.to_string().starts_with("vigil-setup.toml:"), "{e}");
    // A value out of range: its own line.
    let text = text.replace("detect_fps = 2", "url = \"rtsp://h/s\"\ndetect_fps = 500");
    let p = parse(&text).unwrap();
    let e = only(
        p.merge(CURRENT, "config.toml")
            .unwrap()
            .parse()
            .unwrap_err(),
    );
    assert_eq!(e.key, "camera[1].detect_fps", "{e}");
    assert_eq!(e.line, Some(10), "{e}");
}

#[test]
fn other_keys_and_misplaced_values_are_refused_with_their_line() {
    let e = parse("admin_password = \"long-enough-pw\"\nmemory_limit = \"1GiB\"\n").unwrap_err();
    let e = only(e);
    assert_eq!((e.key.as_str(), e.line), ("memory_limit", Some(2)), "{e}");
    let e = only(parse("\n[web]\nhostnames = [\"a\"]\n").unwrap_err());
    assert_eq!((e.key.as_str(), e.line), ("web", Some(2)), "{e}");
    let e = only(parse("admin_password = 12345678\n").unwrap_err());
    assert_eq!((e.key.as_str(), e.line), ("admin_password", Some(1)), "{e}");
    let e = only(parse("camera = [{ url = \"rtsp://h/s\" }]\n").unwrap_err());
    assert_eq!(e.key, "camera", "{e}");
    let e = only(
        parse(&format!(
            "[[camera]]\nurl = \"rtsp://h/s\"\nadmin_password = \"{PASSWORD}\"\n"
        ))
        .unwrap_err(),
    );
    assert_eq!(
        (e.key.as_str(), e.line),
        ("camera[0].admin_password", Some(3)),
        "{e}"
    );
    assert!(!e.to_string().contains(PASSWORD));
}

#[test]
fn syntax_errors_are_located_without_quoting_the_line() {
    let e = only(parse(&format!("admin_password = \"{PASSWORD}\n[[camera]]\n")).unwrap_err());
    assert_eq!(e.line, Some(1), "{e}");
    assert!(!format!("{e} {e:?}").contains(PASSWORD), "{e}");
}

#[test]
fn secrets_of_cameras_are_kept_out_of_errors() {
    let text = "[[camera]]\nname = \"door\"\nurl = \"rtsps://admin:campass99@10.0.0.5/s\"\npassword = \"otherpass77\"\n";
    let p = parse(text).unwrap();
    let e = p
        .merge(CURRENT, "config.toml")
        .unwrap()
        .parse()
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("rtsps"), "{shown}");
    assert!(!shown.contains("campass99"), "{shown}");
    assert!(!p
        .error(None, "x", "otherpass77 here")
        .message
        .contains("otherpass77"));
}

#[test]
fn too_large_or_unreadable_files_are_refused() {
    let dir = crate::test_dir::TempDir::new("preseed");
    let big = dir.0.join("big.toml");
    std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES + 1)).unwrap();
    assert!(matches!(
        Preseed::read(&big),
        Err(PreseedError::TooLarge { .. })
    ));
    let e = Preseed::read(&dir.0.join("absent.toml")).unwrap_err();
    assert!(matches!(e, PreseedError::Read { .. }));
    assert!(e.to_string().contains("absent.toml"), "{e}");
}
