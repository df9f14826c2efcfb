//! The MPP decoder wrapper against a C double of librockchip_mpp.so
//! (`tests/fakes/fake_mpp.c`), compiled here and loaded the way the real
//! library is: the double records every call and reports unbalanced pairs,
//! use after free and calls out of order, so these tests prove the pairing
//! rules of rockchip-api.md, not just that frames come out.
//!
//! This is the seed's second leak (a C library's init without its deinit on
//! every reconnect): 500 reconnects must leave one context, no live handle,
//! and flat fds and memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use vigil::decode::mpp::MppVideoDecoder;
use vigil::decode::{DecodeError, Decoder};
use vigil::hw::loader::Lib;
use vigil::hw::mpp::{MppDecoder, MppPicture, NewError, Put};
use vigil::hw::mpp_sys::MppLib;
use vigil::packet::{Codec, PacketBuf};

/// Builds the double once per test binary; returns its directory.
fn fake_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-mpp");
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/fake_mpp.c");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args([
                "-std=c11", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
            ])
            .arg("-o")
            .arg(dir.join("librockchip_mpp.so"))
            .arg(&src)
            .arg("-lpthread")
            .output()
            .unwrap_or_else(|e| panic!("{cc}: {e}"));
        assert!(
            out.status.success(),
            "building the MPP double failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The tests share one loaded double (dlopen returns the same instance), so
/// they take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Fake {
    lib: Lib,
}

impl Fake {
    fn open() -> (Arc<MppLib>, Fake) {
        let mpp = Arc::new(MppLib::load(Some(fake_dir())).expect("load the double"));
        let lib = Lib::open(Some(fake_dir()), "librockchip_mpp.so").unwrap();
        let fake = Fake { lib };
        fake.reset();
        (mpp, fake)
    }

    fn reset(&self) {
        // SAFETY: the double's test entry point, `void fake_mpp_reset(void)`.
        unsafe {
            let f: unsafe extern "C" fn() = self.lib.sym("fake_mpp_reset").unwrap();
            f();
        }
    }

    /// Arms one of the double's faults (`fake_mpp_inject`).
    fn inject(&self, fault: &std::ffi::CStr) {
        // SAFETY: `int fake_mpp_inject(const char*)` reads the C string.
        let known = unsafe {
            let f: unsafe extern "C" fn(*const std::ffi::c_char) -> i32 =
                self.lib.sym("fake_mpp_inject").unwrap();
            f(fault.as_ptr())
        };
        assert_eq!(known, 0, "the double knows no fault {fault:?}");
    }

    fn report(&self) -> serde_json::Value {
        // SAFETY: `size_t fake_mpp_report(char*, size_t)` writes at most cap bytes.
        let text = unsafe {
            let f: unsafe extern "C" fn(*mut u8, usize) -> usize =
                self.lib.sym("fake_mpp_report").unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let n = f(buf.as_mut_ptr(), buf.len());
            buf.truncate(n.min(buf.len() - 1));
            String::from_utf8(buf).unwrap()
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report ({e}): {text}"))
    }
}

fn assert_balanced(report: &serde_json::Value) {
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(0),
        "violations: {report}"
    );
    for (kind, n) in report["live"].as_object().expect("live") {
        assert_eq!(n.as_u64(), Some(0), "live {kind}: {report}");
    }
}

/// The largest picture the existing tests' decoders accept.
const MAX: (u32, u32) = (1920, 1080);

/// A synthetic access unit the double decodes to a picture of that size.
fn unit(width: u32, height: u32, number: u32) -> Vec<u8> {
    let mut v = b"VGLFAKE1".to_vec();
    for x in [width, height, number] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&[0u8; 16]);
    v
}

