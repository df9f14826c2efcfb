//! RAUC through its command-line client (decision 0010): one process per
//! install, per status read and per mark, never one per request.
//!
//! The client talks to RAUC's service over D-Bus and prints what we need:
//! `NNN% message` lines while it installs, `LastError: ...` when it fails,
//! and the exit status; `rauc status --detailed --output-format=json` gives
//! the slots. Its output is read through fixed buffers: a line longer than
//! [`LINE`] is cut, a status longer than [`STATUS_MAX`] is refused, so the
//! child cannot make vigil allocate what it likes.

use super::UpdateError;
use crate::procstat::ProcSample;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest output line kept (longer ones are cut).
const LINE: usize = 1024;
/// The largest `rauc status` document read.
const STATUS_MAX: usize = 64 << 10;
/// What reading the client's output holds at most: a line and its text,
/// a status document, the error output, the read chunk.
pub const OUTPUT_BYTES: usize = 2 * LINE + STATUS_MAX + 4 * LINE + 4096;
/// Status and mark calls answer within this (an install has no limit: it
/// writes a whole root filesystem).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// RAUC's command-line client at `program`.
#[derive(Clone, Debug)]
pub struct Rauc {
    program: PathBuf,
}

/// One slot as `rauc status` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slot {
    /// RAUC's name (`rootfs.0`).
    pub name: String,
    /// The slot class (`rootfs`).
    pub class: String,
    /// The boot loader's name for it (`A`, `B`).
    pub bootname: String,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// The boot loader's verdict (`good` or `bad`), when it has one.
    pub boot_good: Option<bool>,
    /// The version of the bundle installed into it, when RAUC installed it.
    pub version: Option<String>,
    /// When that bundle was installed (RAUC's timestamp).
    pub installed: Option<String>,
}

/// What `rauc status` says of the system.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// The system's compatible string (bundles must carry the same).
    pub compatible: String,
    /// The boot name of the slot running now.
    pub booted: String,
    /// The slot the boot loader tries first (RAUC's slot name).
    pub primary: Option<String>,
    /// The root filesystem slots.
    pub slots: Vec<Slot>,
}

impl Status {
    /// Reads `rauc status --detailed --output-format=json`.
    pub fn parse(json: &[u8]) -> Result<Status, UpdateError> {
        #[derive(Deserialize)]
        struct Doc {
            compatible: Option<String>,
            booted: Option<String>,
            boot_primary: Option<String>,
            slots: Vec<std::collections::BTreeMap<String, RawSlot>>,
        }
        #[derive(Deserialize)]
        struct RawSlot {
            class: Option<String>,
            bootname: Option<String>,
            state: Option<String>,
            boot_status: Option<String>,
            slot_status: Option<RawStatus>,
        }
        #[derive(Deserialize)]
        struct RawStatus {
            bundle: Option<RawBundle>,
            installed: Option<RawInstalled>,
        }
        #[derive(Deserialize)]
        struct RawBundle {
            version: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawInstalled {
            timestamp: Option<String>,
        }
        let doc: Doc = serde_json::from_slice(json)
            .map_err(|e| UpdateError::Answer(format!("status: {e}")))?;
        let mut slots = Vec::new();
        for entry in doc.slots {
            for (name, raw) in entry {
                let status = raw.slot_status;
                slots.push(Slot {
                    name,
                    class: raw.class.unwrap_or_default(),
                    bootname: raw.bootname.unwrap_or_default(),
                    state: raw.state.unwrap_or_default(),
                    boot_good: raw.boot_status.map(|s| s == "good"),
                    version: status
                        .as_ref()
                        .and_then(|s| s.bundle.as_ref())
                        .and_then(|b| b.version.clone()),
                    installed: status.and_then(|s| s.installed).and_then(|i| i.timestamp),
                });
            }
        }
        // RAUC prints its slots from a hash table: sort for a stable view.
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        let booted = doc.booted.unwrap_or_default();
        if booted.is_empty() {
            return Err(UpdateError::Unavailable(
                "RAUC does not know the booted slot (no rauc.slot= on the kernel command line?)"
                    .into(),
            ));
        }
        Ok(Status {
            compatible: doc.compatible.unwrap_or_default(),
            booted,
            primary: doc.boot_primary,
            slots,
        })
    }

    /// The root filesystem slot running now.
    pub fn booted_slot(&self) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.bootname == self.booted && !s.bootname.is_empty())
    }

    /// The other root filesystem slot: where an install goes.
    pub fn other_slot(&self) -> Option<&Slot> {
        let class = self.booted_slot().map_or("rootfs", |s| s.class.as_str());
        self.slots
            .iter()
            .find(|s| s.class == class && s.bootname != self.booted && !s.bootname.is_empty())
    }
}

