//! The cameras form: the `[[camera]]` tables as the page lists and edits
//! them.
//!
//! The page sends the whole new camera list; [`with_cameras`] writes it into
//! the current text. A camera keeps its table (its other keys, such as pool
//! sizes or V4L2 settings, and its comments) when the form names it by its
//! old name (`was`); the form's fields replace theirs, and a field left
//! empty removes the key so the default applies. The result is validated
//! like any other text before it is saved: this file only edits.

use super::secrets;
use crate::config::{redact_url, HIDDEN};
use serde::{Deserialize, Serialize};
use toml_edit::{
    value, Array, ArrayOfTables, DocumentMut, Item, Table, TableLike, TomlError, Value,
};

/// One camera as the form sends it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraForm {
    /// Its name before this edit; `None` for a new camera.
    #[serde(default)]
    pub was: Option<String>,
    /// Its name.
    pub name: String,
    /// `rtsp://...`, a file, or `v4l:///dev/videoN`.
    pub url: String,
    /// RTSP user name (`None`: none).
    #[serde(default)]
    pub username: Option<String>,
    /// `None` or [`HIDDEN`]: the stored one stays; `""`: none.
    #[serde(default)]
    pub password: Option<String>,
    /// Whether it runs.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Detections per second (`None`: the default).
    #[serde(default)]
    pub detect_fps: Option<f64>,
    /// Classes that raise events (`None`: the default list).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Minimum score (`None`: the default).
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Largest picture, `WxH` (`None`: the default).
    #[serde(default)]
    pub max_resolution: Option<String>,
}

fn enabled() -> bool {
    true
}

/// One camera as the page lists it: no secret, the URL as it may be shown.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CameraView {
    /// Its name (`camera-N` when the file gives none).
    pub name: String,
    /// The URL without credentials or query values.
    pub url: String,
    /// RTSP user name.
    pub username: Option<String>,
    /// Whether a password is stored.
    pub password_set: bool,
    /// Whether it runs.
    pub enabled: bool,
    /// Detections per second, if set.
    pub detect_fps: Option<f64>,
    /// Classes, if set.
    pub classes: Option<Vec<String>>,
    /// Minimum score, if set.
    pub min_score: Option<f64>,
    /// Largest picture, if set.
    pub max_resolution: Option<String>,
}

/// The cameras of `text` in file order (none when it is not TOML).
pub fn list(text: &str) -> Vec<CameraView> {
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return Vec::new();
    };
    tables(&doc)
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_owned);
            let f = |k: &str| {
                t.get(k)
                    .and_then(|v| v.as_float().or(v.as_integer().map(|n| n as f64)))
            };
            let url = match (s("url"), s("device")) {
                (Some(u), _) => redact_url(&u),
                (None, Some(d)) => format!("v4l://{d}"),
                (None, None) => String::new(),
            };
            CameraView {
                name: s("name").unwrap_or_else(|| default_name(i)),
                url,
                username: s("username"),
                password_set: t.contains_key("password"),
                enabled: t.get("enabled").and_then(Item::as_bool).unwrap_or(true),
                detect_fps: f("detect_fps"),
                classes: t.get("classes").and_then(Item::as_array).map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                }),
                min_score: f("min_score"),
                max_resolution: s("max_resolution"),
            }
        })
        .collect()
}

