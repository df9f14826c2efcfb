//! The change log: what each save changed, when, and how it came.
//!
//! One JSON object per line in `<config>.log`: the time, how the change came
//! (`page`, `import`, `factory-reset`, ...) and the keys that changed with
//! their old and new values. Secrets are never written: a changed password
//! reads `(hidden)`, a URL is written as [`redact_url`] shows it. The file is
//! bounded: past [`MAX_LOG_BYTES`] it is rewritten with its newer half, and
//! an entry lists at most [`MAX_CHANGES`] keys (then how many more), each
//! value cut at [`MAX_VALUE`] characters.

use super::secrets::{is_secret, walk};
use super::write_atomic;
use crate::config::redact_url;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::Path;
use toml_edit::{DocumentMut, Value};

/// The log's size before it is halved.
pub const MAX_LOG_BYTES: usize = 128 << 10;
/// Keys listed per entry.
pub const MAX_CHANGES: usize = 64;
/// Characters kept of a value.
pub const MAX_VALUE: usize = 160;

/// One key that changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The key path: `detector.workers`, `camera[front].url`.
    pub key: String,
    /// The value before (`None`: it was not set).
    pub old: Option<String>,
    /// The value after (`None`: removed).
    pub new: Option<String>,
}

/// One save.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix seconds.
    pub time: u64,
    /// How the change came: `page`, `cameras`, `import`, `factory-reset`.
    pub via: String,
    /// The sections touched (`camera`, `upstream`, `general` for top-level keys).
    pub sections: Vec<String>,
    /// The keys that changed, at most [`MAX_CHANGES`].
    pub changes: Vec<Change>,
    /// Keys that changed beyond those listed.
    pub more: usize,
}

/// The differences between two configuration texts, key by key (secrets
/// hidden), sorted by key.
pub fn diff(old: &str, new: &str) -> Vec<Change> {
    let before = flatten(old);
    let after = flatten(new);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            let last = k.rsplit('.').next().unwrap_or(k);
            let show = |v: Option<&String>| {
                v.map(|v| {
                    if is_secret(last) {
                        "(hidden)".to_owned()
                    } else {
                        cut(v)
                    }
                })
            };
            Change {
                key: k.clone(),
                old: show(before.get(k)),
                new: show(after.get(k)),
            }
        })
        .collect()
}

/// An entry for the changes `changes`, at `time`.
pub fn entry(time: u64, via: &str, changes: Vec<Change>) -> Entry {
    let mut sections: Vec<String> = changes.iter().map(|c| section(&c.key)).collect();
    sections.sort();
    sections.dedup();
    let more = changes.len().saturating_sub(MAX_CHANGES);
    let mut changes = changes;
    changes.truncate(MAX_CHANGES);
    Entry {
        time,
        via: via.to_owned(),
        sections,
        changes,
        more,
    }
}

