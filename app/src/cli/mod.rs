//! The command line: `run`, `check-config`, `detect`, `version`, and the
//! first-boot commands (`setup-code`, `preseed`, `factory-reset`, in
//! `first_boot.rs`), `system-env`, and `ab` (the A/B boot state for RAUC,
//! `ab.rs`).
//!
//! Hand-parsed (a handful of flags does not justify an argument-parser
//! dependency in firmware); every mistake names the flag and says what is
//! expected. Exit codes: 0 success, 1 failure while running, 2 bad usage or
//! configuration, 3 stopped for exceeding the memory limit.
//!
//! Starting is the pipeline's business (`pipeline::backend` chooses the
//! backend and loads the detectors); this file turns arguments into a
//! [`Config`], orders the start's checks cheapest first, and runs the
//! monitor on the caller's thread until shutdown. The arguments are parsed
//! in `args.rs`.

mod ab;
mod args;
mod first_boot;
mod guard;
mod restart;
mod system_env;
mod updates;

pub use args::{parse_detect, parse_run, ArgError, DetectArgs, RunArgs};

use crate::budget::Budget;
use crate::config::{Config, ConfigErrors};
use crate::detect;
use crate::hw::{Backend, BackendChoice};
use crate::pipeline::backend::{choose_backend, hardware_missing, make_parts, model_bytes};
use crate::pipeline::{Pipeline, StartError};
use crate::watchdog::Watchdog;
use guard::{Guard, Verdict};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the process exceeded its memory limit.
pub const EXIT_MEMORY: i32 = 3;
/// Exit code asking the supervisor to start vigil again at once: a new
/// configuration was saved (`VIGIL_SUPERVISED` set; otherwise vigil
/// re-executes itself).
pub const EXIT_RESTART: i32 = 4;
/// Exit code asking the board's supervisor to reboot: into an installed
/// update, or back to the old system after a failed probation
/// (`crate::update`).
pub const EXIT_REBOOT: i32 = 5;

const USAGE: &str = "\
usage:
  vigil run --config FILE [--factory FILE] [--data-dir DIR] [--listen ADDR] [--model PATH] ...
  vigil run --camera URL [--camera URL]... [--data-dir DIR] [--listen ADDR] [--model PATH]
            [--workers N] [--status-every SECS] [--unpaced]
  vigil check-config FILE
  vigil setup-code --config FILE [--factory FILE] [--data-dir DIR]
  vigil preseed --config FILE [--factory FILE] [--data-dir DIR] PRESEED
  vigil factory-reset --config FILE --factory FILE [--data-dir DIR]
  vigil system-env --config FILE
  vigil ab get-primary|set-primary SLOT|get-state SLOT|set-state SLOT good|bad|get-current|mark-good-current
  vigil detect [--model PATH] [--min-score S] IMAGE...
  vigil version

URL is rtsp://[user:pass@]host[:port]/path or a local .h264, .h265 or .mp4 file.
Environment: VIGIL_LOG=error|warn|info|debug sets the log level;
VIGIL_CACHE_DIR sets where `make model` put the model (default ~/.cache/vigil).";

/// Runs the command line; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return EXIT_USAGE;
    };
    match cmd.as_str() {
        "run" => match parse_run(rest) {
            Ok(run_args) => match run(run_args) {
                (EXIT_RESTART, sessions) => restart::again(&sessions),
                (code, _) => code,
            },
            Err(e) => usage_error(&e),
        },
        "check-config" => match rest {
            [file] => check_config(&PathBuf::from(file)),
            _ => usage_error(&ArgError::Operands("check-config takes one FILE")),
        },
        "setup-code" | "preseed" | "factory-reset" => first_boot::main(cmd, rest),
        "system-env" => system_env::main(rest),
        "ab" => ab::main(rest),
        "detect" => match parse_detect(rest) {
            Ok(detect_args) => detect_cmd(detect_args),
            Err(e) => usage_error(&e),
        },
        "version" | "--version" | "-V" => {
            println!("vigil {}", crate::version::get());
            0
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => usage_error(&ArgError::UnknownCommand(other.to_string())),
    }
}

