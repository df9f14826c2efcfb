//! The section forms: the common keys of the configuration's other tables
//! (detector, events, recording, store retention, upstreams, web, system
//! and network), edited
//! from the page without the TOML editor.
//!
//! [`SECTIONS`] is the whole list. It drives the page (each key's kind,
//! label and help line, the words of docs/config.md), and a key that is not
//! in it cannot be set through these forms: the editor remains for the
//! rest. A test writes every listed key, so the page never offers a key the
//! parser does not know.
//!
//! [`with_section`] writes a form's values into the text with `toml_edit`,
//! like the cameras form: other keys and comments stay, `null` removes a key
//! so its default applies, and a secret or URL sent back as the page was
//! shown it ([`HIDDEN`], a URL without its credentials) means "unchanged".
//! A table the edit leaves empty is removed: an empty `[upstream.mqtt]` would
//! be a broker without a URL. The result is validated like any other text
//! before it is saved: this file only edits.

use super::cameras;
use crate::config::{redact_url, HIDDEN};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value as Json};
use std::fmt;
use toml_edit::{DocumentMut, Item, Table, TableLike, TomlError, Value};

/// What a key holds, which decides the page's input and the TOML written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Bool,
    /// A string checked by the parser (a path, a name, `WxH`).
    Text,
    /// Bytes as an integer or a string with a unit (`"512MiB"`).
    Size,
    /// A string with a unit (`"10s"`).
    Duration,
    /// A list of strings.
    List,
    /// A string never shown: listed as [`HIDDEN`] when set.
    Secret,
    /// A URL, listed without credentials or query values.
    Url,
    /// One of a few spellings.
    Choice(&'static [&'static str]),
}

impl Kind {
    /// The page's name for it.
    fn name(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Bool => "bool",
            Kind::Text => "text",
            Kind::Size => "size",
            Kind::Duration => "duration",
            Kind::List => "list",
            Kind::Secret => "secret",
            Kind::Url => "url",
            Kind::Choice(_) => "choice",
        }
    }

    /// What a value of the wrong JSON type should have been.
    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "a whole number",
            Kind::Bool => "true or false",
            Kind::Size => "a size: bytes, or a string such as \"512MiB\"",
            Kind::List => "a list of strings",
            _ => "a string",
        }
    }
}

/// One editable key.
#[derive(Debug)]
pub struct Key {
    /// Its name in its table.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// The form's label.
    pub label: &'static str,
    /// One line of help (accepted values, the default).
    pub help: &'static str,
}

/// One table and its editable keys.
#[derive(Debug)]
pub struct Section {
    /// Its path, e.g. `upstream.http`.
    pub path: &'static str,
    /// The form's title.
    pub title: &'static str,
    /// Its keys, in the form's order.
    pub keys: &'static [Key],
}

const fn key(name: &'static str, kind: Kind, label: &'static str, help: &'static str) -> Key {
    Key {
        name,
        kind,
        label,
        help,
    }
}

use Kind::{Bool, Choice, Duration, Integer, List, Secret, Size, Text, Url};

