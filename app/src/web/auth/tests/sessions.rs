//! Sessions and their cookie: expiry at the boundaries, eviction of the
//! least recently used, CSRF checks, logout.

use super::*;

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
fn sessions_handed_over_keep_their_tokens_and_ages() {
    let t0 = Instant::now();
    let (_dir, auth, s) = with_password(t0);
    // Handed over a minute after its last use.
    let text = auth.hand_over(t0 + Duration::from_secs(60));
    assert!(text.contains(&s.token) && text.contains(&s.csrf));
    // The next process: a fresh table on the same password file.
    let now = Instant::now() + Duration::from_secs(3600);
    let (_dir2, next) = fresh();
    let garbage = "zz short 1 2\nnot a session\n";
    assert_eq!(next.adopt(&format!("{garbage}{text}"), now), 1);
    // Its idle time came along: it ends when it would have.
    let idle_end = now + FAST.session_idle - Duration::from_secs(60);
    assert_eq!(next.active_sessions(idle_end - Duration::from_millis(1)), 1);
    assert_eq!(next.active_sessions(idle_end), 0);
    // The same tokens work.
    let (_dir3, third) = fresh();
    assert_eq!(third.adopt(&text, now), 1);
    assert!(third.authorize(&s.token, &s.csrf, now));
    // One idle for the whole timeout is not adopted.
    let (_dir4, fourth) = fresh();
    let idle_ms = format!(" {} ", FAST.session_idle.as_millis());
    let stale = text.replacen(" 60000 ", &idle_ms, 1);
    assert_ne!(stale, text);
    assert_eq!(fourth.adopt(&stale, now), 0);
}
