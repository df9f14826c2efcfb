//! Secrets in a configuration text: hidden when it leaves the box, kept when
//! a hidden one comes back.
//!
//! The page and the export show the file as written, comments included
//! (`toml_edit` keeps them), except the secrets: passwords, the HTTP
//! upstream's extra header, the metrics token ([`HIDDEN`]) and the user
//! information and query values of URLs ([`redact_url`]). A text coming back
//! from the page or an import may still carry those placeholders, meaning
//! "unchanged": [`restore`] puts the current value back at the same place.
//! The same place is the same key path, with cameras (and other arrays of
//! tables) matched by `name` rather than position, so removing the first
//! camera does not hand its password to the second.

use crate::config::{redact_url, HIDDEN};
use std::collections::HashMap;
use toml_edit::{DocumentMut, Item, TableLike, Value};

/// Keys whose whole value is a secret.
const SECRET_KEYS: [&str; 3] = ["password", "header", "metrics_token"];

/// `text` with every secret hidden; `None` when it is not TOML at all (the
/// caller then shows nothing rather than something unredacted).
pub fn redact(text: &str) -> Option<String> {
    let mut doc: DocumentMut = text.parse().ok()?;
    walk(doc.as_table_mut(), "", &mut |_, key, value| {
        let Some(s) = value.as_str() else { return };
        let shown = if SECRET_KEYS.contains(&key) {
            HIDDEN.to_owned()
        } else if key == "url" {
            redact_url(s)
        } else {
            return;
        };
        if shown != s {
            replace(value, &shown);
        }
    });
    Some(doc.to_string())
}

/// `text` with each hidden secret replaced by the value at the same key path
/// in `current` (the file now). A placeholder with nothing to restore stays,
/// and the parser or the camera then says what is wrong with it. Not TOML:
/// returned unchanged, for the parser to locate the mistake.
pub fn restore(text: &str, current: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return text.to_owned();
    };
    let mut old: HashMap<String, String> = HashMap::new();
    if let Ok(mut cur) = current.parse::<DocumentMut>() {
        walk(cur.as_table_mut(), "", &mut |path, key, value| {
            if SECRET_KEYS.contains(&key) || key == "url" {
                if let Some(s) = value.as_str() {
                    old.insert(path.to_owned(), s.to_owned());
                }
            }
        });
    }
    let mut changed = false;
    walk(doc.as_table_mut(), "", &mut |path, key, value| {
        let (Some(s), Some(was)) = (value.as_str(), old.get(path)) else {
            return;
        };
        let hidden = if key == "url" {
            s != was && s == redact_url(was)
        } else {
            SECRET_KEYS.contains(&key) && s == HIDDEN
        };
        if hidden {
            replace(value, was);
            changed = true;
        }
    });
    if changed {
        doc.to_string()
    } else {
        text.to_owned()
    }
}

/// Whether `key` (the last part of a path) holds a secret, for the change
/// log: its old and new values are never written.
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// Sets a string value, keeping its surrounding whitespace and comments.
fn replace(value: &mut Value, with: &str) {
    let decor = value.decor().clone();
    *value = Value::from(with);
    *value.decor_mut() = decor;
}

/// Calls `f(path, key, value)` for every value that is not a table, with a
/// path like `upstream.mqtt.password` or `camera[front].url` (an element of
/// an array of tables is named by its `name`, else `#index`).
pub(super) fn walk(
    table: &mut dyn TableLike,
    prefix: &str,
    f: &mut dyn FnMut(&str, &str, &mut Value),
) {
    for (key, item) in table.iter_mut() {
        let key = key.get().to_owned();
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match item {
            Item::ArrayOfTables(tables) => {
                for (i, t) in tables.iter_mut().enumerate() {
                    let element = element(&path, t.get("name").and_then(Item::as_str), i);
                    walk(t, &element, f);
                }
            }
            Item::Value(Value::Array(values)) => {
                for (i, v) in values.iter_mut().enumerate() {
                    if let Value::InlineTable(t) = v {
                        let name = t.get("name").and_then(Value::as_str);
                        let element = element(&path, name, i);
                        walk(t, &element, f);
                    }
                }
            }
            Item::Value(Value::InlineTable(t)) => walk(t, &path, f),
            Item::Value(v) => f(&path, &key, v),
            Item::Table(t) => walk(t, &path, f),
            Item::None => {}
        }
    }
}

fn element(path: &str, name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) => format!("{path}[{name}]"),
        None => format!("{path}[#{index}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# the box
memory_limit = "512MiB"

[web]
metrics_token = "0123456789abcdef0123"   # Prometheus

[upstream.http]
url = "http://10.0.0.2/in?token=tok123"
header = "Authorization: Bearer abc"

[[camera]]
name = "front"
url = "rtsp://admin:pw1@10.0.0.5/stream"

[[camera]]
name = "yard"
url = "rtsp://10.0.0.6/stream"
username = "u"
password = "pw2"
"#;

    #[test]
    fn redaction_hides_every_secret_and_keeps_comments() {
        let shown = redact(FILE).unwrap();
        for secret in [
            "0123456789abcdef0123",
            "tok123",
            "abc",
            "pw1",
            "admin",
            "pw2",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in\n{shown}");
        }
        assert!(shown.contains("# the box") && shown.contains("# Prometheus"));
        assert!(
            shown.contains(r#"url = "rtsp://10.0.0.5/stream""#),
            "{shown}"
        );
        assert!(shown.contains(r#"username = "u""#));
    }

    #[test]
    fn restoring_puts_back_each_secret_at_its_place_by_camera_name() {
        // The page sends the redacted text back with the cameras swapped and
        // one new camera.
        let shown = redact(FILE).unwrap();
        let (head, cams) = shown.split_once("[[camera]]").unwrap();
        let (front, yard) = cams.split_once("[[camera]]").unwrap();
        let edited = format!(
            "{head}[[camera]]{yard}\n[[camera]]{front}\n[[camera]]\nname = \"new\"\nurl = \"rtsp://10.0.0.7/s\"\npassword = \"{HIDDEN}\"\n"
        );
        let back = restore(&edited, FILE);
        let config = crate::config::Config::parse(&back, "t").unwrap();
        let cam = |n: &str| config.cameras.iter().find(|c| c.name == n).unwrap();
        assert_eq!(cam("front").url, "rtsp://admin:pw1@10.0.0.5/stream");
        assert_eq!(cam("yard").password.as_deref(), Some("pw2"));
        // Nothing to restore from: the placeholder stays, visible to the user.
        assert_eq!(cam("new").password.as_deref(), Some(HIDDEN));
        assert_eq!(
            config.upstream.http.as_ref().unwrap().url,
            "http://10.0.0.2/in?token=tok123"
        );
        assert_eq!(
            config.web.metrics_token.as_deref(),
            Some("0123456789abcdef0123")
        );
        assert!(back.contains("# Prometheus"));
    }

    #[test]
    fn a_changed_secret_is_the_new_one_and_bad_toml_passes_through() {
        let edited = FILE.replace("pw2", "new-password");
        let back = restore(&redact(&edited).unwrap().replace(HIDDEN, "changed"), FILE);
        assert!(back.contains(r#"password = "changed""#), "{back}");
        assert_eq!(restore("not = [toml", FILE), "not = [toml");
        assert!(redact("not = [toml").is_none());
    }
}