/// Every key the section forms edit.
pub const SECTIONS: [Section; 10] = [
    Section {
        path: "detector",
        title: "Detector",
        keys: &[
            key("kind", Choice(&["ssd-mobilenet-v2", "yolov5", "yolov8", "yolox"]), "Model family",
                "ssd-mobilenet-v2 runs on the CPU; yolov5, yolov8 and yolox are .rknn models on the NPU (hardware backend)"),
            key("model", Text, "Model file", "default: ssd_mobilenet_v2_coco.pb in the model cache"),
            key("workers", Integer, "Workers", "inference threads shared by all cameras (1..16; default 1)"),
        ],
    },
    Section {
        path: "events",
        title: "Events",
        keys: &[
            key("ring_capacity", Integer, "Events in memory", "the oldest is evicted (default 1024)"),
            key("track_timeout", Duration, "Track timeout", "an object unseen this long has left; its return is a new event (default 5s)"),
            key("snapshot_pool", Integer, "Snapshot pool", "pictures waiting to be encoded (0..64; default 4)"),
            key("snapshot_size", Text, "Snapshot size", "largest snapshot, WxH; pictures are scaled down to fit (default 1280x720)"),
            key("snapshot_quality", Integer, "Snapshot quality", "JPEG quality (1..100; default 80)"),
            key("queue", Integer, "Queue", "events waiting for the events thread (1..4096; default 64)"),
        ],
    },
    Section {
        path: "record",
        title: "Recording",
        keys: &[
            key("enabled", Bool, "Record clips", "every event opens or extends its camera's clip (default on)"),
            key("pre_roll", Duration, "Pre-roll", "stream time before an event (0..60s; default 5s)"),
            key("post_roll", Duration, "Post-roll", "stream time after the clip's last event (0..300s; default 5s)"),
            key("max_length", Duration, "Longest clip", "1s..1h (default 60s)"),
            key("ring_size", Size, "Pre-roll ring", "compressed stream kept per camera (256KiB..1GiB; default 8MiB)"),
            key("upstream", Choice(&["link", "upload"]), "Clips to upstreams",
                "link: events carry the clip id; upload: finished clips are also sent (default link)"),
        ],
    },
    Section {
        path: "store",
        title: "Event store retention",
        keys: &[
            key("max_bytes", Size, "Largest store", "database and snapshots together (4MiB..1TiB; default 128MiB); the oldest events go first"),
            key("max_events", Integer, "Most events", "events kept at most (default 100000)"),
            key("max_age", Duration, "Oldest event", "events at least this old are deleted (1m..3650d, units ms s m h d; default 30d)"),
        ],
    },
    Section {
        path: "upstream",
        title: "Upstream delivery",
        keys: &[
            key("outbox_max_bytes", Size, "Outbox", "undelivered bytes kept per upstream (default: half of the store)"),
            key("retry_min", Duration, "First retry", "delay after a failure, doubling (default 1s)"),
            key("retry_max", Duration, "Longest retry", "default 60s"),
            key("timeout", Duration, "Timeout", "one delivery: connect and answer (default 10s)"),
            key("max_attempts", Integer, "Attempts", "an event the upstream refuses (HTTP 4xx) is given up after this many (default 5)"),
        ],
    },
    Section {
        path: "upstream.http",
        title: "HTTP upstream",
        keys: &[
            key("url", Url, "URL", "http://host:port/path (no TLS); empty: no HTTP upstream"),
            key("header", Secret, "Extra header", "sent on every request, e.g. Authorization: Bearer <token>"),
        ],
    },
    Section {
        path: "upstream.mqtt",
        title: "MQTT upstream",
        keys: &[
            key("url", Url, "Broker", "mqtt://host:1883 (no TLS); empty: no MQTT upstream"),
            key("topic_prefix", Text, "Topic prefix", "topics <prefix>/<camera>/event and .../snapshot (default vigil)"),
            key("client_id", Text, "Client id", "default vigil"),
            key("username", Text, "Username", "optional"),
            key("password", Secret, "Password", "optional"),
        ],
    },
    Section {
        path: "web",
        title: "Web",
        keys: &[
            key("hostnames", List, "Host names", "names the box answers to besides IP addresses and localhost, e.g. vigil.local"),
            key("public_status", Bool, "Public status", "status, /metrics, events and cameras open to anyone who reaches the port; snapshots and clips always need the login"),
            key("metrics_token", Secret, "Metrics token", "bearer token Prometheus sends for /metrics (16..256 visible ASCII characters)"),
        ],
    },
    Section {
        path: "system",
        title: "System",
        keys: &[
            key("hostname", Text, "Host name", "letters, digits and - (default: the image's, vigil)"),
            key("timezone", Text, "Time zone", "e.g. Europe/Berlin or America/New_York (common zones), or a POSIX TZ string (default UTC)"),
            key("ntp", List, "NTP servers", "up to 4 host names or addresses, with :port if not 123 (default: those DHCP offers, else pool.ntp.org)"),
        ],
    },
    Section {
        path: "system.network",
        title: "Network",
        keys: &[
            key("mode", Choice(&["dhcp", "static"]), "Address",
                "dhcp (default) or a static address; a new static address must be kept on the page at that address, or the box goes back to DHCP"),
            key("address", Text, "Static address", "IPv4 address/prefix, e.g. 192.168.1.50/24"),
            key("gateway", Text, "Gateway", "the router, in the address's subnet (optional)"),
            key("dns", List, "DNS servers", "up to 3 addresses, e.g. 192.168.1.1"),
            key("confirm_within", Duration, "Keep within", "how long a new static address waits to be kept before going back to DHCP (30s..1h; default 5m)"),
        ],
    },
];

