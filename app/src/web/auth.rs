//! Admin authentication: the device password, sessions and the login limiter.
//!
//! There is no default credential. The first visitor sets the password
//! ([`Auth::setup`]); until then [`Auth::login`] answers [`AuthError::NotSet`].
//! The password is kept only as PBKDF2-HMAC-SHA256 with a 16-byte random salt
//! in `<data_dir>/admin-password`, one line
//! `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`. The file is written to
//! a temporary name with mode 0600, synced and renamed, so a power cut leaves
//! either the old password or the new one. It is parsed strictly: a damaged
//! file is an error naming the file, never a silently unset password that
//! would let anyone claim the device.
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
//! oldest attempt is forgotten first).
//!
//! The limiter runs before any hash, so a locked-out client costs no CPU.
//! Each peer gets 5 free failures, then a lockout of 1 s that doubles with
//! each further failure up to 5 min. Because addresses are cheap to rotate,
//! a global window also allows at most 20 failures per minute across all
//! peers; while it is full even the right password waits, which is the price
//! of a brute-force bound. An attempt is charged as a failure when it starts
//! and refunded if it succeeds, so parallel requests cannot all slip past the
//! check while the first one hashes.
//!
//! Sessions are identified by a random 256-bit token in an `HttpOnly`,
//! `SameSite=Strict` cookie. Each has its own random CSRF token that a
//! state-changing request must echo in a header ([`Auth::authorize`]); a
//! cross-site page can neither send the cookie nor read the CSRF token.
//! Sessions end after an idle timeout and an absolute lifetime. Time is
//! always passed in as an [`Instant`], so tests can move it; elapsed times are
//! computed with saturating subtraction, so instants that arrive slightly out
//! of order from concurrent requests never panic or extend anything. Secrets
//! are compared in constant time.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// PBKDF2 iterations for new password hashes (OWASP 2023 for HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Sessions kept at once; a login beyond this evicts the least recently used.
pub const MAX_SESSIONS: usize = 8;
/// Peers whose failed attempts the limiter remembers at once.
pub const MAX_TRACKED_PEERS: usize = 32;

const FILE_NAME: &str = "admin-password";
const TMP_NAME: &str = "admin-password.tmp";
const SCHEME: &str = "pbkdf2-sha256";
/// A valid file is at most 124 bytes; anything this long is not ours.
const MAX_FILE_LEN: u64 = 512;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const TOKEN_BYTES: usize = 32;
const TOKEN_HEX: usize = TOKEN_BYTES * 2;
const COOKIE_NAME: &str = "vigil_session";

const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 128;

/// Failures a peer may make before lockouts start.
const FREE_FAILURES: u32 = 5;
const LOCKOUT_BASE: Duration = Duration::from_secs(1);
const LOCKOUT_MAX: Duration = Duration::from_secs(5 * 60);
/// A peer quiet for this long starts again with a clean record.
const PEER_FORGET: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many failures across all peers per [`GLOBAL_WINDOW`].
const GLOBAL_FAILURES: usize = 20;
const GLOBAL_WINDOW: Duration = Duration::from_secs(60);

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
    /// The new password breaks the policy; the text says how (400).
    WeakPassword(&'static str),
    /// Reading or writing the password file failed, or it is corrupt; the
    /// message names the file (500).
    Storage(String),
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
            AuthError::WeakPassword(why) => write!(f, "password rejected: {why}"),
            AuthError::Storage(msg) => write!(f, "admin password storage: {msg}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The device's admin authentication; share it through an `Arc`.
pub struct Auth {
    file: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    config: AuthConfig,
    state: Mutex<State>,
    /// Held across hashing and writing by setup and password changes (never
    /// by login), taken before `state` when both are needed.
    write_lock: Mutex<()>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("file", &self.file)
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
        let file = data_dir.join(FILE_NAME);
        let stored = read_stored(&file)?;
        Ok(Auth {
            tmp: data_dir.join(TMP_NAME),
            dir: data_dir.to_path_buf(),
            file,
            config: AuthConfig {
                iterations: config.iterations.max(1),
                ..config
            },
            state: Mutex::new(State {
                stored,
                generation: 0,
                sessions: Sessions::new(),
                limiter: Limiter::new(),
            }),
            write_lock: Mutex::new(()),
        })
    }

    /// Whether an admin password has been set.
    pub fn admin_set(&self) -> bool {
        self.state().stored.is_some()
    }

    /// First-use setup: only when no password is set. Slow (hashes). Logs in.
    ///
    /// # Errors
    /// [`AuthError::AlreadySet`], [`AuthError::WeakPassword`],
    /// [`AuthError::RateLimited`] (a peer locked out by failed logins stays
    /// locked out), [`AuthError::Storage`].
    pub fn setup(
        &self,
        peer: IpAddr,
        password: &str,
        now: Instant,
    ) -> Result<SessionInfo, AuthError> {
        let _write = lock(&self.write_lock);
        {
            let st = self.state();
            if st.stored.is_some() {
                return Err(AuthError::AlreadySet);
            }
            st.limiter.check(peer, now).map_err(rate_limited)?;
        }
        check_policy(password)?;
        // Everything that can fail comes before the file is written, so a
        // written file always means a set password.
        let (token, csrf) = new_tokens()?;
        let stored = Stored::derive(password, self.config.iterations)?;
        self.write_file(&stored)?;
        let mut st = self.state();
        st.stored = Some(stored);
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
        self.write_file(&replacement)?;
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

    /// Sessions still valid at `now`; expired ones are dropped on the way.
    pub fn active_sessions(&self, now: Instant) -> usize {
        let mut st = self.state();
        let cfg = self.config;
        st.sessions.prune(now, &cfg);
        st.sessions.slots.iter().flatten().count()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Replaces the password file atomically: temporary file with mode 0600,
    /// fsync, rename, fsync of the directory.
    fn write_file(&self, stored: &Stored) -> Result<(), AuthError> {
        let tmp_err = |e: io::Error| AuthError::Storage(format!("{}: {e}", self.tmp.display()));
        // A leftover from a crash may have other permissions; start afresh.
        match fs::remove_file(&self.tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(tmp_err(e)),
            _ => {}
        }
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&self.tmp)?;
            // The umask can only clear bits, but make the mode exact anyway.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(stored.to_line().as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&self.tmp);
            return Err(tmp_err(e));
        }
        fs::rename(&self.tmp, &self.file).map_err(|e| {
            let _ = fs::remove_file(&self.tmp);
            AuthError::Storage(format!(
                "{}: rename from {TMP_NAME}: {e}",
                self.file.display()
            ))
        })?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuthError::Storage(format!("{}: fsync: {e}", self.dir.display())))
    }
}

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the state consistent before it can panic, so a
    // poisoned lock is still usable; refusing all logins forever is worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rate_limited(retry_after: Duration) -> AuthError {
    AuthError::RateLimited { retry_after }
}

