//! Claiming a vigil for the tests: the first setup with the one-time setup
//! code from `DATA_DIR/setup-code` and [`TEST_PASSWORD`], or a login when
//! a password is already set (a restart on the same data). The session is
//! remembered per address, so [`crate::http::get`], [`crate::api::status`]
//! and the rest read what needs the admin session.

use crate::http;
use std::net::SocketAddr;
use std::path::Path;

/// The admin password every claimed test vigil gets.
pub const TEST_PASSWORD: &str = "vigil-test-password";

/// The setup code vigil wrote to `data_dir`, if any.
pub fn setup_code(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("setup-code"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// Sets up (or logs in to) the vigil at `addr` whose data is in
/// `data_dir`, remembers the session for `addr` and returns its cookie
/// (`vigil_session=...`).
pub fn claim(addr: SocketAddr, data_dir: Option<&Path>) -> String {
    claim_with_code(addr, data_dir.and_then(setup_code))
}

/// The setup code in a line of vigil's start-up log ("... with the setup
/// code XXXX-XXXX-XXXX ..."), for a data directory the test cannot read
/// (a tmpfs in vigil's own mount namespace).
pub fn code_in_log_line(line: &str) -> Option<String> {
    let rest = line.split("the setup code ").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// [`claim`] with the setup code given (`None`: set up without one, as a
/// binary from before setup codes takes it).
pub fn claim_with_code(addr: SocketAddr, code: Option<String>) -> String {
    let s = http::get_anon(addr, "/api/session");
    assert_eq!(s.status, 200, "/api/session: {}", s.text());
    let r = if s.json()["admin_set"] == true {
        let body = serde_json::json!({ "password": TEST_PASSWORD }).to_string();
        post(addr, "/api/login", &body)
    } else {
        // A binary from before setup codes takes the password alone.
        let body = match code {
            Some(code) => serde_json::json!({ "password": TEST_PASSWORD, "code": code }),
            None => serde_json::json!({ "password": TEST_PASSWORD }),
        };
        post(addr, "/api/setup", &body.to_string())
    };
    assert_eq!(r.status, 200, "claiming vigil at {addr}: {}", r.text());
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    http::remember_session(addr, &cookie);
    cookie
}

/// A JSON POST without any session.
fn post(addr: SocketAddr, path: &str, body: &str) -> http::Response {
    let json = [("Content-Type", "application/json")];
    http::request_anon(addr, "POST", path, &json, body.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_code_is_read_from_vigils_log_line() {
        let line = "INFO no admin password is set: set one on the status page with the setup \
                    code K7QF-3MZA-T9PX (also in /data/setup-code, removed after setup)";
        assert_eq!(
            super::code_in_log_line(line).as_deref(),
            Some("K7QF-3MZA-T9PX")
        );
        assert_eq!(super::code_in_log_line("web interface on http://x/"), None);
    }
}
