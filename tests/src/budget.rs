//! The memory budget vigil prints at start, read back from its log: the
//! `  component  size  detail` lines between "memory budget:" and "total".
//! Tests hold measured memory against a line (the web test against `web`)
//! or against all of them (`tests/budget.rs`).

use crate::process::Vigil;
use std::time::Duration;

/// "11.9 MiB" as bytes.
pub fn parse_human(s: &str) -> f64 {
    let (n, unit) = s.trim().split_once(' ').expect("a size with its unit");
    let n: f64 = n.parse().expect("a number");
    let scale = ["B", "KiB", "MiB", "GiB"]
        .iter()
        .position(|u| *u == unit)
        .unwrap_or_else(|| panic!("unit {unit}"));
    n * 1024f64.powi(scale as i32)
}

/// The budget vigil printed at start: (component, bytes) per line, in the
/// printed order, without the total.
pub fn printed_budget(v: &Vigil) -> Vec<(String, f64)> {
    v.wait_for_line(Duration::from_secs(30), |l| l.contains("memory budget:"));
    let mut lines = Vec::new();
    for l in v.lines_matching(|l| l.contains("vigil::cli:   ")) {
        let msg = l.split_once("vigil::cli: ").unwrap().1;
        let component = msg[2..17].trim().to_owned();
        if component == "total" {
            break;
        }
        if component != "loading" {
            lines.push((component, parse_human(&msg[18..28])));
        }
    }
    assert!(lines.len() >= 8, "budget lines: {lines:?}");
    lines
}

/// The bytes of the printed budget's line `component` (fails the test when
/// there is no such line).
pub fn budget_line(v: &Vigil, component: &str) -> f64 {
    let lines = printed_budget(v);
    lines
        .iter()
        .find(|(c, _)| c == component)
        .map(|l| l.1)
        .unwrap_or_else(|| panic!("no {component} line in the printed budget {lines:?}"))
}
