//! The Settings panel of the status page (issue 17) driven in headless
//! Chromium (tests/support/browser.py): the cameras listed, a camera added
//! through the form and the restart followed, field errors beside their
//! fields with nothing saved, the export without secrets, the lead from the
//! sample clip to the first camera; no JavaScript
//! exception on the way.
//!
//! vigil listens on port 0 in tests, so its port changes when it restarts;
//! the page is opened through a relay on a fixed port that the test points
//! at the new process, as the box's fixed port would be.

use std::io::copy;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_system_tests::config::sample_clip;
use vigil_system_tests::http::{self, get, post_json};
use vigil_system_tests::login::claim;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::peers::Peer;
use vigil_system_tests::process::{root, Vigil};

use super::settings::{factory, new_address, start, SECRET};

/// After a save that answered `restarting`: the same process starts again
/// on a new port; claims it and returns the address.
fn restarted(v: &Vigil, data: &Path) -> SocketAddr {
    let addr = new_address(v);
    claim(addr, Some(data));
    addr
}

/// A TCP relay on a fixed local port to a vigil whose port may change: a
/// connection is forwarded to the upstream of the moment it is accepted,
/// and closed at once when nothing listens there (vigil restarting).
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let to = upstream.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let target = *to.lock().unwrap();
                if let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
            }
        });
        Relay { addr, upstream }
    }

    fn point_at(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// browser.py on `url` with the session `cookie`: `until`, then each of
/// `then` in turn, a screenshot, then `evals`.
fn browser(
    url: &str,
    cookie: &str,
    timeout: u32,
    until: &str,
    then: &[&str],
    evals: &[&str],
    shot: Option<&Path>,
) -> Command {
    let mut c = Command::new("/usr/bin/python3");
    c.arg(root().join("tests/support/browser.py"))
        .args(["--cookie", cookie, "--url", url, "--until", until])
        .args(["--timeout", &timeout.to_string()]);
    for t in then {
        c.args(["--then", t]);
    }
    for e in evals {
        c.args(["--eval", e]);
    }
    if let Some(shot) = shot {
        c.arg("--screenshot").arg(shot);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn report(out: std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "browser.py said ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("browser.py: {} ms", report["elapsed_ms"]);
    assert!(
        report["exceptions"].as_array().unwrap().is_empty(),
        "JavaScript exceptions on the page: {report}"
    );
    assert!(
        report["console_errors"].as_array().unwrap().is_empty(),
        "console errors on the page: {report}"
    );
    report
}

/// The rows of the cameras table once it lists `n` cameras: their names.
fn listed(n: usize) -> String {
    format!(
        "(() => {{ const n = [...document.querySelectorAll('#set-cams tr')].map(r => r.cells[0].textContent); \
         return n.length === {n} && n; }})()"
    )
}

/// Fills the camera form (open) with `fields` and presses "Save and apply".
fn fill_and_save(fields: &[(&str, &str)]) -> String {
    let sets: String = fields
        .iter()
        .map(|(k, v)| format!("e[{k:?}].value = {v:?};"))
        .collect();
    format!(
        "(() => {{ const f = document.getElementById('f-cam'), e = f.elements; if (f.hidden) return false; {sets} \
         [...f.querySelectorAll('button')].find(b => b.textContent === 'Save and apply').click(); return true; }})()"
    )
}

/// The error text beside the camera form's input `name`.
fn ferr(name: &str) -> String {
    format!("document.querySelector('#f-cam [name={name}]').closest('label').querySelector('.ferr').textContent")
}

#[test]
fn a_camera_added_on_the_page_streams_after_the_restart() {
    let server = Peer::rtsp_server(&["--mode", "file", "--file", sample_clip().to_str().unwrap()]);
    let dir = TempDir::new("settings-page-add");
    let factory = factory(&dir.0);
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &factory, &data);
    let addr = v.web_addr();
    let pid = v.pid();
    let relay = Relay::start(addr);
    let cookie = http::session(addr).expect("session");
    v.clear_log();
    let t0 = Instant::now();
    let page = browser(
        &format!("http://{}/", relay.addr),
        &cookie,
        150,
        &listed(2),
        &[
            // Add a camera through the form.
            "(() => { document.getElementById('b-cam-add').click(); return !document.getElementById('f-cam').hidden; })()",
            &fill_and_save(&[("name", "added"), ("url", &server.url), ("detect_fps", "1")]),
            // The page shows it is applying.
            "!document.getElementById('applying').hidden && [document.getElementById('applying').textContent, \
             document.querySelector('#set-cams-card .out').textContent]",
            // The new process took over the session: the page reloads logged
            // in, with nothing of the old process left (no login panel).
            "document.getElementById('applying').hidden && document.getElementById('f-login').hidden \
             && document.getElementById('set-state').textContent.includes('restarted') \
             && [document.getElementById('settings').hidden]",
            &listed(3),
            "document.querySelector('.camera[data-camera=\"added\"] .state')?.textContent === 'streaming'",
        ],
        &[
            "document.getElementById('set-state').textContent",
            "document.querySelector('.camera[data-camera=\"added\"] .state').textContent",
        ],
        None,
    )
    .spawn()
    .expect("run browser.py");
    // The page saved: vigil restarts on a new port; the relay follows it.
    let new = restarted(&v, &data);
    assert_ne!(new, addr);
    assert_eq!(v.pid(), pid, "re-executed in place");
    relay.point_at(new);
    let r = report(page.wait_with_output().unwrap());
    eprintln!("add, restart, streaming: {:?}", t0.elapsed());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["until"], serde_json::json!(["sample", "door"]), "{r}");
    let applying = r["then"][2].to_string();
    assert!(applying.contains("Applying"), "{r}");
    assert!(applying.contains("restarting"), "{r}");
    assert_eq!(
        r["then"][3],
        serde_json::json!([false]),
        "settings hidden: {r}"
    );
    assert_eq!(
        r["then"][4],
        serde_json::json!(["sample", "door", "added"]),
        "{r}"
    );
    assert_eq!(
        r["evals"][0], "vigil restarted with the new configuration.",
        "{r}"
    );
    assert_eq!(r["evals"][1], "streaming", "{r}");
    // The file has the camera, and still the hidden password of the other.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&server.url), "{text}");
    assert!(text.contains(SECRET), "{text}");
    let cams = get(new, "/api/cameras").json();
    assert_eq!(cams[2]["name"], "added", "{cams}");
    v.stop();
}

#[test]
fn mistakes_show_beside_their_fields_and_the_export_hides_secrets() {
    let dir = TempDir::new("settings-page-errors");
    let factory = factory(&dir.0);
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &factory, &data);
    let addr = v.web_addr();
    let before = std::fs::read(&config).unwrap();
    let artefacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("settings-page.png");
    let _ = std::fs::remove_file(&shot);
    let cookie = http::session(addr).expect("session");
    let r = report(
        browser(
            &format!("http://{addr}/"),
            &cookie,
            60,
            &listed(2),
            &[
                // 0-3: edit the camera with credentials, save it unchanged.
                "(() => { window.__row = document.querySelector('#set-cams tr'); \
                 document.querySelectorAll('#set-cams tr')[1].querySelector('button').click(); \
                 return document.getElementById('cam-title').textContent === 'Edit camera door'; })()",
                &fill_and_save(&[]),
                "(t => t !== 'Saving…' && t)(document.querySelector('#set-cams-card .out p')?.textContent)",
                "document.querySelector('#set-cams tr') !== window.__row",
                // 4-8: the first camera at detect fps 100.
                "(() => { document.querySelector('#set-cams tr button').click(); \
                 return document.getElementById('cam-title').textContent === 'Edit camera sample'; })()",
                &fill_and_save(&[("detect_fps", "100")]),
                &ferr("detect_fps"),
                "document.querySelector('#set-cams-card .out p').textContent",
                "[...document.querySelectorAll('#f-cam input:not([type=checkbox])')].map(i => i.offsetHeight)",
                // 9-10: the same camera, the fps fixed, a bad URL.
                &fill_and_save(&[("detect_fps", "2"), ("url", "ftp://x")]),
                &format!("{} && [{}, {}]", ferr("url"), ferr("url"), ferr("detect_fps")),
                // 11-13: a new camera with a bad URL: its own field, not another's.
                "(() => { document.getElementById('b-cam-add').click(); \
                 return document.getElementById('cam-title').textContent === 'Add camera'; })()",
                &fill_and_save(&[("name", "new"), ("url", "ftp://y")]),
                &format!(
                    "{} && [{}, document.querySelector('#set-cams-card .out').textContent]",
                    ferr("url"),
                    ferr("url")
                ),
                // 14: the export link, downloaded with the page's session.
                "fetch(document.querySelector('#f-toml a[download]').href).then(r => r.ok && r.text())",
                "(() => { document.getElementById('settings').scrollIntoView(); return true; })()",
            ],
            &[
                "document.querySelector('#f-toml textarea').value",
                "document.getElementById('applying').hidden",
            ],
            Some(&shot),
        )
        .output()
        .expect("run browser.py"),
    );
    assert_eq!(r["ok"], true, "{r}");
    let then = &r["then"];
    assert_eq!(
        then[2], "Saved: nothing changed.",
        "an unchanged camera: {r}"
    );
    eprintln!(
        "beside detect fps: {}; beside the URL: {}",
        then[6], then[10][0]
    );
    assert_eq!(then[7], "Not saved: see the marked field.", "{r}");
    let heights: Vec<u64> = then[8]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .collect();
    assert!(
        heights.len() >= 7 && heights.iter().all(|&h| h == heights[0]),
        "the inputs beside a field error change height: {heights:?}"
    );
    assert!(then[10][0].as_str().unwrap().contains("ftp://x"), "{r}");
    assert_eq!(then[10][1], "", "the fixed field keeps no error: {r}");
    assert!(then[13][0].as_str().unwrap().contains("ftp://y"), "{r}");
    assert!(!then[13][1].as_str().unwrap().contains("Saved"), "{r}");
    assert_eq!(r["evals"][1], true, "not applying: {r}");
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing saved");
    assert!(v.lines_matching(|l| l.contains("restarting")).is_empty());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot"
    );

    // The export: the file as shown, without the camera password.
    let export = then[14].as_str().expect("export text").to_owned();
    assert!(!export.contains(SECRET), "{export}");
    assert!(export.contains("rtsp://"), "{export}");
    assert_eq!(
        r["evals"][0].as_str().unwrap(),
        export,
        "the editor shows the export"
    );
    // Importing it changes nothing.
    let csrf = get(addr, "/api/session").json()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = serde_json::json!({"toml": export, "via": "import"}).to_string();
    let imported = post_json(addr, "/api/settings", &body, None, Some(&csrf));
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(imported.json()["restarting"], false, "{}", imported.text());
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the import changed the file"
    );
    v.stop();
}

