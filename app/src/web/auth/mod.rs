//! Admin authentication: the device password, sessions and the login limiter.
//!
//! There is no default credential. The first visitor sets the password
//! ([`Auth::setup`]) with the one-time setup code vigil printed in its log
//! and wrote to `<data_dir>/setup-code` (`setup_code`), so whoever reaches
//! the box first on the network cannot claim it; until then
//! [`Auth::login`] answers [`AuthError::NotSet`].
//! This file is the surface the routes use ([`Auth`], its errors and
//! tunables) and the locking around the parts, each in its own file:
//! `password` (the hash and the file it lives in, [`StorageError`]),
//! `sessions` (the session table), `limiter` (failed-login lockouts),
//! `cookie` (the cookie's text) and `secret` (constant-time comparison,
//! randomness, hex).
//!
//! Hashing is deliberately slow (600,000 iterations by default), so it never
//! runs under the state mutex: session checks from other requests go on while
//! a login hashes. Setup and password changes are serialised by a second lock
//! so two of them cannot both write the file; concurrent setups see the first
//! one's password and get [`AuthError::AlreadySet`] without hashing.
//!
//! Every table is a fixed array, so memory is bounded whatever a client
//! sends: [`MAX_SESSIONS`] sessions (a new login evicts the least recently
//! used one) and [`MAX_TRACKED_PEERS`] peers in the limiter (the peer with the
//! oldest attempt is forgotten first). The limiter runs before any hash, so a
//! locked-out client costs no CPU.
//!
//! Sessions are identified by a random 256-bit token in an `HttpOnly`,
//! `SameSite=Strict` cookie. Each has its own random CSRF token that a
//! state-changing request must echo in a header ([`Auth::authorize`]); a
//! cross-site page can neither send the cookie nor read the CSRF token.
//! Time is always passed in as an [`Instant`], so tests can move it. Secrets
//! are compared in constant time.

mod cookie;
mod hash_queue;
mod limiter;
mod offline;
mod password;
mod secret;
mod sessions;
mod setup_code;
#[cfg(test)]
mod tests;

pub use cookie::{clear_cookie, cookie_token, session_cookie};
pub use hash_queue::{HashPermit, HashQueue, Refusal, MAX_HASHES, MAX_PASSWORD_BYTES};
pub use limiter::MAX_TRACKED_PEERS;
pub use offline::{forget_admin, preset_password, setup_code_of, Preset};
pub use password::{Defect, StorageError, DEFAULT_ITERATIONS};
pub use secret::ct_eq;
pub use sessions::MAX_SESSIONS;

use limiter::{Limiter, Ticket};
use password::{PasswordFile, Stored};
use sessions::{new_tokens, Sessions};
use setup_code::{CodeFile, SetupCode};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 128;

/// Tunables of [`Auth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// PBKDF2 iterations for newly set passwords; verification uses the count
    /// stored with the hash. 0 is treated as 1.
    pub iterations: u32,
    /// A session ends when unused for this long.
    pub session_idle: Duration,
    /// A session ends this long after login, however busy.
    pub session_lifetime: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            iterations: DEFAULT_ITERATIONS,
            session_idle: Duration::from_secs(30 * 60),
            session_lifetime: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// A logged-in session as the HTTP layer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's number, unique for the process's life; an event stream
    /// opened with the session remembers it ([`Auth::session_live`]).
    pub id: u64,
    /// The session token, 64 hex digits, sent in the `vigil_session` cookie.
    pub token: String,
    /// The CSRF token, 64 hex digits, that state-changing requests echo.
    pub csrf: String,
}

