//! The login rate limiter: per-peer lockouts and a global failure window.
//!
//! It runs before any hash, so a locked-out client costs no CPU. Each peer
//! gets 5 free failures, then a lockout of 1 s that doubles with each further
//! failure up to 5 min. Because addresses are cheap to rotate, a global
//! window also allows at most 20 failures per minute across all peers; while
//! it is full even the right password waits, which is the price of a
//! brute-force bound. An attempt is charged as a failure when it starts
//! ([`Limiter::begin`]) and refunded if it succeeds, so parallel requests
//! cannot all slip past the check while the first one hashes.
//!
//! The global window has one exception: a peer that has proved it knows the
//! password (set it, logged in, changed it) since vigil started is trusted,
//! and only its own record limits it. Otherwise anyone flooding the login
//! from rotating addresses would keep the global window full and lock the
//! installer out of their own box for as long as the flood lasts; with the
//! exception, the admin's usual machine gets in at once, a new machine
//! within [`GLOBAL_WINDOW`] of the flood's end. A trusted address is no
//! free pass: its own failures still lock it out (5 free, then doubling up
//! to 5 min), so a guesser sharing it (a NAT, a reused DHCP lease) keeps
//! the per-peer bound. Trust is kept in memory only, for the last
//! [`MAX_TRUSTED_PEERS`] addresses.
//!
//! All tables are fixed arrays: [`MAX_TRACKED_PEERS`] peers (the peer with
//! the oldest attempt is forgotten first), [`GLOBAL_FAILURES`] failure
//! times and [`MAX_TRUSTED_PEERS`] trusted addresses (the oldest replaced
//! first).

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Peers whose failed attempts the limiter remembers at once.
pub const MAX_TRACKED_PEERS: usize = 32;

/// Addresses remembered as trusted (see the module doc).
const MAX_TRUSTED_PEERS: usize = 8;

/// Failures a peer may make before lockouts start.
const FREE_FAILURES: u32 = 5;
const LOCKOUT_BASE: Duration = Duration::from_secs(1);
const LOCKOUT_MAX: Duration = Duration::from_secs(5 * 60);
/// A peer quiet for this long starts again with a clean record.
pub(super) const PEER_FORGET: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many failures across all peers per [`GLOBAL_WINDOW`].
const GLOBAL_FAILURES: usize = 20;
pub(super) const GLOBAL_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
pub(super) struct PeerRecord {
    pub(super) ip: IpAddr,
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
pub(super) fn lockout(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => LOCKOUT_BASE
            .saturating_mul(1 << extra.min(16))
            .min(LOCKOUT_MAX),
    }
}

/// A started attempt, already charged as a failure; refunded on success.
#[derive(Debug)]
pub(super) struct Ticket {
    global_slot: usize,
    at: Instant,
}

pub(super) struct Limiter {
    pub(super) peers: [Option<PeerRecord>; MAX_TRACKED_PEERS],
    /// When each of the last failures happened; a slot is free once its
    /// failure is [`GLOBAL_WINDOW`] old.
    pub(super) global: [Option<Instant>; GLOBAL_FAILURES],
    /// Addresses that proved they know the password, exempt from `global`.
    trusted: [Option<IpAddr>; MAX_TRUSTED_PEERS],
    /// The trusted slot replaced next.
    next_trusted: usize,
}

impl Limiter {
    pub(super) fn new() -> Self {
        Limiter {
            peers: [None; MAX_TRACKED_PEERS],
            global: [None; GLOBAL_FAILURES],
            trusted: [None; MAX_TRUSTED_PEERS],
            next_trusted: 0,
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
    pub(super) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let peer = self
            .peer(ip, now)
            .and_then(|i| self.peers[i])
            .map_or(Duration::ZERO, |p| p.wait(now));
        let global = if self.trusted.contains(&Some(ip)) {
            Duration::ZERO
        } else {
            self.global_wait(now)
        };
        let wait = peer.max(global);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Checks, then charges the attempt as a failure for `ip` and globally.
    pub(super) fn begin(&mut self, ip: IpAddr, now: Instant) -> Result<Ticket, Duration> {
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
        // check() found a free global slot, unless the peer is trusted and
        // the window is full: then slot 0 is reused and the window stays full.
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
    pub(super) fn succeed(&mut self, ip: IpAddr, ticket: Ticket) {
        if self.global[ticket.global_slot] == Some(ticket.at) {
            self.global[ticket.global_slot] = None;
        }
        self.forget(ip);
    }

    /// `ip` proved it knows the password: clear its record and trust it.
    pub(super) fn forget(&mut self, ip: IpAddr) {
        for slot in &mut self.peers {
            if slot.is_some_and(|p| p.ip == ip) {
                *slot = None;
            }
        }
        if !self.trusted.contains(&Some(ip)) {
            self.trusted[self.next_trusted] = Some(ip);
            self.next_trusted = (self.next_trusted + 1) % MAX_TRUSTED_PEERS;
        }
    }
}
