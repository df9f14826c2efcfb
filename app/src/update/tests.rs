//! The updater against `tests/support/fake-rauc.sh`, a stand-in for RAUC's
//! client that keeps its slots in files (the real RAUC runs in the emulated
//! board's test, make test-ota).

use super::*;
use crate::test_dir::TempDir;
use std::os::unix::fs::PermissionsExt;

const FAKE: &str = include_str!("../../../tests/support/fake-rauc.sh");

struct Box_ {
    dir: TempDir,
    disk: Arc<Disk>,
}

impl Box_ {
    fn new(tag: &str, booted: &str) -> Box_ {
        let dir = TempDir::new(tag);
        let rauc = dir.0.join("rauc");
        std::fs::create_dir_all(&rauc).expect("mkdir");
        std::fs::write(rauc.join("rauc"), FAKE).expect("write");
        std::fs::set_permissions(rauc.join("rauc"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(rauc.join("booted"), booted).expect("write");
        Box_ {
            dir,
            disk: Disk::start("test-disk", 8).expect("disk"),
        }
    }

    fn rauc_file(&self, name: &str) -> PathBuf {
        self.dir.0.join("rauc").join(name)
    }

    fn updater(&self, version: &str, probation: Duration) -> Updater {
        let config = UpdateConfig {
            rauc: Some(self.rauc_file("rauc")),
            max_bundle: 1 << 20,
            probation,
            reboot_after: Duration::from_secs(30),
        };
        Updater::new(config, &self.dir.0.join("data"), self.disk.clone(), version)
    }

    fn marks(&self) -> String {
        std::fs::read_to_string(self.rauc_file("marks")).unwrap_or_default()
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        self.disk.stop();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// Uploads `body` and installs it, as the route does.
async fn upload_and_install(u: &Updater, body: &[u8]) -> Result<(), UpdateError> {
    u.begin(Some(body.len() as u64), u64::MAX)?;
    let mut up = upload::Upload::create(u.disk().clone(), u.dir(), body.len() as u64).await?;
    for chunk in body.chunks(7) {
        up.write(bytes::Bytes::copy_from_slice(chunk)).await?;
        u.received(up.received());
    }
    let path = up.finish().await?;
    u.install(path, names(&["door"])).await;
    Ok(())
}

#[test]
fn sizes_are_checked_before_anything_is_written_and_one_update_runs_at_a_time() {
    let b = Box_::new("update-begin", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    // Before RAUC answered: not available.
    assert!(matches!(
        u.begin(Some(10), u64::MAX),
        Err(UpdateError::Unavailable(_))
    ));
    block_on(u.start(names(&["door"]), Instant::now()));
    assert!(matches!(
        u.begin(None, u64::MAX),
        Err(UpdateError::LengthRequired)
    ));
    assert!(matches!(
        u.begin(Some(2 << 20), u64::MAX),
        Err(UpdateError::TooLarge {
            len: 2097152,
            max: 1048576
        })
    ));
    match u.begin(Some(1000), RESERVE + 999) {
        Err(e @ UpdateError::NoSpace { .. }) => assert!(e.to_string().contains("1000 bytes")),
        other => panic!("{other:?}"),
    }
    assert_eq!(u.view(Instant::now()).phase, "idle");
    u.begin(Some(1000), u64::MAX).expect("admitted");
    assert!(matches!(
        u.begin(Some(10), u64::MAX),
        Err(UpdateError::Busy(_))
    ));
    u.failed(&UpdateError::Truncated { got: 1, want: 1000 });
    let v = u.view(Instant::now());
    assert_eq!(v.phase, "failed");
    assert_eq!(
        v.error.as_deref(),
        Some("the upload ended after 1 of 1000 bytes")
    );
    // A failed upload does not block the next one.
    u.begin(Some(10), u64::MAX).expect("admitted again");
    assert!(!b.dir.0.join("data/update/upload.part").exists());
}

#[test]
fn a_good_bundle_is_installed_recorded_and_the_reboot_counts_down() {
    let b = Box_::new("update-install", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    let v = u.view(Instant::now());
    assert_eq!((v.available, v.slot.as_deref()), (true, Some("A")));
    assert_eq!(v.other.as_ref().and_then(|o| o.version.clone()), None);
    block_on(upload_and_install(&u, b"GOOD\n0.3.0\n")).expect("installs");
    let v = u.view(Instant::now());
    assert_eq!(v.phase, "installed", "{v:?}");
    assert_eq!(v.installed.as_deref(), Some("0.3.0"));
    assert_eq!(
        v.other.as_ref().and_then(|o| o.version.as_deref()),
        Some("0.3.0")
    );
    assert!(matches!(v.reboot_in_s, Some(29 | 30)), "{v:?}");
    // The bundle is gone; the pending record and the supervisor's deadline are there.
    assert!(!b.dir.0.join("data/update/bundle.raucb").exists());
    let p = Records::new(b.dir.0.join("data/update"))
        .pending()
        .expect("read")
        .expect("pending");
    assert_eq!((p.from_slot.as_str(), p.to_slot.as_str()), ("A", "B"));
    assert_eq!(
        (p.from_version.as_str(), p.to_version.as_str()),
        ("0.2.0", "0.3.0")
    );
    assert_eq!(p.streaming, names(&["door"]));
    assert_eq!(
        std::fs::read_to_string(b.dir.0.join("data/update/probation")).expect("deadline"),
        "B 65\n"
    );
    // Waiting for the reboot: no second update; the countdown can be stopped.
    assert!(matches!(
        u.begin(Some(10), u64::MAX),
        Err(UpdateError::Busy(_))
    ));
    assert!(!u.reboot_due(Instant::now()));
    assert!(u.reboot_due(Instant::now() + Duration::from_secs(31)));
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    assert!(matches!(u.reboot_now(), Err(UpdateError::Busy(_))));
}

#[test]
fn the_countdown_can_be_cancelled_and_the_button_reboots() {
    let b = Box_::new("update-cancel", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    block_on(upload_and_install(&u, b"GOOD\n0.3.0\n")).expect("installs");
    u.cancel_reboot().expect("cancelled");
    assert_eq!(u.view(Instant::now()).reboot_in_s, None);
    assert!(!u.reboot_due(Instant::now() + Duration::from_secs(3600)));
    u.reboot_now().expect("button");
    assert!(u.reboot_due(Instant::now()));
}

#[test]
fn files_an_interrupted_update_left_are_removed_at_the_start() {
    let b = Box_::new("update-leftovers", "A");
    let dir = b.dir.0.join("data/update");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upload.part"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("bundle.raucb"), vec![0u8; 4096]).unwrap();
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    assert!(!dir.join("upload.part").exists());
    assert!(!dir.join("bundle.raucb").exists());
}

#[test]
fn a_bundle_failing_mid_write_shows_the_other_slot_bad() {
    // The stand-in marks the slot bad as RAUC does when a "corrupt" bundle
    // fails while it is written.
    let b = Box_::new("update-midwrite", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    assert_eq!(
        u.view(Instant::now()).other.and_then(|o| o.good),
        Some(true)
    );
    block_on(upload_and_install(&u, b"corrupt\n")).expect("uploaded");
    let v = u.view(Instant::now());
    assert_eq!(v.phase, "failed");
    assert_eq!(
        v.other.and_then(|o| o.good),
        Some(false),
        "{:?}",
        u.view(Instant::now())
    );
}

#[test]
fn a_refused_bundle_leaves_the_slots_and_says_rauc_s_error() {
    let b = Box_::new("update-refused", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    block_on(upload_and_install(&u, b"bad signature\n")).expect("uploaded");
    let v = u.view(Instant::now());
    assert_eq!(v.phase, "failed");
    assert_eq!(
        v.error.as_deref(),
        Some("Failed verifying signature: signer certificate not trusted")
    );
    assert_eq!(v.other.as_ref().and_then(|o| o.version.clone()), None);
    assert!(!b.dir.0.join("data/update/bundle.raucb").exists());
    assert_eq!(
        Records::new(b.dir.0.join("data/update"))
            .pending()
            .expect("read"),
        None
    );
}

fn healthy() -> Health {
    Health {
        streaming: names(&["door"]),
        detector_ran: true,
        store_committed: true,
        web_answered: true,
    }
}

/// Installs 0.3.0 from A, then "reboots" into `booted` with a new updater.
fn after_install(tag: &str, booted: &str, probation: Duration) -> (Box_, Updater, Instant) {
    let b = Box_::new(tag, "A");
    let u = b.updater("0.2.0", probation);
    block_on(u.start(names(&["door"]), Instant::now()));
    block_on(upload_and_install(&u, b"GOOD\n0.3.0\n")).expect("installs");
    std::fs::write(b.rauc_file("booted"), booted).expect("reboot");
    let version = if booted == "B" { "0.3.0" } else { "0.2.0" };
    let u = b.updater(version, probation);
    let t0 = Instant::now();
    block_on(u.start(names(&["door"]), t0));
    (b, u, t0)
}

#[test]
fn a_new_system_that_shows_its_health_is_marked_good_once() {
    let (b, u, t0) = after_install("update-good", "B", Duration::from_secs(120));
    assert!(u.on_probation());
    assert!(matches!(
        u.begin(Some(10), u64::MAX),
        Err(UpdateError::Busy(_))
    ));
    let mut h = healthy();
    h.streaming.clear();
    block_on(u.judge(&h, t0 + Duration::from_secs(3)));
    let v = u.view(t0 + Duration::from_secs(3));
    let p = v.probation.expect("on probation");
    assert_eq!(p.waiting_for, vec!["cameras did not stream (door)"]);
    assert_eq!(p.seconds_left, 117);
    assert_eq!(b.marks(), "");
    block_on(u.judge(&healthy(), t0 + Duration::from_secs(4)));
    block_on(u.judge(&healthy(), t0 + Duration::from_secs(5)));
    assert_eq!(b.marks(), "mark-good booted\n");
    assert!(!u.reboot_due(Instant::now()));
    let v = u.view(Instant::now());
    assert!(v.probation.is_none());
    let last = v.last.expect("a result");
    assert!(last.ok);
    assert_eq!(
        last.message,
        "updated from 0.2.0 to 0.3.0; slot B marked good"
    );
    let records = Records::new(b.dir.0.join("data/update"));
    assert_eq!(records.pending().expect("read"), None);
    assert!(!b.dir.0.join("data/update/probation").exists());
}

#[test]
fn a_new_system_without_its_cameras_is_marked_bad_and_reboots() {
    let (b, u, t0) = after_install("update-bad", "B", Duration::from_secs(120));
    let mut h = healthy();
    h.streaming.clear();
    block_on(u.judge(&h, t0 + Duration::from_secs(119)));
    assert!(!u.reboot_due(Instant::now()));
    block_on(u.judge(&h, t0 + Duration::from_secs(120)));
    assert_eq!(b.marks(), "mark-bad booted\n");
    assert!(u.reboot_due(Instant::now()));
    // The boot loader falls back to A: the old system shows why.
    std::fs::write(b.rauc_file("booted"), "A").expect("fallback");
    let old = b.updater("0.2.0", Duration::from_secs(120));
    block_on(old.start(names(&["door"]), Instant::now()));
    let last = old.view(Instant::now()).last.expect("a result");
    assert!(!last.ok);
    assert_eq!(
        last.message,
        "update to 0.3.0 failed: cameras did not stream (door) within 120 s; running 0.2.0 on slot A"
    );
    assert!(!old.on_probation());
    assert_eq!(
        Records::new(b.dir.0.join("data/update"))
            .pending()
            .expect("read"),
        None
    );
    // And it takes updates again.
    old.begin(Some(10), u64::MAX).expect("admitted");
}

#[test]
fn a_new_system_that_never_started_is_reported_by_the_old_one() {
    // The boot loader went back to A without B's vigil deciding anything.
    let (b, u, _) = after_install("update-never", "A", Duration::from_secs(120));
    let last = u.view(Instant::now()).last.expect("a result");
    assert_eq!(
        last.message,
        "update to 0.3.0 failed: slot B did not come up; the boot loader went back to slot A; running 0.2.0 on slot A"
    );
    drop((u, b));
    // With the supervisor's reason.
    let b = Box_::new("update-supervisor", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    block_on(u.start(names(&["door"]), Instant::now()));
    block_on(upload_and_install(&u, b"GOOD\n0.3.0\n")).expect("installs");
    std::fs::write(
        b.dir.0.join("data/update/failed-to-start"),
        "vigil did not start within 65 s\n",
    )
    .expect("write");
    let old = b.updater("0.2.0", Duration::from_secs(5));
    block_on(old.start(names(&["door"]), Instant::now()));
    assert_eq!(
        old.view(Instant::now()).last.expect("a result").message,
        "update to 0.3.0 failed: vigil did not start within 65 s; running 0.2.0 on slot A"
    );
}

#[test]
fn an_ordinary_boot_is_marked_good_once_the_web_answers() {
    let b = Box_::new("update-ordinary", "A");
    let u = b.updater("0.2.0", Duration::from_secs(5));
    let t0 = Instant::now();
    block_on(u.start(names(&["door"]), t0));
    assert!(!u.on_probation());
    assert!(u.judging());
    let h = Health::default();
    block_on(u.judge(&h, t0 + Duration::from_secs(600)));
    assert_eq!(b.marks(), "");
    assert!(!u.reboot_due(Instant::now()));
    let h = Health {
        web_answered: true,
        ..Health::default()
    };
    block_on(u.judge(&h, t0 + Duration::from_secs(601)));
    assert_eq!(b.marks(), "mark-good booted\n");
    assert!(!u.judging());
}

#[test]
fn a_new_system_that_cannot_mark_itself_good_goes_back() {
    let (b, u, t0) = after_install("update-markfail", "B", Duration::from_secs(120));
    std::fs::write(b.rauc_file("mark-fails"), "").expect("write");
    block_on(u.judge(&healthy(), t0));
    assert!(u.reboot_due(Instant::now()));
    let last = u.view(Instant::now()).last.expect("a result");
    assert!(
        last.message
            .starts_with("update to 0.3.0 failed: RAUC could not mark the slot good"),
        "{}",
        last.message
    );
}

#[test]
fn a_host_not_started_by_the_boot_script_never_runs_rauc() {
    // This test machine's kernel command line has no rauc.slot=.
    assert!(!booted_by_ab_script());
    let b = Box_::new("update-host", "A");
    let u = Updater::new(UpdateConfig::default(), &b.dir.0, b.disk.clone(), "0.2.0");
    block_on(u.start(vec![], Instant::now()));
    let v = u.view(Instant::now());
    assert!(!v.available);
    assert!(
        v.reason.as_deref().unwrap_or("").contains("rauc.slot="),
        "{v:?}"
    );
    assert!(!u.judging());
}

#[test]
fn without_rauc_the_box_says_why_it_takes_no_updates() {
    let b = Box_::new("update-none", "A");
    let config = UpdateConfig {
        rauc: Some(b.dir.0.join("no-such-rauc")),
        ..UpdateConfig::default()
    };
    let u = Updater::new(config, &b.dir.0, b.disk.clone(), "0.2.0");
    block_on(u.start(vec![], Instant::now()));
    let v = u.view(Instant::now());
    assert!(!v.available);
    assert!(
        v.reason.as_deref().unwrap_or("").contains("no-such-rauc"),
        "{v:?}"
    );
    assert!(!u.judging());
    assert!(matches!(
        u.begin(Some(1), u64::MAX),
        Err(UpdateError::Unavailable(_))
    ));
}