/// A box still on its factory sample leads the owner to the first camera:
/// the sample's card says it is the sample clip, a banner offers "Add
/// camera", and its button opens the cameras form.
#[test]
fn a_box_on_the_sample_clip_leads_to_the_first_camera() {
    use vigil_system_tests::config::{Camera, Config};
    let dir = TempDir::new("settings-page-first-camera");
    let sample_only = Config::new()
        .ssd_model()
        .set("memory_limit", "768MiB")
        .camera(Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(1))
        .write_as(&dir.0.join("factory.toml"));
    let config = dir.0.join("data/vigil/config.toml");
    let data = dir.0.join("data");
    let v = start(&config, &sample_only, &data);
    let addr = v.web_addr();
    let cookie = http::session(addr).expect("session");
    let r = report(
        browser(
            &format!("http://{addr}/"),
            &cookie,
            60,
            &listed(1),
            &[
                "!document.getElementById('first-cam').hidden \
                 && document.querySelector('.camera[data-camera=\"sample\"] h3').textContent",
                "(() => { document.getElementById('b-first-cam').click(); \
                 return !document.getElementById('f-cam').hidden \
                 && document.getElementById('cam-title').textContent; })()",
            ],
            &[],
            None,
        )
        .output()
        .expect("run browser.py"),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        r["then"][0]
            .as_str()
            .is_some_and(|t| t.contains("sample clip")),
        "{r}"
    );
    assert_eq!(r["then"][1], "Add camera", "{r}");
    // With a camera of the owner's, no banner: the other page tests'
    // configuration has "door" besides the sample.
    drop(v);
    let dir = TempDir::new("settings-page-first-camera-door");
    let factory = factory(&dir.0);
    let v = start(
        &dir.0.join("data/vigil/config.toml"),
        &factory,
        &dir.0.join("data"),
    );
    let addr = v.web_addr();
    let cookie = http::session(addr).expect("session");
    let r = report(
        browser(
            &format!("http://{addr}/"),
            &cookie,
            60,
            &listed(2),
            &["document.getElementById('settings').hidden === false && [document.getElementById('first-cam').hidden]"],
            &[],
            None,
        )
        .output()
        .expect("run browser.py"),
    );
    assert_eq!(r["then"][0], serde_json::json!([true]), "{r}");
}

