//! What one metric family is, and how its values are read for `/metrics`
//! and for the JSON documents.
//!
//! Every family vigil exports is one [`Family`] in the table
//! ([`super::table::FAMILIES`]): name, help text, type, how its values are
//! read (which also fixes its labels) and where, if anywhere, the same values
//! show in `/api/status` or `/api/cameras`. `prom` writes the table as the
//! Prometheus text; `api` flattens the same entries ([`Fields`]) into the
//! JSON documents beside what is not a measurement (names, targets, errors).
//! Until issue 15 each metric was written three times (registry, Prometheus
//! text, JSON) and the copies could drift.

use super::api::Disk;
use super::table::FAMILIES;
use super::WebContext;
use crate::metrics::{CameraMetrics, DropCounters, HistogramSnapshot, UpstreamMetrics, V4l2Mode};
use crate::pool::PoolStats;
use crate::store::{Store, StoreTotals};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;

/// One metric family: a row of the table.
pub(super) struct Family {
    /// The Prometheus name.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The `# TYPE`.
    pub kind: Kind,
    /// How the values are read; fixes the label set ([`Read::labels`]).
    pub read: Read,
    /// Where the values show in the JSON documents.
    pub json: Json,
}

/// A family's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Only goes up (the name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One sample's value, in the type the JSON documents give it (a count is
/// an integer there, a gauge a float); the text shows either as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Value {
    /// A count.
    U64(u64),
    /// A reading.
    F64(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U64(v) => fmt::Display::fmt(v, f),
            Value::F64(v) => fmt::Display::fmt(v, f),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Value::U64(v) => s.serialize_u64(v),
            Value::F64(v) => s.serialize_f64(v),
        }
    }
}

/// How a family's samples are read. The variant decides which samples
/// there are and their labels; the function picks the value.
pub(super) enum Read {
    /// `{version, backend}`: the running build, value 1.
    BuildInfo,
    /// One sample without labels.
    One(fn(&Scrape) -> Value),
    /// One sample per value of a fixed label (`values`, in order); the
    /// function gets the value's index.
    Fixed {
        /// The label's name.
        label: &'static str,
        /// Its values.
        values: &'static [&'static str],
        /// The value of the sample with `values[i]`.
        read: fn(&Scrape, usize) -> Value,
    },
    /// `{camera}`: one per camera.
    Camera(fn(&CameraMetrics) -> Value),
    /// `{camera, reason}`: one per camera and [`crate::metrics::DropReason`];
    /// the JSON documents show the loss (every reason but sampling).
    Dropped(fn(&CameraMetrics) -> &DropCounters),
    /// `{camera, state}`: 1 for the camera's state, 0 for the others.
    State,
    /// `{camera, device, format, width, height}`: 1 per V4L2 camera.
    V4l2Mode,
    /// `{camera}`: one per V4L2 camera (absent without one); the mode is
    /// `None` until the device was opened.
    V4l2(fn(&CameraMetrics, Option<V4l2Mode>) -> Value),
    /// `{le}` buckets, then `_sum` and `_count`.
    Histogram(fn(&Scrape) -> HistogramSnapshot),
    /// `{camera, pool}`: one per registered pool (camera "" when shared).
    Pool(fn(&PoolStats) -> Value),
    /// One sample, only while the store is open (0 in JSON without it).
    Store(fn(&Store, &StoreTotals) -> Value),
    /// `{upstream}`: the store's outbox per upstream, only while the store
    /// is open (0 in JSON without it).
    Outbox(fn(&StoreTotals) -> &[u64; 2]),
    /// `{upstream}`: one per upstream.
    Upstream(fn(&UpstreamMetrics) -> Value),
    /// One sample, only when the data directory's file system answers.
    Disk(fn(&Disk) -> Value),
}