/// The tests in this file, in any order.
const TESTS: &[&str] = &[
    "frames_carry_the_picture_and_return_on_drop",
    "an_info_change_over_max_resolution_configures_nothing_and_outputs_nothing",
    "a_held_group_stalls_the_decoder_instead_of_growing",
    "five_hundred_reconnects_and_100k_frames_keep_one_context_and_flat_memory",
    "a_context_without_an_api_is_destroyed_once_and_the_error_says_so",
    "a_context_whose_init_failed_is_destroyed_but_never_reset",
    "the_double_flags_a_reset_before_init",
];

/// This process's threads other than libtest's: a test thread is named
/// after its test (cut to 15 bytes by the kernel) and starts or ends when the
/// harness schedules the other tests, whatever the code under test does.
/// Until it names itself, a test thread just spawned carries the main
/// thread's name; neither the decoder nor the double starts threads, so
/// such threads are libtest's too.
fn threads_besides_tests() -> usize {
    let main = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let pid = std::process::id().to_string();
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let fresh = comm == main && task.file_name().to_str() != Some(pid.as_str());
            let comm = comm.trim_end();
            !fresh && !TESTS.iter().any(|t| t.get(..15).unwrap_or(t) == comm)
        })
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Feeds units until `want` pictures came out, holding at most `hold` at
/// once (as the pipeline's frame pool does).
fn decode(
    dec: &mut MppDecoder,
    size: (u32, u32),
    first: u32,
    want: usize,
    hold: usize,
    check: impl Fn(&MppPicture),
) -> usize {
    let mut held: std::collections::VecDeque<MppPicture> = Default::default();
    let (mut got, mut n) = (0, first);
    let mut spins = 0;
    while got < want {
        let au = unit(size.0, size.1, n);
        if dec.put(&au, i64::from(n)).expect("put") == Put::Taken {
            n += 1;
        }
        while let Some(p) = dec.next_picture(MAX).expect("get") {
            check(&p);
            got += 1;
            held.push_back(p);
            if held.len() > hold {
                held.pop_front();
            }
        }
        spins += 1;
        assert!(
            spins < want * 20 + 100,
            "decoder stalled after {got} pictures"
        );
    }
    got
}

#[test]
fn frames_carry_the_picture_and_return_on_drop() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    let mut dec = MppDecoder::new(lib, Codec::H264, 6).expect("decoder");
    let got = decode(&mut dec, (64, 48), 0, 50, 4, |p| {
        assert!(p.fd >= 0, "a dma-buf fd");
        let g = p.geometry;
        assert_eq!(
            (g.width, g.height, g.hor_stride, g.ver_stride),
            (64, 48, 64, 48)
        );
        let want = (p.pts % 251) as u8;
        assert!(
            p.luma()[..64].iter().all(|&b| b == want),
            "pattern of frame {}",
            p.pts
        );
    });
    assert_eq!(got, 50);
    // A size change renegotiates the group; the old pictures stay valid.
    let got = decode(&mut dec, (128, 96), 50, 20, 2, |p| {
        assert_eq!((p.geometry.width, p.geometry.height), (128, 96));
    });
    assert_eq!(got, 20);
    drop(dec);
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_create"], 1);
    assert!(r["info_changes"].as_u64().unwrap() >= 2, "{r}");
}

#[test]
fn a_held_group_stalls_the_decoder_instead_of_growing() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    let mut dec = MppDecoder::new(lib, Codec::H265, 4).expect("decoder");
    let mut held = Vec::new();
    for n in 0..40 {
        let _ = dec.put(&unit(64, 48, n), i64::from(n)).expect("put");
        while let Some(p) = dec.next_picture(MAX).expect("get") {
            held.push(p);
        }
    }
    assert_eq!(held.len(), 4, "at most the group's 4 buffers are out");
    assert!(fake.report()["stalls"].as_u64().unwrap() > 0);
    held.clear();
    assert!(
        dec.next_picture(MAX).expect("get").is_some(),
        "freed buffers resume it"
    );
    drop(dec);
    assert_balanced(&fake.report());
}

