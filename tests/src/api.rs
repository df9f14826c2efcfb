//! Reading a running vigil through its web interface: `/api/status`,
//! `/api/cameras` and `/metrics`, plus the polling loop the tests wait with.
//!
//! The tests used to repeat these per file; here a failed read says which
//! document and what came back, and a metric is looked up by its exact
//! series (name and labels) the same way everywhere.

use crate::http::get;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `GET path` as JSON, failing the test unless the answer is 200.
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// `/api/status`.
pub fn status(addr: SocketAddr) -> Value {
    get_json(addr, "/api/status")
}

/// `/api/cameras`.
pub fn cameras(addr: SocketAddr) -> Value {
    get_json(addr, "/api/cameras")
}

/// A numeric field of a JSON document by its path, failing the test when
/// it is absent or not a whole number.
pub fn num(v: &Value, path: &[&str]) -> u64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{} is not a number in {v}", path.join(".")))
}

/// A `/metrics` scrape.
#[derive(Clone, Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the exact series `name{labels}` (as written in the
    /// exposition, e.g. `vigil_store_events` or
    /// `vigil_upstream_delivered_total{upstream="http"}`), if present.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Like [`Metrics::get`], failing the test with the scrape when the
    /// series is missing.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.0))
    }

    /// The scrape's text.
    pub fn text(&self) -> &str {
        &self.0
    }
}

/// `/metrics`, failing the test unless the answer is 200.
pub fn metrics(addr: SocketAddr) -> Metrics {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    Metrics(r.text())
}

/// Polls `f` every 100 ms until it holds or `timeout` passes; the last
/// answer (one more try at the deadline) is returned.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}
