//! `vigil system-env` (issue 17, items 7 and 8): the `[system]` section as
//! shell assignments the board's `vigil-system` evals. Every value arrives
//! single-quoted and a shell reads back exactly what was configured; a bad
//! file is exit code 2 naming the key and its line, with nothing on stdout
//! for the script to eval.

use std::process::Command;
use vigil_system_tests::media::TempDir;
use vigil_system_tests::process::run_to_end;

const FULL: &str = "listen = \"0.0.0.0:8181\"\n\
[system]\nhostname = \"garage-cam\"\ntimezone = \"America/St_Johns\"\n\
ntp = [\"0.pool.ntp.org\", \"192.168.7.1\"]\n\
[system.network]\nmode = \"static\"\naddress = \"192.168.7.50/23\"\ngateway = \"192.168.6.1\"\n\
dns = [\"192.168.7.1\", \"9.9.9.9\"]\nconfirm_within = \"2m\"\n";

/// The value of each variable as `sh` reads it after evaluating `out`.
fn through_sh(out: &str, names: &[&str]) -> Vec<String> {
    let script = format!(
        "{out}\n{}",
        names
            .iter()
            .map(|n| format!("printf '%s\\n' \"${n}\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn system_env_prints_quoted_assignments_a_shell_reads_back() {
    let dir = TempDir::new("system-env");
    let file = dir.0.join("config.toml");
    std::fs::write(&file, FULL).unwrap();
    let (code, out, err) = run_to_end(&["system-env", "--config", file.to_str().unwrap()]);
    println!("{out}");
    assert_eq!(code, 0, "{err}");
    for line in out.lines() {
        let (name, value) = line.split_once('=').expect("NAME=value");
        assert!(
            name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
            "{line}"
        );
        assert!(
            value.len() >= 2
                && value.starts_with('\'')
                && value.ends_with('\'')
                && !value[1..value.len() - 1].contains('\''),
            "not single-quoted: {line}"
        );
    }
    let names = [
        "VIGIL_HOSTNAME",
        "VIGIL_TZ",
        "VIGIL_NET_MODE",
        "VIGIL_NET_ADDRESS",
        "VIGIL_NET_NETMASK",
        "VIGIL_NET_GATEWAY",
        "VIGIL_NET_DNS",
        "VIGIL_NET_CONFIRM_SECS",
        "VIGIL_NET_ID",
        "VIGIL_HTTP_PORT",
    ];
    let values = through_sh(&out, &names);
    assert_eq!(
        values[..8],
        [
            "garage-cam",
            "NST3:30NDT,M3.2.0,M11.1.0",
            "static",
            "192.168.7.50",
            "255.255.254.0",
            "192.168.6.1",
            "192.168.7.1 9.9.9.9",
            "120",
        ]
    );
    assert!(
        values[8].len() == 12 && values[8].bytes().all(|b| b.is_ascii_hexdigit()),
        "VIGIL_NET_ID {}",
        values[8]
    );
    assert_eq!(values[9], "8181");

    // The defaults: DHCP, nothing else set.
    std::fs::write(&file, "").unwrap();
    let (code, out, _) = run_to_end(&["system-env", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let values = through_sh(&out, &names);
    assert_eq!(values[..3], ["", "", "dhcp"]);
    assert_eq!(values[3..7], ["", "", "", ""]);
}

#[test]
fn system_env_refuses_a_bad_file_naming_the_key_and_prints_nothing() {
    let dir = TempDir::new("system-env-bad");
    let file = dir.0.join("config.toml");
    for (text, key, line) in [
        ("[system]\nhostname = \"it's\"\n", "system.hostname", 2),
        ("[system]\n\ntimezone = \"Mars/Olympus_Mons\"\n", "system.timezone", 3),
        ("[system.network]\nmode = \"static\"\naddress = \"10.0.0.5/24\"\ngateway = \"10.9.0.1\"\n", "system.network.gateway", 4),
        ("[system.network]\nmode = \"static\"\n", "system.network.address", 2),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, out, err) = run_to_end(&["system-env", "--config", file.to_str().unwrap()]);
        println!("{err}");
        assert_eq!(code, 2, "{text}: {err}");
        assert!(out.is_empty(), "nothing to eval: {out}");
        assert!(
            err.contains(&format!("config.toml:{line}: `{key}`")),
            "{text}: {err}"
        );
    }
    let (code, _, err) = run_to_end(&["system-env"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("system-env takes --config FILE"), "{err}");
    let missing = dir.0.join("none.toml");
    let (code, _, err) = run_to_end(&["system-env", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
}
