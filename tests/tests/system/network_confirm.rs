//! The network state on the settings page and its confirmation (issue 17,
//! item 8): `GET /api/settings` shows what the board's script wrote to its
//! state file (here a file the test writes, through `VIGIL_NETWORK_STATE`;
//! no file: not managed, as on any host), and
//! `POST /api/settings/network/confirm` writes the waiting id to
//! `<data_dir>/network-confirmed`, admin session and CSRF token required,
//! refusing when nothing waits or another address waits.

use std::net::SocketAddr;
use vigil_system_tests::config::{sample_clip, Camera, Config};
use vigil_system_tests::http::{get, post_json};
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::Vigil;

fn csrf(addr: SocketAddr) -> String {
    let s = get(addr, "/api/session").json();
    s["csrf"].as_str().expect("csrf of the session").to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_pending_static_address_is_shown_and_confirmed_from_the_page() {
    let dir = TempDir::new("network-confirm");
    let config = Config::new()
        .ssd_model()
        .camera(Camera::named("sample", sample_clip().to_str().unwrap()).detect_fps(1))
        .write(&dir.0);
    let data = dir.0.join("data");
    let state = dir.0.join("vigil-network");
    let v = Vigil::start_with_env(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--status-every",
            "0",
        ],
        &[("VIGIL_NETWORK_STATE", state.to_str().unwrap())],
    );
    let addr = v.web_addr();
    let network = || get(addr, "/api/settings").json()["network"].clone();
    let confirm = |body: &str, token: Option<&str>| {
        post_json(addr, "/api/settings/network/confirm", body, None, token)
    };
    let confirmed = data.join("network-confirmed");

    // No state file: a host, not managed here.
    let n = network();
    println!("{n}");
    assert_eq!(n["managed"], false, "{n}");
    let r = confirm("{}", Some(&csrf(addr)));
    assert_eq!(r.status, 409, "{}", r.text());

    let id = "0a1b2c3d4e5f";
    std::fs::write(&state, format!("static-pending {} {id}\n", now() + 120)).unwrap();
    let n = network();
    println!("{n}");
    assert_eq!(
        (n["managed"].clone(), n["state"].clone()),
        (true.into(), "static-pending".into())
    );
    assert_eq!(n["id"], id);
    let left = n["seconds_left"].as_u64().expect("seconds_left");
    assert!((1..=120).contains(&left), "{n}");

    // The session alone is not enough: the CSRF token too.
    assert_eq!(confirm("{}", None).status, 403);
    assert!(!confirmed.exists());
    // Another address than the one waiting.
    let r = confirm("{\"id\": \"ffffffffffff\"}", Some(&csrf(addr)));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("another one"), "{}", r.text());
    assert!(!confirmed.exists());

    let r = confirm(&format!("{{\"id\": \"{id}\"}}"), Some(&csrf(addr)));
    println!("{}", r.text());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["confirmed"], id);
    assert_eq!(
        std::fs::read_to_string(&confirmed).unwrap(),
        format!("{id}\n")
    );
    assert_eq!(
        network()["state"],
        "static",
        "kept, before the script notices"
    );

    std::fs::write(&state, format!("reverted {id}\n")).unwrap();
    assert_eq!(network()["state"], "reverted");
    assert_eq!(confirm("{}", Some(&csrf(addr))).status, 409);
    v.stop();
}
