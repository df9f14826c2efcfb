//! Tests of routes.rs' request checks: stored file names, the events query,
//! and what a POST needs (JSON and the same origin).

use super::*;

#[test]
fn stored_file_paths_take_digits_and_known_names_only() {
    assert_eq!(
        stored_file_path("/api/events/42/snapshot.jpg"),
        Some((42, "snapshot.jpg"))
    );
    assert_eq!(
        stored_file_path("/api/events/7/clip.mp4"),
        Some((7, "clip.mp4"))
    );
    for bad in [
        "/api/events//snapshot.jpg",
        "/api/events/-1/snapshot.jpg",
        "/api/events/+1/clip.mp4",
        "/api/events/1/../snapshot.jpg",
        "/api/events/1/clip.mp4/",
        "/api/events/1/other.bin",
        "/api/events/99999999999999999999999/snapshot.jpg",
        "/api/events/1x/snapshot.jpg",
        "/api/events/1",
    ] {
        assert_eq!(stored_file_path(bad), None, "{bad}");
    }
}

#[test]
fn events_query_parses_and_caps() {
    assert_eq!(events_query(""), Ok((0, DEFAULT_PAGE)));
    assert_eq!(events_query("after=7&limit=3"), Ok((7, 3)));
    assert_eq!(events_query("limit=1000000"), Ok((0, api::MAX_PAGE)));
    let after = |v: &str| QueryError::After(v.into());
    let limit = |v: &str| QueryError::Limit(v.into());
    for (bad, kind) in [
        ("after=-1", after("-1")),
        ("after=x", after("x")),
        ("limit=0", limit("0")),
        ("limit=", limit("")),
        ("foo=1", QueryError::Unknown("foo".into())),
        ("after", after("")),
    ] {
        assert_eq!(events_query(bad), Err(kind), "{bad}");
    }
    // The text the client reads says what to send.
    assert_eq!(
        events_query("limit=0").map_err(|e| e.to_string()),
        Err(format!(
            "`limit` must be a number from 1 to {}, got `0`",
            api::MAX_PAGE
        ))
    );
    assert_eq!(
        events_query("foo=1").map_err(|e| e.to_string()),
        Err("unknown parameter `foo`; use after and limit".into())
    );
}

#[test]
fn posts_need_json_and_same_origin() {
    let mut h = HeaderMap::new();
    assert!(check_post(&h).is_err(), "no content type");
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    assert!(check_post(&h).is_err());
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    assert!(check_post(&h).is_ok(), "no Origin: not a browser form");
    h.insert("host", HeaderValue::from_static("10.0.0.9:8080"));
    h.insert("origin", HeaderValue::from_static("http://evil.example"));
    assert!(check_post(&h).is_err());
    h.insert("origin", HeaderValue::from_static("http://10.0.0.9:8080"));
    assert!(check_post(&h).is_ok());
}