impl Read {
    /// The label names of every sample, in order.
    pub fn labels(&self) -> &[&'static str] {
        match self {
            Read::BuildInfo => &["version", "backend"],
            Read::One(_) | Read::Store(_) | Read::Disk(_) => &[],
            Read::Fixed { label, .. } => std::slice::from_ref(label),
            Read::Camera(_) | Read::V4l2(_) => &["camera"],
            Read::Dropped(_) => &["camera", "reason"],
            Read::State => &["camera", "state"],
            Read::V4l2Mode => &["camera", "device", "format", "width", "height"],
            Read::Histogram(_) => &["le"],
            Read::Pool(_) => &["camera", "pool"],
            Read::Outbox(_) | Read::Upstream(_) => &["upstream"],
        }
    }

    /// Whether the family is exported now (families of absent things, such
    /// as the store or V4L2 cameras, are left out whole).
    pub fn present(&self, s: &Scrape) -> bool {
        match self {
            Read::V4l2Mode | Read::V4l2(_) => s.ctx.registry.cameras.iter().any(|c| is_v4l2(c)),
            Read::Store(_) | Read::Outbox(_) => s.store.is_some(),
            Read::Disk(_) => s.disk.is_some(),
            _ => true,
        }
    }

    /// The JSON value of sample `index`: a camera, pool or upstream index,
    /// or the index of a [`Read::Fixed`] label value; `None` for families
    /// the documents do not show.
    fn json_value(&self, s: &Scrape, index: usize) -> Option<Value> {
        let r = &s.ctx.registry;
        Some(match self {
            Read::One(f) => f(s),
            Read::Fixed { read, .. } => read(s, index),
            Read::Camera(f) => f(&r.cameras[index]),
            Read::Dropped(f) => Value::U64(f(&r.cameras[index]).lost()),
            Read::V4l2(f) => {
                let c = &r.cameras[index];
                f(c, c.v4l2.mode())
            }
            Read::Pool(f) => f(&r.pools()[index].pool.stats()),
            Read::Store(f) => s.store.as_ref().map_or(Value::U64(0), |(st, t)| f(st, t)),
            Read::Outbox(f) => Value::U64(s.store.as_ref().map_or(0, |(_, t)| f(t)[index])),
            Read::Upstream(f) => f(&r.outputs.upstream[index]),
            Read::BuildInfo | Read::State | Read::V4l2Mode | Read::Histogram(_) | Read::Disk(_) => {
                return None
            }
        })
    }
}

/// Whether a camera is a V4L2 one.
pub(super) fn is_v4l2(c: &CameraMetrics) -> bool {
    c.v4l2.with_device(|d| d.is_some())
}

/// A JSON document (or part of one) the families fill in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Doc {
    /// The top level of `/api/status`.
    Status,
    /// `/api/status` `events`.
    Events,
    /// `/api/status` `store`.
    Store,
    /// `/api/status` `sse`.
    Sse,
    /// `/api/status` `web`.
    Web,
    /// An entry of `/api/status` `pools`.
    Pool,
    /// An entry of `/api/status` `upstream`.
    Upstream,
    /// A camera of `/api/cameras` (and of SSE `camera` messages).
    Camera,
    /// A camera's `recording`.
    Recording,
    /// A V4L2 camera's `v4l2`.
    V4l2,
}

/// Where a family shows in the JSON documents.
pub(super) enum Json {
    /// Only in `/metrics`.
    No,
    /// As `key` in `Doc`.
    Key(Doc, &'static str),
    /// As `key` in `Doc`, true when the value is over 0.5 (an `up` gauge).
    Flag(Doc, &'static str),
    /// A [`Read::Fixed`] family: one key per label value, in order.
    Keys(Doc, &'static [&'static str]),
}

/// What one rendering reads once: the web context, the store's totals and
/// (for `/metrics`) the data directory's file system.
#[derive(Clone, Copy)]
pub(super) struct Scrape<'a> {
    /// Everything the handlers read.
    pub ctx: &'a WebContext,
    /// The store and its totals, when it is open.
    pub store: Option<(&'a Store, StoreTotals)>,
    /// The data directory's file system, when asked for and it answers.
    pub disk: Option<Disk<'a>>,
}

impl<'a> Scrape<'a> {
    /// Reads the store's totals (not the disk).
    pub fn new(ctx: &'a WebContext) -> Self {
        Scrape {
            ctx,
            store: ctx.store.as_deref().map(|s| (s, s.totals())),
            disk: None,
        }
    }

