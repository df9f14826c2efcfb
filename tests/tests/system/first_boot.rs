//! First boot through the boot partition (issue 17, item 2): the real binary's
//! `setup-code`, `preseed` and `factory-reset` commands, and the boot step
//! `rootfs-overlay/etc/rc.d/S20bootpart` run on the host with `mount` and
//! `umount` stubbed and a directory standing in for the SD card.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{get, get_anon, remember_session, request_anon};
use vigil_system_tests::login::code_in_log_line;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{binary, root, run_to_end, Vigil};

const PASSWORD: &str = "preseeded-Passw0rd";

/// A box's files: the factory default (the sample clip, data in `data/`),
/// the running configuration's path (not there yet: first boot).
struct Board {
    dir: TempDir,
    factory: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

impl Board {
    fn new(name: &str) -> Board {
        let dir = TempDir::new(name);
        let data = dir.join("data");
        let factory = Config::new()
            .ssd_model()
            .set("memory_limit", "768MiB")
            .data_dir(&data)
            .camera(Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(1))
            .write_as(&dir.join("factory.toml"));
        Board {
            config: data.join("config.toml"),
            dir,
            factory,
            data,
        }
    }

    /// `vigil CMD --config C --factory F [extra]`: (exit code, stdout, stderr).
    fn vigil(&self, cmd: &str, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            cmd,
            "--config",
            self.config.to_str().unwrap(),
            "--factory",
            self.factory.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_to_end(&args)
    }

    fn setup_code(&self) -> String {
        let (code, out, err) = self.vigil("setup-code", &[]);
        assert_eq!(code, 0, "{out}{err}");
        out.lines()
            .find_map(|l| l.strip_prefix("setup_code="))
            .expect("a setup_code= line")
            .to_owned()
    }

    fn preseed(&self, text: &str) -> (i32, String, String) {
        let p = self.dir.write("vigil-setup.toml", text);
        self.vigil("preseed", &[p.to_str().unwrap()])
    }