#[test]
fn five_hundred_reconnects_and_100k_frames_keep_one_context_and_flat_memory() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    let threads = threads_besides_tests;
    let mut dec = MppDecoder::new(lib, Codec::H264, 8).expect("decoder");
    // Warm up, then measure.
    decode(&mut dec, (32, 32), 0, 1000, 4, |_| {});
    let (fds, rss, threads_before) = (open_fds(), rss_kib(), threads());
    let mut frames = 0;
    for reconnect in 0..500u32 {
        dec.reset().expect("reset");
        frames += decode(&mut dec, (32, 32), reconnect * 1000, 200, 4, |_| {});
    }
    assert_eq!(frames, 100_000);
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    eprintln!(
        "500 resets, {frames} frames: fds {fds} -> {fds_after}, RSS {rss} -> {rss_after} KiB, threads {threads_before} -> {}",
        threads()
    );
    assert_eq!(fds_after, fds, "fds grew");
    assert!(rss_after < rss + 1024, "RSS grew {} KiB", rss_after - rss);
    assert_eq!(threads(), threads_before);
    let r = fake.report();
    assert_eq!(
        r["calls"]["mpp_create"], 1,
        "one context for 500 reconnects"
    );
    assert_eq!(r["calls"]["mpp_destroy"], serde_json::Value::Null);
    drop(dec);
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_destroy"], 1);
    assert_eq!(r["calls"]["mpp_buffer_group_put"], 1);
}

/// Issue 16 item 13: `mpp_create` that succeeds without an `MppApi` leaves
/// a context only `mpp_destroy` can release; `new` destroys it, exactly once,
/// calls nothing else on it, and says what happened in a typed error.
#[test]
fn a_context_without_an_api_is_destroyed_once_and_the_error_says_so() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    fake.inject(c"mpp_create:null_api");
    let e = MppDecoder::new(lib.clone(), Codec::H264, 4)
        .err()
        .expect("no decoder without an MppApi");
    assert_eq!(e, NewError::NoApi);
    assert!(e.to_string().contains("without an MppApi"), "{e}");
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_create"], 1, "{r}");
    assert_eq!(r["calls"]["mpp_destroy"], 1, "{r}");
    for never in [
        "mpp_init",
        "reset",
        "control",
        "mpp_buffer_group_get",
        "mpp_packet_init",
    ] {
        assert_eq!(r["calls"][never], serde_json::Value::Null, "{never}: {r}");
    }
    // The fault was for one call: the next decoder is whole.
    let dec = MppDecoder::new(lib, Codec::H264, 4).expect("decoder");
    drop(dec);
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_destroy"], 2, "{r}");
}

/// Issue 16 item 13: nothing resets a context that was never initialised.
/// A failed `mpp_init` drops what `new` had made (packet, group, context)
/// without the `reset` the teardown of a working decoder starts with.
#[test]
fn a_context_whose_init_failed_is_destroyed_but_never_reset() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    fake.inject(c"mpp_init:fail");
    let e = MppDecoder::new(lib, Codec::H265, 4)
        .err()
        .expect("no decoder without mpp_init");
    match &e {
        NewError::Call(call) => assert_eq!(call.call, "mpp_init", "{e}"),
        other => panic!("not the mpp_init failure: {other}"),
    }
    assert!(std::error::Error::source(&e).is_some(), "{e}");
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_init"], 1, "{r}");
    assert_eq!(r["calls"]["reset"], serde_json::Value::Null, "{r}");
    for pair in ["mpp_destroy", "mpp_packet_deinit", "mpp_buffer_group_put"] {
        assert_eq!(r["calls"][pair], 1, "{pair}: {r}");
    }
}