    /// Also reads the data directory's file system.
    pub fn with_disk(mut self) -> Self {
        self.disk = super::api::disk_usage(&self.ctx.data_dir);
        self
    }
}

/// The keys every family gives one JSON document: serialized as a map, to
/// be flattened (`#[serde(flatten)]`) into the document's struct.
#[derive(Clone, Copy)]
pub(super) struct Fields<'a> {
    scrape: Scrape<'a>,
    doc: Doc,
    index: usize,
}

impl<'a> Fields<'a> {
    /// The keys of `doc` for sample `index` (camera, pool or upstream; 0
    /// for documents that are not lists).
    pub fn new(scrape: Scrape<'a>, doc: Doc, index: usize) -> Self {
        Fields { scrape, doc, index }
    }
}

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = &self.scrape;
        let mut map = ser.serialize_map(None)?;
        for f in FAMILIES {
            match f.json {
                Json::Key(doc, key) if doc == self.doc => {
                    if let Some(v) = f.read.json_value(s, self.index) {
                        map.serialize_entry(key, &v)?;
                    }
                }
                Json::Flag(doc, key) if doc == self.doc => {
                    if let Some(v) = f.read.json_value(s, self.index) {
                        let up = match v {
                            Value::U64(v) => v > 0,
                            Value::F64(v) => v > 0.5,
                        };
                        map.serialize_entry(key, &up)?;
                    }
                }
                Json::Keys(doc, keys) if doc == self.doc => {
                    for (i, key) in keys.iter().enumerate() {
                        if let Some(v) = f.read.json_value(s, i) {
                            map.serialize_entry(key, &v)?;
                        }
                    }
                }
                _ => {}
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = HashSet::new();
        for f in FAMILIES {
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Histogram,
                matches!(f.read, Read::Histogram(_)),
                "{}",
                f.name
            );
            assert!(!f.help.is_empty() && !f.help.contains('\n'), "{}", f.name);
        }
    }

    #[test]
    fn json_keys_sit_in_documents_of_the_family_s_scope() {
        let mut keys = HashSet::new();
        for f in FAMILIES {
            let (doc, names): (Doc, &[&str]) = match &f.json {
                Json::No => continue,
                Json::Key(d, k) | Json::Flag(d, k) => (*d, std::slice::from_ref(k)),
                Json::Keys(d, ks) => (*d, *ks),
            };
            let fits = match &f.read {
                Read::One(_) | Read::Store(_) => {
                    matches!(
                        doc,
                        Doc::Status | Doc::Events | Doc::Store | Doc::Sse | Doc::Web
                    )
                }
                Read::Fixed { values, .. } => {
                    matches!(f.json, Json::Keys(..)) && values.len() == names.len()
                }
                Read::Camera(_) | Read::Dropped(_) => matches!(doc, Doc::Camera | Doc::Recording),
                Read::V4l2(_) => doc == Doc::V4l2,
                Read::Pool(_) => doc == Doc::Pool,
                Read::Outbox(_) | Read::Upstream(_) => doc == Doc::Upstream,
                Read::BuildInfo
                | Read::State
                | Read::V4l2Mode
                | Read::Histogram(_)
                | Read::Disk(_) => false,
            };
            assert!(fits, "{}: JSON {doc:?} does not fit how it is read", f.name);
            for k in names {
                assert!(keys.insert((doc, *k)), "{doc:?}.{k} twice");
            }
        }
    }
}