    fn run(&self) -> Vigil {
        Vigil::start(&[
            "run",
            "--config",
            self.config.to_str().unwrap(),
            "--factory",
            self.factory.to_str().unwrap(),
            "--data-dir",
            self.data.to_str().unwrap(),
            "--status-every",
            "0",
        ])
    }
}

fn post_anon(
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> vigil_system_tests::http::Response {
    let json = [("Content-Type", "application/json")];
    request_anon(addr, "POST", path, &json, body.to_string().as_bytes())
}

fn login(addr: SocketAddr, password: &str) -> vigil_system_tests::http::Response {
    post_anon(
        addr,
        "/api/login",
        serde_json::json!({ "password": password }),
    )
}

#[test]
fn the_printed_setup_code_is_the_one_run_shows_and_accepts() {
    let b = Board::new("fb-code");
    let code = b.setup_code();
    assert_eq!(code.len(), 14, "{code}");
    assert_eq!(
        std::fs::read_to_string(&b.config).unwrap(),
        std::fs::read_to_string(&b.factory).unwrap(),
        "seeded from the factory default, as run does"
    );
    assert_eq!(b.setup_code(), code, "the same code again");
    let v = b.run();
    let line = v.wait_for_line(Duration::from_secs(60), |l| l.contains("the setup code "));
    assert_eq!(code_in_log_line(&line).as_deref(), Some(code.as_str()));
    let addr = v.web_addr_unclaimed();
    let wrong = post_anon(
        addr,
        "/api/setup",
        serde_json::json!({"password": PASSWORD, "code": "2222-2222-2222"}),
    );
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    let r = post_anon(
        addr,
        "/api/setup",
        serde_json::json!({"password": PASSWORD, "code": code}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b.setup_code(), "", "set up: no code any more");
    v.stop();
}

#[test]
fn a_preseeded_password_logs_in_and_is_never_overwritten() {
    let b = Board::new("fb-password");
    let first_code = b.setup_code();
    assert!(!first_code.is_empty());
    let (code, out, err) = b.preseed(&format!("# mine\nadmin_password = \"{PASSWORD}\"\n"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("admin password set"), "{out}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
    assert_eq!(b.setup_code(), "", "the code is void");
    let hash = std::fs::read(b.data.join("admin-password")).unwrap();

    // A second preseed does not replace it, and says so.
    let (code, out, err) = b.preseed("admin_password = \"another-password\"\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("NOT changed"), "{out}");
    assert_eq!(std::fs::read(b.data.join("admin-password")).unwrap(), hash);

    let v = b.run();
    let addr = v.web_addr_unclaimed();
    assert!(
        v.lines_matching(|l| l.contains("the setup code "))
            .is_empty(),
        "no setup code once a password is set"
    );
    assert_eq!(get_anon(addr, "/api/session").json()["admin_set"], true);
    assert_eq!(login(addr, "another-password").status, 401);
    let r = login(addr, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let all = v.lines_matching(|l| l.contains(PASSWORD));
    assert!(all.is_empty(), "the password in the log: {all:?}");
    v.stop();
}

#[test]
fn preseeded_cameras_are_saved_logged_and_listed() {
    let b = Board::new("fb-cameras");
    let clip = sample_clip();
    let text = format!(
        "admin_password = \"{PASSWORD}\"\n\n[[camera]]\nname = \"door\"\nurl = \"rtsp://127.0.0.1:9/door\"\nusername = \"admin\"\npassword = \"cam-secret-1\"\n\n# the yard\n[[camera]]\nname = \"yard\"\nurl = \"{}\"\ndetect_fps = 1\n",
        clip.display()
    );
    let (code, out, err) = b.preseed(&text);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 camera(s) saved"), "{out}");
    assert!(
        !format!("{out}{err}").contains("cam-secret-1"),
        "{out}{err}"
    );
    let saved = std::fs::read_to_string(&b.config).unwrap();
    assert!(
        saved.contains("# the yard") && !saved.contains("name = \"sample\""),
        "{saved}"
    );
    let log = std::fs::read_to_string(b.data.join("config.toml.log")).unwrap();
    assert!(log.contains("\"via\":\"preseed\""), "{log}");

    let v = b.run();
    let addr = v.web_addr_unclaimed();
    let r = login(addr, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    remember_session(addr, &cookie);
    let view = get(addr, "/api/settings");
    assert_eq!(view.status, 200, "{}", view.text());
    assert!(!view.text().contains("cam-secret-1"));
    let view = view.json();
    let names: Vec<&str> = view["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["door", "yard"], "{view}");
    assert_eq!(view["changes"][0]["via"], "preseed", "{view}");
    v.stop();
}

#[test]
fn a_bad_preseed_names_key_and_line_and_changes_nothing() {
    let b = Board::new("fb-bad");
    b.setup_code();
    let before = std::fs::read(&b.config).unwrap();
    let check = |text: &str, key: &str, line: usize| {
        let (code, out, err) = b.preseed(text);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains(&format!("vigil-setup.toml:{line}: `{key}")),
            "want {key} on line {line}:\n{err}"
        );
        assert!(!err.contains(PASSWORD) && !out.contains(PASSWORD), "{err}");
        assert_eq!(
            std::fs::read(&b.config).unwrap(),
            before,
            "config unchanged"
        );
        assert!(
            !b.data.join("admin-password").exists(),
            "nothing written, the valid password neither"
        );
    };
    // A camera without its url (a valid password beside it).
    check(
        &format!("admin_password = \"{PASSWORD}\"\n\n[[camera]]\nname = \"a\"\nurl = \"rtsp://10.0.0.5/s\"\n\n[[camera]]\nname = \"b\"\ndetect_fps = 1\n"),
        "camera[1].url",
        8,
    );
    // A key cameras do not have.
    check(
        &format!(
            "admin_password = \"{PASSWORD}\"\n[[camera]]\nurl = \"rtsp://10.0.0.5/s\"\nbogus = 1\n"
        ),
        "camera[0]",
        4,
    );
    // A key a preseed does not take.
    check(
        &format!("admin_password = \"{PASSWORD}\"\nmemory_limit = \"2GiB\"\n"),
        "memory_limit",
        2,
    );
    // The setup page's password policy.
    check(
        "\nadmin_password = \"short\"\n[[camera]]\nurl = \"rtsp://10.0.0.5/s\"\n",
        "admin_password",
        2,
    );
    // Over the budget: the cameras' line.
    let many: String = (0..40)
        .map(|i| format!("[[camera]]\nurl = \"rtsp://10.0.0.{i}/s\"\nframe_pool = 64\n"))
        .collect();
    check(&format!("# many\n{many}"), "camera", 2);
}

/// The card, the fake `/sys/class/block` and stubs for `mount`/`umount`
/// that record their arguments.
struct Card {
    b: Board,
    card: PathBuf,
    sys: PathBuf,
    stubs: PathBuf,
    console: PathBuf,
    calls: PathBuf,
}

impl Card {
    fn new(name: &str) -> Card {
        let b = Board::new(name);
        let card = b.dir.join("card");
        std::fs::create_dir_all(&card).unwrap();
        // What the boot partition always holds.
        std::fs::write(card.join("boot.scr"), "script").unwrap();
        let sys = b.dir.join("sys");
        std::fs::create_dir_all(sys.join("vda1")).unwrap();
        std::fs::write(
            sys.join("vda1/uevent"),
            "MAJOR=254\nDEVNAME=vda1\nPARTNAME=boot\n",
        )
        .unwrap();
        std::fs::create_dir_all(sys.join("vda2")).unwrap();
        std::fs::write(sys.join("vda2/uevent"), "DEVNAME=vda2\nPARTNAME=data\n").unwrap();
        let stubs = b.dir.join("bin");
        std::fs::create_dir_all(&stubs).unwrap();
        let calls = b.dir.join("calls");
        for tool in ["mount", "umount"] {
            let p = stubs.join(tool);
            std::fs::write(
                &p,
                format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\n", calls.display()),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Card {
            console: b.dir.join("console"),
            card,
            sys,
            stubs,
            calls,
            b,
        }
    }

    /// Runs S20bootpart start; returns what it wrote on the console.
    fn boot(&self) -> String {
        let _ = std::fs::remove_file(&self.console);
        let path = format!(
            "{}:{}",
            self.stubs.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg(root().join("rootfs-overlay/etc/rc.d/S20bootpart"))
            .arg("start")
            .env("PATH", path)
            .env("VIGIL_BIN", binary())
            .env("VIGIL_CONFIG", &self.b.config)
            .env("VIGIL_FACTORY", &self.b.factory)
            .env("VIGIL_SYS_BLOCK", &self.sys)
            .env("VIGIL_BOOT_MNT", &self.card)
            .env("VIGIL_CONSOLE", &self.console)
            .env("VIGIL_HANDOFF", self.b.dir.join("sessions"))
            .output()
            .expect("run S20bootpart");
        assert!(
            out.status.success(),
            "S20bootpart failed the boot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.card.join(name)).ok()
    }
}

#[test]
fn the_boot_step_reads_and_writes_the_boot_partition() {
    let c = Card::new("fb-card");
    // First boot with a preseed that has a mistake: kept, the error beside it.
    let bad = format!("admin_password = \"{PASSWORD}\"\n[[camera]]\nname = \"door\"\n");
    std::fs::write(c.card.join("vigil-setup.toml"), &bad).unwrap();
    let console = c.boot();
    let calls = std::fs::read_to_string(&c.calls).unwrap();
    assert!(
        calls.contains(&format!(
            "mount -t vfat -o sync /dev/vda1 {}",
            c.card.display()
        )),
        "{calls}"
    );
    assert!(
        calls.contains(&format!("umount {}", c.card.display())),
        "{calls}"
    );
    assert_eq!(c.file("vigil-setup.toml").as_deref(), Some(bad.as_str()));
    let error = c.file("vigil-setup-error.txt").expect("the error file");
    assert!(
        error.contains("vigil-setup.toml:3: `camera[0].url`"),
        "{error}"
    );
    assert!(
        !error.contains(PASSWORD) && !console.contains(PASSWORD),
        "{error}"
    );
    assert!(console.contains("camera[0].url"), "{console}");
    let code = c.b.setup_code();
    let line = format!("and enter this setup code: {code}");
    let txt = c.file("setup-code.txt").expect("setup-code.txt");
    assert!(
        txt.starts_with("Open http://") && txt.contains(&line),
        "{txt}"
    );
    assert!(console.contains(&line), "{console}");
    assert!(!c.b.data.join("admin-password").exists());

    // Fixed: consumed, the error and the code file gone, the box set up.
    let good = format!(
        "admin_password = \"{PASSWORD}\"\n[[camera]]\nname = \"door\"\nurl = \"{}\"\n",
        sample_clip().display()
    );
    std::fs::write(c.card.join("vigil-setup.toml"), &good).unwrap();
    let console = c.boot();
    assert_eq!(c.file("vigil-setup.toml"), None, "{console}");
    assert_eq!(c.file("vigil-setup-error.txt"), None);
    assert_eq!(c.file("setup-code.txt"), None, "set up: no stale code");
    assert!(c.b.data.join("admin-password").exists());
    assert!(console.contains("1 camera(s) saved"), "{console}");
    assert!(!console.contains(PASSWORD));
    assert!(std::fs::read_to_string(&c.b.config)
        .unwrap()
        .contains("name = \"door\""));
    assert_eq!(
        c.file("boot.scr").as_deref(),
        Some("script"),
        "the rest stays"
    );

    // Locked out: the empty file resets config, password and sessions.
    std::fs::write(c.card.join("vigil-factory-reset"), "").unwrap();
    std::fs::write(c.b.dir.join("sessions"), "tokens").unwrap();
    let console = c.boot();
    assert!(console.contains("factory reset"), "{console}");
    assert_eq!(c.file("vigil-factory-reset"), None);
    assert!(
        !c.b.data.join("factory-reset").exists(),
        "the flag was acted on"
    );
    assert!(!c.b.data.join("admin-password").exists());
    assert!(!c.b.dir.join("sessions").exists());
    assert!(
        std::fs::read_to_string(c.b.data.join("config.toml.before-reset"))
            .unwrap()
            .contains("door")
    );
    assert_eq!(
        std::fs::read_to_string(&c.b.config).unwrap(),
        std::fs::read_to_string(&c.b.factory).unwrap(),
        "the factory default again"
    );
    let new_code = c.b.setup_code();
    assert!(!new_code.is_empty() && new_code != code);
    assert!(c
        .file("setup-code.txt")
        .unwrap()
        .contains(&format!("setup code: {new_code}")));
    let log = std::fs::read_to_string(c.b.data.join("config.toml.log")).unwrap();
    assert!(log.contains("\"via\":\"factory-reset\""), "{log}");

    // A box without a boot partition still boots.
    std::fs::remove_dir_all(&c.sys).unwrap();
    std::fs::create_dir_all(&c.sys).unwrap();
    let _ = std::fs::remove_file(&c.calls);
    let console = c.boot();
    assert!(console.contains("no partition labelled boot"), "{console}");
    assert!(!c.calls.exists(), "nothing mounted");
}

#[test]
fn the_reset_command_makes_the_box_claimable_again() {
    // The command alone, as vigil-supervise runs it for the flag file.
    let b = Board::new("fb-reset");
    let (code, out, err) = b.preseed(&format!("admin_password = \"{PASSWORD}\"\n"));
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(b.data.join("factory-reset"), "").unwrap();
    let (code, out, err) = b.vigil("factory-reset", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("admin password removed"), "{out}");
    assert!(!b.data.join("factory-reset").exists());
    let v = b.run();
    let addr = v.web_addr_unclaimed();
    assert_eq!(get_anon(addr, "/api/session").json()["admin_set"], false);
    let line = v.wait_for_line(Duration::from_secs(10), |l| l.contains("the setup code "));
    assert_eq!(code_in_log_line(&line), Some(b.setup_code()));
    v.stop();
}
