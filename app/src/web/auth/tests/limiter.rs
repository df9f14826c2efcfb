//! The login limiter through [`Auth::login`]: free failures, doubling
//! lockouts, the global window, and bounded memory.

use super::super::limiter::{lockout, GLOBAL_WINDOW, PEER_FORGET};
use super::*;
use std::fs;

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
    let dir = TempDir::new("auth-test");
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
fn a_trusted_address_passes_a_full_global_window_but_not_its_own_lockout() {
    let t = Instant::now();
    // ip(1) set the password, so it is trusted.
    let (_d, auth, _) = with_password(t);
    for n in 0..40 {
        let _ = auth.login(ip(1000 + n), "bad password", t);
    }
    assert_eq!(
        retry_after(auth.login(ip(5000), PW, t)),
        GLOBAL_WINDOW,
        "a flood from rotating addresses holds new addresses off"
    );
    assert!(auth.login(ip(1), PW, t).is_ok(), "but not the admin's");
    for _ in 0..5 {
        assert!(matches!(
            auth.login(ip(1), "bad password", t),
            Err(AuthError::WrongPassword)
        ));
    }
    assert_eq!(
        retry_after(auth.login(ip(1), PW, t)),
        Duration::from_secs(1),
        "a trusted address is still locked out by its own failures"
    );
}

#[test]
fn trust_is_kept_for_the_last_eight_addresses_only() {
    let t = Instant::now();
    let (_d, auth, _) = with_password(t);
    for n in 0..8 {
        auth.login(ip(100 + n), PW, t).expect("login");
    }
    for n in 0..20 {
        let _ = auth.login(ip(1000 + n), "bad password", t);
    }
    // ip(1) was pushed out by eight newer trusted addresses.
    assert_eq!(retry_after(auth.login(ip(1), PW, t)), GLOBAL_WINDOW);
    assert!(auth.login(ip(100), PW, t).is_ok());
}

#[test]
fn admit_refuses_long_passwords_locked_peers_and_a_full_queue_before_queueing() {
    let t = Instant::now();
    let (_d, auth, _) = with_password(t);
    let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
    let longest = "a".repeat(MAX_PASSWORD_BYTES);
    assert!(matches!(
        auth.admit(ip(7), &[PW, &long], t),
        Err(AuthError::TooLong)
    ));
    drop(
        auth.admit(ip(7), &[&longest], t)
            .expect("at the cap is fine"),
    );
    for _ in 0..5 {
        let _ = auth.login(ip(7), "bad password", t);
    }
    assert!(matches!(
        auth.admit(ip(7), &[PW], t),
        Err(AuthError::RateLimited { .. })
    ));
    let held: Vec<HashPermit> = (0..MAX_HASHES)
        .map(|_| auth.admit(ip(8), &[PW], t).expect("a place"))
        .collect();
    let busy = auth.admit(ip(8), &[PW], t).expect_err("full");
    assert!(matches!(busy, AuthError::Busy { .. }), "{busy:?}");
    assert!(busy.to_string().contains("retry in 2 s"), "{busy}");
    assert_eq!(auth.hash_queue().in_flight(), MAX_HASHES);
    drop(held);
    assert_eq!(auth.hash_queue().in_flight(), 0);
    let refused: Vec<u64> = auth.hash_queue().refused.iter().map(|c| c.get()).collect();
    assert_eq!(refused, [1, 1, 1], "busy, rate_limited, too_long");
}