/// The double's side of the rule above, so the test can fail: `reset` on a
/// context before `mpp_init` is a violation and an error.
#[test]
fn the_double_flags_a_reset_before_init() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    let mut ctx = std::ptr::null_mut();
    let mut api = std::ptr::null_mut();
    // SAFETY: the C signatures of mpp_sys; out-pointers to locals; the
    // vtable is the double's static one.
    unsafe {
        assert_eq!((lib.create)(&mut ctx, &mut api), 0);
        let reset = (*api).reset.expect("reset in the vtable");
        assert_ne!(reset(ctx), 0, "reset before mpp_init must fail");
        assert_eq!((lib.destroy)(ctx), 0);
    }
    let r = fake.report();
    let v = r["violations"].as_array().unwrap();
    assert_eq!(v.len(), 1, "{r}");
    assert_eq!(v[0], "reset: out of order: called before mpp_init", "{r}");
    assert_eq!(r["live"]["ctx"], 0, "{r}");
}

/// Issue 16: MPP sized its buffer group from whatever size a stream
/// declared. An info change over the camera's `max_resolution` must
/// configure nothing (no clear, no limit_config, no READY), output no
/// picture and say so with its own error kind; after a reset a stream
/// within the limit decodes again.
#[test]
fn an_info_change_over_max_resolution_configures_nothing_and_outputs_nothing() {
    let _turn = serial();
    let (lib, fake) = Fake::open();
    let mut dec = MppVideoDecoder::new(lib, Codec::H264, 6, (320, 240)).expect("decoder");
    let mut packet = PacketBuf::with_capacity(64);
    let mut feed = |dec: &mut MppVideoDecoder, size: (u32, u32), n: u32| {
        packet.begin(Codec::H264, i64::from(n), n == 0);
        packet.extend_from_slice(&unit(size.0, size.1, n)).unwrap();
        let mut sizes = Vec::new();
        let result = dec.decode(&packet, &mut |pic| sizes.push(pic.size()));
        (result, sizes)
    };
    let mut out = Vec::new();
    for n in 0..10 {
        let (result, sizes) = feed(&mut dec, (64, 48), n);
        result.expect("within the limit");
        out.extend(sizes);
    }
    assert!(
        !out.is_empty() && out.iter().all(|&s| s == (64, 48)),
        "{out:?}"
    );
    let before = fake.report();
    assert_eq!(before["calls"]["mpp_buffer_group_limit_config"], 1);
    // The stream switches to 1280x720.
    let (result, sizes) = feed(&mut dec, (1280, 720), 10);
    assert!(sizes.is_empty(), "pictures out: {sizes:?}");
    match result {
        Err(DecodeError::TooLarge(t)) => assert_eq!(
            t.to_string(),
            "stream 1280x720 exceeds max_resolution 320x240"
        ),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    for n in 11..13 {
        let (result, sizes) = feed(&mut dec, (1280, 720), n);
        assert!(sizes.is_empty(), "pictures out: {sizes:?}");
        result.expect("the refused decoder waits quietly");
    }
    let after = fake.report();
    for call in [
        "mpp_buffer_group_limit_config",
        "mpp_buffer_group_clear",
        "control",
    ] {
        assert_eq!(
            after["calls"][call], before["calls"][call],
            "{call} called for the oversize stream: {after}"
        );
    }
    assert_eq!(after["frames_out"], before["frames_out"]);
    assert_eq!(
        after["violations"].as_array().map(Vec::len),
        Some(0),
        "{after}"
    );
    // Back within the limit: the camera's stage resets the decoder first.
    dec.reset();
    let mut again = Vec::new();
    for n in 13..23 {
        let (result, sizes) = feed(&mut dec, (64, 48), n);
        result.expect("within the limit again");
        again.extend(sizes);
    }
    assert!(
        !again.is_empty() && again.iter().all(|&s| s == (64, 48)),
        "{again:?}"
    );
    drop(dec);
    let r = fake.report();
    assert_balanced(&r);
    assert_eq!(r["calls"]["mpp_create"], 1);
    assert_eq!(r["calls"]["mpp_buffer_group_limit_config"], 1);
}
