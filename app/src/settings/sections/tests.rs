use super::*;
use crate::config::Config;
use serde_json::json;

const FILE: &str = r#"# the box
memory_limit = "512MiB"

[events]
queue = 32           # busy
ring_capacity = 100  # small

[web]
metrics_token = "0123456789abcdef0123"   # Prometheus

[upstream.http]
url = "http://10.0.0.2/in?token=tok123"
header = "Authorization: Bearer abc"

[[camera]]
name = "front"
url = "rtsp://10.0.0.5/s"
"#;

const BASE: &str = "memory_limit = \"512MiB\"\n[upstream.http]\nurl = \"http://10.0.0.2/in\"\n[upstream.mqtt]\nurl = \"mqtt://10.0.0.3\"\n";

fn values(v: Json) -> Map<String, Json> {
    match v {
        Json::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A valid value for each listed key that differs from `BASE`; a key
/// added to [`SECTIONS`] needs one here.
fn sample(section: &str, key: &str) -> Json {
    match (section, key) {
        ("detector", "kind") => json!("yolov5"),
        ("detector", "model") => json!("/data/models/yolov5s.rknn"),
        ("detector", "workers") => json!(3),
        ("events", "ring_capacity") => json!(10),
        ("events", "track_timeout") => json!("7s"),
        ("events", "snapshot_pool") => json!(2),
        ("events", "snapshot_size") => json!("640x480"),
        ("events", "snapshot_quality") => json!(60),
        ("events", "queue") => json!(16),
        ("record", "enabled") => json!(false),
        ("record", "pre_roll") => json!("3s"),
        ("record", "post_roll") => json!("4s"),
        ("record", "max_length") => json!("30s"),
        ("record", "ring_size") => json!("16MiB"),
        ("record", "upstream") => json!("upload"),
        ("store", "max_bytes") => json!("256MiB"),
        ("store", "max_events") => json!(500),
        ("store", "max_age") => json!("7d"),
        ("upstream", "outbox_max_bytes") => json!(32 << 20),
        ("upstream", "retry_min") => json!("2s"),
        ("upstream", "retry_max") => json!("30s"),
        ("upstream", "timeout") => json!("5s"),
        ("upstream", "max_attempts") => json!(3),
        ("upstream.http", "url") => json!("http://10.0.0.9/x"),
        ("upstream.http", "header") => json!("X-Key: abc"),
        ("upstream.mqtt", "url") => json!("mqtt://10.0.0.8:1884"),
        ("upstream.mqtt", "topic_prefix") => json!("box"),
        ("upstream.mqtt", "client_id") => json!("box-1"),
        ("upstream.mqtt", "username") => json!("u"),
        ("upstream.mqtt", "password") => json!("p"),
        ("web", "hostnames") => json!(["vigil.local"]),
        ("web", "public_status") => json!(true),
        ("web", "metrics_token") => json!("0123456789abcdef0123"),
        ("system", "hostname") => json!("garage"),
        ("system", "timezone") => json!("Europe/Berlin"),
        ("system", "ntp") => json!(["pool.ntp.org"]),
        ("system.network", "mode") => json!("static"),
        ("system.network", "address") => json!("192.168.1.50/24"),
        ("system.network", "gateway") => json!("192.168.1.1"),
        ("system.network", "dns") => json!(["192.168.1.1"]),
        ("system.network", "confirm_within") => json!("60s"),
        _ => panic!("no sample for {section}.{key}"),
    }
}

#[test]
fn every_listed_key_reaches_the_parser_and_the_listing() {
    let base = Config::parse(BASE, "base").unwrap();
    for s in &SECTIONS {
        for k in s.keys {
            let v = sample(s.path, k.name);
            // A static address is valid only with its address.
            let mut form = values(json!({ k.name: v }));
            if (s.path, k.name) == ("system.network", "mode") {
                form.insert("address".into(), sample(s.path, "address"));
            }
            let text = with_section(BASE, s.path, &form)
                .unwrap_or_else(|e| panic!("{}.{}: {e}", s.path, k.name));
            let config = Config::parse(&text, "t")
                .unwrap_or_else(|e| panic!("{}.{}: {e}\n{text}", s.path, k.name));
            assert_ne!(
                config, base,
                "{}.{} did not arrive:\n{text}",
                s.path, k.name
            );
            let listed = serde_json::to_value(list(&text)).unwrap();
            let keys = listed[s.path]["keys"].as_array().unwrap();
            let shown = &keys.iter().find(|x| x["key"] == k.name).unwrap()["value"];
            let expected = if k.kind == Kind::Secret {
                json!(HIDDEN)
            } else {
                v
            };
            assert_eq!(*shown, expected, "{}.{}", s.path, k.name);
        }
    }
}

#[test]
fn unknown_keys_sections_and_wrong_types_are_refused_by_name() {
    let e = with_section(FILE, "web", &values(json!({"listen": "0.0.0.0:80"}))).unwrap_err();
    assert_eq!(e.key(), "web.listen");
    assert!(e.to_string().contains("web.listen"), "{e}");
    let e = with_section(FILE, "hardware", &Map::new()).unwrap_err();
    assert!(matches!(e, SectionError::UnknownSection(ref s) if s == "hardware"));
    let e = with_section(FILE, "detector", &values(json!({"workers": "two"}))).unwrap_err();
    assert_eq!(e.key(), "detector.workers");
    let e = with_section(FILE, "web", &values(json!({"hostnames": ["a", 1]}))).unwrap_err();
    assert_eq!(e.key(), "web.hostnames");
    let e = with_section("web = 5\n", "web", &values(json!({"public_status": true})));
    assert!(matches!(e, Err(SectionError::NotATable(ref p)) if p == "web"));
    let e = with_section("web = [", "web", &Map::new());
    assert!(matches!(e, Err(SectionError::Syntax(_))));
}

#[test]
fn null_removes_comments_stay_and_new_tables_precede_the_cameras() {
    let text = with_section(
        FILE,
        "events",
        &values(json!({"ring_capacity": null, "queue": 16})),
    )
    .unwrap();
    assert!(!text.contains("ring_capacity"), "{text}");
    assert!(text.contains("queue = 16           # busy"), "{text}");
    assert!(text.contains("# the box") && text.contains("# Prometheus"));
    assert_eq!(
        Config::parse(&text, "t").unwrap().events.ring_capacity,
        1024
    );

    let text = with_section(FILE, "store", &values(json!({"max_age": "7d"}))).unwrap();
    let store = text.find("[store]").expect("a new [store] table");
    assert!(store < text.find("[[camera]]").unwrap(), "{text}");

    // Emptied, the HTTP upstream is gone (its table too); a new MQTT one
    // needs no bare [upstream].
    let none = values(json!({"url": null, "header": null}));
    let text = with_section(FILE, "upstream.http", &none).unwrap();
    assert!(!text.contains("upstream"), "{text}");
    assert!(Config::parse(&text, "t").unwrap().upstream.http.is_none());
    let mqtt = values(json!({"url": "mqtt://10.0.0.3", "username": "u"}));
    let text = with_section(&text, "upstream.mqtt", &mqtt).unwrap();
    assert!(
        text.contains("[upstream.mqtt]") && !text.contains("[upstream]"),
        "{text}"
    );
    let config = Config::parse(&text, "t").unwrap();
    assert_eq!(config.upstream.mqtt.unwrap().username.as_deref(), Some("u"));
    // Nothing changed: the text is the file, byte for byte.
    let same = values(json!({"queue": 32, "ring_capacity": 100}));
    assert_eq!(with_section(FILE, "events", &same).unwrap(), FILE);
}

#[test]
fn secrets_are_listed_hidden_and_kept_when_sent_back_hidden() {
    let listed = serde_json::to_value(list(FILE)).unwrap();
    let json = listed.to_string();
    for secret in ["0123456789abcdef0123", "tok123", "Bearer abc"] {
        assert!(!json.contains(secret), "{secret} listed in {json}");
    }
    let http = &listed["upstream.http"]["keys"];
    assert_eq!(http[1]["value"], json!(HIDDEN));
    assert_eq!(http[0]["kind"], json!("url"));
    let shown_url = http[0]["value"].clone();
    assert_eq!(
        shown_url,
        json!(redact_url("http://10.0.0.2/in?token=tok123"))
    );
    assert_eq!(listed["web"]["keys"][2]["value"], json!(HIDDEN));
    assert_eq!(listed["web"]["keys"][0]["value"], Json::Null);
    assert_eq!(listed["detector"]["keys"][0]["options"][1], json!("yolov5"));

    // Sent back as listed: unchanged.
    let back = values(json!({"url": shown_url, "header": HIDDEN}));
    assert_eq!(with_section(FILE, "upstream.http", &back).unwrap(), FILE);
    let web = values(json!({"metrics_token": HIDDEN, "public_status": true}));
    let text = with_section(FILE, "web", &web).unwrap();
    let config = Config::parse(&text, "t").unwrap();
    assert_eq!(
        config.web.metrics_token.as_deref(),
        Some("0123456789abcdef0123")
    );
    assert!(config.web.public_status);
    // A hidden secret with nothing stored sets nothing.
    let mqtt = values(json!({"url": "mqtt://10.0.0.3", "password": HIDDEN}));
    let text = with_section(FILE, "upstream.mqtt", &mqtt).unwrap();
    let config = Config::parse(&text, "t").unwrap();
    assert_eq!(config.upstream.mqtt.unwrap().password, None);
    // A new secret replaces the old one.
    let new = values(json!({"header": "Authorization: Bearer xyz"}));
    let text = with_section(FILE, "upstream.http", &new).unwrap();
    assert!(
        text.contains("Bearer xyz") && text.contains("tok123"),
        "{text}"
    );
}
