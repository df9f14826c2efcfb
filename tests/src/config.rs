//! A typed builder for the TOML configuration a system test gives vigil:
//! top-level keys, the `[detector]`, `[web]`, `[events]`, `[store]`,
//! `[upstream]` (with `[upstream.http]` and `[upstream.mqtt]`),
//! `[record]` and `[hardware]` tables, and `[[camera]]` entries.
//!
//! Every test used to format its own TOML; one writer quotes strings the
//! same way everywhere (paths with quotes or backslashes included) and puts
//! top-level keys before the first table, as TOML requires. Tests that check
//! how vigil reports a *broken* file write that text themselves: the point
//! there is the exact bytes and line numbers.

use crate::process::Vigil;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The SSD-MobileNetV2 model `make model` fetches (relative to the cache).
pub const SSD_MODEL: &str = "models/ssd_mobilenet_v2_coco.pb";

/// The looping sample clip `make sample` fetches (relative to the cache).
pub const SAMPLE_CLIP: &str = "media/bikes.mp4";

/// The cached SSD model's path (fails the test when absent).
pub fn ssd_model() -> PathBuf {
    crate::process::cached(SSD_MODEL)
}

/// The cached sample clip's path (fails the test when absent).
pub fn sample_clip() -> PathBuf {
    crate::process::cached(SAMPLE_CLIP)
}

/// A TOML value of the kinds vigil's configuration uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A basic string (durations, sizes, URLs and paths are strings).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// An array of strings (`[web] hostnames`).
    Strs(Vec<String>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Str(s.clone())
    }
}

impl From<&Path> for Value {
    fn from(p: &Path) -> Value {
        Value::Str(p.display().to_string())
    }
}

impl From<&PathBuf> for Value {
    fn from(p: &PathBuf) -> Value {
        Value::from(p.as_path())
    }
}