fn usage_error(e: &ArgError) -> i32 {
    eprintln!("vigil: {e}\n\n{USAGE}");
    EXIT_USAGE
}

fn config_errors(e: &ConfigErrors) -> i32 {
    for err in &e.0 {
        eprintln!("config error: {err}");
    }
    EXIT_USAGE
}

fn check_config(path: &std::path::Path) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return config_errors(&e),
    };
    let model = match model_bytes(&config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("config error: {}: `detector.model`: {e}", path.display());
            return EXIT_USAGE;
        }
    };
    // The budget of the backend this config would run on here; a config
    // asking for the hardware is budgeted for it even off the board.
    let backend = match (config.backend, hardware_missing(&config).is_empty()) {
        (BackendChoice::Hardware, _) | (BackendChoice::Auto, true) => Backend::Hardware,
        _ => Backend::Software,
    };
    let budget = Budget::compute(&config, backend, model);
    println!(
        "{}: {} camera(s), backend {}",
        path.display(),
        config.cameras.len(),
        backend.as_str()
    );
    for cam in &config.cameras {
        println!("{}", describe_camera(cam));
    }
    println!("{budget}");
    println!(
        "store: {} (at most {}, {} events, {}s old), batches of {}",
        config.data_dir.display(),
        crate::budget::human(config.store.max_bytes),
        config.store.max_events,
        config.store.max_age.as_secs(),
        config.store.batch
    );
    match (&config.upstream.http, &config.upstream.mqtt) {
        (None, None) => println!("upstream: none"),
        (http, mqtt) => {
            if let Some(h) = http {
                println!("upstream: http {}", h.url);
            }
            if let Some(m) = mqtt {
                println!(
                    "upstream: mqtt://{}:{} topics {}/<camera>/event",
                    m.host, m.port, m.topic_prefix
                );
            }
            println!(
                "outbox: at most {} per upstream",
                crate::budget::human(config.upstream.outbox_max_bytes)
            );
        }
    }
    // For scripts (the board's vigil-supervise sets the cgroup limit from it).
    println!(
        "budget_bytes={} limit_bytes={}",
        budget.total(),
        config.memory_limit
    );
    if budget.fits() {
        0
    } else {
        eprintln!("config error: the memory budget exceeds memory_limit; lower pool sizes or raise the limit");
        1
    }
}

/// One camera's line in `check-config`: its source, and for a V4L2 camera
/// what it asks for and the mode the device present now would give.
fn describe_camera(cam: &crate::config::CameraConfig) -> String {
    use crate::config::{classify, SourceKind};
    use crate::source::v4l2;
    let url = crate::web::api::redact_url(&cam.url);
    match (classify(&cam.url, cam.codec), &cam.v4l2) {
        (Ok(SourceKind::V4l2(path)), Some(r)) => {
            let format = r.format.map_or("any format", |f| f.as_str());
            let size = r.size.map_or_else(
                || {
                    let (w, h) = v4l2::mode::DEFAULT_SIZE;
                    format!("about {w}x{h}")
                },
                |(w, h)| format!("{w}x{h}"),
            );
            let fps = r
                .fps
                .map_or_else(|| "the device's rate".to_string(), |f| format!("{f} fps"));
            let max = (cam.max_width, cam.max_height);
            let device = match v4l2::device::probe(&path, r, max) {
                Ok(mode) => format!("the device offers {mode} now"),
                Err(e) => format!("not checked: {e}"),
            };
            format!(
                "camera {}: v4l2 {}, asks {format} {size} at {fps}, {} buffers; {device}",
                cam.name,
                path.display(),
                r.buffers
            )
        }
        (Ok(SourceKind::Rtsp(_)), _) => format!("camera {}: rtsp {url}", cam.name),
        _ => format!("camera {}: file {url}", cam.name),
    }
}

