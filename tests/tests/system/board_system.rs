//! The board's `/usr/sbin/vigil-system` (issue 17, items 7 and 8), run on
//! the host by `sh` with the real `vigil system-env` and the real udhcpc
//! hook, and logging stand-ins for the commands that would change this
//! machine (ifconfig, route, udhcpc, hostname, logger) first on its PATH.
//! The router pattern end to end: a static address waits for its
//! confirmation and goes back to DHCP without it (for good, for that
//! address), or stays once confirmed; the NTP servers the DHCP lease offered
//! are left in /run for vigil's time client (timesync), which uses them when
//! none are configured (that choice is timesync's, tested there).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vigil_system_tests::api::wait_until;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::{binary, root};

/// The stand-ins: each appends its name and arguments to `$STUB_LOG` when
/// it changes something (queries such as `ifconfig eth0` or `hostname` are
/// not logged, so an idempotent apply leaves the log as it was).
const STUBS: &[(&str, &str)] = &[
    ("ifconfig", "[ $# -gt 1 ] && log"),
    // No default route left to delete: ends the scripts' delete loops.
    ("route", "log; case $1 in del) exit 1 ;; esac"),
    ("logger", ":"),
    (
        "hostname",
        "if [ $# -eq 0 ]; then cat \"$STUB_DIR/hostname.now\" 2>/dev/null || echo vigil; \
         else log; echo \"$1\" > \"$STUB_DIR/hostname.now\"; fi",
    ),
    // A lease at once, like QEMU's user network, then it stays up.
    (
        "udhcpc",
        "log\n\
         while [ $# -gt 0 ]; do case $1 in -p) pidfile=$2; shift ;; -s) hook=$2; shift ;; esac; shift; done\n\
         echo $$ > \"$pidfile\"\n\
         interface=eth0 ip=10.0.2.15 subnet=255.255.255.0 router=10.0.2.2 dns=10.0.2.3 \
         ntpsrv=10.0.2.2 \"$hook\" bound\n\
         exec sleep 300",
    ),
];

struct Board {
    dir: TempDir,
}

