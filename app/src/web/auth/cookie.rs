//! The session cookie: the `Set-Cookie` values vigil sends and the token
//! read back from a `Cookie` header.
//!
//! The cookie is `HttpOnly` (page scripts cannot read it) and
//! `SameSite=Strict` (a cross-site page cannot make the browser send it);
//! together with the per-session CSRF token this is what keeps another site
//! from acting as the logged-in admin.

use super::{AuthConfig, SessionInfo};

const COOKIE_NAME: &str = "vigil_session";

/// The Set-Cookie header value for a session:
/// `vigil_session=<token>; Path=/; HttpOnly; SameSite=Strict; Max-Age=<lifetime secs>`.
pub fn session_cookie(info: &SessionInfo, config: &AuthConfig) -> String {
    format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        info.token,
        config.session_lifetime.as_secs()
    )
}

/// The Set-Cookie value that clears it (Max-Age=0).
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The `vigil_session` value from a Cookie request header (may hold several
/// cookies), if present and not empty.
pub fn cookie_token(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| name.trim() == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .find(|value| !value.is_empty())
}