/// `current` with its cameras replaced by `forms`, in that order. Secrets
/// the form leaves hidden stay as they are in `current`.
pub fn with_cameras(current: &str, forms: &[CameraForm]) -> Result<String, TomlError> {
    let mut doc: DocumentMut = current.parse()?;
    let mut old: Vec<Option<Table>> = tables(&doc).into_iter().map(Some).collect();
    let names: Vec<String> = old
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.as_ref()
                .and_then(|t| t.get("name").and_then(Item::as_str))
                .map_or_else(|| default_name(i), str::to_owned)
        })
        .collect();
    doc.remove("camera");
    // Tables print in the order of their position in the file they came
    // from; the cameras go after everything else, in the form's order.
    let first = last_position(&doc) + 1;
    let mut out = ArrayOfTables::new();
    for (position, form) in (first..).zip(forms) {
        let existing = form
            .was
            .as_ref()
            .and_then(|was| names.iter().position(|n| n == was))
            .and_then(|i| old[i].take());
        let mut t = existing.unwrap_or_default();
        t.set_implicit(false);
        t.set_position(Some(position));
        set_str(&mut t, "name", Some(&form.name));
        let device = t.get("device").and_then(Item::as_str).map(str::to_owned);
        match device {
            Some(d) if form.url == format!("v4l://{d}") => {}
            _ => {
                t.remove("device");
                let shown = t.get("url").and_then(Item::as_str).map(redact_url);
                // The URL as listed (credentials removed) means unchanged.
                if shown.as_deref() != Some(form.url.as_str()) {
                    set_str(&mut t, "url", Some(&form.url));
                }
            }
        }
        set_str(
            &mut t,
            "username",
            form.username.as_deref().filter(|u| !u.is_empty()),
        );
        match form.password.as_deref() {
            None | Some(HIDDEN) => {}
            Some("") => {
                t.remove("password");
            }
            Some(p) => set_str(&mut t, "password", Some(p)),
        }
        if form.enabled {
            t.remove("enabled");
        } else {
            set(&mut t, "enabled", Some(value(false)));
        }
        set_num(&mut t, "detect_fps", form.detect_fps);
        set(
            &mut t,
            "classes",
            form.classes
                .as_ref()
                .map(|c| value(c.iter().map(String::as_str).collect::<Array>())),
        );
        set_num(&mut t, "min_score", form.min_score);
        set_str(&mut t, "max_resolution", form.max_resolution.as_deref());
        out.push(t);
    }
    if !out.is_empty() {
        doc.insert("camera", Item::ArrayOfTables(out));
    }
    Ok(secrets::restore(&doc.to_string(), current))
}

/// The `url` of camera `index` in `text` as written (credentials and all),
/// for hiding it in messages.
pub(super) fn raw_url(text: &str, index: usize) -> Option<String> {
    let doc = text.parse::<DocumentMut>().ok()?;
    let t = tables(&doc).into_iter().nth(index)?;
    t.get("url").and_then(Item::as_str).map(str::to_owned)
}

/// The largest position of a table in `doc` (0 when none has one).
fn last_position(doc: &DocumentMut) -> isize {
    fn of(t: &Table) -> isize {
        let inner = t.iter().map(|(_, item)| match item {
            Item::Table(t) => of(t),
            Item::ArrayOfTables(a) => a.iter().map(of).max().unwrap_or(0),
            _ => 0,
        });
        inner.max().unwrap_or(0).max(t.position().unwrap_or(0))
    }
    of(doc.as_table())
}

fn default_name(i: usize) -> String {
    format!("camera-{}", i + 1)
}