/// The System update card (issue 18) with a stand-in RAUC client
/// (tests/support/fake-rauc.sh): it shows the running slot, a bundle chosen
/// in its file field is uploaded with a progress bar and installed, and the
/// card then offers the reboot into the other slot's new version.
#[test]
fn the_system_update_card_installs_a_bundle_and_offers_the_reboot() {
    use std::os::unix::fs::PermissionsExt;
    use vigil_system_tests::config::{Camera, Config};
    let dir = TempDir::new("settings-page-update");
    let rauc = dir.0.join("rauc/rauc");
    std::fs::create_dir_all(dir.0.join("rauc")).unwrap();
    std::fs::copy(root().join("tests/support/fake-rauc.sh"), &rauc).unwrap();
    std::fs::set_permissions(&rauc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.0.join("rauc/booted"), "A").unwrap();
    let factory = Config::new()
        .ssd_model()
        .set("memory_limit", "768MiB")
        .table("update", "rauc", rauc.to_str().unwrap())
        .table("update", "reboot_after", "0s")
        .camera(Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(1))
        .write_as(&dir.0.join("factory.toml"));
    let data = dir.0.join("data");
    let v = start(&data.join("vigil/config.toml"), &factory, &data);
    let addr = v.web_addr();
    let cookie = http::session(addr).expect("session");
    let text = |id: &str| format!("document.getElementById('{id}').textContent");
    let r = report(
        browser(
            &format!("http://{addr}/"),
            &cookie,
            60,
            &format!("{}.includes('on slot A') && {}", text("upd-running"), text("upd-running")),
            &[
                "(() => { const f = document.getElementById('f-upd'), dt = new DataTransfer(); \
                 dt.items.add(new File(['GOOD\\n0.3.0\\n'], 'vigil-0.3.0.raucb')); \
                 f.elements.file.files = dt.files; f.requestSubmit(); return true; })()",
                "!document.getElementById('upd-reboot').hidden && document.getElementById('upd-msg').textContent",
                &text("upd-other"),
                &text("upd-reboot-text"),
            ],
            &[],
            None,
        )
        .output()
        .expect("run browser.py"),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["until"], "Running vigil 0.1.0 on slot A.", "{r}");
    assert_eq!(r["then"][1], "vigil 0.3.0 is installed.", "{r}");
    assert_eq!(r["then"][2], "Slot B: vigil 0.3.0.", "{r}");
    assert_eq!(r["then"][3], "Reboot to run it.", "{r}");
    drop(v);
}
