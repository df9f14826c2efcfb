//! The command line: `run`, `check-config`, `detect`, `version`.
//!
//! Hand-parsed (a handful of flags does not justify an argument-parser
//! dependency in firmware); every mistake names the flag and says what is
//! expected. Exit codes: 0 success, 1 failure while running, 2 bad usage or
//! configuration, 3 stopped for exceeding the memory limit.

use crate::budget::Budget;
use crate::config::{Config, ConfigErrors, DetectorKind};
use crate::detect::{self, Detector};
use crate::hw::mpp_sys::MppLib;
use crate::hw::npu::NpuDetector;
use crate::hw::rga::RgaLib;
use crate::hw::rknn_sys::RknnLib;
use crate::hw::{self, Backend, BackendChoice};
use crate::pipeline::{self, Parts, Pipeline};
use crate::watchdog::Watchdog;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the process exceeded its memory limit.
pub const EXIT_MEMORY: i32 = 3;

const USAGE: &str = "\
usage:
  vigil run --config FILE
  vigil run --camera URL [--camera URL]... [--data-dir DIR] [--listen ADDR] [--model PATH]
            [--workers N] [--status-every SECS] [--unpaced]
  vigil check-config FILE
  vigil detect [--model PATH] [--min-score S] IMAGE...
  vigil version

URL is rtsp://[user:pass@]host[:port]/path or a local .h264, .h265 or .mp4 file.
Environment: VIGIL_LOG=error|warn|info|debug sets the log level;
VIGIL_CACHE_DIR sets where `make model` put the model (default ~/.cache/vigil).";

/// Parsed `run` options.
#[derive(Debug, Default, PartialEq)]
pub struct RunArgs {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--camera URL`, repeatable.
    pub cameras: Vec<String>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--model PATH`.
    pub model: Option<PathBuf>,
    /// `--workers N`.
    pub workers: Option<usize>,
    /// `--status-every SECS` (0 disables the status line).
    pub status_every: Option<u64>,
    /// `--unpaced`: play files as fast as they decode.
    pub unpaced: bool,
}

fn value<'a>(
    args: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

/// Parses the arguments after `run`.
pub fn parse_run(args: &[String]) -> Result<RunArgs, String> {
    let mut out = RunArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => out.config = Some(value(&mut it, a)?.into()),
            "--camera" => out.cameras.push(value(&mut it, a)?.clone()),
            "--data-dir" => out.data_dir = Some(value(&mut it, a)?.into()),
            "--listen" => out.listen = Some(value(&mut it, a)?.clone()),
            "--model" => out.model = Some(value(&mut it, a)?.into()),
            "--workers" => {
                let v = value(&mut it, a)?;
                out.workers = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=16).contains(n))
                        .ok_or_else(|| format!("--workers takes 1 to 16, got `{v}`"))?,
                );
            }
            "--status-every" => {
                let v = value(&mut it, a)?;
                out.status_every = Some(
                    v.parse()
                        .map_err(|_| format!("--status-every takes whole seconds, got `{v}`"))?,
                );
            }
            "--unpaced" => out.unpaced = true,
            other => return Err(format!("unknown option `{other}` for run")),
        }
    }
    match (&out.config, out.cameras.is_empty()) {
        (Some(_), false) => Err("give either --config or --camera, not both".into()),
        (None, true) => Err("no cameras: give --config FILE or --camera URL".into()),
        _ => Ok(out),
    }
}