/// The `[[camera]]` tables, or `camera = [{...}]` inline ones as tables.
fn tables(doc: &DocumentMut) -> Vec<Table> {
    match doc.get("camera") {
        Some(Item::ArrayOfTables(a)) => a.iter().cloned().collect(),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_inline_table().cloned().map(|t| t.into_table()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Sets or (`None`) removes `key`, keeping a comment after its old value.
pub(super) fn set(t: &mut dyn TableLike, key: &str, v: Option<Item>) {
    match v {
        Some(v) => {
            let decor = t
                .get(key)
                .and_then(Item::as_value)
                .map(|old| old.decor().clone());
            t.insert(key, v);
            if let (Some(decor), Some(new)) = (decor, t.get_mut(key).and_then(Item::as_value_mut)) {
                *new.decor_mut() = decor;
            }
        }
        None => {
            t.remove(key);
        }
    }
}

/// A number from the form: an equal value stays as written (`2` is not
/// rewritten `2.0`, which the page would list as a change and apply).
fn set_num(t: &mut Table, key: &str, v: Option<f64>) {
    let old = t
        .get(key)
        .and_then(|o| o.as_float().or(o.as_integer().map(|n| n as f64)));
    if v.is_some() && old == v {
        return;
    }
    set(t, key, v.map(value));
}

fn set_str(t: &mut Table, key: &str, v: Option<&str>) {
    set(t, key, v.map(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const FILE: &str = r#"memory_limit = "768MiB"

# the door
[[camera]]
name = "front"
url = "rtsp://admin:pw1@10.0.0.5/stream"
frame_pool = 6   # six
detect_fps = 2

[[camera]]
url = "rtsp://10.0.0.6/stream"
password = "pw2"
"#;

    fn form(was: Option<&str>, name: &str, url: &str) -> CameraForm {
        CameraForm {
            was: was.map(str::to_owned),
            name: name.into(),
            url: url.into(),
            username: None,
            password: None,
            enabled: true,
            detect_fps: None,
            classes: None,
            min_score: None,
            max_resolution: None,
        }
    }

    #[test]
    fn listing_shows_no_secret_and_names_unnamed_cameras() {
        let cams = list(FILE);
        assert_eq!(cams.len(), 2);
        assert_eq!(cams[0].url, "rtsp://10.0.0.5/stream");
        assert_eq!(cams[0].detect_fps, Some(2.0));
        assert_eq!(cams[1].name, "camera-2");
        assert!(cams[1].password_set && !cams[0].password_set);
        let json = serde_json::to_string(&cams).unwrap();
        assert!(!json.contains("pw") && !json.contains("admin"), "{json}");
    }

    #[test]
    fn an_edit_keeps_other_keys_comments_and_secrets() {
        let mut front = form(Some("front"), "door", "rtsp://10.0.0.5/stream");
        front.enabled = false;
        front.classes = Some(vec!["person".into()]);
        let mut second = form(Some("camera-2"), "yard", "rtsp://10.0.0.6/stream");
        second.password = Some(HIDDEN.into());
        let added = form(None, "gate", "rtsp://10.0.0.7/s");
        let text = with_cameras(FILE, &[second, front, added]).unwrap();
        assert!(
            text.contains("# the door") && text.contains("# six"),
            "{text}"
        );
        let file_cams = list(&text);
        assert_eq!(
            file_cams
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["yard", "door", "gate"]
        );
        let config = Config::parse(&text, "t").unwrap();
        // The disabled camera is validated but does not run.
        assert_eq!(
            config
                .cameras
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["yard", "gate"]
        );
        assert_eq!(config.cameras[0].password.as_deref(), Some("pw2"));
        assert!(text.contains("rtsp://admin:pw1@10.0.0.5/stream"), "{text}");
        assert!(text.contains("frame_pool = 6"));
        // detect_fps was removed from the form: the default applies.
        assert!(!text.contains("detect_fps"), "{text}");
    }

    #[test]
    fn the_listed_cameras_sent_back_unchanged_leave_the_file_as_it_was() {
        let back: Vec<CameraForm> = list(FILE)
            .iter()
            .map(|c| {
                let mut f = form(Some(&c.name), &c.name, &c.url);
                f.password = Some(HIDDEN.into());
                f.detect_fps = c.detect_fps;
                f
            })
            .collect();
        let text = with_cameras(FILE, &back).unwrap();
        assert!(text.contains("detect_fps = 2\n"), "{text}");
        let mut faster = back[0].clone();
        faster.detect_fps = Some(2.5);
        let text = with_cameras(FILE, &[faster]).unwrap();
        assert!(text.contains("detect_fps = 2.5"), "{text}");
    }

    #[test]
    fn removing_a_camera_and_changing_secrets() {
        let mut yard = form(Some("camera-2"), "yard", "rtsp://u:new@10.0.0.9/s");
        yard.password = Some(String::new());
        let text = with_cameras(FILE, &[yard]).unwrap();
        let config = Config::parse(&text, "t").unwrap();
        assert_eq!(config.cameras.len(), 1);
        assert_eq!(config.cameras[0].url, "rtsp://u:new@10.0.0.9/s");
        assert_eq!(config.cameras[0].password, None);
        assert!(!text.contains("front") && !text.contains("pw1"));
        let none = with_cameras(FILE, &[]).unwrap();
        assert!(Config::parse(&none, "t").unwrap().cameras.is_empty());
    }
}