/// The configuration to run, and the file it came from when the page may
/// edit it.
struct Loaded {
    config: Config,
    file: Option<crate::settings::ConfigFile>,
    /// The file's text (what `.good` records once the start succeeded).
    text: String,
    /// Why the file was not used, when the start fell back on `.good`.
    fallback: Option<ConfigErrors>,
}

fn load_config(a: &RunArgs) -> Result<Loaded, i32> {
    let mut loaded = match &a.config {
        Some(path) => {
            let file = crate::settings::ConfigFile {
                path: path.clone(),
                factory: a.factory.clone(),
            };
            let l = file.load().map_err(|e| config_errors(&e))?;
            Loaded {
                config: l.config,
                file: Some(file),
                text: l.text,
                fallback: l.fallback,
            }
        }
        None => Loaded {
            config: Config::from_urls(&a.cameras).map_err(|e| config_errors(&e))?,
            file: None,
            text: String::new(),
            fallback: None,
        },
    };
    overrides(&mut loaded.config, a).map_err(|e| usage_error(&e))?;
    Ok(loaded)
}

/// The command line's settings over the file's (`--data-dir`, `--listen`,
/// `--model`, `--workers`): applied at start and to every configuration the
/// page prices, since a restart keeps the same command line.
fn overrides(config: &mut Config, a: &RunArgs) -> Result<(), ArgError> {
    if let Some(d) = &a.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &a.listen {
        config.listen = l.parse().map_err(|_| ArgError::BadValue {
            flag: "--listen",
            expected: "address:port",
            got: Some(l.clone()),
        })?;
    }
    if let Some(m) = &a.model {
        config.detector.model = m.clone();
    }
    if let Some(w) = a.workers {
        config.detector.workers = w;
    }
    Ok(())
}

/// Runs the appliance; on a restart for a saved configuration, also the
/// web sessions to hand to the next process.
fn run(a: RunArgs) -> (i32, String) {
    // First, so the inherited descriptor is closed before anything else.
    let sessions = restart::handed_over();
    let mut handed = String::new();
    let code = serve(a, sessions.as_deref(), &mut handed);
    (code, handed)
}

fn serve(a: RunArgs, sessions: Option<&str>, handed: &mut String) -> i32 {
    let loaded = match load_config(&a) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let config = &loaded.config;
    let Started {
        pipeline,
        budget,
        backend,
        listener,
    } = match start(config, !a.unpaced) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return match e {
                // A model that is not there is a configuration mistake.
                StartError::ModelMissing { .. } => EXIT_USAGE,
                _ => 1,
            };
        }
    };
    pipeline
        .registry
        .memory_budget_bytes
        .set(budget.total() as f64);
    pipeline
        .registry
        .memory_limit_bytes
        .set(config.memory_limit as f64);
    // One reading now, so the first status the web serves is not all zeros.
    pipeline.sample(&mut pipeline.monitor_state());
    let settings = loaded.file.clone().map(|file| {
        let checker = restart::BudgetChecker::new(backend, &a);
        std::sync::Arc::new(crate::settings::Service::new(
            file,
            Box::new(checker),
            loaded.fallback.as_ref(),
        ))
    });
    let updater = std::sync::Arc::new(crate::update::Updater::new(
        config.update.clone(),
        &config.data_dir,
        pipeline.disk.clone(),
        crate::version::get(),
    ));
    let web = match start_web(
        config,
        &pipeline,
        listener,
        settings.clone(),
        updater.clone(),
        sessions,
    ) {
        Ok(web) => web,
        Err(e) => {
            log::error!("{e}");
            pipeline.stop();
            return 1;
        }
    };
    // This file got as far as serving: it is the one to fall back on.
    if let (Some(file), None) = (&loaded.file, &loaded.fallback) {
        if let Err(e) = file.mark_good(&loaded.text) {
            log::warn!("{e}");
        }
    }
    let watchdog = match &config.watchdog.device {
        None => None,
        Some(device) => match Watchdog::open(device, config.watchdog.timeout) {
            Ok(w) => {
                log::info!(
                    "watchdog {} armed ({}s), petted while the pipeline is healthy",
                    device.display(),
                    config.watchdog.timeout.as_secs()
                );
                Some(w)
            }
            Err(e) => {
                log::error!("{e} (`watchdog.device`)");
                pipeline.stop();
                return 1;
            }
        },
    };
    let code = monitor(
        &pipeline,
        config.memory_limit,
        a.status_every.unwrap_or(30),
        watchdog,
        settings.as_deref(),
        &updater,
    );
    if code == EXIT_RESTART {
        *handed = web.auth.hand_over(Instant::now());
    }
    pipeline.stop();
    log::info!("stopped");
    code
}