/// Runs the command line; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return EXIT_USAGE;
    };
    match cmd.as_str() {
        "run" => match parse_run(rest) {
            Ok(run_args) => run(run_args),
            Err(e) => usage_error(&e),
        },
        "check-config" => match rest {
            [file] => check_config(&PathBuf::from(file)),
            _ => usage_error("check-config takes one FILE"),
        },
        "detect" => detect_cmd(rest),
        "version" | "--version" | "-V" => {
            println!("vigil {}", env!("CARGO_PKG_VERSION"));
            0
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => usage_error(&format!("unknown command `{other}`")),
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("vigil: {msg}\n\n{USAGE}");
    EXIT_USAGE
}

fn config_errors(e: &ConfigErrors) -> i32 {
    for err in &e.0 {
        eprintln!("config error: {err}");
    }
    EXIT_USAGE
}

fn model_bytes(config: &Config) -> Result<u64, String> {
    std::fs::metadata(&config.detector.model)
        .map(|m| m.len())
        .map_err(|e| {
            format!(
                "detector model {}: {e} (run `make model`, or set detector.model / --model)",
                config.detector.model.display()
            )
        })
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
    use crate::source::{classify, v4l2, SourceKind};
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

fn load_config(a: &RunArgs) -> Result<Config, i32> {
    let mut config = match &a.config {
        Some(path) => Config::load(path),
        None => Config::from_urls(&a.cameras),
    }
    .map_err(|e| config_errors(&e))?;
    if let Some(d) = &a.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &a.listen {
        config.listen = l
            .parse()
            .map_err(|_| usage_error(&format!("--listen takes address:port, got `{l}`")))?;
    }
    if let Some(m) = &a.model {
        config.detector.model = m.clone();
    }
    if let Some(w) = a.workers {
        config.detector.workers = w;
    }
    Ok(config)
}

fn run(a: RunArgs) -> i32 {
    let config = match load_config(&a) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let model = match model_bytes(&config) {
        Ok(n) => n,
        Err(e) => {
            log::error!("{e}");
            return EXIT_USAGE;
        }
    };
    let backend = match choose_backend(&config) {
        Ok(b) => b,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let budget = Budget::compute(&config, backend, model);
    for line in budget.to_string().lines() {
        log::info!("{line}");
    }
    if !budget.fits() {
        log::error!("refusing to start: the memory budget exceeds memory_limit");
        return 1;
    }
    // The port and the data directory fail fast, before the slow model load.
    let listener = match std::net::TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {} (`listen`): {e}", config.listen);
            return 1;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        log::error!(
            "cannot create the data directory {} (`data_dir`): {e}",
            config.data_dir.display()
        );
        return 1;
    }
    let parts = match make_parts(&config, backend, !a.unpaced) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    release_load_garbage();
    log::info!(
        "vigil {} starting: {} camera(s), backend {}, {} inference worker(s), {} threads",
        env!("CARGO_PKG_VERSION"),
        config.cameras.len(),
        backend.as_str(),
        config.detector.workers,
        crate::budget::thread_count(&config)
    );
    let pipeline = match Pipeline::start(&config, parts) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return 1;
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
    if let Err(e) = start_web(&config, &pipeline, listener) {
        log::error!("{e}");
        pipeline.stop();
        return 1;
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
    );
    pipeline.stop();
    log::info!("stopped");
    code
}

/// What the hardware backend lacks on this machine, as sentences (empty:
/// nothing).
fn hardware_missing(config: &Config) -> Vec<String> {
    let mut missing = hw::missing_device_nodes(&config.hardware.dev_dir);
    missing.extend(hw::missing_libraries(config.hardware.lib_dir.as_deref()));
    missing
}

/// Decides between the RK3588 backends and the software twins, and says
/// which and why in the log. `hardware` refuses to start without the
/// hardware rather than silently running on the CPU; a model that only runs
/// on the NPU refuses to start without it whatever `backend` says.
fn choose_backend(config: &Config) -> Result<Backend, String> {
    let kind = config.detector.kind;
    if config.backend == BackendChoice::Software {
        log::info!("backend software (backend = \"software\")");
        return Ok(Backend::Software);
    }
    let missing = hardware_missing(config);
    if missing.is_empty() {
        if let Some(cam) = config
            .cameras
            .iter()
            .find(|c| c.frame_pool >= config.hardware.decoder_buffers)
        {
            return Err(format!(
                "camera {}: frame_pool ({}) must be less than hardware.decoder_buffers ({}): \
                 the decoder needs the rest of its group for reference pictures",
                cam.name, cam.frame_pool, config.hardware.decoder_buffers
            ));
        }
        log::info!(
            "backend hardware (backend = \"{}\"): MPP decoding, {} detection",
            config.backend.as_str(),
            if kind.needs_npu() {
                "RGA + RKNN"
            } else {
                "CPU"
            }
        );
        return Ok(Backend::Hardware);
    }
    let why = missing.join("; ");
    if config.backend == BackendChoice::Hardware {
        Err(format!(
            "backend = \"hardware\" but the RK3588 hardware is not usable: {why}"
        ))
    } else if kind.needs_npu() {
        Err(format!(
            "detector.kind = \"{}\" runs on the RK3588 NPU, which is not usable here: {why}",
            kind.as_str()
        ))
    } else {
        log::info!("backend software (auto: no RK3588 hardware: {why})");
        Ok(Backend::Software)
    }
}

/// Loads the detectors (one per worker) and the decoder library for
/// `backend`.
fn make_parts(config: &Config, backend: Backend, paced: bool) -> Result<Parts, String> {
    let workers = config.detector.workers;
    let mut detectors: Vec<Box<dyn Detector>> = Vec::with_capacity(workers);
    let model = &config.detector.model;
    match config.detector.kind {
        DetectorKind::SsdMobilenetV2 => {
            for _ in 0..workers {
                let d = detect::ssd::SsdMobilenetV2::load(model).map_err(|e| e.to_string())?;
                detectors.push(Box::new(d));
            }
        }
        DetectorKind::Yolo(layout) => {
            let lib_dir = config.hardware.lib_dir.as_deref();
            let rknn = Arc::new(RknnLib::load(lib_dir).map_err(|e| e.to_string())?);
            let rga = Arc::new(RgaLib::load(lib_dir).map_err(|e| e.to_string())?);
            let bytes = std::fs::read(model)
                .map_err(|e| format!("detector.model {}: {e}", model.display()))?;
            let imports = config.cameras.len() * config.hardware.decoder_buffers;
            for w in 0..workers {
                // One context per NPU core: cores 0, 1, 2 (masks 1, 2, 4).
                let core_mask = 1 << (w % 3);
                let d = NpuDetector::new(
                    rknn.clone(),
                    rga.clone(),
                    &bytes,
                    core_mask,
                    layout,
                    imports,
                )
                .map_err(|e| format!("detector.model {}: {e}", model.display()))?;
                detectors.push(Box::new(d));
            }
        }
    }
    Ok(match backend {
        Backend::Software => pipeline::software_parts(detectors, paced),
        Backend::Hardware => {
            let mpp =
                MppLib::load(config.hardware.lib_dir.as_deref()).map_err(|e| e.to_string())?;
            pipeline::hardware_parts(
                Arc::new(mpp),
                config.hardware.decoder_buffers,
                detectors,
                paced,
            )
        }
    })
}

/// Serves the web interface on the pipeline's runtime.
fn start_web(
    config: &Config,
    pipeline: &Pipeline,
    listener: std::net::TcpListener,
) -> Result<(), crate::web::WebError> {
    use crate::web::{self, WebContext, WebError};
    let mut ctx = WebContext::new(
        config,
        pipeline.registry.clone(),
        pipeline.events.clone(),
        web::auth::AuthConfig::default(),
        Instant::now() - pipeline.uptime(),
    )?;
    ctx.store = pipeline.store.clone();
    ctx.store_error = pipeline.store_error.clone();
    let addr = listener
        .local_addr()
        .map_err(|e| WebError(format!("web listener: {e}")))?;
    let runtime = pipeline
        .runtime_handle()
        .ok_or_else(|| WebError("the runtime has stopped".into()))?;
    web::start(
        &runtime,
        listener,
        std::sync::Arc::new(ctx),
        pipeline.shutdown_handle(),
    )?;
    log::info!(
        "web interface on http://{addr}/ (status {})",
        if config.web.public_status {
            "open to anyone who can reach it"
        } else {
            "behind the admin login"
        }
    );
    Ok(())
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

/// Samples once a second until shutdown; enforces the memory limit (three
/// consecutive readings over it stop the process with [`EXIT_MEMORY`], so the
/// service manager restarts it before the kernel's OOM killer picks a victim).
fn monitor(
    pipeline: &Pipeline,
    limit: u64,
    status_every: u64,
    mut watchdog: Option<Watchdog>,
) -> i32 {
    let shutdown = pipeline.shutdown_handle();
    let mut state = pipeline.monitor_state();
    let mut over = 0;
    let mut last_status = Instant::now();
    let mut pipeline_down = false;
    while !shutdown.is_requested() {
        std::thread::sleep(Duration::from_secs(1));
        pipeline.sample(&mut state);
        if state.last.rss_bytes > limit {
            over += 1;
            log::error!(
                "RSS {} exceeds memory_limit {} ({over}/3)",
                crate::budget::human(state.last.rss_bytes),
                crate::budget::human(limit)
            );
            if over >= 3 {
                return EXIT_MEMORY;
            }
        } else {
            over = 0;
        }
        // Pet only a healthy pipeline: a dead decoder or worker thread, or
        // RSS over the limit, lets the watchdog reset the board.
        if let Some(w) = watchdog.as_mut() {
            let alive = pipeline.threads_alive();
            if alive && over == 0 {
                w.pet();
            } else if !alive && !pipeline_down {
                log::error!("a pipeline thread has stopped; no longer petting the watchdog");
            }
            pipeline_down = !alive;
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

fn detect_cmd(args: &[String]) -> i32 {
    let mut model = detect::default_model_path();
    let mut min_score = 0.3f32;
    let mut images = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => match it.next() {
                Some(v) => model = v.into(),
                None => return usage_error("--model needs a value"),
            },
            "--min-score" => match it.next().and_then(|v| v.parse::<f32>().ok()) {
                Some(v) if v > 0.0 && v <= 1.0 => min_score = v,
                _ => return usage_error("--min-score takes a number in (0, 1]"),
            },
            _ if a.starts_with("--") => {
                return usage_error(&format!("unknown option `{a}` for detect"))
            }
            _ => images.push(PathBuf::from(a)),
        }
    }
    if images.is_empty() {
        return usage_error("detect needs at least one IMAGE");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match detect::cli::detect_images(&model, &images, min_score, &mut out) {
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
    fn run_needs_exactly_one_camera_source() {
        assert!(parse_run(&s(&[])).unwrap_err().contains("no cameras"));
        assert!(parse_run(&s(&["--config", "a", "--camera", "b"])).is_err());
        let a = parse_run(&s(&[
            "--camera",
            "a.mp4",
            "--camera",
            "rtsp://x/y",
            "--workers",
            "2",
        ]))
        .unwrap();
        assert_eq!(a.cameras.len(), 2);
        assert_eq!(a.workers, Some(2));
        assert!(parse_run(&s(&["--camera"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_run(&s(&["--camera", "a.mp4", "--workers", "0"])).is_err());
        assert!(parse_run(&s(&["--bogus"]))
            .unwrap_err()
            .contains("unknown option"));
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        assert_eq!(main(&s(&["frobnicate"])), EXIT_USAGE);
        assert_eq!(main(&s(&[])), EXIT_USAGE);
        assert_eq!(main(&s(&["version"])), 0);
    }
}
