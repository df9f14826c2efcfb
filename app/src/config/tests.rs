//! Tests of the configuration: defaults, errors located by key and line,
//! value spellings and their error kinds, camera URL kinds, and a mutation
//! fuzz showing no edit of a valid file panics or loses an error's line.

use super::*;

fn err(text: &str) -> ConfigErrors {
    Config::parse(text, "t.toml").unwrap_err()
}

#[test]
fn a_camera_needs_only_a_url() {
    let c = Config::parse("[[camera]]\nurl = \"rtsp://10.0.0.5/stream1\"\n", "t.toml").unwrap();
    assert_eq!(c.cameras.len(), 1);
    let cam = &c.cameras[0];
    assert_eq!(cam.name, "camera-1");
    assert_eq!(cam.detect_fps, 5.0);
    assert_eq!(cam.classes.len(), DEFAULT_CLASSES.len());
    assert_eq!((cam.max_width, cam.max_height), (1920, 1080));
    assert_eq!(c.memory_limit, 512 << 20);
}

#[test]
fn unknown_keys_name_key_and_line() {
    let e = err("[[camera]]\nurl = \"a.h264\"\n\n[[camera]]\nurl = \"b.h264\"\nfsp = 3\n");
    let e = &e.0[0];
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.key.starts_with("camera[1]"), "{e}");
    assert!(e.message.contains("unknown field `fsp`"), "{e}");
}