/// The start's steps, cheapest check first: the model is there, the
/// backend is usable, the budget fits, the port and the data directory
/// (all before the slow model load), the detectors and decoders, then the
/// pipeline.
fn start(config: &Config, paced: bool) -> Result<Started, StartError> {
    let model = model_bytes(config)?;
    let backend = choose_backend(config)?;
    let budget = Budget::compute(config, backend, model);
    for line in budget.to_string().lines() {
        log::info!("{line}");
    }
    if !budget.fits() {
        return Err(StartError::OverBudget);
    }
    // The port and the data directory fail fast, before the slow model load.
    let listener = crate::web::bind(config.listen).map_err(StartError::Web)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let parts = make_parts(config, backend, paced)?;
    release_load_garbage();
    log::info!(
        "vigil {} starting: {} camera(s), backend {}, {} inference worker(s), {} threads",
        crate::version::get(),
        config.cameras.len(),
        backend.as_str(),
        config.detector.workers,
        crate::budget::thread_count(config)
    );
    if let Some(e) = crate::version::stamp_error() {
        log::warn!("version stamp refused ({e}); reporting the built-in version");
    }
    let pipeline = Pipeline::start(config, parts)?;
    Ok(Started {
        pipeline,
        budget,
        backend,
        listener,
    })
}

/// What [`start`] answers.
struct Started {
    pipeline: Pipeline,
    budget: Budget,
    /// The backend it runs on (what a new configuration is priced for).
    backend: Backend,
    /// The web port, bound before the model load.
    listener: std::net::TcpListener,
}

/// Serves the web interface on the pipeline's runtime.
fn start_web(
    config: &Config,
    pipeline: &Pipeline,
    listener: std::net::TcpListener,
    settings: Option<std::sync::Arc<crate::settings::Service>>,
    updater: std::sync::Arc<crate::update::Updater>,
    sessions: Option<&str>,
) -> Result<std::sync::Arc<crate::web::WebContext>, crate::web::WebError> {
    use crate::web::{self, WebContext, WebError};
    let mut ctx = WebContext::new(
        config,
        pipeline.registry.clone(),
        pipeline.events.clone(),
        web::auth::AuthConfig::default(),
        Instant::now() - pipeline.uptime(),
        pipeline.disk.clone(),
    )?;
    ctx.store = pipeline.store.clone();
    ctx.store_error = pipeline.store_error.clone();
    ctx.settings = settings;
    ctx.updater = Some(updater.clone());
    if let Some(text) = sessions {
        let n = ctx.auth.adopt(text, Instant::now());
        log::info!("{n} web session(s) carried over the restart");
    }
    let addr = listener.local_addr().map_err(WebError::Listener)?;
    let runtime = pipeline.runtime_handle().ok_or(WebError::RuntimeStopped)?;
    let ctx = std::sync::Arc::new(ctx);
    web::start(&runtime, listener, ctx.clone(), pipeline.shutdown_handle())?;
    runtime.spawn(updates::gate(
        updater,
        pipeline.registry.clone(),
        pipeline.store.clone(),
        pipeline.disk.clone(),
        addr,
        Instant::now() - pipeline.uptime(),
        pipeline.shutdown_handle(),
    ));
    log::info!(
        "web interface on http://{addr}/ (status {})",
        if config.web.public_status {
            "open to anyone who can reach it"
        } else {
            "behind the admin login"
        }
    );
    Ok(ctx)
}

