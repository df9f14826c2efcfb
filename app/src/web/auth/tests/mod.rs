//! Tests of the admin authentication, with the helpers every part shares.
//!
//! They drive [`Auth`] through its public methods with moved [`Instant`]s;
//! a few reach into the limiter or the stored hash to set up a state that
//! would otherwise take hours (a huge iteration count, a charged limiter).
//! This file holds the whole flows (setup, login, password change, error
//! texts); the password file, the limiter and the sessions have their own.

mod limiter;
mod password;
mod sessions;
mod setup_code;

use super::*;
use crate::test_dir::TempDir;
use std::fs;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

const PW: &str = "correct horse";
const FAST: AuthConfig = AuthConfig {
    iterations: 1_000,
    session_idle: Duration::from_secs(30 * 60),
    session_lifetime: Duration::from_secs(12 * 60 * 60),
};

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn fresh() -> (TempDir, Auth) {
    let dir = TempDir::new("auth-test");
    let auth = Auth::open(&dir.0, FAST).expect("open");
    (dir, auth)
}

fn with_password(now: Instant) -> (TempDir, Auth, SessionInfo) {
    let (dir, auth) = fresh();
    let s = auth.setup(ip(1), &code(&auth), PW, now).expect("setup");
    (dir, auth, s)
}

/// The setup code of a fresh `auth` ("" once a password is set).
fn code(auth: &Auth) -> String {
    auth.setup_code().unwrap_or_default()
}

fn retry_after(r: Result<SessionInfo, AuthError>) -> Duration {
    match r {
        Err(AuthError::RateLimited { retry_after }) => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
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
    let s = auth.setup(ip(1), &code(&auth), PW, t).expect("setup");
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
        auth.setup(ip(1), &code(&auth), "another one", t),
        Err(AuthError::AlreadySet)
    ));
    assert!(matches!(
        auth.setup(ip(1), &code(&auth), "short", t),
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
                s.spawn(move || auth.setup(ip(i), &code(auth), &format!("password-{i}"), t))
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
        match auth.setup(ip(1), &code(&auth), weak, t) {
            Err(e @ AuthError::WeakPassword(_)) => {
                assert!(e.to_string().starts_with("password rejected: must"))
            }
            other => panic!("{weak:?}: {other:?}"),
        }
    }
    assert!(!auth.admin_set());
    assert!(auth.setup(ip(1), &code(&auth), &"x".repeat(128), t).is_ok());
    let (_d, auth) = fresh();
    assert!(auth.setup(ip(1), &code(&auth), "12345678", t).is_ok());
    let (_d, auth) = fresh();
    assert!(auth.setup(ip(1), &code(&auth), " pass word ", t).is_ok());
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

#[test]
fn confirm_checks_the_password_without_a_session_and_is_rate_limited() {
    let now = Instant::now();
    let (_dir, auth, _s) = with_password(now);
    let before = auth.active_sessions(now);
    auth.confirm(ip(2), PW, now).unwrap();
    assert_eq!(auth.active_sessions(now), before, "no session opened");
    assert!(matches!(
        auth.confirm(ip(2), "wrong horse", now),
        Err(AuthError::WrongPassword)
    ));
    let limited = (0..50).any(|_| {
        matches!(
            auth.confirm(ip(3), "wrong horse", now),
            Err(AuthError::RateLimited { .. })
        )
    });
    assert!(limited, "wrong passwords are charged to the limiter");
}
