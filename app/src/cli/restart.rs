//! Applying a configuration saved from the page: pricing it before the
//! save, and starting again after it (decision 0007).
//!
//! vigil applies a new configuration by starting over, not by rebuilding
//! the pipeline in place: every pool, thread and hardware context is sized
//! from the configuration at start, and a fresh process is the one state
//! where "the thread count is the one the new configuration implies" and
//! "memory is what the new budget says" hold by construction. Under the
//! board's supervisor (`VIGIL_SUPERVISED` set) vigil exits with
//! [`EXIT_RESTART`] and the supervisor starts it at once, after setting the
//! cgroup limit from the new budget; elsewhere it re-executes itself with
//! the same command line.

use super::{overrides, RunArgs, EXIT_RESTART};
use crate::budget::Budget;
use crate::config::Config;
use crate::hw::Backend;
use crate::pipeline::backend::model_bytes;
use crate::settings::{Checker, Verdict};

/// Prices a configuration as this process would run it after a restart:
/// with the same command-line overrides, on the same backend.
pub(super) struct BudgetChecker {
    backend: Backend,
    args: RunArgs,
}

impl BudgetChecker {
    pub(super) fn new(backend: Backend, args: &RunArgs) -> BudgetChecker {
        BudgetChecker {
            backend,
            args: args.clone(),
        }
    }
}

impl Checker for BudgetChecker {
    fn check(&self, config: &Config) -> Verdict {
        let mut config = config.clone();
        let problem = overrides(&mut config, &self.args)
            .err()
            .map(|e| e.to_string());
        let (model, problem) = match (model_bytes(&config), problem) {
            (Ok(n), p) => (n, p),
            (Err(e), p) => (0, p.or(Some(format!("`detector.model`: {e}")))),
        };
        // The NPU detectors need the hardware backend; a box running on
        // the software one cannot start them.
        let problem = problem.or_else(|| {
            (config.detector.kind.needs_npu() && self.backend != Backend::Hardware).then(|| {
                format!(
                    "`detector.kind` = \"{}\" runs on the RK3588 NPU, which this box is not using",
                    config.detector.kind.as_str()
                )
            })
        });
        let budget = Budget::compute(&config, self.backend, model);
        Verdict {
            total: budget.total(),
            limit: budget.limit,
            lines: budget.to_string().lines().map(str::to_owned).collect(),
            problem,
        }
    }
}

/// The environment variable naming the descriptor of the sessions a
/// re-execution hands to the next process.
const HANDOFF_FD: &str = "VIGIL_HANDOFF_FD";
/// Set by the supervisor: the file (on a RAM file system) the sessions are
/// handed over in when vigil exits to be started again.
pub(super) const HANDOFF_FILE: &str = "VIGIL_HANDOFF";
/// A handed-over file older than this is from another start, not ours.
const HANDOFF_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts vigil again after a saved configuration, handing the web
/// sessions (`sessions`, [`crate::web::auth::Auth::hand_over`]) to the next
/// process so the owner stays logged in: the exit code for the supervisor,
/// or a re-execution of this binary with the same arguments (returning only
/// if that fails).
pub(super) fn again(sessions: &str) -> i32 {
    if std::env::var_os("VIGIL_SUPERVISED").is_some() {
        if let Some(file) = std::env::var_os(HANDOFF_FILE) {
            if let Err(e) =
                crate::settings::write_atomic(std::path::Path::new(&file), sessions.as_bytes())
            {
                log::warn!("sessions not handed over ({}): {e}", file.to_string_lossy());
            }
        }
        return EXIT_RESTART;
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "vigil".into());
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(argv0.clone()).args(args).env_remove(HANDOFF_FD);
    match sessions_fd(sessions) {
        Ok(fd) => {
            cmd.env(HANDOFF_FD, fd.to_string());
        }
        Err(e) => log::warn!("sessions not handed over: {e}"),
    }
    log::info!("restarting: exec {}", argv0.to_string_lossy());
    // Every descriptor vigil opens is close-on-exec (Rust's default), so
    // the new process inherits only stdin, stdout, stderr and the sessions.
    let err = cmd.exec();
    log::error!("cannot restart (exec /proc/self/exe): {err}");
    1
}

/// An anonymous in-memory file holding `text`, left open across exec.
fn sessions_fd(text: &str) -> std::io::Result<i32> {
    use std::io::{Seek, Write};
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: a NUL-terminated name; no MFD_CLOEXEC, on purpose.
    let fd = unsafe { libc::memfd_create(c"vigil-sessions".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned here.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(text.as_bytes())?;
    f.rewind()?;
    Ok(f.into_raw_fd())
}

/// The sessions the previous process handed over, if this start is a
/// restart: read once and closed or deleted.
pub(super) fn handed_over() -> Option<String> {
    use std::io::Read;
    if let Some(fd) = std::env::var(HANDOFF_FD)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        // Only a memfd of ours: anything else under that number is left alone.
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        if !link.to_string_lossy().starts_with("/memfd:vigil-sessions") {
            return None;
        }
        use std::os::fd::FromRawFd;
        // SAFETY: the descriptor is the memfd our previous image left open
        // for us; nothing else in this process knows it. Dropped: closed.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut text = String::new();
        f.by_ref().take(64 << 10).read_to_string(&mut text).ok()?;
        return Some(text);
    }
    let file = std::env::var_os(HANDOFF_FILE)?;
    let path = std::path::Path::new(&file);
    let fresh = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < HANDOFF_MAX_AGE);
    let read = || {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
            .ok()
            .map(|_| text)
    };
    let text = fresh.then(read).flatten();
    let _ = std::fs::remove_file(path);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_prices_with_the_command_lines_overrides() {
        let model = std::env::temp_dir().join(format!("vigil-checker-{}.pb", std::process::id()));
        std::fs::write(&model, vec![0u8; 4096]).unwrap();
        let config = Config::parse(
            "memory_limit = \"512MiB\"\n[detector]\nmodel = \"/nonexistent.pb\"\n",
            "t",
        )
        .unwrap();
        let without = BudgetChecker::new(Backend::Software, &RunArgs::default()).check(&config);
        assert!(without.problem.unwrap().contains("detector.model"));
        let args = RunArgs {
            model: Some(model.clone()),
            workers: Some(2),
            ..RunArgs::default()
        };
        let with = BudgetChecker::new(Backend::Software, &args).check(&config);
        let mut one = config.clone();
        one.detector.model = model.clone();
        let one_worker = BudgetChecker::new(Backend::Software, &RunArgs::default()).check(&one);
        std::fs::remove_file(&model).unwrap();
        assert_eq!(with.problem, None);
        assert_eq!(with.limit, 512 << 20);
        assert!(with.lines.iter().any(|l| l.contains("total")));
        assert!(with.total > one_worker.total, "--workers 2 is priced");
        let npu =
            Config::parse("[detector]\nkind = \"yolov8\"\nmodel = \"/m.rknn\"\n", "t").unwrap();
        let v = BudgetChecker::new(Backend::Software, &RunArgs::default()).check(&npu);
        assert!(v.problem.is_some());
    }
}