/// Gives the heap freed while parsing and optimising the model (several
/// times the model's size at peak) back to the kernel, so the steady RSS is
/// what the budget counts and not the load's high-water mark.
fn release_load_garbage() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Samples once a second until shutdown; [`guard::Guard`] enforces the
/// memory limit (stopping with [`EXIT_MEMORY`]) and pets the watchdog only
/// while the pipeline is whole and within the limit. A saved configuration
/// ends it with [`EXIT_RESTART`].
fn monitor(
    pipeline: &Pipeline,
    limit: u64,
    status_every: u64,
    mut watchdog: Option<Watchdog>,
    settings: Option<&crate::settings::Service>,
    updater: &crate::update::Updater,
) -> i32 {
    let shutdown = pipeline.shutdown_handle();
    let mut state = pipeline.monitor_state();
    let mut guard = Guard::new(limit);
    let mut last_status = Instant::now();
    while !shutdown.is_requested() {
        std::thread::sleep(Duration::from_secs(1));
        pipeline.sample(&mut state);
        let alive = pipeline.threads_alive();
        if guard.step(state.last.rss_bytes, alive, watchdog.as_mut()) == Verdict::OverLimit {
            return EXIT_MEMORY;
        }
        if settings.is_some_and(|s| s.restart_requested()) {
            log::info!("a new configuration was saved: restarting to apply it");
            // Disarmed like a clean stop: the stop, the supervisor's checks
            // and the next start's model load took longer than the 30 s
            // timeout on the emulated board, which then reset mid-apply. The
            // next process arms it again before it serves; a dead process
            // in between is the supervisor's to restart.
            if let Some(w) = watchdog {
                w.disarm();
            }
            return EXIT_RESTART;
        }
        if updater.reboot_due(Instant::now()) {
            // The watchdog stays armed (closed without the magic byte): a
            // reboot that hangs is reset by it.
            log::info!("stopping for the board to reboot (update)");
            return EXIT_REBOOT;
        }
        if status_every > 0 && last_status.elapsed() >= Duration::from_secs(status_every) {
            last_status = Instant::now();
            log_status(pipeline, &state);
        }
    }
    if let Some(w) = watchdog {
        w.disarm();
    }
    0
}

fn log_status(pipeline: &Pipeline, state: &crate::pipeline::MonitorState) {
    use crate::metrics::DropReason;
    for cam in &pipeline.registry.cameras {
        let s = cam.status();
        log::info!(
            "status camera={} state={} decoded={} detected={} decode_fps={:.1} detect_fps={:.1} packets_lost={} frames_dropped_pool_empty={} reconnects={} events={}",
            cam.name,
            s.state.as_str(),
            cam.frames_decoded.get(),
            cam.frames_detected.get(),
            cam.decode_fps.get(),
            cam.detect_fps.get(),
            cam.packets_dropped.lost(),
            cam.frames_dropped.get(DropReason::PoolEmpty),
            cam.reconnects.get(),
            cam.events.get(),
        );
    }
    log::info!(
        "status process rss={} threads={} fds={} uptime={}s",
        state.last.rss_bytes,
        state.last.threads,
        state.last.open_fds,
        pipeline.uptime().as_secs()
    );
}

fn detect_cmd(a: DetectArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match detect::cli::detect_images(&a.model, &a.images, a.min_score, &mut out) {
        Ok(0) => 0,
        Ok(_failed) => 1,
        Err(e) => {
            eprintln!("vigil: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        assert_eq!(main(&s(&["frobnicate"])), EXIT_USAGE);
        assert_eq!(main(&s(&[])), EXIT_USAGE);
        assert_eq!(main(&s(&["version"])), 0);
    }
}