impl From<PathBuf> for Value {
    fn from(p: PathBuf) -> Value {
        Value::from(p.as_path())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n.into())
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(n.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&[&str]> for Value {
    fn from(v: &[&str]) -> Value {
        Value::Strs(v.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl Value {
    fn write_toml(&self, out: &mut String) {
        match self {
            Value::Str(s) => quote(s, out),
            Value::Strs(v) => {
                out.push('[');
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quote(s, out);
                }
                out.push(']');
            }
            Value::Int(n) => write!(out, "{n}").expect("write to a String"),
            Value::Bool(b) => write!(out, "{b}").expect("write to a String"),
        }
    }
}

/// `s` as a TOML basic string.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32).expect("write to a String"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Ordered `key = value` lines; setting a key twice replaces its value.
#[derive(Clone, Debug, Default)]
struct Table(Vec<(String, Value)>);

impl Table {
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn write_toml(&self, out: &mut String) {
        for (k, v) in &self.0 {
            out.push_str(k);
            out.push_str(" = ");
            v.write_toml(out);
            out.push('\n');
        }
    }
}

/// One `[[camera]]` entry: a name (optional, vigil numbers unnamed ones), a
/// `url` or a V4L2 `device`, and its other keys in the order set.
#[derive(Clone, Debug, Default)]
pub struct Camera(Table);

impl Camera {
    /// An unnamed camera on `url` (vigil calls it `camera-N`).
    pub fn url(url: impl Into<Value>) -> Camera {
        Camera::default().set("url", url)
    }

    /// A camera called `name` on `url` (a file, an `rtsp://` URL...).
    pub fn named(name: &str, url: impl Into<Value>) -> Camera {
        Camera::default().set("name", name).set("url", url)
    }

    /// A V4L2 camera called `name` on the device node `device`.
    pub fn v4l2(name: &str, device: &str) -> Camera {
        Camera::default().set("name", name).set("device", device)
    }

    /// Any key of the camera's table.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Camera {
        self.0.set(key, value.into());
        self
    }

    /// `max_resolution = "WxH"`.
    pub fn max_resolution(self, size: &str) -> Camera {
        self.set("max_resolution", size)
    }

    /// `detect_fps`.
    pub fn detect_fps(self, fps: u32) -> Camera {
        self.set("detect_fps", fps)
    }

    /// `frame_pool`: frames in the camera's pool.
    pub fn frame_pool(self, frames: u32) -> Camera {
        self.set("frame_pool", frames)
    }

    /// `reconnect_min` and `reconnect_max` (durations such as `"10ms"`).
    pub fn reconnect(self, min: &str, max: &str) -> Camera {
        self.set("reconnect_min", min).set("reconnect_max", max)
    }

    /// `stall_timeout` (a duration).
    pub fn stall_timeout(self, timeout: &str) -> Camera {
        self.set("stall_timeout", timeout)
    }

    /// `username` and `password` for an RTSP camera.
    pub fn credentials(self, user: &str, password: &str) -> Camera {
        self.set("username", user).set("password", password)
    }
}

/// A whole configuration file: top-level keys, tables in the order first
/// touched, then the cameras.
#[derive(Clone, Debug, Default)]
pub struct Config {
    top: Table,
    tables: Vec<(String, Table)>,
    cameras: Vec<Camera>,
}

impl Config {
    /// An empty configuration (every key at vigil's default).
    pub fn new() -> Config {
        Config::default()
    }

    /// A top-level key (`backend`, `memory_limit`...).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Config {
        self.top.set(key, value.into());
        self
    }

    /// A key of the table `[name]` (dotted for a sub-table:
    /// `"upstream.http"`).
    pub fn table(mut self, name: &str, key: &str, value: impl Into<Value>) -> Config {
        let value = value.into();
        match self.tables.iter_mut().find(|(n, _)| n == name) {
            Some((_, t)) => t.set(key, value),
            None => {
                let mut t = Table::default();
                t.set(key, value);
                self.tables.push((name.to_owned(), t));
            }
        }
        self
    }

    /// `data_dir`.
    pub fn data_dir(self, dir: &Path) -> Config {
        self.set("data_dir", dir)
    }

    /// `listen = "127.0.0.1:0"`: an ephemeral port, read back with
    /// [`crate::process::Vigil::web_addr`].
    pub fn listen_anywhere(self) -> Config {
        self.set("listen", "127.0.0.1:0")
    }

    /// `[detector] model`.
    pub fn model(self, path: impl Into<Value>) -> Config {
        self.detector("model", path)
    }

    /// `[detector] model` = the cached SSD model.
    pub fn ssd_model(self) -> Config {
        self.model(ssd_model())
    }

    /// A `[detector]` key.
    pub fn detector(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("detector", key, value)
    }

    /// A `[hardware]` key.
    pub fn hardware(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("hardware", key, value)
    }

    /// A `[web]` key.
    pub fn web(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("web", key, value)
    }

    /// An `[events]` key.
    pub fn events(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("events", key, value)
    }

    /// A `[store]` key.
    pub fn store(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("store", key, value)
    }

    /// An `[upstream]` key (retry and timeout settings shared by every
    /// upstream).
    pub fn upstream(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("upstream", key, value)
    }

    /// `[upstream.http]` posting to `url` with one extra request `header`
    /// (`"Name: value"`).
    pub fn http_upstream(self, url: &str, header: &str) -> Config {
        self.table("upstream.http", "url", url)
            .table("upstream.http", "header", header)
    }

    /// `[upstream.mqtt]` publishing to the broker at `url`.
    pub fn mqtt_upstream(self, url: &str) -> Config {
        self.table("upstream.mqtt", "url", url)
    }

    /// A `[record]` key.
    pub fn record(self, key: &str, value: impl Into<Value>) -> Config {
        self.table("record", key, value)
    }

    /// Adds a `[[camera]]`.
    pub fn camera(mut self, camera: Camera) -> Config {
        self.cameras.push(camera);
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        self.top.write_toml(&mut out);
        for (name, t) in &self.tables {
            writeln!(out, "[{name}]").expect("write to a String");
            t.write_toml(&mut out);
        }
        for c in &self.cameras {
            out.push_str("[[camera]]\n");
            c.0.write_toml(&mut out);
        }
        out
    }

    /// Writes `DIR/vigil.toml`; returns its path.
    pub fn write(&self, dir: impl AsRef<Path>) -> PathBuf {
        self.write_as(&dir.as_ref().join("vigil.toml"))
    }

    /// Writes `DIR/vigil.toml` and starts `vigil run` on it with its data
    /// in `DIR/data`; returns once the web interface listens, with its
    /// address. Stop it with [`Vigil::stop`].
    pub fn serve(&self, dir: impl AsRef<Path>) -> (Vigil, SocketAddr) {
        let dir = dir.as_ref();
        Vigil::serve(&self.write(dir), &dir.join("data"))
    }

    /// [`Config::serve`] without claiming: no admin password is set and
    /// no session is remembered (for tests of setup and login).
    pub fn serve_unclaimed(&self, dir: impl AsRef<Path>) -> (Vigil, SocketAddr) {
        let dir = dir.as_ref();
        Vigil::serve_unclaimed(&self.write(dir), &dir.join("data"))
    }

    /// Writes the file at `path`; returns it.
    pub fn write_as(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_come_before_tables_and_cameras_last() {
        let c = Config::new()
            .store("flush_after", "200ms")
            .set("listen", "127.0.0.1:0")
            .web("max_connections", 64)
            .store("max_bytes", "4MiB")
            .web("public_status", false)
            .camera(Camera::named("a", Path::new("/x/a \"b\".mp4")).detect_fps(5))
            .camera(Camera::url("rtsp://h/s"));
        assert_eq!(
            c.to_toml(),
            "listen = \"127.0.0.1:0\"\n\
             [store]\nflush_after = \"200ms\"\nmax_bytes = \"4MiB\"\n\
             [web]\nmax_connections = 64\npublic_status = false\n\
             [[camera]]\nname = \"a\"\nurl = \"/x/a \\\"b\\\".mp4\"\ndetect_fps = 5\n\
             [[camera]]\nurl = \"rtsp://h/s\"\n"
        );
    }

    #[test]
    fn a_key_set_twice_keeps_its_place_and_the_last_value() {
        let c = Config::new()
            .upstream("retry_min", "1s")
            .upstream("timeout", "1s")
            .upstream("retry_min", "100ms");
        assert_eq!(
            c.to_toml(),
            "[upstream]\nretry_min = \"100ms\"\ntimeout = \"1s\"\n"
        );
    }

    #[test]
    fn strings_are_escaped_for_toml() {
        let mut out = String::new();
        quote("a\\b\"c\nd\u{1}", &mut out);
        assert_eq!(out, "\"a\\\\b\\\"c\\nd\\u0001\"");
    }
}