#[test]
fn type_and_range_errors_name_key_and_line() {
    let e = err("memory_limit = \"12 parsecs\"\n");
    assert_eq!(
        (e.0[0].line, e.0[0].key.as_str()),
        (Some(1), "memory_limit"),
        "{e}"
    );
    let e = err("[[camera]]\nurl = \"a.h264\"\nframe_pool = 0\n");
    assert_eq!(e.0[0].line, Some(3), "{e}");
    assert_eq!(e.0[0].key, "camera[0].frame_pool");
    let e = err("[[camera]]\nurl = \"a.h264\"\nreconnect_min = \"5\"\n");
    assert!(e.0[0].message.contains("needs a unit"), "{e}");
    let e = err("[[camera]]\nurl = \"a.h264\"\nmax_resolution = \"1920x\"\n");
    assert_eq!(e.0[0].key, "camera[0].max_resolution", "{e}");
    // A value of the wrong type for a key read with its span: the key as
    // written, not serde_spanned's inner field.
    let e = err("[[camera]]\nurl = 7\n");
    assert_eq!(
        (e.0[0].line, e.0[0].key.as_str()),
        (Some(2), "camera[0].url"),
        "{e}"
    );
    let e = err("listen = false\n");
    assert_eq!(e.0[0].key, "listen", "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_lines() {
    let text = "listen = \"nowhere\"\n\
                [[camera]]\nname = \"a\"\nurl = \"ftp://x\"\ndetect_fps = 0\nclasses = [\"person\", \"unicorn\"]\n\
                [[camera]]\nname = \"a\"\nurl = \"b.h264\"\ncodec = \"vp9\"\nmin_score = 1.5\n";
    let e = err(text);
    let keys: Vec<(&str, Option<usize>)> = e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert!(keys.contains(&("listen", Some(1))), "{e}");
    assert!(keys.contains(&("camera[0].url", Some(4))), "{e}");
    assert!(keys.contains(&("camera[0].detect_fps", Some(5))), "{e}");
    assert!(keys.contains(&("camera[0].classes", Some(6))), "{e}");
    assert!(keys.contains(&("camera[1].name", Some(8))), "{e}");
    assert!(keys.contains(&("camera[1].codec", Some(10))), "{e}");
    assert!(keys.contains(&("camera[1].min_score", Some(11))), "{e}");
}

#[test]
fn v4l2_cameras_take_a_device_or_url_and_their_own_keys() {
    let c = Config::parse(
        "[[camera]]\ndevice = \"/dev/video2\"\nformat = \"mjpeg\"\nsize = \"640x480\"\nfps = 30\nbuffers = 6\n\
         [[camera]]\nurl = \"v4l:///dev/video0\"\n[[camera]]\nurl = \"a.h264\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.cameras[0].url, "v4l:///dev/video2");
    assert_eq!(
        c.cameras[0].v4l2,
        Some(V4l2Request {
            format: Some(PixelFormat::Mjpeg),
            size: Some((640, 480)),
            fps: Some(30),
            buffers: 6
        })
    );
    assert_eq!(
        c.cameras[1].v4l2,
        Some(V4l2Request {
            format: None,
            size: None,
            fps: None,
            buffers: 4
        })
    );
    assert_eq!(c.cameras[2].v4l2, None);
    // Clips need compressed video: raw V4L2 cameras have none.
    assert!(!c.cameras[0].compressed() && !c.cameras[1].compressed());
    assert!(c.cameras[2].compressed());
    let h264 = Config::parse(
        "[[camera]]\ndevice = \"/dev/video0\"\nformat = \"h264\"\n",
        "t",
    )
    .unwrap();
    assert!(h264.cameras[0].compressed());

    let located = |text: &str| -> Vec<(String, Option<usize>)> {
        err(text)
            .0
            .iter()
            .map(|e| (e.key.clone(), e.line))
            .collect()
    };
    let k = |key: &str, line: usize| (key.to_string(), Some(line));
    assert!(
        located("[[camera]]\nurl = \"a.h264\"\n\nformat = \"nv12\"\n")
            .contains(&k("camera[0].format", 4))
    );
    assert!(
        located("[[camera]]\ndevice = \"/dev/video0\"\nformat = \"rgb24\"\n")
            .contains(&k("camera[0].format", 3))
    );
    assert!(located("[[camera]]\nurl = \"v4l://video0\"\n").contains(&k("camera[0].url", 2)));
    assert!(
        located("[[camera]]\nurl = \"a.h264\"\ndevice = \"/dev/video0\"\n")
            .contains(&k("camera[0].device", 3))
    );
    assert!(located("[[camera]]\nname = \"x\"\n").contains(&k("camera[0].url", 2)));
    let e = err("[[camera]]\ndevice = \"/dev/video0\"\nsize = \"3840x2160\"\n");
    assert!(
        e.to_string()
            .contains("larger than max_resolution 1920x1080"),
        "{e}"
    );
    let e = err("[[camera]]\ndevice = \"/dev/video0\"\nbuffers = 1\n");
    assert!(e.to_string().contains("between 2 and 32"), "{e}");
}

#[test]
fn web_limits_have_defaults_and_located_errors() {
    let c = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
    assert_eq!(c.web, WebConfig::default());
    let c = Config::parse(
        "[web]\nmax_connections = 16\nheartbeat = \"2s\"\nmax_body = \"8KiB\"\npublic_status = false\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        (
            c.web.max_connections,
            c.web.heartbeat,
            c.web.max_body,
            c.web.public_status
        ),
        (16, Duration::from_secs(2), 8192, false)
    );
    let e = err("[web]\nheartbeat = \"0s\"\nmax_body = \"1GiB\"\n");
    let keys: Vec<(&str, Option<usize>)> = e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert!(keys.contains(&("web.heartbeat", Some(2))), "{e}");
    assert!(keys.contains(&("web.max_body", Some(3))), "{e}");
    let e = err("[web]\n\nmax_connections = 1\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("web.max_connections", Some(3)),
        "{e}"
    );
    let e = err("[web]\nmax_conections = 10\n");
    assert!(e.to_string().contains("max_conections"), "{e}");
}

#[test]
fn web_hostnames_are_normalised_and_bad_entries_named_with_their_line() {
    let c = Config::parse(
        "[web]\nhostnames = [\"Vigil.Local.\", \"cam-box.lan\"]\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.web.hostnames, ["vigil.local", "cam-box.lan"]);
    let e = err(
        "[web]\nhostnames = [\n  \"ok.lan\",\n  \"vigil.local:8080\",\n  \"http://x\",\n  \"*.lan\",\n  \"bad_name\",\n  \"\",\n]\n",
    );
    let got: Vec<(&str, Option<usize>)> = e.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        got,
        [
            ("web.hostnames[1]", Some(4)),
            ("web.hostnames[2]", Some(5)),
            ("web.hostnames[3]", Some(6)),
            ("web.hostnames[4]", Some(7)),
            ("web.hostnames[5]", Some(8)),
        ],
        "{e}"
    );
    let text = e.to_string();
    for needle in ["port", "URL", "wildcard", "`bad_name` is not a host name"] {
        assert!(text.contains(needle), "missing {needle} in {text}");
    }
    let e = err("[web]\nhostnames = \"vigil.local\"\n");
    assert_eq!(e.0[0].line, Some(2), "{e}");
}

#[test]
fn backend_and_hardware_settings() {
    let c = Config::parse("[[camera]]\nurl = \"a.h264\"\n", "t").unwrap();
    assert_eq!(c.backend, crate::hw::BackendChoice::Auto);
    assert_eq!(c.hardware.decoder_buffers, 24);
    let c = Config::parse(
        "backend = \"software\"\n[hardware]\nlib_dir = \"/opt/rk\"\ndecoder_buffers = 8\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.backend, crate::hw::BackendChoice::Software);
    assert_eq!(c.hardware.lib_dir.as_deref(), Some(Path::new("/opt/rk")));
    let e = err("\nbackend = \"npu\"\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("backend", Some(2)),
        "{e}"
    );
    let e = err("backend = \"software\"\n[detector]\nkind = \"yolov8\"\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("detector.kind", Some(3)),
        "{e}"
    );
    assert!(e.to_string().contains("NPU"), "{e}");
    let c = Config::parse(
        "[detector]\nkind = \"yolox\"\n[hardware]\ndev_dir = \"/tmp/d\"\n[[camera]]\nurl = \"a.h264\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.detector.kind.as_str(), "yolox");
    assert_eq!(c.hardware.dev_dir, Path::new("/tmp/d"));
    let e = err("[watchdog]\ndevice = \"/dev/watchdog\"\ntimeout = \"2s\"\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("watchdog.timeout", Some(3)),
        "{e}"
    );
    let e = err("[detector]\nkind = \"yolov9\"\n");
    assert!(
        e.to_string()
            .contains("ssd-mobilenet-v2, yolov5, yolov8, yolox"),
        "{e}"
    );
    let e = err("[hardware]\ndecoder_buffers = 2\n");
    assert_eq!(e.0[0].key, "hardware.decoder_buffers", "{e}");
}

#[test]
fn syntax_errors_have_lines() {
    let e = err("[[camera]]\nurl = = 3\n");
    assert_eq!(e.0[0].line, Some(2), "{e}");
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert!(matches!(
        parse_size("1 TB"),
        Err(SizeError::UnknownUnit { unit, .. }) if unit == "TB"
    ));
    assert!(matches!(
        parse_size("99999999999999GiB"),
        Err(SizeError::TooLarge { .. })
    ));
    assert!(matches!(parse_size("MiB"), Err(SizeError::NotASize { .. })));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(matches!(
        parse_duration("2"),
        Err(DurationError::NoUnit { .. })
    ));
    assert!(matches!(
        parse_duration("2d"),
        Err(DurationError::UnknownUnit { unit, .. }) if unit == "d"
    ));
    assert!(matches!(
        parse_duration("25h"),
        Err(DurationError::TooLong { .. })
    ));
    assert!(matches!(
        parse_duration("s"),
        Err(DurationError::NotADuration { .. })
    ));
    // The texts configuration errors show.
    let e = parse_size("1 TB").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown size unit `TB` in `1 TB`; use B, KiB, MiB, GiB, KB, MB or GB"
    );
    let e = parse_duration("2").unwrap_err().to_string();
    assert_eq!(e, "duration `2` needs a unit: ms, s, m or h");
}

#[test]
fn store_and_upstream_defaults_and_values() {
    let c = Config::parse("", "t.toml").unwrap();
    assert_eq!(c.store.max_bytes, 128 << 20);
    assert_eq!(c.store.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(c.upstream.outbox_max_bytes, 64 << 20);
    assert!(c.upstream.http.is_none() && c.upstream.mqtt.is_none());
    assert_eq!(
        (
            c.events.snapshot_width,
            c.events.snapshot_height,
            c.events.snapshot_quality
        ),
        (1280, 720, 80)
    );
    let c = Config::parse(
        "[store]\nmax_age = \"12h\"\n[upstream.http]\nurl = \"http://h:8/x\"\n\
         header = \"X-Key:  abc \"\n[upstream.mqtt]\nurl = \"mqtt://b\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.store.max_age, Duration::from_secs(12 * 3600));
    let h = c.upstream.http.unwrap();
    assert_eq!(h.header, Some(("X-Key".into(), "abc".into())));
    let m = c.upstream.mqtt.unwrap();
    assert_eq!(
        (m.host.as_str(), m.port, m.topic_prefix.as_str()),
        ("b", 1883, "vigil")
    );
}

#[test]
fn bad_store_and_upstream_keys_are_located() {
    let cases = [
        (
            "[upstream.http]\nurl = \"https://h/x\"\n",
            "upstream.http.url",
            2,
            "no TLS",
        ),
        (
            "[upstream.http]\nurl = \"h:80\"\n",
            "upstream.http.url",
            2,
            "not a URL",
        ),
        (
            "[upstream.http]\nurl = \"http://h/\"\nheader = \"Bearer x\"\n",
            "upstream.http.header",
            3,
            "Name: value",
        ),
        (
            "[upstream.mqtt]\nurl = \"mqtts://b\"\n",
            "upstream.mqtt.url",
            2,
            "no TLS",
        ),
        (
            "[upstream.mqtt]\nurl = \"mqtt://b\"\ntopic_prefix = \"a/#\"\n",
            "upstream.mqtt.topic_prefix",
            3,
            "#",
        ),
        (
            "[store]\nmax_bytes = \"8MiB\"\n[upstream]\noutbox_max_bytes = \"9MiB\"\n",
            "upstream.outbox_max_bytes",
            4,
            "store.max_bytes",
        ),
        (
            "[store]\nmax_bytes = \"1MiB\"\n",
            "store.max_bytes",
            2,
            "between 4MiB",
        ),
        (
            "[store]\nmax_age = \"10s\"\n",
            "store.max_age",
            2,
            "between 1m",
        ),
        (
            "[store]\nmax_age = \"3d2\"\n",
            "store.max_age",
            2,
            "not an age",
        ),
        (
            "[upstream]\nretry_min = \"5s\"\nretry_max = \"1s\"\n",
            "upstream.retry_max",
            3,
            "retry_min",
        ),
        (
            "[events]\nsnapshot_size = \"640\"\n",
            "events.snapshot_size",
            2,
            "resolution",
        ),
        (
            "[upstream]\nbroker = 1\n",
            "upstream.broker",
            2,
            "unknown field",
        ),
    ];
    for (text, key, line, needle) in cases {
        let e = err(text);
        let hit = e.0.iter().find(|x| x.key == key);
        let hit = hit.unwrap_or_else(|| panic!("{text:?}: no error for {key}: {e}"));
        assert_eq!(hit.line, Some(line), "{text:?}: {e}");
        assert!(hit.message.contains(needle), "{text:?}: {e}");
    }
}

/// Mutation fuzzing: random edits of a full, valid file never panic,
/// and every error still carries a line inside the file.
#[test]
fn mutated_files_never_panic_and_errors_stay_located() {
    let valid = "memory_limit = \"512MiB\"\ndata_dir = \"/data\"\nlisten = \"0.0.0.0:8080\"\n\
        [detector]\nkind = \"ssd-mobilenet-v2\"\nworkers = 2\n[runtime]\nio_threads = 2\n\
        [events]\nring_capacity = 100\ntrack_timeout = \"3s\"\nsnapshot_pool = 2\n\
        snapshot_size = \"640x360\"\nsnapshot_quality = 70\nqueue = 16\n\
        [store]\nmax_bytes = \"64MiB\"\nmax_events = 5000\nmax_age = \"7d\"\nbatch = 32\n\
        flush_after = \"500ms\"\ncache = \"2MiB\"\n\
        [upstream]\noutbox_max_bytes = \"16MiB\"\nretry_min = \"1s\"\nretry_max = \"30s\"\n\
        timeout = \"5s\"\nmax_attempts = 3\n\
        [upstream.http]\nurl = \"http://10.0.0.9:8000/ev\"\nheader = \"Authorization: Bearer t\"\n\
        [upstream.mqtt]\nurl = \"mqtt://10.0.0.9\"\ntopic_prefix = \"site/a\"\nclient_id = \"box\"\n\
        [web]\nmax_connections = 32\nmax_sse_clients = 4\nsse_queue = 16\nheartbeat = \"3s\"\n\
        header_timeout = \"5s\"\nbody_timeout = \"5s\"\nidle_timeout = \"30s\"\nmax_body = \"16KiB\"\n\
        public_status = true\n\
        [[camera]]\nname = \"door\"\nurl = \"rtsp://10.0.0.2/s\"\ncodec = \"h264\"\ndetect_fps = 2.5\n\
        classes = [\"person\", \"car\"]\nmin_score = 0.4\nusername = \"u\"\npassword = \"p\"\n\
        max_resolution = \"1280x720\"\nframe_pool = 3\npacket_pool = 6\npacket_size = \"512KiB\"\n\
        reconnect_min = \"500ms\"\nreconnect_max = \"20s\"\nstall_timeout = \"8s\"\n\
        [[camera]]\nurl = \"clip.mp4\"\n";
    Config::parse(valid, "v.toml").expect("the seed file is valid");
    const PIECES: [&str; 12] = [
        "=",
        "\"",
        "[",
        "]",
        "[[camera]]",
        "\n",
        "-1",
        "1e99",
        "x",
        "\u{0}",
        "é",
        "{a=1}",
    ];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    for _ in 0..20_000 {
        let mut text = valid.to_owned();
        for _ in 0..1 + next(3) {
            let mut at = next(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match next(3) {
                0 => {
                    let mut end = (at + next(12)).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, "");
                }
                1 => text.insert_str(at, PIECES[next(PIECES.len())]),
                _ => {
                    let digit = char::from(b'0' + next(10) as u8);
                    text.insert(at, digit);
                }
            }
        }
        if let Err(errors) = Config::parse(&text, "f.toml") {
            let lines = text.lines().count() + 1;
            for e in &errors.0 {
                let line = e
                    .line
                    .unwrap_or_else(|| panic!("no line for {e} in:\n{text}"));
                assert!((1..=lines).contains(&line), "{e} outside the file:\n{text}");
            }
        }
    }
}

#[test]
fn command_line_urls_are_quoted_safely() {
    let c = Config::from_urls(&["clip \"a\".mp4".into()]).unwrap();
    assert_eq!(c.cameras[0].url, "clip \"a\".mp4");
    let e = Config::from_urls(&["video.avi".into()]).unwrap_err();
    assert_eq!(e.0[0].file, "--camera");
}

#[test]
fn classifies_urls_and_paths() {
    let rtsp = classify("rtsp://10.0.0.5:554/stream1", None).unwrap();
    assert!(matches!(rtsp, SourceKind::Rtsp(u) if u.host_str() == Some("10.0.0.5")));
    assert!(matches!(
        classify("RTSP://cam/x", None),
        Ok(SourceKind::Rtsp(_))
    ));
    assert_eq!(
        classify("/media/a.H264", None).unwrap(),
        SourceKind::AnnexB("/media/a.H264".into(), Codec::H264)
    );
    assert_eq!(
        classify("clip.264", None).unwrap(),
        SourceKind::AnnexB("clip.264".into(), Codec::H264)
    );
    for p in ["x.h265", "x.265", "x.hevc"] {
        assert_eq!(
            classify(p, None).unwrap(),
            SourceKind::AnnexB(p.into(), Codec::H265)
        );
    }
    for p in ["x.mp4", "x.M4V", "x.mov"] {
        assert_eq!(classify(p, None).unwrap(), SourceKind::Mp4(p.into()));
    }
    assert_eq!(
        classify("file:///srv/clips/door%20cam.mp4", None).unwrap(),
        SourceKind::Mp4("/srv/clips/door cam.mp4".into())
    );
    assert_eq!(
        classify("/dev/shm/cam.bin", Some(Codec::H265)).unwrap(),
        SourceKind::AnnexB("/dev/shm/cam.bin".into(), Codec::H265)
    );
}

#[test]
fn refuses_what_cannot_play_and_names_the_url() {
    for (url, kind) in [
        ("", UrlErrorKind::Empty),
        ("http://cam/stream", UrlErrorKind::UnsupportedScheme),
        ("rtsps://cam/stream", UrlErrorKind::Rtsps),
        ("rtsp://", UrlErrorKind::NoHost),
        ("clip.avi", UrlErrorKind::UnknownExtension),
        ("camera1", UrlErrorKind::UnknownExtension),
        ("file://relative", UrlErrorKind::BadFileUrl),
        ("v4l://video0", UrlErrorKind::NotADevice),
    ] {
        let err = classify(url, None).unwrap_err();
        assert_eq!(err.kind, kind, "{url}: {err}");
        assert!(err.to_string().contains(&format!("{url:?}")), "{err}");
    }
}

#[test]
fn an_npu_detector_refuses_v4l2_cameras_that_give_cpu_pictures() {
    // Issue 16, item 14: these could only fail on every frame.
    for (format, line) in [
        ("format = \"mjpeg\"\n", 6),
        ("format = \"yuyv\"\n", 6),
        ("format = \"auto\"\n", 6),
        ("", 5),
    ] {
        let e = err(&format!(
            "[detector]\nkind = \"yolov8\"\n[[camera]]\nname = \"door\"\n\
             device = \"/dev/video0\"\n{format}"
        ));
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(
            (e.0[0].key.as_str(), e.0[0].line),
            ("camera[0].format", Some(line)),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("`yolov8` models run on the RK3588 NPU"),
            "{e}"
        );
    }
    // H.264 from the camera goes through the hardware decoder: accepted, as
    // are raw formats with a CPU detector and NPU models on RTSP cameras.
    for ok in [
        "[detector]\nkind = \"yolov8\"\n[[camera]]\ndevice = \"/dev/video0\"\nformat = \"h264\"\n",
        "[[camera]]\ndevice = \"/dev/video0\"\nformat = \"mjpeg\"\n",
        "[detector]\nkind = \"yolox\"\n[[camera]]\nurl = \"rtsp://cam/stream\"\n",
    ] {
        Config::parse(ok, "t").unwrap();
    }
}

#[test]
fn metrics_token_from_the_file_or_inline_checked_with_key_and_line() {
    let c = Config::parse("[web]\nmetrics_token = \"0123456789abcdef\"\n", "t").unwrap();
    assert_eq!(c.web.metrics_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(WebConfig::default().metrics_token, None);
    assert!(!WebConfig::default().public_status, "closed by default");
    let e = err("[web]\n\nmetrics_token = \"short\"\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("web.metrics_token", Some(3)),
        "{e}"
    );
    assert!(
        !e.to_string().contains("short\""),
        "the token is not echoed: {e}"
    );
    let dir = crate::test_dir::TempDir::new("metrics-token");
    let file = dir.0.join("metrics-token");
    std::fs::write(&file, "fedcba9876543210fedcba\n").unwrap();
    let text = format!("[web]\nmetrics_token_file = \"{}\"\n", file.display());
    let c = Config::parse(&text, "t").unwrap();
    assert_eq!(
        c.web.metrics_token.as_deref(),
        Some("fedcba9876543210fedcba")
    );
    let e = err(&format!(
        "[web]\nmetrics_token = \"0123456789abcdef\"\nmetrics_token_file = \"{}\"\n",
        file.display()
    ));
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("web.metrics_token_file", Some(3))
    );
    let e = err("[web]\nmetrics_token_file = \"/nonexistent/vigil-token\"\n");
    assert_eq!(
        (e.0[0].key.as_str(), e.0[0].line),
        ("web.metrics_token_file", Some(2))
    );
    std::fs::write(&file, "has a space in it, long enough\n").unwrap();
    let e = err(&format!(
        "[web]\nmetrics_token_file = \"{}\"\n",
        file.display()
    ));
    assert!(e.to_string().contains("without spaces"), "{e}");
}

#[test]
fn debug_of_a_config_prints_no_secret() {
    let text = "[upstream.http]\nurl = \"http://10.0.0.9:8000/ev?token=HOOKSECRET\"\n\
        header = \"Authorization: Bearer HEADERSECRET\"\n\
        [upstream.mqtt]\nurl = \"mqtt://10.0.0.9\"\nusername = \"box\"\npassword = \"MQTTSECRET\"\n\
        [web]\nmetrics_token = \"METRICSSECRET0123456\"\n\
        [[camera]]\nurl = \"rtsp://admin:URLPASS@10.0.0.2/s?token=QUERYSECRET\"\n\
        [[camera]]\nurl = \"rtsp://10.0.0.3/s\"\nusername = \"u\"\npassword = \"CAMSECRET\"\n";
    let c = Config::parse(text, "t").unwrap();
    let shown = format!("{c:?} {c:#?}");
    for secret in [
        "HOOKSECRET",
        "HEADERSECRET",
        "MQTTSECRET",
        "METRICSSECRET",
        "URLPASS",
        "QUERYSECRET",
        "CAMSECRET",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // What is not secret still shows, so the Debug stays useful.
    for visible in ["10.0.0.2", "token=***", "Authorization", "box", "camera-2"] {
        assert!(shown.contains(visible), "{visible} missing from {shown}");
    }
}