/// Why an authentication call failed; each variant maps to one HTTP status.
#[derive(Debug)]
pub enum AuthError {
    /// Setup was called but a password is already set (409).
    AlreadySet,
    /// Login was called before any password was set (409).
    NotSet,
    /// The password did not match, or the session is not valid (401).
    WrongPassword,
    /// Too many failed attempts; try again after `retry_after` (429).
    RateLimited {
        /// How long until an attempt is allowed again.
        retry_after: Duration,
    },
    /// Setup without the one-time setup code (`given: false`) or with a
    /// wrong one; a wrong code counts as a failed login (403).
    SetupCode {
        /// Whether the request carried a code at all.
        given: bool,
    },
    /// The new password breaks the policy; the text says how (400).
    WeakPassword(&'static str),
    /// Reading or writing the password file failed, or it is corrupt, or
    /// there was no randomness; the kind names the file (500).
    Storage(StorageError),
    /// [`MAX_HASHES`] password checks are already queued or running (429).
    Busy {
        /// About how long the queue takes to drain.
        retry_after: Duration,
    },
    /// A password is over [`MAX_PASSWORD_BYTES`]; refused unchecked (400).
    TooLong,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::AlreadySet => f.write_str("an admin password is already set"),
            AuthError::NotSet => f.write_str("no admin password is set yet"),
            AuthError::WrongPassword => f.write_str("wrong password"),
            AuthError::RateLimited { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                write!(f, "too many attempts; retry in {secs} s")
            }
            AuthError::SetupCode { given } => write!(
                f,
                "{}: it is printed in vigil's log at start and stored in DATA_DIR/setup-code",
                if *given {
                    "wrong setup code"
                } else {
                    "the setup code is required"
                }
            ),
            AuthError::WeakPassword(why) => write!(f, "password rejected: {why}"),
            AuthError::Storage(e) => write!(f, "admin password storage: {e}"),
            AuthError::Busy { retry_after } => write!(
                f,
                "too many password checks in progress; retry in {} s",
                retry_after.as_secs().max(1)
            ),
            AuthError::TooLong => write!(
                f,
                "password over {MAX_PASSWORD_BYTES} bytes; refused without checking"
            ),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for AuthError {
    fn from(e: StorageError) -> Self {
        AuthError::Storage(e)
    }
}

/// The device's admin authentication; share it through an `Arc`.
pub struct Auth {
    file: PasswordFile,
    code_file: CodeFile,
    config: AuthConfig,
    state: Mutex<State>,
    /// Held across hashing and writing by setup and password changes (never
    /// by login), taken before `state` when both are needed.
    write_lock: Mutex<()>,
    /// Permits for queueing a hash ([`Auth::admit`]).
    hashes: HashQueue,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("file", &self.file.path)
            .field("config", &self.config)
            .field("admin_set", &self.admin_set())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Opens the authentication state for `data_dir`, reading the password
    /// file if there is one.
    ///
    /// # Errors
    /// [`AuthError::Storage`] when the file exists but cannot be read or is
    /// corrupt; the caller decides whether to refuse to start.
    pub fn open(data_dir: &Path, config: AuthConfig) -> Result<Auth, AuthError> {
        let file = PasswordFile::new(data_dir);
        let stored = file.read()?;
        let code_file = CodeFile::new(data_dir);
        let code = offline::pending_code(&code_file, stored.is_some())?;
        if let Some(code) = &code {
            log::info!(
                "no admin password is set: set one on the status page with the setup code {code} \
                 (also in {}, removed after setup)",
                code_file.path.display()
            );
        }
        Ok(Auth {
            file,
            code_file,
            config: AuthConfig {
                iterations: config.iterations.max(1),
                ..config
            },
            state: Mutex::new(State {
                stored,
                code,
                generation: 0,
                sessions: Sessions::new(),
                limiter: Limiter::new(),
            }),
            write_lock: Mutex::new(()),
            hashes: HashQueue::default(),
        })
    }

    /// Admits a setup, login or password change to the hashing queue, before
    /// it is queued: every password within [`MAX_PASSWORD_BYTES`], `peer` not
    /// locked out at `now` (checked, not charged: the queued call charges),
    /// and a free place in the queue. The permit goes with the queued call.
    ///
    /// # Errors
    /// [`AuthError::TooLong`], [`AuthError::RateLimited`],
    /// [`AuthError::Busy`]; each counted in [`Auth::hash_queue`].
    pub fn admit(
        &self,
        peer: IpAddr,
        passwords: &[&str],
        now: Instant,
    ) -> Result<HashPermit, AuthError> {
        if passwords.iter().any(|p| p.len() > MAX_PASSWORD_BYTES) {
            self.hashes.refuse(Refusal::TooLong);
            return Err(AuthError::TooLong);
        }
        if let Err(wait) = self.state().limiter.check(peer, now) {
            self.hashes.refuse(Refusal::RateLimited);
            return Err(rate_limited(wait));
        }
        self.hashes.try_acquire().ok_or(AuthError::Busy {
            retry_after: hash_queue::BUSY_RETRY,
        })
    }

    /// The hashing queue's occupancy and refusals.
    pub fn hash_queue(&self) -> &HashQueue {
        &self.hashes
    }

    /// Whether session `id` is still valid at `now`, without counting as a
    /// use (an open event stream does not keep a session alive).
    pub fn session_live(&self, id: u64, now: Instant) -> bool {
        let cfg = self.config;
        self.state().sessions.live(id, now, &cfg)
    }

    /// Whether an admin password has been set.
    pub fn admin_set(&self) -> bool {
        self.state().stored.is_some()
    }

    /// First-use setup: only when no password is set and with the setup
    /// code (`code` as typed). Slow (hashes). Logs in. Voids the code and
    /// removes its file.
    ///
    /// # Errors
    /// [`AuthError::AlreadySet`], [`AuthError::SetupCode`] (a wrong code is
    /// charged to the login limiter), [`AuthError::WeakPassword`],
    /// [`AuthError::RateLimited`] (a peer locked out by failed logins stays
    /// locked out), [`AuthError::Storage`].
    pub fn setup(
        &self,
        peer: IpAddr,
        code: &str,
        password: &str,
        now: Instant,
    ) -> Result<SessionInfo, AuthError> {
        let _write = lock(&self.write_lock);
        {
            let mut st = self.state();
            if st.stored.is_some() {
                return Err(AuthError::AlreadySet);
            }
            st.limiter.check(peer, now).map_err(rate_limited)?;
            if !st.code.as_ref().is_some_and(|c| c.matches(code)) {
                // Charged like a wrong password, so the code cannot be
                // guessed faster than a password.
                let _charged = st.limiter.begin(peer, now).map_err(rate_limited)?;
                return Err(AuthError::SetupCode {
                    given: !code.trim().is_empty(),
                });
            }
        }
        check_policy(password)?;
        // Everything that can fail comes before the file is written, so a
        // written file always means a set password.
        let (token, csrf) = new_tokens()?;
        let stored = Stored::derive(password, self.config.iterations)?;
        self.file.write(&stored)?;
        if let Err(e) = self.code_file.remove() {
            // The code is void anyway (a password is set); the next start
            // removes the file.
            log::warn!("setup code: {e}");
        }
        let mut st = self.state();
        st.stored = Some(stored);
        st.code = None;
        st.generation += 1;
        st.limiter.forget(peer);
        Ok(st.sessions.insert(token, csrf, now, &self.config))
    }

    /// Checks `password` and opens a session. Slow (hashes). Rate-limited per
    /// peer and globally.
    ///
    /// # Errors
    /// [`AuthError::NotSet`], [`AuthError::RateLimited`],
    /// [`AuthError::WrongPassword`], [`AuthError::Storage`] (no randomness).
    pub fn login(
        &self,
        peer: IpAddr,
        password: &str,
        now: Instant,
    ) -> Result<SessionInfo, AuthError> {
        let attempt = self.begin_login(peer, now)?;
        let matched = attempt.stored.verify(password);
        self.finish_login(peer, attempt, matched, now)
    }

    /// Checks `password` without opening a session, for an admin action
    /// that asks for it again (a factory reset). Slow (hashes);
    /// rate-limited like login.
    ///
    /// # Errors
    /// As [`Auth::login`].
    pub fn confirm(&self, peer: IpAddr, password: &str, now: Instant) -> Result<(), AuthError> {
        let attempt = self.begin_login(peer, now)?;
        if !attempt.stored.verify(password) {
            return Err(AuthError::WrongPassword);
        }
        let mut st = self.state();
        if st.generation != attempt.generation {
            return Err(AuthError::WrongPassword);
        }
        st.limiter.succeed(peer, attempt.ticket);
        Ok(())
    }

    /// Login's first half, under the lock: checks and charges the limiter and
    /// snapshots the hash to verify against.
    fn begin_login(&self, peer: IpAddr, now: Instant) -> Result<LoginAttempt, AuthError> {
        let mut st = self.state();
        let stored = st.stored.ok_or(AuthError::NotSet)?;
        let ticket = st.limiter.begin(peer, now).map_err(rate_limited)?;
        Ok(LoginAttempt {
            stored,
            generation: st.generation,
            ticket,
        })
    }

    /// Login's second half, after hashing without the lock.
    fn finish_login(
        &self,
        peer: IpAddr,
        attempt: LoginAttempt,
        matched: bool,
        now: Instant,
    ) -> Result<SessionInfo, AuthError> {
        if !matched {
            return Err(AuthError::WrongPassword);
        }
        let (token, csrf) = new_tokens()?;
        let mut st = self.state();
        // A password change that landed while we hashed makes this password
        // stale; a session opened now would survive the change.
        if st.generation != attempt.generation {
            return Err(AuthError::WrongPassword);
        }
        st.limiter.succeed(peer, attempt.ticket);
        Ok(st.sessions.insert(token, csrf, now, &self.config))
    }

    /// The session for a cookie token, refreshing its idle timer; None when
    /// unknown or expired (and removes it).
    pub fn session(&self, token: &str, now: Instant) -> Option<SessionInfo> {
        let mut st = self.state();
        let cfg = self.config;
        let s = st.sessions.find(token, now, &cfg)?;
        s.touch(now);
        Some(s.info())
    }

    /// Checks a state-changing request: the session must be valid AND
    /// `csrf_header` must equal its CSRF token (constant time).
    pub fn authorize(&self, token: &str, csrf_header: &str, now: Instant) -> bool {
        let mut st = self.state();
        let cfg = self.config;
        match st.sessions.find(token, now, &cfg) {
            Some(s) if ct_eq(&s.csrf, csrf_header.as_bytes()) => {
                s.touch(now);
                true
            }
            _ => false,
        }
    }

    /// Ends the session for `token`, if there is one.
    pub fn logout(&self, token: &str) {
        let mut st = self.state();
        if let Some(i) = st.sessions.index_of(token) {
            st.sessions.slots[i] = None;
        }
    }

    /// Requires the current password (rate-limited like login); on success
    /// rewrites the file and ends every OTHER session. Slow (hashes twice).
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`] when `current` is wrong or `token` is not
    /// a valid session (the latter checked before hashing and not counted as
    /// a failure), [`AuthError::WeakPassword`] for `new`,
    /// [`AuthError::NotSet`], [`AuthError::RateLimited`],
    /// [`AuthError::Storage`].
    pub fn change_password(
        &self,
        peer: IpAddr,
        token: &str,
        current: &str,
        new: &str,
        now: Instant,
    ) -> Result<(), AuthError> {
        check_policy(new)?;
        let _write = lock(&self.write_lock);
        let (stored, ticket) = {
            let mut st = self.state();
            let stored = st.stored.ok_or(AuthError::NotSet)?;
            let cfg = self.config;
            st.sessions
                .find(token, now, &cfg)
                .ok_or(AuthError::WrongPassword)?
                .touch(now);
            let ticket = st.limiter.begin(peer, now).map_err(rate_limited)?;
            (stored, ticket)
        };
        if !stored.verify(current) {
            return Err(AuthError::WrongPassword);
        }
        self.state().limiter.succeed(peer, ticket);
        let replacement = Stored::derive(new, self.config.iterations)?;
        self.file.write(&replacement)?;
        let mut st = self.state();
        st.stored = Some(replacement);
        st.generation += 1;
        let keep = st.sessions.index_of(token);
        for (i, slot) in st.sessions.slots.iter_mut().enumerate() {
            if Some(i) != keep {
                *slot = None;
            }
        }
        Ok(())
    }

    /// The live sessions as text for the next process of a restart (it
    /// holds tokens: the caller keeps it in memory or a private tmpfs file).
    pub fn hand_over(&self, now: Instant) -> String {
        let cfg = self.config;
        self.state().sessions.hand_over(now, &cfg)
    }

    /// Takes over the sessions the previous process handed over; those
    /// expired meanwhile are dropped. Returns how many were taken.
    pub fn adopt(&self, text: &str, now: Instant) -> usize {
        let cfg = self.config;
        self.state().sessions.adopt(text, now, &cfg)
    }

    /// Sessions still valid at `now`; expired ones are dropped on the way.
    pub fn active_sessions(&self, now: Instant) -> usize {
        let mut st = self.state();
        let cfg = self.config;
        st.sessions.prune(now, &cfg);
        st.sessions.slots.iter().flatten().count()
    }

    /// The current setup code as printed, for tests that set up.
    #[cfg(test)]
    pub(crate) fn setup_code(&self) -> Option<String> {
        self.state().code.as_ref().map(SetupCode::to_string)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the state consistent before it can panic, so a
    // poisoned lock is still usable; refusing all logins forever is worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rate_limited(retry_after: Duration) -> AuthError {
    AuthError::RateLimited { retry_after }
}

/// The admin password policy, the setup page's and the preseed's: 8 to 128
/// bytes, not only whitespace.
///
/// # Errors
/// [`AuthError::WeakPassword`] saying which rule.
pub fn check_policy(password: &str) -> Result<(), AuthError> {
    if password.len() < MIN_PASSWORD_LEN {
        Err(AuthError::WeakPassword("must be at least 8 bytes long"))
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(AuthError::WeakPassword("must be at most 128 bytes long"))
    } else if password.chars().all(char::is_whitespace) {
        Err(AuthError::WeakPassword("must not be only whitespace"))
    } else {
        Ok(())
    }
}

/// A login between its two locked halves.
#[derive(Debug)]
struct LoginAttempt {
    stored: Stored,
    generation: u64,
    ticket: Ticket,
}

/// Everything behind the state mutex; all of it fixed-size.
struct State {
    stored: Option<Stored>,
    /// The one-time setup code while no password is set.
    code: Option<SetupCode>,
    /// Bumped whenever the password changes.
    generation: u64,
    sessions: Sessions,
    limiter: Limiter,
}
