//! The one-time setup code: required, refused when wrong (and charged to
//! the limiter), kept across a restart, void and removed after setup, and
//! stored readable only by vigil.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn code_file(dir: &TempDir) -> std::path::PathBuf {
    dir.0.join("setup-code")
}

#[test]
fn setup_needs_the_code_from_the_file() {
    let t = Instant::now();
    let (dir, auth) = fresh();
    let on_disk = fs::read_to_string(code_file(&dir)).expect("setup-code written at open");
    let code = on_disk.trim_end().to_owned();
    assert_eq!(Some(code.clone()), auth.setup_code());
    assert_eq!(
        fs::metadata(code_file(&dir)).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!dir.0.join("setup-code.tmp").exists());
    assert!(matches!(
        auth.setup(ip(1), "", PW, t),
        Err(AuthError::SetupCode { given: false })
    ));
    assert!(matches!(
        auth.setup(ip(1), "AAAA-BBBB-CCCC", PW, t),
        Err(AuthError::SetupCode { given: true })
    ));
    assert!(!auth.admin_set(), "a refused setup sets nothing");
    let e = auth.setup(ip(2), "nope", PW, t).unwrap_err().to_string();
    assert!(e.contains("setup code") && e.contains("setup-code"), "{e}");
    // Typed loosely: lower case, spaces instead of dashes.
    let typed = code.to_lowercase().replace('-', " ");
    auth.setup(ip(3), &typed, PW, t)
        .expect("setup with the code");
    assert!(!code_file(&dir).exists(), "the file goes with the code");
    assert_eq!(auth.setup_code(), None);
    // Void afterwards, also across a restart.
    assert!(matches!(
        auth.setup(ip(3), &code, "another one", t),
        Err(AuthError::AlreadySet)
    ));
    let again = Auth::open(&dir.0, FAST).unwrap();
    assert_eq!(again.setup_code(), None);
    assert!(!code_file(&dir).exists());
}

#[test]
fn a_restart_before_setup_keeps_the_code() {
    let (dir, auth) = fresh();
    let first = auth.setup_code().unwrap();
    drop(auth);
    let again = Auth::open(&dir.0, FAST).unwrap();
    assert_eq!(again.setup_code(), Some(first));
    // A damaged file is replaced by a new code.
    fs::write(code_file(&dir), "garbage\n").unwrap();
    let third = Auth::open(&dir.0, FAST).unwrap().setup_code().unwrap();
    assert_eq!(
        fs::read_to_string(code_file(&dir)).unwrap(),
        format!("{third}\n")
    );
}

#[test]
fn wrong_codes_are_rate_limited_like_passwords() {
    let t = Instant::now();
    let (_d, auth) = fresh();
    let mut limited = None;
    for n in 0..20 {
        match auth.setup(ip(7), "AAAA-BBBB-CCCC", PW, t) {
            Err(AuthError::SetupCode { .. }) => {}
            Err(AuthError::RateLimited { .. }) => {
                limited = Some(n);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let n = limited.expect("20 wrong codes in a row were never rate-limited");
    assert!(n <= 6, "limited only after {n} guesses");
    // Even the right code waits out the lockout.
    let code = code(&auth);
    assert!(matches!(
        auth.setup(ip(7), &code, PW, t),
        Err(AuthError::RateLimited { .. })
    ));
    // Another peer is not locked out by this one (below the global cap).
    auth.setup(ip(8), &code, PW, t)
        .expect("setup from another peer");
}
