//! The password file: the hash, its one-line format, strict parsing of a
//! damaged file and the storage errors, each naming the file.

use super::super::password::{pbkdf2_sha256, Stored};
use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

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
        again.setup(ip(1), &code(&again), PW, t),
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
    let iterations = |n: &str| Defect::Iterations(n.into());
    let cases: Vec<(Vec<u8>, Defect, &str)> = vec![
        (Vec::new(), Defect::NoNewline, "newline"),
        (good.trim_end().into(), Defect::NoNewline, "newline"),
        (
            format!("{good}\n").into(),
            Defect::NotOneLine,
            "single line",
        ),
        (
            format!("{good}{good}").into(),
            Defect::NotOneLine,
            "single line",
        ),
        (
            good.replace('\n', "\r\n").into(),
            Defect::NotOneLine,
            "single line",
        ),
        (
            format!("pbkdf2-sha256$1000${salt}\n").into(),
            Defect::FieldCount(3),
            "3 '$'-separated fields",
        ),
        (
            format!("{}$x\n", good.trim_end()).into(),
            Defect::FieldCount(5),
            "5 '$'-separated fields",
        ),
        (
            good.replace("pbkdf2-sha256", "pbkdf2-sha1").into(),
            Defect::Scheme("pbkdf2-sha1".into()),
            "scheme",
        ),
        (
            good.replace("$1000$", "$$").into(),
            iterations(""),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$abc$").into(),
            iterations("abc"),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$0$").into(),
            iterations("0"),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$+1000$").into(),
            iterations("+1000"),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$-1$").into(),
            iterations("-1"),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$ 1000$").into(),
            iterations(" 1000"),
            "iteration count",
        ),
        (
            good.replace("$1000$", "$99999999999$").into(),
            iterations("99999999999"),
            "iteration count",
        ),
        (
            good.replace(salt, &salt[2..]).into(),
            Defect::Salt(salt[2..].into()),
            "salt",
        ),
        (
            good.replace(salt, &format!("{salt}00")).into(),
            Defect::Salt(format!("{salt}00")),
            "salt",
        ),
        (
            good.replace(salt, &salt.replace('a', "g")).into(),
            Defect::Salt(salt.replace('a', "g")),
            "salt",
        ),
        (
            good.replace(salt, &salt.to_uppercase()).into(),
            Defect::Salt(salt.to_uppercase()),
            "salt",
        ),
        (
            good.replace(hash, &hash[2..]).into(),
            Defect::Hash(hash[2..].into()),
            "hash",
        ),
        (
            good.replace(hash, &hash.replace('a', "z")).into(),
            Defect::Hash(hash.replace('a', "z")),
            "hash",
        ),
        (
            good.replace(hash, "").into(),
            Defect::Hash(String::new()),
            "hash",
        ),
        (vec![0xff; 20], Defect::NotUtf8, "UTF-8"),
        (vec![b'x'; 1000], Defect::TooLong, "longer than"),
    ];
    for (content, want, expect) in cases {
        let dir = TempDir::new("auth-test");
        let path = dir.0.join("admin-password");
        fs::write(&path, &content).expect("write");
        let lossy = String::from_utf8_lossy(&content);
        match Auth::open(&dir.0, FAST) {
            Err(AuthError::Storage(e)) => {
                // The log line names the file and says what is wrong.
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains(expect), "{msg:?} should mention {expect:?}");
                match e {
                    StorageError::Corrupt { path: p, defect } => {
                        assert_eq!(p, path);
                        assert_eq!(defect, want, "{lossy:?}");
                    }
                    other => panic!("{lossy:?}: expected Corrupt, got {other:?}"),
                }
            }
            other => panic!("{lossy:?}: expected Storage, got {other:?}"),
        }
    }
    // And the good one opens.
    let dir = TempDir::new("auth-test");
    fs::write(dir.0.join("admin-password"), &good).expect("write");
    assert!(Auth::open(&dir.0, FAST).expect("good file").admin_set());
}

#[test]
fn unreadable_file_is_storage_error() {
    let dir = TempDir::new("auth-test");
    fs::create_dir(dir.0.join("admin-password")).expect("mkdir");
    match Auth::open(&dir.0, FAST) {
        Err(AuthError::Storage(e @ StorageError::Read { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("admin-password"), "{msg}");
            assert!(std::error::Error::source(&e).is_some(), "the io::Error");
        }
        other => panic!("expected Storage(Read), got {other:?}"),
    }
}

#[test]
fn write_failure_is_storage_error_and_leaves_unset() {
    let dir = TempDir::new("auth-test");
    let missing = dir.0.join("no-such-dir");
    // Without a directory there is nowhere to keep the setup code either.
    match Auth::open(&missing, FAST) {
        Err(AuthError::Storage(e @ StorageError::Write { .. })) => {
            assert!(e.to_string().contains("setup-code.tmp"), "{e}");
        }
        other => panic!("expected Storage(Write), got {other:?}"),
    }
    // The directory vanishing after start fails the password's write.
    let gone = dir.0.join("gone");
    fs::create_dir(&gone).unwrap();
    let auth = Auth::open(&gone, FAST).expect("open");
    fs::remove_dir_all(&gone).unwrap();
    match auth.setup(ip(1), &code(&auth), PW, Instant::now()) {
        Err(AuthError::Storage(e @ StorageError::Write { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("admin-password.tmp"), "{msg}");
        }
        other => panic!("expected Storage(Write), got {other:?}"),
    }
    assert!(!auth.admin_set());
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
