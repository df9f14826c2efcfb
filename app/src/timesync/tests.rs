//! The client against NTP servers run in the test (UDP on loopback) whose
//! clocks are off by a chosen amount, with a recording clock instead of the
//! kernel's.

use super::*;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the client did to the clock, in order.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Step(i64),
    Slew(i64),
    Synced(i64),
}

#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    refuse: bool,
}

impl KernelClock for Recorder {
    fn step(&mut self, offset_us: i64) -> io::Result<()> {
        if self.refuse {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.calls.lock().unwrap().push(Call::Step(offset_us));
        Ok(())
    }
    fn slew(&mut self, offset_us: i64) -> io::Result<()> {
        if self.refuse {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.calls.lock().unwrap().push(Call::Slew(offset_us));
        Ok(())
    }
    fn mark_synchronized(&mut self, max_error_us: i64) -> io::Result<()> {
        self.calls.lock().unwrap().push(Call::Synced(max_error_us));
        Ok(())
    }
}

fn ntp_stamp(skew_us: i64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let us = i64::try_from(now.as_micros()).unwrap() + skew_us;
    let secs = (us.div_euclid(1_000_000) + 2_208_988_800) as u64;
    let frac = ((us.rem_euclid(1_000_000) as u64) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// A server on loopback whose clock is `skew_us` off this machine's;
/// answers with `stratum`. Returns its address.
async fn server(skew_us: i64, stratum: u8) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if n < 48 {
                continue;
            }
            let received = ntp_stamp(skew_us);
            let mut out = [0u8; 48];
            out[0] = (4 << 3) | 4; // no leap warning, version 4, server
            out[1] = stratum;
            out[2] = buf[2];
            out[3] = (-20i8) as u8;
            out[12..16].copy_from_slice(b"LOCL");
            out[16..24].copy_from_slice(&ntp_stamp(skew_us - 16_000_000).to_be_bytes());
            out[24..32].copy_from_slice(&buf[40..48]);
            out[32..40].copy_from_slice(&received.to_be_bytes());
            out[40..48].copy_from_slice(&ntp_stamp(skew_us).to_be_bytes());
            let _ = sock.send_to(&out, peer).await;
        }
    });
    addr
}