/// One line of `rauc install`'s output, read.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a> {
    /// `NNN% message`: how far the install is.
    Progress {
        /// 0 to 100.
        percent: u8,
        /// The step.
        message: &'a str,
    },
    /// `LastError: message`: why it failed.
    LastError(&'a str),
    /// Anything else (operation names, the final verdict).
    Other(&'a str),
}

/// Reads one line of `rauc install`'s output.
pub fn parse_line(line: &str) -> Line<'_> {
    let line = line.trim();
    if let Some(why) = line.strip_prefix("LastError:") {
        return Line::LastError(why.trim());
    }
    if let Some((num, message)) = line.split_once('%') {
        if let Ok(percent) = num.trim().parse::<u8>() {
            if percent <= 100 {
                return Line::Progress {
                    percent,
                    message: message.trim(),
                };
            }
        }
    }
    Line::Other(line)
}

impl Rauc {
    /// The client at `program`.
    pub fn new(program: impl Into<PathBuf>) -> Rauc {
        Rauc {
            program: program.into(),
        }
    }

    /// The client's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A cancelled call (vigil stopping) leaves no client behind.
            .kill_on_drop(true);
        c
    }

    fn spawn(&self, args: &[&str]) -> Result<tokio::process::Child, UpdateError> {
        self.command(args)
            .spawn()
            .map_err(|source| UpdateError::Spawn {
                program: self.program.clone(),
                source,
            })
    }

    /// The slots, from `rauc status`.
    pub async fn status(&self) -> Result<Status, UpdateError> {
        let out = self
            .call(&["status", "--detailed", "--output-format=json"])
            .await?;
        Status::parse(&out)
    }

    /// Marks the booted slot good (its boot attempts back) or bad (the boot
    /// loader skips it from the next boot on).
    pub async fn mark_booted(&self, good: bool) -> Result<(), UpdateError> {
        let verb = if good { "mark-good" } else { "mark-bad" };
        self.call(&["status", verb, "booted"]).await.map(drop)
    }

    /// Runs one short call; its standard output, or its error output as
    /// the error.
    async fn call(&self, args: &[&str]) -> Result<Vec<u8>, UpdateError> {
        let mut child = self.spawn(args)?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (o, e) = tokio::join!(
                read_capped(stdout.as_mut(), &mut out, STATUS_MAX),
                read_capped(stderr.as_mut(), &mut err, LINE * 4),
            );
            let status = child.wait().await;
            (o, e, status, out, err)
        };
        let (o, _, status, out, err) = tokio::time::timeout(CALL_TIMEOUT, run)
            .await
            .map_err(|_| UpdateError::Answer(format!("`rauc {}` did not answer", args[0])))?;
        let status = status.map_err(|source| UpdateError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if !status.success() {
            let text = String::from_utf8_lossy(if err.is_empty() { &out } else { &err });
            return Err(UpdateError::Refused(last_line(&text).to_owned()));
        }
        if o == Capped::Over {
            return Err(UpdateError::Answer(format!(
                "`rauc {}` printed over {STATUS_MAX} bytes",
                args.join(" ")
            )));
        }
        Ok(out)
    }

    /// Installs `bundle` into the other slot, calling `progress` with each
    /// step RAUC reports; the error is RAUC's last error when it says one.
    /// Returns the client's peak RSS in bytes, as last read from its
    /// /proc status (VmHWM) with each line it printed: the figure behind
    /// [`super::RAUC_CLIENT_BYTES`]. Read there rather than from
    /// `getrusage` of the children, whose high-water mark includes the
    /// parent's pages the child had before its exec.
    pub async fn install(
        &self,
        bundle: &Path,
        mut progress: impl FnMut(u8, &str),
    ) -> Result<u64, UpdateError> {
        let path = bundle.to_string_lossy();
        let mut child = self.spawn(&["install", &path])?;
        let pid = child.id();
        let mut peak_rss = 0u64;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut last_error: Option<String> = None;
        let mut err = Vec::new();
        let lines = async {
            let Some(out) = stdout.as_mut() else { return };
            let mut reader = LineReader::new(out);
            while let Some(line) = reader.next_line().await {
                if let Some(s) = pid.and_then(|p| ProcSample::read_pid(&p.to_string()).ok()) {
                    peak_rss = peak_rss.max(s.rss_peak_bytes);
                }
                match parse_line(line) {
                    Line::Progress { percent, message } => progress(percent, message),
                    Line::LastError(why) => last_error = Some(why.to_owned()),
                    Line::Other(_) => {}
                }
            }
        };
        let _ = tokio::join!(lines, read_capped(stderr.as_mut(), &mut err, LINE * 4));
        let status = child.wait().await.map_err(|source| UpdateError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if status.success() {
            return Ok(peak_rss);
        }
        let why = last_error.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&err);
            match last_line(&text) {
                "" => format!("RAUC exited with {status}"),
                line => line.to_owned(),
            }
        });
        Err(UpdateError::Refused(why))
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Capped {
    Whole,
    Over,
}