fn check_policy(password: &str) -> Result<(), AuthError> {
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

/// Whether `a` equals `b`, in time that depends only on the lengths, which
/// are public (hex tokens and hashes have fixed sizes).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out);
}

/// Fills `buf` from the kernel's CSPRNG.
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut filled = 0;
        while filled < buf.len() {
            let rest = &mut buf[filled..];
            // SAFETY: the pointer and length describe `rest`, a live writable
            // slice; getrandom writes at most `rest.len()` bytes into it.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            match usize::try_from(n) {
                Ok(n) => filled += n,
                Err(_) => {
                    let err = io::Error::last_os_error();
                    match err.raw_os_error() {
                        Some(libc::EINTR) => {}
                        Some(libc::ENOSYS) => return File::open("/dev/urandom")?.read_exact(rest),
                        _ => return Err(err),
                    }
                }
            }
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        File::open("/dev/urandom")?.read_exact(buf)
    }
}

fn random<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut buf = [0u8; N];
    fill_random(&mut buf).map_err(|e| AuthError::Storage(format!("getrandom: {e}")))?;
    Ok(buf)
}

/// A fresh session token and CSRF token, as hex.
fn new_tokens() -> Result<([u8; TOKEN_HEX], [u8; TOKEN_HEX]), AuthError> {
    Ok((
        hex_encode(&random::<TOKEN_BYTES>()?),
        hex_encode(&random::<TOKEN_BYTES>()?),
    ))
}

fn hex_encode<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert_eq!(M, 2 * N);
    let mut out = [0u8; M];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// Decodes exactly `N` bytes of lowercase hex.
fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (b, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *b = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A password hash as kept in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    iterations: u32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl Stored {
    /// Hashes `password` with a new random salt. Slow.
    fn derive(password: &str, iterations: u32) -> Result<Stored, AuthError> {
        let salt = random::<SALT_LEN>()?;
        let mut hash = [0u8; HASH_LEN];
        pbkdf2_sha256(password.as_bytes(), &salt, iterations, &mut hash);
        Ok(Stored {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` hashes to this. Slow.
    fn verify(&self, password: &str) -> bool {
        let mut hash = [0u8; HASH_LEN];
        pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations, &mut hash);
        ct_eq(&hash, &self.hash)
    }

    fn to_line(self) -> String {
        let salt: [u8; 2 * SALT_LEN] = hex_encode(&self.salt);
        let hash: [u8; 2 * HASH_LEN] = hex_encode(&self.hash);
        format!(
            "{SCHEME}${}${}${}\n",
            self.iterations,
            String::from_utf8_lossy(&salt),
            String::from_utf8_lossy(&hash)
        )
    }

    /// Parses the file's content strictly; the error says what is wrong.
    fn parse(text: &str) -> Result<Stored, String> {
        let line = text
            .strip_suffix('\n')
            .ok_or("does not end with a newline")?;
        if line.contains(['\n', '\r']) {
            return Err("is not a single line".into());
        }
        let fields: Vec<&str> = line.split('$').collect();
        let [scheme, iterations, salt, hash] = fields[..] else {
            return Err(format!(
                "has {} '$'-separated fields, expected 4 ({SCHEME}$<iterations>$<salt>$<hash>)",
                fields.len()
            ));
        };
        if scheme != SCHEME {
            return Err(format!("unknown scheme {scheme:?}, expected {SCHEME:?}"));
        }
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 && iterations.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "iteration count {iterations:?} is not a number from 1 to {}",
                    u32::MAX
                ))
            }
        };
        let salt = hex_decode(salt)
            .ok_or_else(|| format!("salt {salt:?} is not {} lowercase hex digits", 2 * SALT_LEN))?;
        let hash = hex_decode(hash)
            .ok_or_else(|| format!("hash {hash:?} is not {} lowercase hex digits", 2 * HASH_LEN))?;
        Ok(Stored {
            iterations,
            salt,
            hash,
        })
    }
}

/// Reads the password file: `None` when absent, an error naming the file when
/// unreadable or corrupt.
fn read_stored(path: &Path) -> Result<Option<Stored>, AuthError> {
    let err = |what: String| AuthError::Storage(format!("{}: {what}", path.display()));
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(err(format!("longer than {MAX_FILE_LEN} bytes")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| err("is not UTF-8 text".into()))?;
    Stored::parse(text).map(Some).map_err(err)
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
    /// Bumped whenever the password changes.
    generation: u64,
    sessions: Sessions,
    limiter: Limiter,
}

struct Session {
    token: [u8; TOKEN_HEX],
    csrf: [u8; TOKEN_HEX],
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

    fn touch(&mut self, now: Instant) {
        self.last_used = self.last_used.max(now);
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            token: String::from_utf8_lossy(&self.token).into_owned(),
            csrf: String::from_utf8_lossy(&self.csrf).into_owned(),
        }
    }
}

struct Sessions {
    slots: [Option<Session>; MAX_SESSIONS],
}

impl Sessions {
    fn new() -> Self {
        Sessions {
            slots: std::array::from_fn(|_| None),
        }
    }

    fn prune(&mut self, now: Instant, cfg: &AuthConfig) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.expired(now, cfg)) {
                *slot = None;
            }
        }
    }

    /// The slot holding `token`, comparing against every slot in constant
    /// time per slot.
    fn index_of(&self, token: &str) -> Option<usize> {
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
    fn find(&mut self, token: &str, now: Instant, cfg: &AuthConfig) -> Option<&mut Session> {
        let i = self.index_of(token)?;
        if self.slots[i].as_ref().is_some_and(|s| s.expired(now, cfg)) {
            self.slots[i] = None;
        }
        self.slots[i].as_mut()
    }

    /// Stores a new session in a free slot, else in place of the least
    /// recently used one.
    fn insert(
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
        let s = Session {
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

#[derive(Clone, Copy, Debug)]
struct PeerRecord {
    ip: IpAddr,
    failures: u32,
    last_attempt: Instant,
    lock_start: Instant,
    lock_len: Duration,
}

impl PeerRecord {
    fn fresh(ip: IpAddr, now: Instant) -> Self {
        PeerRecord {
            ip,
            failures: 0,
            last_attempt: now,
            lock_start: now,
            lock_len: Duration::ZERO,
        }
    }

    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_attempt) >= PEER_FORGET
    }

    /// Time left in the lockout; zero once `now >= lock_start + lock_len`.
    fn wait(&self, now: Instant) -> Duration {
        self.lock_len
            .saturating_sub(now.saturating_duration_since(self.lock_start))
    }
}

/// Lockout after the `failures`-th failure: none for the first few, then
/// 1 s doubling per failure up to 5 min.
fn lockout(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => LOCKOUT_BASE
            .saturating_mul(1 << extra.min(16))
            .min(LOCKOUT_MAX),
    }
}

/// A started attempt, already charged as a failure; refunded on success.
#[derive(Debug)]
struct Ticket {
    global_slot: usize,
    at: Instant,
}

struct Limiter {
    peers: [Option<PeerRecord>; MAX_TRACKED_PEERS],
    /// When each of the last failures happened; a slot is free once its
    /// failure is [`GLOBAL_WINDOW`] old.
    global: [Option<Instant>; GLOBAL_FAILURES],
}

impl Limiter {
    fn new() -> Self {
        Limiter {
            peers: [None; MAX_TRACKED_PEERS],
            global: [None; GLOBAL_FAILURES],
        }
    }

    fn peer(&self, ip: IpAddr, now: Instant) -> Option<usize> {
        self.peers
            .iter()
            .position(|p| p.is_some_and(|p| p.ip == ip && !p.stale(now)))
    }

    fn global_wait(&self, now: Instant) -> Duration {
        self.global
            .iter()
            .map(|t| {
                t.map_or(Duration::ZERO, |t| {
                    GLOBAL_WINDOW.saturating_sub(now.saturating_duration_since(t))
                })
            })
            .min()
            .unwrap_or(Duration::ZERO)
    }

    /// `Err(retry_after)` when `ip` or everyone is locked out at `now`.
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let peer = self
            .peer(ip, now)
            .and_then(|i| self.peers[i])
            .map_or(Duration::ZERO, |p| p.wait(now));
        let wait = peer.max(self.global_wait(now));
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Checks, then charges the attempt as a failure for `ip` and globally.
    fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<Ticket, Duration> {
        self.check(ip, now)?;
        let i = self.peer(ip, now).unwrap_or_else(|| self.claim(ip, now));
        let p = self.peers[i].get_or_insert(PeerRecord::fresh(ip, now));
        p.failures = p.failures.saturating_add(1);
        p.last_attempt = p.last_attempt.max(now);
        let len = lockout(p.failures);
        if !len.is_zero() {
            p.lock_start = now;
            p.lock_len = len;
        }
        // check() found a free global slot.
        let global_slot = self
            .global
            .iter()
            .position(|t| t.is_none_or(|t| now.saturating_duration_since(t) >= GLOBAL_WINDOW))
            .unwrap_or(0);
        self.global[global_slot] = Some(now);
        Ok(Ticket {
            global_slot,
            at: now,
        })
    }

    /// A slot for a new record of `ip`: a free or stale one, else the one
    /// with the oldest attempt.
    fn claim(&mut self, ip: IpAddr, now: Instant) -> usize {
        let i = self
            .peers
            .iter()
            .position(|p| p.is_none_or(|p| p.stale(now)))
            .or_else(|| {
                (0..MAX_TRACKED_PEERS).min_by_key(|&i| self.peers[i].map(|p| p.last_attempt))
            })
            .unwrap_or(0);
        self.peers[i] = Some(PeerRecord::fresh(ip, now));
        i
    }

    /// The attempt succeeded: refund its global charge and clear the peer.
    fn succeed(&mut self, ip: IpAddr, ticket: Ticket) {
        if self.global[ticket.global_slot] == Some(ticket.at) {
            self.global[ticket.global_slot] = None;
        }
        self.forget(ip);
    }

    fn forget(&mut self, ip: IpAddr) {
        for slot in &mut self.peers {
            if slot.is_some_and(|p| p.ip == ip) {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const PW: &str = "correct horse";
    const FAST: AuthConfig = AuthConfig {
        iterations: 1_000,
        session_idle: Duration::from_secs(30 * 60),
        session_lifetime: Duration::from_secs(12 * 60 * 60),
    };

    /// A fresh directory under the target dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "vigil-auth-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn fresh() -> (TempDir, Auth) {
        let dir = TempDir::new();
        let auth = Auth::open(&dir.0, FAST).expect("open");
        (dir, auth)
    }

    fn with_password(now: Instant) -> (TempDir, Auth, SessionInfo) {
        let (dir, auth) = fresh();
        let s = auth.setup(ip(1), PW, now).expect("setup");
        (dir, auth, s)
    }

    fn retry_after(r: Result<SessionInfo, AuthError>) -> Duration {
        match r {
            Err(AuthError::RateLimited { retry_after }) => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_matches_known_vectors() {
        let mut out = [0u8; 64];
        pbkdf2_sha256(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        let mut out = [0u8; 32];
        pbkdf2_sha256(b"password", b"salt", 4096, &mut out);
        assert_eq!(
            hex(&out),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn auth_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Auth>();
    }

    #[test]
    fn setup_then_login() {
        let t = Instant::now();
        let (_d, auth) = fresh();
        assert!(!auth.admin_set());
        let s = auth.setup(ip(1), PW, t).expect("setup");
        assert!(auth.admin_set());
        assert_eq!(s.token.len(), 64);
        assert_eq!(s.csrf.len(), 64);
        assert!(s.token.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(s.token, s.csrf);
        assert_eq!(auth.session(&s.token, t), Some(s.clone()));
        let l = auth.login(ip(2), PW, t).expect("login");
        assert_ne!(l.token, s.token);
        assert_eq!(auth.active_sessions(t), 2);
    }

    #[test]
    fn setup_twice_is_already_set() {
        let t = Instant::now();
        let (_d, auth, _) = with_password(t);
        assert!(matches!(
            auth.setup(ip(1), "another one", t),
            Err(AuthError::AlreadySet)
        ));
        assert!(matches!(
            auth.setup(ip(1), "short", t),
            Err(AuthError::AlreadySet)
        ));
        assert!(auth.login(ip(1), PW, t).is_ok());
    }

    #[test]
    fn concurrent_setups_one_wins() {
        let t = Instant::now();
        let (_d, auth) = fresh();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let auth = &auth;
                    s.spawn(move || auth.setup(ip(i), &format!("password-{i}"), t))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Err(AuthError::AlreadySet)))
                .count(),
            3
        );
        let winner = results.iter().position(Result::is_ok).expect("a winner");
        assert!(auth.login(ip(9), &format!("password-{winner}"), t).is_ok());
    }

    #[test]
    fn login_before_setup_is_not_set() {
        let (_d, auth) = fresh();
        assert!(matches!(
            auth.login(ip(1), PW, Instant::now()),
            Err(AuthError::NotSet)
        ));
    }

    #[test]
    fn wrong_password() {
        let t = Instant::now();
        let (_d, auth, _) = with_password(t);
        let e = auth.login(ip(1), "incorrect horse", t).expect_err("wrong");
        assert!(matches!(e, AuthError::WrongPassword));
        assert_eq!(e.to_string(), "wrong password");
    }

    #[test]
    fn file_has_mode_0600_format_and_survives_restart() {
        let t = Instant::now();
        let (dir, auth, s) = with_password(t);
        let path = dir.0.join("admin-password");
        let meta = fs::metadata(&path).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!dir.0.join("admin-password.tmp").exists());
        let text = fs::read_to_string(&path).expect("read");
        let line = text.strip_suffix('\n').expect("newline");
        let fields: Vec<&str> = line.split('$').collect();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0], "pbkdf2-sha256");
        assert_eq!(fields[1], "1000");
        assert_eq!(fields[2].len(), 32);
        assert_eq!(fields[3].len(), 64);
        assert!(fields[2..]
            .iter()
            .all(|f| f.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))));
        drop(auth);

        // Restart with another iteration count: the stored one verifies.
        let cfg = AuthConfig {
            iterations: 2_000,
            ..FAST
        };
        let again = Auth::open(&dir.0, cfg).expect("reopen");
        assert!(again.admin_set());
        assert!(
            again.session(&s.token, t).is_none(),
            "sessions do not persist"
        );
        assert!(matches!(
            again.setup(ip(1), PW, t),
            Err(AuthError::AlreadySet)
        ));
        assert!(again.login(ip(1), PW, t).is_ok());
        assert!(matches!(
            again.login(ip(1), "not the password", t),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn salts_differ_between_hashes() {
        let a = Stored::derive(PW, 1).expect("derive");
        let b = Stored::derive(PW, 1).expect("derive");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
        assert_eq!(Stored::parse(&a.to_line()), Ok(a));
    }

    #[test]
    fn corrupt_files_are_storage_errors_naming_the_file() {
        let salt = "00112233445566778899aabbccddeeff";
        let hash = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let good = format!("pbkdf2-sha256$1000${salt}${hash}\n");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "newline"),
            (good.trim_end().into(), "newline"),
            (format!("{good}\n").into(), "single line"),
            (format!("{good}{good}").into(), "single line"),
            (good.replace('\n', "\r\n").into(), "single line"),
            (
                format!("pbkdf2-sha256$1000${salt}\n").into(),
                "3 '$'-separated fields",
            ),
            (
                format!("{}$x\n", good.trim_end()).into(),
                "5 '$'-separated fields",
            ),
            (
                good.replace("pbkdf2-sha256", "pbkdf2-sha1").into(),
                "scheme",
            ),
            (good.replace("$1000$", "$$").into(), "iteration count"),
            (good.replace("$1000$", "$abc$").into(), "iteration count"),
            (good.replace("$1000$", "$0$").into(), "iteration count"),
            (good.replace("$1000$", "$+1000$").into(), "iteration count"),
            (good.replace("$1000$", "$-1$").into(), "iteration count"),
            (good.replace("$1000$", "$ 1000$").into(), "iteration count"),
            (
                good.replace("$1000$", "$99999999999$").into(),
                "iteration count",
            ),
            (good.replace(salt, &salt[2..]).into(), "salt"),
            (good.replace(salt, &format!("{salt}00")).into(), "salt"),
            (good.replace(salt, &salt.replace('a', "g")).into(), "salt"),
            (good.replace(salt, &salt.to_uppercase()).into(), "salt"),
            (good.replace(hash, &hash[2..]).into(), "hash"),
            (good.replace(hash, &hash.replace('a', "z")).into(), "hash"),
            (good.replace(hash, "").into(), "hash"),
            (vec![0xff; 20], "UTF-8"),
            (vec![b'x'; 1000], "longer than"),
        ];
        for (content, expect) in cases {
            let dir = TempDir::new();
            let path = dir.0.join("admin-password");
            fs::write(&path, &content).expect("write");
            match Auth::open(&dir.0, FAST) {
                Err(AuthError::Storage(msg)) => {
                    assert!(msg.contains(&path.display().to_string()), "{msg}");
                    assert!(msg.contains(expect), "{msg:?} should mention {expect:?}");
                }
                other => panic!(
                    "{:?}: expected Storage, got {other:?}",
                    String::from_utf8_lossy(&content)
                ),
            }
        }
        // And the good one opens.
        let dir = TempDir::new();
        fs::write(dir.0.join("admin-password"), &good).expect("write");
        assert!(Auth::open(&dir.0, FAST).expect("good file").admin_set());
    }

    #[test]
    fn unreadable_file_is_storage_error() {
        let dir = TempDir::new();
        fs::create_dir(dir.0.join("admin-password")).expect("mkdir");
        match Auth::open(&dir.0, FAST) {
            Err(AuthError::Storage(msg)) => assert!(msg.contains("admin-password"), "{msg}"),
            other => panic!("expected Storage, got {other:?}"),
        }
    }

    #[test]
    fn write_failure_is_storage_error_and_leaves_unset() {
        let dir = TempDir::new();
        let missing = dir.0.join("no-such-dir");
        let auth = Auth::open(&missing, FAST).expect("open");
        match auth.setup(ip(1), PW, Instant::now()) {
            Err(AuthError::Storage(msg)) => assert!(msg.contains("admin-password.tmp"), "{msg}"),
            other => panic!("expected Storage, got {other:?}"),
        }
        assert!(!auth.admin_set());
    }

    #[test]
    fn five_failures_then_lockout_that_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let (_d, auth, _) = with_password(t0);
        let peer = ip(7);
        for _ in 0..5 {
            assert!(matches!(
                auth.login(peer, "bad password", t0),
                Err(AuthError::WrongPassword)
            ));
        }
        let wait = retry_after(auth.login(peer, PW, t0));
        assert_eq!(wait, Duration::from_secs(1));
        // Another peer is not affected.
        assert!(auth.login(ip(8), PW, t0).is_ok());
        // Just before the end still limited, with the remainder.
        let almost = t0 + wait - Duration::from_millis(1);
        assert_eq!(
            retry_after(auth.login(peer, PW, almost)),
            Duration::from_millis(1)
        );

        // Each further failure doubles the lockout, up to 5 min.
        let mut t = t0 + wait;
        let mut expected = Duration::from_secs(1);
        for _ in 0..12 {
            assert!(matches!(
                auth.login(peer, "bad password", t),
                Err(AuthError::WrongPassword)
            ));
            expected = (expected * 2).min(Duration::from_secs(300));
            let wait = retry_after(auth.login(peer, PW, t));
            assert_eq!(wait, expected);
            t += wait;
        }
        assert_eq!(expected, Duration::from_secs(300));
        let e = auth.login(peer, "bad password", t).expect_err("wrong");
        assert!(matches!(e, AuthError::WrongPassword));
        let e = auth
            .login(peer, PW, t + Duration::from_millis(3_500))
            .expect_err("limited");
        assert_eq!(e.to_string(), "too many attempts; retry in 297 s");

        // Success after the lockout resets the count: 5 free failures again.
        t += Duration::from_secs(300);
        assert!(auth.login(peer, PW, t).is_ok());
        for _ in 0..5 {
            assert!(matches!(
                auth.login(peer, "bad password", t),
                Err(AuthError::WrongPassword)
            ));
        }
        assert_eq!(retry_after(auth.login(peer, PW, t)), Duration::from_secs(1));
    }

    #[test]
    fn lockout_schedule() {
        assert_eq!(lockout(4), Duration::ZERO);
        assert_eq!(lockout(5), Duration::from_secs(1));
        assert_eq!(lockout(6), Duration::from_secs(2));
        assert_eq!(lockout(13), Duration::from_secs(256));
        assert_eq!(lockout(14), Duration::from_secs(300));
        assert_eq!(lockout(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_quiet_peer_is_forgotten_after_a_day() {
        let t = Instant::now();
        let (_d, auth, _) = with_password(t);
        for _ in 0..5 {
            let _ = auth.login(ip(3), "bad password", t);
        }
        let later = t + PEER_FORGET;
        assert!(matches!(
            auth.login(ip(3), "bad password", later),
            Err(AuthError::WrongPassword)
        ));
        assert!(auth.login(ip(3), PW, later).is_ok());
    }

    #[test]
    fn locked_out_peer_costs_no_hash() {
        // A stored count this high would take hours to hash: reaching the
        // hash at all would hang the test.
        let dir = TempDir::new();
        let line = format!(
            "pbkdf2-sha256$4000000000${}${}\n",
            "11".repeat(16),
            "22".repeat(32)
        );
        fs::write(dir.0.join("admin-password"), line).expect("write");
        let auth = Auth::open(&dir.0, FAST).expect("open");
        let t = Instant::now();
        for _ in 0..5 {
            auth.state().limiter.begin(ip(1), t).expect("charge");
        }
        assert!(retry_after(auth.login(ip(1), PW, t)) > Duration::ZERO);
        for n in 0..15 {
            auth.state().limiter.begin(ip(100 + n), t).expect("charge");
        }
        assert_eq!(retry_after(auth.login(ip(2), PW, t)), GLOBAL_WINDOW);
    }

    #[test]
    fn global_limit_across_many_addresses() {
        let t = Instant::now();
        let (_d, auth, _) = with_password(t);
        let mut limited = 0;
        for n in 0..40 {
            match auth.login(ip(1000 + n), "bad password", t) {
                Err(AuthError::WrongPassword) => assert!(n < 20, "failure {n} was not limited"),
                Err(AuthError::RateLimited { retry_after }) => {
                    assert_eq!(retry_after, Duration::from_secs(60));
                    limited += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(limited, 20);
        // Even the right password from a new address waits.
        let half = t + Duration::from_secs(30);
        assert_eq!(
            retry_after(auth.login(ip(5000), PW, half)),
            Duration::from_secs(30)
        );
        // At exactly the end of the window, attempts are allowed again.
        let later = t + GLOBAL_WINDOW;
        assert!(auth.login(ip(5000), PW, later).is_ok());
        assert!(matches!(
            auth.login(ip(5001), "bad password", later),
            Err(AuthError::WrongPassword)
        ));
    }

    #[test]
    fn successes_do_not_use_the_global_budget() {
        let t = Instant::now();
        let (_d, auth, _) = with_password(t);
        for n in 0..30 {
            assert!(auth.login(ip(n), PW, t).is_ok());
        }
        assert!(auth.state().limiter.global.iter().all(Option::is_none));
    }

    #[test]
    fn peer_table_stays_bounded() {
        let t0 = Instant::now();
        let (_d, auth, _) = with_password(t0);
        // One failure every 3 s stays just inside the global limit.
        for n in 0..100u32 {
            let t = t0 + Duration::from_secs(3 * u64::from(n));
            assert!(matches!(
                auth.login(ip(n), "bad password", t),
                Err(AuthError::WrongPassword)
            ));
        }
        let st = auth.state();
        let tracked: Vec<IpAddr> = st.limiter.peers.iter().flatten().map(|p| p.ip).collect();
        assert_eq!(tracked.len(), MAX_TRACKED_PEERS);
        // The oldest were evicted; the newest 32 remain.
        for n in 68..100 {
            assert!(tracked.contains(&ip(n)), "{n}");
        }
    }

    #[test]
    fn idle_expiry_is_inclusive_at_the_boundary() {
        let t0 = Instant::now();
        let (_d, auth, s) = with_password(t0);
        let idle = FAST.session_idle;
        let t1 = t0 + idle - Duration::from_nanos(1);
        assert!(auth.session(&s.token, t1).is_some(), "valid just before");
        // That use refreshed the timer: expiry is now t1 + idle, exactly.
        assert!(auth
            .session(&s.token, t1 + idle - Duration::from_nanos(1))
            .is_some());
        let t2 = t1 + idle - Duration::from_nanos(1);
        assert!(
            auth.session(&s.token, t2 + idle).is_none(),
            "expired at exactly last_used + idle"
        );
        // Removed: going back in time does not resurrect it.
        assert!(auth.session(&s.token, t2).is_none());
        assert_eq!(auth.active_sessions(t2), 0);
    }

    #[test]
    fn big_jump_expires_and_earlier_instants_are_harmless() {
        let t0 = Instant::now();
        let (_d, auth, s) = with_password(t0);
        let t1 = t0 + Duration::from_secs(60);
        assert!(auth.session(&s.token, t1).is_some());
        // An instant from before the last use (a concurrent request) is fine
        // and does not move the timer back.
        assert!(auth.session(&s.token, t0).is_some());
        assert!(auth
            .session(&s.token, t1 + FAST.session_idle - Duration::from_nanos(1))
            .is_some());
        let far = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        assert!(auth.session(&s.token, far).is_none());
        assert!(!auth.authorize(&s.token, &s.csrf, t0));
    }

    #[test]
    fn absolute_lifetime_ends_a_busy_session() {
        let t0 = Instant::now();
        let (_d, auth, s) = with_password(t0);
        let step = Duration::from_secs(10 * 60);
        let mut t = t0;
        while t + step < t0 + FAST.session_lifetime {
            t += step;
            assert!(auth.session(&s.token, t).is_some());
        }
        let end = t0 + FAST.session_lifetime;
        assert!(auth
            .session(&s.token, end - Duration::from_nanos(1))
            .is_some());
        assert!(auth.session(&s.token, end).is_none());
    }

    #[test]
    fn ninth_login_evicts_least_recently_used() {
        let t0 = Instant::now();
        let (_d, auth, first) = with_password(t0);
        let mut sessions = vec![first];
        for n in 1..MAX_SESSIONS as u64 {
            sessions.push(
                auth.login(ip(1), PW, t0 + Duration::from_secs(n))
                    .expect("login"),
            );
        }
        let t = t0 + Duration::from_secs(100);
        // Use the oldest, so the second becomes least recently used.
        assert!(auth.session(&sessions[0].token, t).is_some());
        assert_eq!(auth.active_sessions(t), MAX_SESSIONS);
        let ninth = auth.login(ip(1), PW, t).expect("login");
        assert_eq!(auth.active_sessions(t), MAX_SESSIONS);
        assert!(auth.session(&sessions[1].token, t).is_none(), "LRU evicted");
        assert!(auth.session(&sessions[0].token, t).is_some());
        for s in &sessions[2..] {
            assert!(auth.session(&s.token, t).is_some());
        }
        assert!(auth.session(&ninth.token, t).is_some());
    }

    #[test]
    fn expired_sessions_make_room_before_eviction() {
        let t0 = Instant::now();
        let (_d, auth, first) = with_password(t0);
        let late = t0 + Duration::from_secs(20 * 60);
        let mut live = Vec::new();
        for _ in 1..MAX_SESSIONS {
            live.push(auth.login(ip(1), PW, late).expect("login"));
        }
        // At t0 + idle the first has expired; its slot is reused.
        let t = t0 + FAST.session_idle;
        auth.login(ip(1), PW, t).expect("login");
        assert!(auth.session(&first.token, t).is_none());
        assert!(live.iter().all(|s| auth.session(&s.token, t).is_some()));
    }

    #[test]
    fn authorize_needs_session_and_csrf() {
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        assert!(auth.authorize(&s.token, &s.csrf, t));
        assert!(!auth.authorize(&s.token, "", t));
        assert!(!auth.authorize(&s.token, &s.token, t));
        let mut wrong = s.csrf.clone();
        wrong.replace_range(63.., if s.csrf.ends_with('0') { "1" } else { "0" });
        assert!(!auth.authorize(&s.token, &wrong, t));
        assert!(!auth.authorize(&s.csrf, &s.csrf, t));
        assert!(!auth.authorize("", "", t));
        assert!(!auth.authorize(&s.token[..63], &s.csrf, t));
        let other = auth.login(ip(1), PW, t).expect("login");
        assert!(
            !auth.authorize(&other.token, &s.csrf, t),
            "CSRF tokens are per session"
        );
    }

    #[test]
    fn logout_ends_only_that_session() {
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        let other = auth.login(ip(1), PW, t).expect("login");
        auth.logout(&s.token);
        auth.logout("not a token");
        assert!(auth.session(&s.token, t).is_none());
        assert!(!auth.authorize(&s.token, &s.csrf, t));
        assert!(auth.session(&other.token, t).is_some());
        assert_eq!(auth.active_sessions(t), 1);
    }

    #[test]
    fn change_password_keeps_only_the_callers_session() {
        let t = Instant::now();
        let (dir, auth, mine) = with_password(t);
        let others: Vec<_> = (0..3)
            .map(|_| auth.login(ip(1), PW, t).expect("login"))
            .collect();
        let before = fs::read_to_string(dir.0.join("admin-password")).expect("read");

        let e = auth.change_password(ip(1), &mine.token, "wrong current", "new password", t);
        assert!(matches!(e, Err(AuthError::WrongPassword)));
        assert_eq!(auth.active_sessions(t), 4, "failure changes nothing");

        auth.change_password(ip(1), &mine.token, PW, "new password", t)
            .expect("change");
        assert_eq!(auth.active_sessions(t), 1);
        assert!(auth.authorize(&mine.token, &mine.csrf, t));
        assert!(others.iter().all(|s| auth.session(&s.token, t).is_none()));
        let after = fs::read_to_string(dir.0.join("admin-password")).expect("read");
        assert_ne!(before, after);
        assert!(matches!(
            auth.login(ip(1), PW, t),
            Err(AuthError::WrongPassword)
        ));
        assert!(auth.login(ip(1), "new password", t).is_ok());
        let reopened = Auth::open(&dir.0, FAST).expect("reopen");
        assert!(reopened.login(ip(1), "new password", t).is_ok());
    }

    #[test]
    fn change_password_checks_session_policy_and_limit() {
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        let r = auth.change_password(ip(1), "bogus", PW, "new password", t);
        assert!(matches!(r, Err(AuthError::WrongPassword)));
        let r = auth.change_password(ip(1), &s.token, PW, "short", t);
        assert!(matches!(r, Err(AuthError::WeakPassword(_))));
        for _ in 0..5 {
            let r = auth.change_password(ip(1), &s.token, "wrong current", "new password", t);
            assert!(matches!(r, Err(AuthError::WrongPassword)));
        }
        let r = auth.change_password(ip(1), &s.token, PW, "new password", t);
        assert!(matches!(r, Err(AuthError::RateLimited { .. })));
        // Failures here lock out login from that peer too.
        assert!(retry_after(auth.login(ip(1), PW, t)) > Duration::ZERO);
    }

    #[test]
    fn weak_passwords_are_rejected() {
        let t = Instant::now();
        let (_d, auth) = fresh();
        for weak in [
            "",
            "1234567",
            "        ",
            " \t\n\r \t\n\r",
            &"x".repeat(129),
        ] {
            match auth.setup(ip(1), weak, t) {
                Err(e @ AuthError::WeakPassword(_)) => {
                    assert!(e.to_string().starts_with("password rejected: must"))
                }
                other => panic!("{weak:?}: {other:?}"),
            }
        }
        assert!(!auth.admin_set());
        assert!(auth.setup(ip(1), &"x".repeat(128), t).is_ok());
        let (_d, auth) = fresh();
        assert!(auth.setup(ip(1), "12345678", t).is_ok());
        let (_d, auth) = fresh();
        assert!(auth.setup(ip(1), " pass word ", t).is_ok());
    }

    #[test]
    fn cookie_token_parsing() {
        assert_eq!(cookie_token("a=b; vigil_session=xyz; c=d"), Some("xyz"));
        assert_eq!(cookie_token("vigil_session=xyz"), Some("xyz"));
        assert_eq!(cookie_token("  vigil_session = xyz  ;c=d"), Some("xyz"));
        assert_eq!(cookie_token("a=b; c=d"), None);
        assert_eq!(cookie_token(""), None);
        assert_eq!(cookie_token("vigil_session="), None);
        assert_eq!(cookie_token("vigil_session=; a=b"), None);
        assert_eq!(
            cookie_token("vigil_session_old=abc; xvigil_session=def"),
            None
        );
        assert_eq!(cookie_token("vigil_session"), None);
        assert_eq!(
            cookie_token("vigil_session=; vigil_session=abc"),
            Some("abc")
        );
    }

    #[test]
    fn cookies_have_the_right_attributes() {
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        let cookie = session_cookie(&s, &FAST);
        assert_eq!(
            cookie,
            format!(
                "vigil_session={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
                s.token
            )
        );
        assert_eq!(
            cookie_token(cookie.split(';').next().expect("pair")),
            Some(s.token.as_str())
        );
        assert_eq!(
            clear_cookie(),
            "vigil_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        assert_eq!(auth.session(&s.token, t), Some(s));
    }

    #[test]
    fn error_messages() {
        let limited = AuthError::RateLimited {
            retry_after: Duration::from_millis(3_001),
        };
        assert_eq!(limited.to_string(), "too many attempts; retry in 4 s");
        let exact = AuthError::RateLimited {
            retry_after: Duration::from_secs(4),
        };
        assert_eq!(exact.to_string(), "too many attempts; retry in 4 s");
        assert_eq!(
            AuthError::NotSet.to_string(),
            "no admin password is set yet"
        );
        assert_eq!(
            AuthError::AlreadySet.to_string(),
            "an admin password is already set"
        );
    }

    #[test]
    fn debug_shows_no_secrets() {
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        let text = format!("{auth:?}");
        assert!(text.contains("admin_set: true"), "{text}");
        assert!(!text.contains(&s.token) && !text.contains(&s.csrf));
    }

    #[test]
    fn default_config() {
        let c = AuthConfig::default();
        assert_eq!(c.iterations, DEFAULT_ITERATIONS);
        assert_eq!(c.session_idle, Duration::from_secs(1800));
        assert_eq!(c.session_lifetime, Duration::from_secs(43_200));
    }

    #[test]
    fn login_racing_a_password_change_opens_no_session() {
        let t = Instant::now();
        let (_d, auth, mine) = with_password(t);
        // A login that verified the old password while the change landed.
        let attempt = auth.begin_login(ip(2), t).expect("begin");
        auth.change_password(ip(1), &mine.token, PW, "new password", t)
            .expect("change");
        let matched = attempt.stored.verify(PW);
        assert!(matched);
        let r = auth.finish_login(ip(2), attempt, matched, t);
        assert!(matches!(r, Err(AuthError::WrongPassword)));
        assert_eq!(auth.active_sessions(t), 1);
    }

    #[test]
    fn session_checks_do_not_wait_for_a_hash() {
        use std::sync::atomic::AtomicBool;
        let t = Instant::now();
        let (_d, auth, s) = with_password(t);
        // Make verification slow: a few hundred ms in either profile.
        let iterations = if cfg!(debug_assertions) {
            100_000
        } else {
            5_000_000
        };
        auth.state().stored.as_mut().expect("set").iterations = iterations;
        let started = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let (hash_time, worst, checks) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                started.store(true, Ordering::SeqCst);
                let begin = Instant::now();
                let r = auth.login(ip(2), "not the password", t);
                let took = begin.elapsed();
                done.store(true, Ordering::SeqCst);
                assert!(matches!(r, Err(AuthError::WrongPassword)));
                took
            });
            while !started.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let (mut worst, mut checks) = (Duration::ZERO, 0u32);
            while !done.load(Ordering::SeqCst) {
                let begin = Instant::now();
                assert!(auth.session(&s.token, t).is_some());
                worst = worst.max(begin.elapsed());
                checks += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (worker.join().expect("join"), worst, checks)
        });
        assert!(checks > 1, "no session check ran during the hash");
        assert!(
            worst < hash_time / 4,
            "a session check waited {worst:?} during a {hash_time:?} hash"
        );
    }

    /// One hash at the production count; run with
    /// `cargo test --release -- --ignored --nocapture time_default_hash`.
    #[test]
    #[ignore = "timing only"]
    fn time_default_hash() {
        let start = Instant::now();
        let s = Stored::derive(PW, DEFAULT_ITERATIONS).expect("derive");
        let derive = start.elapsed();
        let start = Instant::now();
        assert!(s.verify(PW));
        println!("derive {derive:?}, verify {:?}", start.elapsed());
    }
}