/// A socket that takes requests and never answers.
async fn silent() -> (tokio::net::UdpSocket, SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    (sock, addr)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn plan(servers: &[SocketAddr]) -> Plan {
    Plan {
        configured: servers.iter().map(|a| Server::Addr(*a)).collect(),
        ..Plan::default()
    }
}

#[test]
fn an_hour_off_is_stepped_and_the_kernel_told_it_is_synchronised() {
    rt().block_on(async {
        let addr = server(3_600_000_000, 1).await;
        let mut clock = Recorder::default();
        let synced = sync_once(&plan(&[addr]), &mut clock).await.unwrap();
        let calls = clock.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let Call::Step(us) = calls[0] else {
            panic!("expected a step first: {calls:?}")
        };
        assert!((us - 3_600_000_000).abs() < 500_000, "stepped by {us} µs");
        assert_eq!(synced.correction, Correction::Stepped(us));
        let Call::Synced(err) = calls[1] else {
            panic!("expected the sync mark last: {calls:?}")
        };
        // Loopback: the declared error is the 1 ms floor plus half a tiny round trip.
        assert!((1_000..500_000).contains(&err), "max error {err} µs");
    });
}

#[test]
fn a_small_offset_is_slewed_and_a_clock_behind_is_stepped_back() {
    rt().block_on(async {
        let near = server(20_000, 2).await;
        let mut clock = Recorder::default();
        let synced = sync_once(&plan(&[near]), &mut clock).await.unwrap();
        assert!(
            matches!(synced.correction, Correction::Slewed(us) if (0..100_000).contains(&us)),
            "{synced:?}"
        );
        let behind = server(-90_000_000, 2).await;
        let synced = sync_once(&plan(&[behind]), &mut clock).await.unwrap();
        assert!(
            matches!(synced.correction, Correction::Stepped(us) if (us + 90_000_000).abs() < 500_000),
            "{synced:?}"
        );
    });
}

#[test]
fn a_silent_or_unsynchronised_server_is_passed_over_for_the_next() {
    rt().block_on(async {
        let (_keep, quiet) = silent().await;
        let unsynced = server(0, 16).await;
        let good = server(5_000_000, 1).await;
        let mut clock = Recorder::default();
        let synced = sync_once(&plan(&[quiet, unsynced, good]), &mut clock)
            .await
            .unwrap();
        assert_eq!(synced.server, Server::Addr(good));
        // Only the good server changed the clock.
        assert_eq!(clock.calls.lock().unwrap().len(), 2);

        let err = sync_once(&plan(&[unsynced]), &mut clock).await.unwrap_err();
        assert!(
            matches!(
                err,
                RoundError::NoAnswer {
                    error: QueryError::Protocol(sntpc::Error::IncorrectStratumHeaders),
                    ..
                }
            ),
            "{err}"
        );
        let started = std::time::Instant::now();
        let err = sync_once(&plan(&[quiet]), &mut clock).await.unwrap_err();
        assert!(
            matches!(
                err,
                RoundError::NoAnswer {
                    error: QueryError::Timeout,
                    ..
                }
            ),
            "{err}"
        );
        assert!(started.elapsed() < QUERY_TIMEOUT * 2);
        assert_eq!(
            clock.calls.lock().unwrap().len(),
            2,
            "failed rounds change nothing"
        );
    });
}

#[test]
fn without_servers_the_round_says_so_and_a_refusing_kernel_is_an_error() {
    rt().block_on(async {
        let mut clock = Recorder::default();
        let err = sync_once(&Plan::default(), &mut clock).await.unwrap_err();
        assert!(matches!(err, RoundError::NoServers));
        assert!(err.to_string().contains("[system] ntp"), "{err}");

        let addr = server(3_600_000_000, 1).await;
        let mut refusing = Recorder {
            refuse: true,
            ..Recorder::default()
        };
        let err = sync_once(&plan(&[addr]), &mut refusing).await.unwrap_err();
        assert!(matches!(err, RoundError::Kernel(_)), "{err}");
        assert!(
            refusing.calls.lock().unwrap().is_empty(),
            "not marked synchronised"
        );
    });
}

#[test]
fn configured_servers_then_the_leases_then_the_fallback_and_the_file_is_read_within_its_bound() {
    let dir = crate::test_dir::TempDir::new("timesync-dhcp");
    let file = dir.0.join("ntp-dhcp");
    std::fs::write(&file, "10.0.0.1 bad:name:x  ntp.example.org\n").unwrap();
    let mut plan = Plan {
        configured: Vec::new(),
        dhcp_file: Some(file.clone()),
        fallback: vec![Server::parse("fallback.example").unwrap()],
    };
    assert_eq!(
        plan.servers(),
        vec![
            Server::parse("10.0.0.1").unwrap(),
            Server::Name("ntp.example.org".into(), 123)
        ]
    );
    plan.configured = vec![Server::parse("192.168.1.1:1123").unwrap()];
    assert_eq!(plan.servers(), plan.configured);
    plan.configured.clear();

    // A huge file: only the first DHCP_FILE_MAX bytes are read, and at most
    // MAX_SERVERS servers come out of them.
    let many = "10.0.0.2 ".repeat(100_000);
    std::fs::write(&file, many).unwrap();
    assert_eq!(plan.servers().len(), MAX_SERVERS);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(plan.servers(), plan.fallback, "no file: the fallback");
    std::fs::write(&file, "\n").unwrap();
    assert_eq!(
        plan.servers(),
        plan.fallback,
        "a lease without servers: the fallback"
    );
    assert_eq!(
        Plan::for_box(Vec::new()).fallback,
        [Server::Name("pool.ntp.org".into(), 123)]
    );
}

#[test]
fn servers_are_read_as_people_write_them() {
    let p = |s: &str| Server::parse(s);
    assert_eq!(
        p("pool.ntp.org").unwrap(),
        Server::Name("pool.ntp.org".into(), 123)
    );
    assert_eq!(
        p("Time.Example:1123").unwrap(),
        Server::Name("time.example".into(), 1123)
    );
    assert_eq!(
        p("10.0.2.2:1123").unwrap(),
        Server::Addr("10.0.2.2:1123".parse().unwrap())
    );
    assert_eq!(
        p("192.168.1.1").unwrap(),
        Server::Addr("192.168.1.1:123".parse().unwrap())
    );
    assert_eq!(
        p("fd00::1").unwrap(),
        Server::Addr("[fd00::1]:123".parse().unwrap())
    );
    assert_eq!(
        p("[fd00::1]:9").unwrap(),
        Server::Addr("[fd00::1]:9".parse().unwrap())
    );
    assert_eq!(p(" ").unwrap_err(), ServerError::Empty);
    assert_eq!(p("host:0").unwrap_err(), ServerError::Port("0".into()));
    assert_eq!(p("10.0.2.2:0").unwrap_err(), ServerError::Port("0".into()));
    assert_eq!(p("host:ntp").unwrap_err(), ServerError::Port("ntp".into()));
    assert!(matches!(p("a b").unwrap_err(), ServerError::Host(_)));
    assert!(matches!(
        p("-bad.example").unwrap_err(),
        ServerError::Host(_)
    ));
    assert!(matches!(p("x:y:1").unwrap_err(), ServerError::Host(_)));
    assert_eq!(p("pool.ntp.org").unwrap().to_string(), "pool.ntp.org");
    assert_eq!(p("10.0.2.2:1123").unwrap().to_string(), "10.0.2.2:1123");
}

#[test]
fn offsets_split_into_whole_seconds_down_and_a_positive_fraction() {
    assert_eq!(kernel::split_offset(1_500_000), (1, 500_000));
    assert_eq!(kernel::split_offset(-1_500_000), (-2, 500_000));
    assert_eq!(kernel::split_offset(-1), (-1, 999_999));
    assert_eq!(kernel::split_offset(0), (0, 0));
}

#[test]
fn run_ends_at_shutdown_while_it_waits() {
    rt().block_on(async {
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(
            Plan::default(),
            Box::new(Recorder::default()),
            shutdown,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run ended")
            .unwrap();
    });
}