/// Reads `from` to its end, keeping at most `max` bytes in `into`.
async fn read_capped<R: AsyncRead + Unpin>(
    from: Option<&mut R>,
    into: &mut Vec<u8>,
    max: usize,
) -> Capped {
    let Some(from) = from else {
        return Capped::Whole;
    };
    let mut chunk = [0u8; 4096];
    let mut over = false;
    loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(into.len());
                into.extend_from_slice(&chunk[..n.min(room)]);
                over |= n > room;
            }
        }
    }
    if over {
        Capped::Over
    } else {
        Capped::Whole
    }
}

/// Lines of a child's output through one fixed buffer: a line longer than
/// [`LINE`] is cut there, the rest of it skipped.
struct LineReader<'a, R> {
    from: &'a mut R,
    buf: Box<[u8; LINE]>,
    /// Bytes in `buf` not yet returned.
    len: usize,
    /// Where the last returned line ended (consumed on the next call).
    consumed: usize,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    text: String,
}

impl<'a, R: AsyncRead + Unpin> LineReader<'a, R> {
    fn new(from: &'a mut R) -> Self {
        LineReader {
            from,
            buf: Box::new([0; LINE]),
            len: 0,
            consumed: 0,
            skipping: false,
            text: String::with_capacity(LINE),
        }
    }

    async fn next_line(&mut self) -> Option<&str> {
        self.buf.copy_within(self.consumed..self.len, 0);
        self.len -= self.consumed;
        self.consumed = 0;
        loop {
            if let Some(end) = self.buf[..self.len].iter().position(|&b| b == b'\n') {
                self.consumed = end + 1;
                if std::mem::take(&mut self.skipping) {
                    self.buf.copy_within(self.consumed..self.len, 0);
                    self.len -= self.consumed;
                    self.consumed = 0;
                    continue;
                }
                return Some(self.take_text(end));
            }
            if self.len == LINE {
                // Over-long: return what fits, skip the rest of it.
                let was_skipping = std::mem::replace(&mut self.skipping, true);
                self.consumed = LINE;
                if !was_skipping {
                    return Some(self.take_text(LINE));
                }
                self.len = 0;
                self.consumed = 0;
            }
            match self.from.read(&mut self.buf[self.len..]).await {
                Ok(0) | Err(_) => {
                    if self.len == 0 || self.skipping {
                        return None;
                    }
                    self.consumed = self.len;
                    return Some(self.take_text(self.len));
                }
                Ok(n) => self.len += n,
            }
        }
    }