/// Why a form's values cannot be written.
#[derive(Debug)]
pub enum SectionError {
    /// No such section in [`SECTIONS`].
    UnknownSection(String),
    /// The key (`section.key`) is not one the forms edit.
    UnknownKey(String),
    /// The value of `key` has the wrong JSON type.
    WrongType {
        /// `section.key`.
        key: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// The file has `path` as something other than a table (`web = 5`).
    NotATable(String),
    /// The current file is not TOML.
    Syntax(TomlError),
}

impl SectionError {
    /// The key path the problem is at (empty for a syntax error).
    pub fn key(&self) -> &str {
        match self {
            SectionError::UnknownSection(k)
            | SectionError::UnknownKey(k)
            | SectionError::WrongType { key: k, .. }
            | SectionError::NotATable(k) => k,
            SectionError::Syntax(_) => "",
        }
    }
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionError::UnknownSection(s) => write!(f, "`{s}` is not a section the forms edit"),
            SectionError::UnknownKey(k) => {
                write!(
                    f,
                    "`{k}` is not a key the forms edit; use the configuration file"
                )
            }
            SectionError::WrongType { key, expected } => write!(f, "`{key}` must be {expected}"),
            SectionError::NotATable(p) => write!(f, "`{p}` in the file is not a table"),
            SectionError::Syntax(e) => write!(f, "the current file is not TOML: {}", e.message()),
        }
    }
}

impl std::error::Error for SectionError {}

/// `current` with the keys of `section` set to `values` (`null`: removed).
pub fn with_section(
    current: &str,
    section: &str,
    values: &Map<String, Json>,
) -> Result<String, SectionError> {
    let s = SECTIONS
        .iter()
        .find(|s| s.path == section)
        .ok_or_else(|| SectionError::UnknownSection(section.to_owned()))?;
    let edits = values
        .iter()
        .map(|(name, v)| {
            let key = s.keys.iter().find(|k| k.name == name);
            key.map(|k| (k, v))
                .ok_or_else(|| SectionError::UnknownKey(format!("{section}.{name}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc: DocumentMut = current.parse().map_err(SectionError::Syntax)?;
    let (table, created) = table_mut(&mut doc, section)?;
    let before = table.len();
    for (key, v) in edits {
        match edit(
            section,
            key,
            v,
            table.get(key.name).and_then(Item::as_value),
        )? {
            Edit::Keep => {}
            Edit::Remove => {
                table.remove(key.name);
            }
            Edit::Set(v) => cameras::set(table, key.name, Some(Item::Value(v))),
        }
    }
    if table.is_empty() && (created || before > 0) {
        prune(&mut doc, section);
    }
    Ok(doc.to_string())
}

/// What one form value does to its key.
enum Edit {
    /// Nothing: unchanged, or a hidden secret.
    Keep,
    /// The default applies.
    Remove,
    /// This value.
    Set(Value),
}

fn edit(section: &str, key: &Key, v: &Json, old: Option<&Value>) -> Result<Edit, SectionError> {
    if v.is_null() {
        return Ok(Edit::Remove);
    }
    // Unchanged values keep their spelling (quotes, number format).
    if old.is_some_and(|o| json(o) == *v) {
        return Ok(Edit::Keep);
    }
    let wrong = || SectionError::WrongType {
        key: format!("{section}.{}", key.name),
        expected: key.kind.expected(),
    };
    let value = match key.kind {
        Kind::Integer => Value::from(v.as_i64().ok_or_else(wrong)?),
        Kind::Bool => Value::from(v.as_bool().ok_or_else(wrong)?),
        Kind::Size => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Value::from(n),
            (None, Some(s)) => Value::from(s),
            (None, None) => return Err(wrong()),
        },
        Kind::List => {
            let items = v.as_array().ok_or_else(wrong)?;
            let strings = items.iter().map(Json::as_str).collect::<Option<Vec<_>>>();
            Value::Array(strings.ok_or_else(wrong)?.into_iter().collect())
        }
        Kind::Text | Kind::Duration | Kind::Secret | Kind::Url | Kind::Choice(_) => {
            let s = v.as_str().ok_or_else(wrong)?;
            let old = old.and_then(Value::as_str);
            let unchanged = match key.kind {
                // With nothing stored, a hidden secret still sets nothing.
                Kind::Secret => s == HIDDEN,
                Kind::Url => old.is_some_and(|o| redact_url(o) == s),
                _ => false,
            };
            if unchanged {
                return Ok(Edit::Keep);
            }
            Value::from(s)
        }
    };
    Ok(Edit::Set(value))
}

/// The table at `path`, created (implicit until it has keys) when missing,
/// and whether it was created.
fn table_mut<'d>(
    doc: &'d mut DocumentMut,
    path: &str,
) -> Result<(&'d mut dyn TableLike, bool), SectionError> {
    let top = path.split('.').next().unwrap_or(path);
    let mut created = false;
    if !doc.contains_key(top) {
        // New tables go before the cameras, which end the file.
        let cams = doc.as_table_mut().remove_entry("camera");
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert(top, Item::Table(t));
        if let Some((k, cams)) = cams {
            doc.as_table_mut().insert_formatted(&k, cams);
        }
        created = true;
    }
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    let mut at = String::new();
    for part in path.split('.') {
        at = if at.is_empty() {
            part.to_owned()
        } else {
            format!("{at}.{part}")
        };
        if !table.contains_key(part) {
            let mut t = Table::new();
            t.set_implicit(true);
            table.insert(part, Item::Table(t));
            created = true;
        }
        table = table
            .get_mut(part)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| SectionError::NotATable(at.clone()))?;
    }
    Ok((table, created))
}

/// Removes the empty table at `path`, and the implicit tables above it that
/// it leaves empty.
fn prune(doc: &mut DocumentMut, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    for depth in (1..=parts.len()).rev() {
        let Some(parent) = lookup_mut(doc.as_table_mut(), &parts[..depth - 1]) else {
            return;
        };
        let leaf = parts[depth - 1];
        let Some(item) = parent.get(leaf) else { return };
        let removable = item.as_table_like().is_some_and(|t| t.is_empty())
            && (depth == parts.len() || item.as_table().is_some_and(Table::is_implicit));
        if !removable {
            return;
        }
        parent.remove(leaf);
    }
}

fn lookup_mut<'t>(
    mut table: &'t mut dyn TableLike,
    parts: &[&str],
) -> Option<&'t mut dyn TableLike> {
    for part in parts {
        table = table.get_mut(part)?.as_table_like_mut()?;
    }
    Some(table)
}