/// Appends `entry` to the log at `path`, halving the log first when it has
/// grown past [`MAX_LOG_BYTES`].
pub fn append(path: &Path, entry: &Entry) -> io::Result<()> {
    let mut line = serde_json::to_string(entry).map_err(io::Error::other)?;
    line.push('\n');
    let size = std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    if size + line.len() > MAX_LOG_BYTES {
        let text = read_bounded(path)?;
        let keep_from = text.len().saturating_sub(MAX_LOG_BYTES / 2);
        // Start at a line boundary.
        let start = text[keep_from..]
            .find('\n')
            .map_or(text.len(), |i| keep_from + i + 1);
        let mut kept = text[start..].to_owned();
        kept.push_str(&line);
        return write_atomic(path, kept.as_bytes());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// The last `n` entries, newest first; lines that do not read as an entry
/// (a torn last line) are skipped. A missing log has none.
pub fn last(path: &Path, n: usize) -> io::Result<Vec<Entry>> {
    let text = match read_bounded(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(n)
        .collect())
}

fn read_bounded(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(2 * MAX_LOG_BYTES as u64)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// `camera[front].url` -> `camera`; a top-level key -> `general`.
fn section(key: &str) -> String {
    match key.split_once('.') {
        Some((first, _)) => first.split('[').next().unwrap_or(first).to_owned(),
        None => "general".to_owned(),
    }
}

fn cut(v: &str) -> String {
    match v.char_indices().nth(MAX_VALUE) {
        Some((i, _)) => format!("{}...", &v[..i]),
        None => v.to_owned(),
    }
}

/// Every leaf value of a text by key path, as it reads without its
/// comments; a URL as it may be shown. Not TOML: nothing (a save never
/// gets that far).
fn flatten(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(mut doc) = text.parse::<DocumentMut>() {
        walk(doc.as_table_mut(), "", &mut |path, key, value| {
            let shown = match value.as_str() {
                Some(s) if key == "url" => redact_url(s),
                Some(s) => s.to_owned(),
                None => bare(value),
            };
            out.insert(path.to_owned(), shown);
        });
    }
    out
}

/// A value without the whitespace and comments around it (or its elements).
fn bare(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(bare).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => format!("{:?}", s.value()),
        other => {
            let mut v = other.clone();
            v.decor_mut().clear();
            v.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
memory_limit = "512MiB"
[detector]
workers = 1
[[camera]]
name = "front"
url = "rtsp://admin:pw@10.0.0.5/s"
classes = ["person", "car"]
password = "a"
"#;

    #[test]
    fn the_diff_names_keys_and_hides_secrets_and_credentials() {
        let new = OLD
            .replace("workers = 1", "workers = 2  # faster")
            .replace("password = \"a\"", "password = \"b\"")
            .replace("10.0.0.5", "10.0.0.9")
            .replace("[\"person\", \"car\"]", "[ \"person\",\"car\" ]")
            + "\n[[camera]]\nname = \"yard\"\nurl = \"rtsp://10.0.0.6/s\"\n";
        let changes = diff(OLD, &new);
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "camera[front].password",
                "camera[front].url",
                "camera[yard].name",
                "camera[yard].url",
                "detector.workers"
            ]
        );
        assert_eq!(changes[0].old.as_deref(), Some("(hidden)"));
        assert_eq!(changes[1].new.as_deref(), Some("rtsp://10.0.0.9/s"));
        assert_eq!(changes[2].old, None);
        assert_eq!(changes[4].new.as_deref(), Some("2"));
        let text = serde_json::to_string(&entry(1, "page", changes)).unwrap();
        assert!(!text.contains("pw") && !text.contains("admin"), "{text}");
        assert!(
            text.contains(r#""sections":["camera","detector"]"#),
            "{text}"
        );
    }

    #[test]
    fn the_log_is_read_newest_first_and_stays_bounded() {
        let dir = crate::test_dir::TempDir::new("changes-log");
        let path = dir.0.join("config.toml.log");
        assert!(last(&path, 5).unwrap().is_empty());
        let big = "x".repeat(MAX_VALUE * 2);
        for i in 0..2000u64 {
            let c = Change {
                key: format!("k{i}"),
                old: None,
                new: Some(cut(&big)),
            };
            append(&path, &entry(i, "page", vec![c])).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() as usize <= MAX_LOG_BYTES);
        }
        let got = last(&path, 3).unwrap();
        assert_eq!(
            got.iter().map(|e| e.time).collect::<Vec<_>>(),
            [1999, 1998, 1997]
        );
        // A torn last line is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\": 5, \"via")
            .unwrap();
        assert_eq!(last(&path, 1).unwrap()[0].time, 1999);
    }

    #[test]
    fn an_entry_lists_a_bounded_number_of_changes() {
        let changes: Vec<Change> = (0..MAX_CHANGES + 5)
            .map(|i| Change {
                key: format!("camera[c{i}].url"),
                old: None,
                new: Some("x".into()),
            })
            .collect();
        let e = entry(0, "import", changes);
        assert_eq!((e.changes.len(), e.more), (MAX_CHANGES, 5));
        assert_eq!(e.sections, ["camera"]);
    }
}