    fn take_text(&mut self, end: usize) -> &str {
        self.text.clear();
        self.text
            .push_str(&String::from_utf8_lossy(&self.buf[..end]));
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rauc status --detailed --output-format=json` as RAUC 1.8 prints it
    /// on the emulated board after an install into B.
    const STATUS: &str = r#"{"compatible":"vigil-qemu-virt","variant":null,"booted":"A","boot_primary":"rootfs.1","slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs_b","type":"ext4","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good","slot_status":{"bundle":{"compatible":"vigil-qemu-virt","version":"0.2.0"},"checksum":{"sha256":"ab","size":1},"installed":{"timestamp":"2026-12-07T21:00:00Z","count":1},"status":"ok"}}},{"rootfs.0":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs_a","type":"ext4","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good","slot_status":{"bundle":{"compatible":null}}}}]}"#;

    #[test]
    fn status_names_the_booted_and_the_other_slot() {
        let s = Status::parse(STATUS.as_bytes()).expect("parses");
        assert_eq!(s.compatible, "vigil-qemu-virt");
        assert_eq!(s.primary.as_deref(), Some("rootfs.1"));
        let booted = s.booted_slot().expect("booted");
        assert_eq!(
            (booted.name.as_str(), booted.version.as_deref()),
            ("rootfs.0", None)
        );
        let other = s.other_slot().expect("other");
        assert_eq!(other.bootname, "B");
        assert_eq!(other.version.as_deref(), Some("0.2.0"));
        assert_eq!(other.boot_good, Some(true));
        assert_eq!(other.installed.as_deref(), Some("2026-12-07T21:00:00Z"));
    }

    #[test]
    fn a_status_without_a_booted_slot_means_no_updates() {
        let e = Status::parse(br#"{"compatible":"x","booted":null,"slots":[]}"#).unwrap_err();
        assert!(matches!(e, UpdateError::Unavailable(_)), "{e:?}");
        let e = Status::parse(b"not json").unwrap_err();
        assert!(matches!(e, UpdateError::Answer(_)), "{e:?}");
    }

    #[test]
    fn install_lines_are_progress_errors_or_other() {
        assert_eq!(
            parse_line("  0% Installing"),
            Line::Progress {
                percent: 0,
                message: "Installing"
            }
        );
        assert_eq!(
            parse_line(" 40% Copying image to rootfs.1 done."),
            Line::Progress {
                percent: 40,
                message: "Copying image to rootfs.1 done."
            }
        );
        assert_eq!(
            parse_line("LastError: Failed to check bundle identifier: Invalid identifier."),
            Line::LastError("Failed to check bundle identifier: Invalid identifier.")
        );
        assert_eq!(parse_line("installing"), Line::Other("installing"));
        assert_eq!(parse_line("250% nonsense"), Line::Other("250% nonsense"));
    }

    /// Mutation fuzzing of both parsers: never a panic.
    #[test]
    fn mutated_answers_never_panic() {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let seed = STATUS.as_bytes();
        for _ in 0..3000 {
            let mut m = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[i] = next() as u8,
                    1 => m.truncate(i),
                    _ => m.insert(i, next() as u8),
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = Status::parse(&m);
            let _ = parse_line(&String::from_utf8_lossy(&m));
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn long_lines_are_cut_and_the_next_line_still_read() {
        let mut text = vec![b'x'; LINE * 3];
        text.extend_from_slice(b"\n 50% Half\n");
        let mut from: &[u8] = &text;
        let got = block_on(async {
            let mut r = LineReader::new(&mut from);
            let mut got = Vec::new();
            while let Some(l) = r.next_line().await {
                got.push(l.to_owned());
            }
            got
        });
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(got[0].len(), LINE);
        assert_eq!(got[1], " 50% Half");
    }

    #[test]
    fn capped_reads_keep_at_most_the_cap() {
        let text = vec![b'y'; 10_000];
        let mut from: &[u8] = &text;
        let mut into = Vec::new();
        let c = block_on(read_capped(Some(&mut from), &mut into, 4096));
        assert_eq!((c, into.len()), (Capped::Over, 4096));
    }

    /// The client against a stand-in program that prints like RAUC.
    #[test]
    fn install_reports_progress_and_rauc_s_last_error() {
        let dir = crate::test_dir::TempDir::new("rauc-cli");
        let fake = dir.0.join("rauc");
        std::fs::write(
            &fake,
            "#!/bin/sh\nif [ \"$1\" = install ] && [ \"$2\" = /good ]; then\n  echo installing\n  echo '  0% Installing'\n  echo ' 50% Copying image'\n  echo '100% Installing done.'\n  sleep 0.3\n  echo idle\n  echo 'Installing `/good` succeeded'\n  exit 0\nfi\necho '  0% Installing'\necho 'LastError: Failed verifying signature: signer not trusted'\necho 'Installing `/bad` failed' >&2\nexit 1\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let rauc = Rauc::new(&fake);
        let mut seen = Vec::new();
        let peak = block_on(rauc.install(Path::new("/good"), |p, m| seen.push((p, m.to_owned()))))
            .expect("installs");
        // The stand-in is a shell: some hundreds of KiB at least, read
        // from its /proc status while it printed.
        assert!(peak >= 100 << 10, "client peak RSS {peak} bytes");
        assert_eq!(
            seen,
            vec![
                (0, "Installing".to_owned()),
                (50, "Copying image".to_owned()),
                (100, "Installing done.".to_owned())
            ]
        );
        let e = block_on(rauc.install(Path::new("/bad"), |_, _| {})).unwrap_err();
        match e {
            UpdateError::Refused(why) => {
                assert_eq!(why, "Failed verifying signature: signer not trusted")
            }
            other => panic!("{other:?}"),
        }
        let missing = Rauc::new(dir.0.join("nope"));
        assert!(matches!(
            block_on(missing.status()),
            Err(UpdateError::Spawn { .. })
        ));
    }
}
