//! Reads the process's own resource use from /proc: resident memory, threads,
//! open file descriptors and CPU time.
//!
//! Used by the monitor (exported as metrics, checked against the memory
//! limit) and by the tests that prove those numbers stay flat. Reads go
//! through a fixed stack buffer, so sampling does not allocate either.

use std::io::Read;

/// One reading of the process's resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// Resident set size in bytes (VmRSS).
    pub rss_bytes: u64,
    /// Peak resident set size in bytes (VmHWM).
    pub rss_peak_bytes: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// User plus system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

impl ProcSample {
    /// Reads the calling process's figures.
    pub fn read_self() -> std::io::Result<ProcSample> {
        ProcSample::read_pid("self")
    }

    /// Reads the figures of process `pid` ("self" or a number).
    pub fn read_pid(pid: &str) -> std::io::Result<ProcSample> {
        let mut buf = [0u8; 4096];
        let mut path = [0u8; 64];
        let status = read_small(proc_path(&mut path, pid, "status")?, &mut buf)?;
        let mut s = ProcSample::default();
        for line in status.split(|&b| b == b'\n') {
            if let Some(v) = line.strip_prefix(b"VmRSS:") {
                s.rss_bytes = leading_number(v) * 1024;
            } else if let Some(v) = line.strip_prefix(b"VmHWM:") {
                s.rss_peak_bytes = leading_number(v) * 1024;
            } else if let Some(v) = line.strip_prefix(b"Threads:") {
                s.threads = leading_number(v);
            }
        }
        let stat = read_small(proc_path(&mut path, pid, "stat")?, &mut buf)?;
        // Fields after the command name (which may contain spaces) start
        // after the last ')'; utime and stime are fields 14 and 15.
        if let Some(close) = stat.iter().rposition(|&b| b == b')') {
            let mut fields = stat[close + 1..]
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty());
            let utime = fields.nth(11).map_or(0, leading_number);
            let stime = fields.next().map_or(0, leading_number);
            s.cpu_ticks = utime + stime;
        }
        s.open_fds = count_fds(pid)?;
        Ok(s)
    }

    /// CPU time in seconds for `cpu_ticks`.
    pub fn cpu_seconds(&self) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        self.cpu_ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 }
    }
}

fn proc_path<'a>(buf: &'a mut [u8; 64], pid: &str, file: &str) -> std::io::Result<&'a str> {
    let mut w = &mut buf[..];
    use std::io::Write;
    write!(w, "/proc/{pid}/{file}")?;
    let len = 64 - w.len();
    std::str::from_utf8(&buf[..len]).map_err(|_| std::io::ErrorKind::InvalidInput.into())
}

fn read_small<'a>(path: &str, buf: &'a mut [u8; 4096]) -> std::io::Result<&'a [u8]> {
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        let got = f.read(&mut buf[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(&buf[..n])
}

fn leading_number(s: &[u8]) -> u64 {
    s.iter()
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &b| {
            n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        })
}

fn count_fds(pid: &str) -> std::io::Result<u64> {
    let mut path = [0u8; 64];
    let dir = proc_path(&mut path, pid, "fd")?;
    // read_dir allocates a directory stream buffer; this runs once a second
    // on the monitor thread, never on the frame path.
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        entry?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_figures_and_sees_a_new_fd() {
        let a = ProcSample::read_self().unwrap();
        assert!(a.rss_bytes > 1 << 20, "{a:?}");
        assert!(a.rss_peak_bytes >= a.rss_bytes);
        assert!(a.threads >= 1);
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let b = ProcSample::read_self().unwrap();
        assert!(b.open_fds > a.open_fds, "{a:?} {b:?}");
        drop(f);
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(leading_number(b"   1234 kB"), 1234);
        assert_eq!(leading_number(b"x"), 0);
    }
}
