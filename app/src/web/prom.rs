//! The Prometheus text exposition (format 0.0.4) of everything measured:
//! the table of families ([`super::table::FAMILIES`]) written in order.
//!
//! Written by hand: the format is a few lines per family, the registry is
//! already atomics, and a client library would add a second registry to
//! keep in step. The text goes into one of the response buffers
//! (`bodies`; some 4 KiB per camera); samples and escaped label values are
//! written into it directly, with no string or list built per family or
//! line. `promtool check metrics` runs on a live scrape in the system
//! tests.

use super::families::{Family, Read, Scrape, Value};
use super::table::FAMILIES;
use super::WebContext;
use crate::metrics::{CameraState, DropReason, LATENCY_BUCKETS};
use crate::store::Sink;
use std::fmt::{self, Display, Write};

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric into a new string (tests).
pub fn render(ctx: &WebContext) -> String {
    let mut out = String::with_capacity(16 << 10);
    render_into(ctx, &mut out);
    out
}

/// Renders every metric into `out` (a response buffer: a write that does
/// not fit is the buffer's to count, so errors are not looked at here).
pub fn render_into(ctx: &WebContext, out: &mut dyn Write) {
    let s = Scrape::new(ctx).with_disk();
    for f in FAMILIES {
        if f.read.present(&s) {
            family(out, &s, f);
        }
    }
}

/// Writes one family: its `# HELP` and `# TYPE` lines, then its samples.
fn family(w: &mut dyn Write, s: &Scrape, f: &Family) {
    let name = f.name;
    let _ = writeln!(
        w,
        "# HELP {name} {}\n# TYPE {name} {}",
        f.help,
        f.kind.as_str()
    );
    let labels = f.read.labels();
    let mut line =
        |values: &[&dyn Display], v: &dyn Display| sample(w, name, "", labels, values, v);
    let r = &s.ctx.registry;
    match &f.read {
        Read::BuildInfo => line(&[&crate::version::get(), &r.backend], &1),
        Read::One(read) => line(&[], &read(s)),
        Read::Fixed { values, read, .. } => {
            for (i, v) in values.iter().enumerate() {
                line(&[v], &read(s, i));
            }
        }
        Read::Camera(read) => {
            for c in &r.cameras {
                line(&[&c.name], &read(c));
            }
        }
        Read::Dropped(read) => {
            for c in &r.cameras {
                for why in DropReason::ALL {
                    line(&[&c.name, &why.as_str()], &read(c).get(why));
                }
            }
        }
        Read::State => {
            for c in &r.cameras {
                let now = c.state();
                for state in CameraState::ALL {
                    line(&[&c.name, &state.as_str()], &u8::from(state == now));
                }
            }
        }
        Read::V4l2Mode => {
            for c in &r.cameras {
                let mode = c.v4l2.mode().unwrap_or_default();
                c.v4l2.with_device(|device| {
                    if let Some(device) = device {
                        let (format, width, height) = (mode.format, mode.width, mode.height);
                        line(&[&c.name, &device, &format, &width, &height], &1);
                    }
                });
            }
        }
        Read::V4l2(read) => {
            for c in r.cameras.iter().filter(|c| super::families::is_v4l2(c)) {
                line(&[&c.name], &read(c, c.v4l2.mode()));
            }
        }
        Read::Histogram(read) => {
            let h = read(s);
            for (bound, count) in LATENCY_BUCKETS.iter().zip(&h.cumulative) {
                sample(w, name, "_bucket", labels, &[bound], count);
            }
            sample(w, name, "_bucket", labels, &[&"+Inf"], &h.count);
            sample(w, name, "_sum", &[], &[], &h.sum_seconds);
            sample(w, name, "_count", &[], &[], &h.count);
        }
        Read::Pool(read) => {
            for p in r.pools() {
                let stats = p.pool.stats();
                line(&[&p.camera, &stats.name], &read(&stats));
            }
        }
        Read::Store(read) => {
            if let Some((store, totals)) = &s.store {
                line(&[], &read(store, totals));
            }
        }
        Read::Outbox(read) => {
            if let Some((_, totals)) = &s.store {
                for sink in Sink::ALL {
                    line(&[&sink.as_str()], &Value::U64(read(totals)[sink as usize]));
                }
            }
        }
        Read::Upstream(read) => {
            for sink in Sink::ALL {
                line(&[&sink.as_str()], &read(&r.outputs.upstream[sink as usize]));
            }
        }
        Read::Disk(read) => {
            if let Some(d) = &s.disk {
                line(&[], &read(d));
            }
        }
    }
}

/// Writes `name{suffix}{labels} value`: `labels` are the names, `values`
/// theirs (escaped as label values); no braces without values.
fn sample(
    w: &mut dyn Write,
    name: &str,
    suffix: &str,
    labels: &[&str],
    values: &[&dyn Display],
    value: &dyn Display,
) {
    let _ = write!(w, "{name}{suffix}");
    for (i, (label, v)) in labels.iter().zip(values).enumerate() {
        let _ = write!(w, "{}{label}=\"", if i == 0 { '{' } else { ',' });
        let _ = write!(Escape(w), "{v}");
        let _ = w.write_char('"');
    }
    if !values.is_empty() {
        let _ = w.write_char('}');
    }
    let _ = writeln!(w, " {value}");
}

/// Writes through to the buffer with a label value's escapes (backslash,
/// double quote, newline), so no escaped copy is made.
struct Escape<'a>(&'a mut dyn Write);

impl fmt::Write for Escape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.0.write_str("\\\\")?,
                '"' => self.0.write_str("\\\"")?,
                '\n' => self.0.write_str("\\n")?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}
