//! The session table: at most [`MAX_SESSIONS`] logged-in sessions, each a
//! random 256-bit token with its own random CSRF token.
//!
//! The table is a fixed array, so memory is bounded whatever a client sends:
//! a new login takes a free slot, else evicts the least recently used
//! session. Sessions end after an idle timeout and an absolute lifetime.
//! Elapsed times are computed with saturating subtraction, so instants that
//! arrive slightly out of order from concurrent requests never panic or
//! extend anything. Tokens are compared in constant time.
//!
//! Each session also has a number, never reused while the process runs, so
//! an event stream opened with a session can ask later whether that session
//! is still the one it was opened with ([`Sessions::live`]): a new login in
//! the same slot gets a new number.

use super::password::StorageError;
use super::secret::{ct_eq, hex_encode, random};
use super::{AuthConfig, SessionInfo};
use std::time::Instant;

/// Sessions kept at once; a login beyond this evicts the least recently used.
pub const MAX_SESSIONS: usize = 8;

const TOKEN_BYTES: usize = 32;
const TOKEN_HEX: usize = TOKEN_BYTES * 2;

/// A fresh session token and CSRF token, as hex.
pub(super) fn new_tokens() -> Result<([u8; TOKEN_HEX], [u8; TOKEN_HEX]), StorageError> {
    let token = random::<TOKEN_BYTES>().map_err(StorageError::Random)?;
    let csrf = random::<TOKEN_BYTES>().map_err(StorageError::Random)?;
    Ok((hex_encode(&token), hex_encode(&csrf)))
}

pub(super) struct Session {
    id: u64,
    token: [u8; TOKEN_HEX],
    pub(super) csrf: [u8; TOKEN_HEX],
    created: Instant,
    last_used: Instant,
}

impl Session {
    /// `now >= last_used + idle` or `now >= created + lifetime`, without
    /// overflow; an instant earlier than the last use counts as no time.
    fn expired(&self, now: Instant, cfg: &AuthConfig) -> bool {
        now.saturating_duration_since(self.last_used) >= cfg.session_idle
            || now.saturating_duration_since(self.created) >= cfg.session_lifetime
    }

    pub(super) fn touch(&mut self, now: Instant) {
        self.last_used = self.last_used.max(now);
    }

    pub(super) fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id,
            token: String::from_utf8_lossy(&self.token).into_owned(),
            csrf: String::from_utf8_lossy(&self.csrf).into_owned(),
        }
    }
}

pub(super) struct Sessions {
    pub(super) slots: [Option<Session>; MAX_SESSIONS],
    /// The number the next session gets.
    next_id: u64,
}

impl Sessions {
    pub(super) fn new() -> Self {
        Sessions {
            slots: std::array::from_fn(|_| None),
            next_id: 1,
        }
    }

    /// Whether session `id` is in the table and unexpired at `now`; does not
    /// touch it.
    pub(super) fn live(&self, id: u64, now: Instant, cfg: &AuthConfig) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| s.id == id && !s.expired(now, cfg))
    }

    pub(super) fn prune(&mut self, now: Instant, cfg: &AuthConfig) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.expired(now, cfg)) {
                *slot = None;
            }
        }
    }

    /// The slot holding `token`, comparing against every slot in constant
    /// time per slot.
    pub(super) fn index_of(&self, token: &str) -> Option<usize> {
        if token.len() != TOKEN_HEX {
            return None;
        }
        let mut found = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(s) = slot {
                if ct_eq(&s.token, token.as_bytes()) {
                    found = Some(i);
                }
            }
        }
        found
    }

    /// The valid session for `token`; an expired one is removed.
    pub(super) fn find(
        &mut self,
        token: &str,
        now: Instant,
        cfg: &AuthConfig,
    ) -> Option<&mut Session> {
        let i = self.index_of(token)?;
        if self.slots[i].as_ref().is_some_and(|s| s.expired(now, cfg)) {
            self.slots[i] = None;
        }
        self.slots[i].as_mut()
    }

    /// The live sessions as text, one per line: token, CSRF token, and the
    /// milliseconds since its last use and since it was created. What a
    /// restart hands to the next process ([`Sessions::adopt`]).
    pub(super) fn hand_over(&mut self, now: Instant, cfg: &AuthConfig) -> String {
        self.prune(now, cfg);
        let mut out = String::new();
        for s in self.slots.iter().flatten() {
            out.push_str(&format!(
                "{} {} {} {}\n",
                String::from_utf8_lossy(&s.token),
                String::from_utf8_lossy(&s.csrf),
                now.saturating_duration_since(s.last_used).as_millis(),
                now.saturating_duration_since(s.created).as_millis(),
            ));
        }
        out
    }

    /// Takes over the sessions [`Sessions::hand_over`] wrote, with their
    /// ages, so they expire when they would have; a line that does not read
    /// as a session is skipped. Returns how many were taken.
    pub(super) fn adopt(&mut self, text: &str, now: Instant, cfg: &AuthConfig) -> usize {
        let mut taken = 0;
        for line in text.lines().take(MAX_SESSIONS) {
            let mut f = line.split(' ');
            let (Some(token), Some(csrf), Some(idle), Some(age), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Ok(idle), Ok(age)) = (idle.parse::<u64>(), age.parse::<u64>()) else {
                continue;
            };
            let hex = |t: &str| -> Option<[u8; TOKEN_HEX]> {
                let ok = t.len() == TOKEN_HEX && t.bytes().all(|b| b.is_ascii_hexdigit());
                ok.then(|| t.as_bytes().try_into().ok()).flatten()
            };
            let (Some(token), Some(csrf)) = (hex(token), hex(csrf)) else {
                continue;
            };
            let ago = |ms: u64| now.checked_sub(std::time::Duration::from_millis(ms));
            let (Some(last_used), Some(created)) = (ago(idle), ago(age)) else {
                continue;
            };
            let aged = Session {
                id: 0,
                token,
                csrf,
                created,
                last_used,
            };
            if aged.expired(now, cfg) {
                continue;
            }
            self.insert(token, csrf, now, cfg);
            // insert stamped them now: give them back their ages.
            if let Some(s) = self.slots.iter_mut().flatten().find(|s| s.token == token) {
                s.created = created;
                s.last_used = last_used;
            }
            taken += 1;
        }
        taken
    }

    /// Stores a new session in a free slot, else in place of the least
    /// recently used one.
    pub(super) fn insert(
        &mut self,
        token: [u8; TOKEN_HEX],
        csrf: [u8; TOKEN_HEX],
        now: Instant,
        cfg: &AuthConfig,
    ) -> SessionInfo {
        self.prune(now, cfg);
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .or_else(|| {
                (0..MAX_SESSIONS).min_by_key(|&i| self.slots[i].as_ref().map(|s| s.last_used))
            })
            .unwrap_or(0);
        let id = self.next_id;
        self.next_id += 1;
        let s = Session {
            id,
            token,
            csrf,
            created: now,
            last_used: now,
        };
        let info = s.info();
        self.slots[i] = Some(s);
        info
    }
}