impl Board {
    fn new(name: &str) -> Board {
        let dir = TempDir::new(name);
        let stubs = dir.0.join("stubs");
        for d in ["stubs", "data", "run"] {
            std::fs::create_dir_all(dir.0.join(d)).unwrap();
        }
        for (name, body) in STUBS {
            let path = stubs.join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nARGS=\"$*\"\nlog() {{ echo \"{name} $ARGS\" >> \"$STUB_LOG\"; }}\n{body}\nexit 0\n"
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(dir.0.join("factory.toml"), "").unwrap();
        Board { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    fn configure(&self, text: &str) {
        std::fs::write(self.path("data/config.toml"), text).unwrap();
    }

    /// `vigil-system ARGS` with the stubs and this board's paths.
    fn run(&self, args: &[&str]) {
        let script = root().join("rootfs-overlay/usr/sbin/vigil-system");
        let p = |rel: &str| self.path(rel).to_str().unwrap().to_owned();
        let out = Command::new("sh")
            .arg(&script)
            .args(args)
            .env("VIGIL_SYSTEM_PATH", format!("{}:/usr/bin:/bin", p("stubs")))
            .env("VIGIL_BIN", binary())
            .env("VIGIL_SYSTEM", &script)
            .env(
                "VIGIL_UDHCPC_SCRIPT",
                root().join("rootfs-overlay/etc/udhcpc.script"),
            )
            .env("VIGIL_CONFIG", p("data/config.toml"))
            .env("VIGIL_FACTORY", p("factory.toml"))
            .env("VIGIL_DATA", p("data"))
            .env("VIGIL_RUN", p("run"))
            .env("VIGIL_CONSOLE", p("console"))
            .env("VIGIL_HOSTNAME_FILE", p("hostname"))
            .env("VIGIL_CGROUP_ROOT", "")
            .env("STUB_LOG", p("stubs.log"))
            .env("STUB_DIR", p("stubs"))
            .env_remove("VIGIL_NETWORK_STATE")
            .output()
            .expect("sh vigil-system");
        println!(
            "vigil-system {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "vigil-system {args:?} failed");
    }

    fn state(&self) -> String {
        self.read("run/vigil-network").trim().to_owned()
    }

    fn log_lines(&self, prefix: &str) -> Vec<String> {
        self.read("stubs.log")
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }
}

impl Board {
    /// Ends the stand-ins and the revert timer the script started.
    fn kill_all(&self) {
        for pid in ["run/udhcpc.pid", "run/vigil-network-watch.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.path(pid)) {
                let _ = Command::new("kill").arg(p.trim()).status();
            }
        }
    }

    /// A reboot as the script sees it: its processes gone, /run empty.
    fn reboot(&self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(self.path("run"));
        std::fs::create_dir_all(self.path("run")).unwrap();
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    assert!(wait_until(Duration::from_secs(secs), &mut f), "{what}");
}

const STATIC: &str = "[system]\nhostname = \"garage\"\ntimezone = \"Europe/Berlin\"\n\
[system.network]\nmode = \"static\"\naddress = \"192.168.7.50/24\"\ngateway = \"192.168.7.1\"\n\
dns = [\"192.168.7.1\"]\nconfirm_within = \"30s\"\n";

#[test]
fn an_unconfirmed_static_address_goes_back_to_dhcp_for_good() {
    let b = Board::new("board-revert");
    b.configure(STATIC);
    b.run(&["apply"]);
    let state = b.state();
    println!("state: {state}");
    let words: Vec<&str> = state.split(' ').collect();
    assert_eq!(words.len(), 3, "{state}");
    assert_eq!(words[0], "static-pending");
    let id = words[2].to_owned();
    let ifconfig = b.log_lines("ifconfig eth0 192.168.7.50");
    assert_eq!(
        ifconfig,
        ["ifconfig eth0 192.168.7.50 netmask 255.255.255.0 up"]
    );
    assert_eq!(
        b.log_lines("route add"),
        ["route add default gw 192.168.7.1 dev eth0"]
    );
    assert_eq!(b.read("run/resolv.conf"), "nameserver 192.168.7.1\n");
    assert!(b.log_lines("udhcpc").is_empty(), "no DHCP while static");
    assert_eq!(b.log_lines("hostname garage"), ["hostname garage"]);
    assert_eq!(
        b.read("run/vigil-tz").trim(),
        "TZ='CET-1CEST,M3.5.0,M10.5.0/3'; export TZ"
    );
    let console = b.read("console");
    assert!(
        console.contains("vigil: open http://192.168.7.50:8080/ (static, not confirmed yet: back to DHCP in 30 s"),
        "{console}"
    );
    assert!(
        !b.path("run/vigil-ntp.dhcp").exists(),
        "no lease yet, so no NTP server from DHCP"
    );

    // Again (vigil-supervise before every start): nothing is redone.
    let before = b.read("stubs.log");
    b.run(&["apply"]);
    assert_eq!(b.state(), state, "same deadline");
    assert_eq!(b.read("stubs.log"), before, "idempotent");

    // Nobody confirms: back to DHCP, with the id recorded.
    wait_for("the revert", 60, || b.state() != state);
    assert_eq!(b.state(), format!("reverted {id}"));
    assert_eq!(b.read("data/network-reverted").trim(), id);
    let console = b.read("console");
    assert!(
        console.contains("not confirmed in time; back to DHCP"),
        "{console}"
    );
    // The lease: its address on the console, its NTP server kept for vigil.
    wait_for("the lease's console line", 10, || {
        b.read("console")
            .contains("vigil: open http://10.0.2.15:8080/ (dhcp)")
    });
    assert_eq!(
        b.log_lines("ifconfig eth0 0.0.0.0"),
        ["ifconfig eth0 0.0.0.0"]
    );
    assert_eq!(b.log_lines("udhcpc").len(), 1);
    wait_for("DHCP's NTP server kept", 10, || {
        b.path("run/vigil-ntp.dhcp").exists()
    });
    assert_eq!(b.read("run/vigil-ntp.dhcp").trim(), "10.0.2.2");

    // The next boot (a fresh /run): DHCP for that address, no new try.
    b.reboot();
    let statics = b.log_lines("ifconfig eth0 192.168.7.50").len();
    b.run(&["apply"]);
    assert_eq!(b.state(), format!("reverted {id}"));
    assert_eq!(b.log_lines("ifconfig eth0 192.168.7.50").len(), statics);
    wait_for("DHCP again on the new boot", 10, || {
        b.log_lines("udhcpc").len() == 2
    });

    // Changed static settings are tried again.
    b.configure(&STATIC.replace("192.168.7.50", "192.168.7.51"));
    b.run(&["apply"]);
    assert!(b.state().starts_with("static-pending "), "{}", b.state());
    assert_ne!(b.state().split(' ').nth(2), Some(id.as_str()));
    b.run(&["stop"]);
}

#[test]
fn a_confirmed_static_address_stays_until_the_page_turns_dhcp_back_on() {
    let b = Board::new("board-confirm");
    b.configure(&format!(
        "[system]\nntp = [\"ntp1.example.org\", \"10.0.0.9\"]\n{}",
        STATIC
            .split_once("[system.network]")
            .map(|(_, n)| format!("[system.network]{n}"))
            .unwrap()
    ));
    b.run(&["apply"]);
    let state = b.state();
    let id = state.split(' ').nth(2).expect("pending id").to_owned();
    // What POST /api/settings/network/confirm writes.
    std::fs::write(b.path("data/network-confirmed"), format!("{id}\n")).unwrap();
    wait_for("the confirmation", 10, || {
        b.state() == format!("static {id}")
    });
    assert!(!b.path("data/network-reverted").exists());
    assert!(b.log_lines("udhcpc").is_empty());
    assert_eq!(b.log_lines("ifconfig eth0 0.0.0.0"), Vec::<String>::new());
    // A later start: still static, nothing redone.
    let before = b.read("stubs.log");
    b.run(&["apply"]);
    assert_eq!(b.state(), format!("static {id}"));
    assert_eq!(b.read("stubs.log"), before);
    // Back to DHCP from the page: the address goes, udhcpc comes.
    b.configure("[system]\nntp = [\"ntp1.example.org\", \"10.0.0.9\"]\n");
    b.run(&["apply"]);
    assert_eq!(b.state(), "dhcp");
    assert_eq!(
        b.log_lines("ifconfig eth0 0.0.0.0"),
        ["ifconfig eth0 0.0.0.0"]
    );
    wait_for("the lease", 10, || b.read("console").contains("(dhcp)"));
    assert_eq!(b.log_lines("udhcpc").len(), 1);
    b.run(&["stop"]);
}

/// The script must stay POSIX sh (busybox ash runs it on the board).
#[test]
fn the_board_scripts_parse_as_posix_sh() {
    for script in [
        "rootfs-overlay/usr/sbin/vigil-system",
        "rootfs-overlay/etc/udhcpc.script",
        "rootfs-overlay/etc/rc.d/S10network",
        "rootfs-overlay/usr/sbin/vigil-supervise",
    ] {
        let path: &Path = &root().join(script);
        let ok = Command::new("sh")
            .arg("-n")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script} does not parse");
    }
}