fn lookup<'t>(mut table: &'t dyn TableLike, path: &str) -> Option<&'t dyn TableLike> {
    for part in path.split('.') {
        table = table.get(part)?.as_table_like()?;
    }
    Some(table)
}

/// A TOML value as the page reads it.
fn json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::from(s.value().as_str()),
        Value::Integer(i) => Json::from(*i.value()),
        Value::Float(f) => Json::from(*f.value()),
        Value::Boolean(b) => Json::from(*b.value()),
        Value::Array(a) => Json::Array(a.iter().map(json).collect()),
        other => Json::from(other.to_string().trim()),
    }
}

/// The section forms with the values of a file: per section (in
/// [`SECTIONS`] order, as a JSON object), its title and its keys, each with
/// its schema and value (`null`: unset, the default applies).
#[derive(Debug)]
pub struct Listing(Vec<(&'static str, SectionView)>);

/// One section of a [`Listing`].
#[derive(Debug, serde::Serialize)]
pub struct SectionView {
    /// The form's title.
    pub title: &'static str,
    /// Its keys.
    pub keys: Vec<KeyView>,
}

/// One key of a [`SectionView`].
#[derive(Debug, serde::Serialize)]
pub struct KeyView {
    /// Its name.
    pub key: &'static str,
    /// The form's label.
    pub label: &'static str,
    /// [`Kind`]'s name.
    pub kind: &'static str,
    /// The spellings of a choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<&'static [&'static str]>,
    /// One line of help.
    pub help: &'static str,
    /// The value in the file: a secret as [`HIDDEN`], a URL without its
    /// credentials.
    pub value: Json,
}

impl Serialize for Listing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (path, section) in &self.0 {
            map.serialize_entry(path, section)?;
        }
        map.end()
    }
}

/// The forms with the values of `text` (all unset when it is not TOML).
pub fn list(text: &str) -> Listing {
    let doc = text.parse::<DocumentMut>().ok();
    let sections = SECTIONS.iter().map(|s| {
        let table = doc.as_ref().and_then(|d| lookup(d.as_table(), s.path));
        let keys = s.keys.iter().map(|k| {
            let value = table.and_then(|t| t.get(k.name)).and_then(Item::as_value);
            KeyView {
                key: k.name,
                label: k.label,
                kind: k.kind.name(),
                options: match k.kind {
                    Kind::Choice(options) => Some(options),
                    _ => None,
                },
                help: k.help,
                value: value.map_or(Json::Null, |v| shown(k.kind, v)),
            }
        });
        let view = SectionView {
            title: s.title,
            keys: keys.collect(),
        };
        (s.path, view)
    });
    Listing(sections.collect())
}

/// A value as the page may see it.
fn shown(kind: Kind, v: &Value) -> Json {
    match (kind, v.as_str()) {
        (Kind::Secret, _) => Json::from(HIDDEN),
        (Kind::Url, Some(url)) => Json::from(redact_url(url)),
        _ => json(v),
    }
}

#[cfg(test)]
mod tests;
