//! The first-boot commands the boot partition step (`etc/rc.d/S20bootpart`)
//! runs before vigil starts (docs/first-boot.md):
//!
//! - `vigil setup-code --config FILE [--factory DEFAULT]`: the setup code
//!   `run` will show (the same file, created the same way), printed as
//!   `setup_code=K7QF-3MZA-T9PX`, or `setup_code=` once a password is set;
//! - `vigil preseed --config FILE [--factory DEFAULT] PRESEED`: the owner's
//!   `vigil-setup.toml` applied: everything checked first (the password by
//!   the setup page's policy, the cameras by the file's parser and the
//!   budget `run` would price them with), then the configuration saved
//!   through the settings service (change log: `preseed`), then the password
//!   stored if none is set;
//! - `vigil factory-reset --config FILE --factory DEFAULT`: what the
//!   `factory-reset` flag beside FILE asks for, done now: the file set aside
//!   as `FILE.before-reset` (the next start seeds it from DEFAULT), the last
//!   good one forgotten, the admin password, setup code and handed-over
//!   sessions removed, then the flag.
//!
//! Each takes `--data-dir DIR` as `run` does. Output is one `key=value` or
//! summary line on stdout, never a secret; errors go to stderr with exit 2.

use super::restart::{BudgetChecker, HANDOFF_FILE};
use super::{overrides, usage_error, ArgError, RunArgs, EXIT_USAGE};
use crate::budget::human;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::pipeline::backend::choose_backend;
use crate::settings::preseed::{Merged, Preseed};
use crate::settings::{changes, Checker, ConfigFile, Service};
use crate::web::auth::{self, AuthConfig, Preset};
use std::path::{Path, PathBuf};

/// The flag file, beside the configuration, that asks for a factory reset.
const RESET_FLAG: &str = "factory-reset";

/// The options of the three commands.
#[derive(Debug, PartialEq)]
struct Args {
    run: RunArgs,
    /// `preseed`'s operand.
    preseed: Option<PathBuf>,
}

/// Runs `setup-code`, `preseed` or `factory-reset` (`cmd`) with `rest`.
pub(super) fn main(cmd: &str, rest: &[String]) -> i32 {
    let a = match parse(cmd, rest) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    match (cmd, &a.preseed) {
        ("preseed", Some(p)) => preseed(&a.run, p),
        ("factory-reset", _) => factory_reset(&a.run),
        _ => setup_code(&a.run),
    }
}

fn parse(cmd: &str, rest: &[String]) -> Result<Args, ArgError> {
    let command: &'static str = match cmd {
        "preseed" => "preseed",
        "factory-reset" => "factory-reset",
        _ => "setup-code",
    };
    let mut run = RunArgs::default();
    let mut preseed = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| ArgError::MissingValue(a.clone()))
        };
        match a.as_str() {
            "--config" => run.config = Some(value()?),
            "--factory" => run.factory = Some(value()?),
            "--data-dir" => run.data_dir = Some(value()?),
            _ if a.starts_with("--") => {
                return Err(ArgError::UnknownOption {
                    option: a.clone(),
                    command,
                })
            }
            _ if command == "preseed" && preseed.is_none() => preseed = Some(PathBuf::from(a)),
            _ => return Err(ArgError::Operands(operands(command))),
        }
    }
    if run.config.is_none() {
        return Err(ArgError::Operands(operands(command)));
    }
    if command == "preseed" && preseed.is_none() {
        return Err(ArgError::Operands(operands(command)));
    }
    if command == "factory-reset" && run.factory.is_none() {
        return Err(ArgError::Operands(operands(command)));
    }
    Ok(Args { run, preseed })
}

fn operands(command: &str) -> &'static str {
    match command {
        "preseed" => "preseed takes --config FILE [--factory DEFAULT] [--data-dir DIR] PRESEED",
        "factory-reset" => {
            "factory-reset takes --config FILE --factory DEFAULT (what FILE is reset to) [--data-dir DIR]"
        }
        _ => "setup-code takes --config FILE [--factory DEFAULT] [--data-dir DIR]",
    }
}

fn config_file(a: &RunArgs) -> ConfigFile {
    ConfigFile {
        path: a.config.clone().unwrap_or_default(),
        factory: a.factory.clone(),
    }
}

/// Prints every error and answers [`EXIT_USAGE`].
fn refuse(errors: &[ConfigError]) -> i32 {
    for e in errors {
        eprintln!("config error: {e}");
    }
    EXIT_USAGE
}

/// The configuration `run` would start on (the file seeded from the
/// factory default when missing), with the command line's overrides.
fn load(a: &RunArgs) -> Result<(crate::settings::Loaded, Config), i32> {
    let loaded = config_file(a).load().map_err(|e| refuse(&e.0))?;
    let mut config = loaded.config.clone();
    overrides(&mut config, a).map_err(|e| usage_error(&e))?;
    Ok((loaded, config))
}

fn data_dir(config: &Config) -> Result<&Path, i32> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        eprintln!(
            "vigil: cannot create the data directory {}: {e}",
            config.data_dir.display()
        );
        1
    })?;
    Ok(&config.data_dir)
}

fn setup_code(a: &RunArgs) -> i32 {
    let (_, config) = match load(a) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dir = match data_dir(&config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    match auth::setup_code_of(dir) {
        Ok(code) => {
            println!("setup_code={}", code.unwrap_or_default());
            println!("web_port={}", config.listen.port());
            0
        }
        Err(e) => {
            eprintln!("vigil: setup code: {e}");
            1
        }
    }
}

fn preseed(a: &RunArgs, path: &Path) -> i32 {
    let (loaded, config) = match load(a) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let preseed = match Preseed::read(path) {
        Ok(p) => p,
        Err(crate::settings::preseed::PreseedError::Invalid(e)) => return refuse(&e.0),
        Err(e) => {
            eprintln!("config error: {e}");
            return EXIT_USAGE;
        }
    };
    let file = config_file(a);
    let merged = match check(a, &preseed, &loaded.text, &file) {
        Ok(m) => m,
        Err(errors) => return refuse(&errors),
    };
    let mut summary = Vec::new();
    if let Some((merged, budget)) = &merged {
        let checker = Box::new(BudgetChecker::new(budget.backend, a));
        let service = Service::new(file.clone(), checker, loaded.fallback.as_ref());
        match service.save(&merged.text, "preseed") {
            Ok(out) if out.ok => summary.push(format!(
                "{} camera(s) saved to {} (needs {} of {})",
                preseed.camera_count().unwrap_or(0),
                file.path.display(),
                human(budget.total),
                human(budget.limit)
            )),
            Ok(out) => {
                eprintln!(
                    "config error: {}",
                    out.error.unwrap_or_else(|| "refused".into())
                );
                return EXIT_USAGE;
            }
            Err(e) => {
                eprintln!("vigil: {e}");
                return 1;
            }
        }
    } else {
        summary.push("cameras unchanged".to_owned());
    }
    if let Some(password) = preseed.password() {
        let dir = match data_dir(&config) {
            Ok(d) => d,
            Err(code) => return code,
        };
        let iterations = AuthConfig::default().iterations;
        match auth::preset_password(dir, password.expose(), iterations) {
            Ok(Preset::Stored) => summary.push("admin password set".into()),
            Ok(Preset::AlreadySet) => summary.push(
                "admin password NOT changed: one is already set (change it on the page)".into(),
            ),
            Err(e) => {
                eprintln!("vigil: {e}");
                return 1;
            }
        }
    }
    println!("preseed {}: {}", path.display(), summary.join("; "));
    0
}

/// The budget of the preseeded configuration.
struct Priced {
    backend: crate::hw::Backend,
    total: u64,
    limit: u64,
}

/// Everything a preseed is checked against, before anything is written:
/// the password policy, the cameras in the configuration by its parser, the
/// backend and budget `run` would start them on. `None` when it has no
/// cameras.
fn check<'p>(
    a: &RunArgs,
    preseed: &'p Preseed,
    current: &str,
    file: &ConfigFile,
) -> Result<Option<(Merged<'p>, Priced)>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Some(p) = preseed.password() {
        if let Err(e) = auth::check_policy(p.expose()) {
            errors.push(preseed.error(Some(p.line()), "admin_password", &e.to_string()));
        }
    }
    let Some(count) = preseed.camera_count() else {
        return if errors.is_empty() {
            Ok(None)
        } else {
            Err(errors)
        };
    };
    let merged = match preseed.merge(current, &file.path.display().to_string()) {
        Ok(m) => m,
        Err(ConfigErrors(e)) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    let config = match merged.parse() {
        Ok(c) => c,
        Err(ConfigErrors(e)) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let line = preseed.cameras_line();
    let mut run_config = config.clone();
    overrides(&mut run_config, a).map_err(|e| vec![preseed.error(line, "", &e.to_string())])?;
    let backend = choose_backend(&run_config).map_err(|e| {
        vec![preseed.error(line, "camera", &format!("these cameras cannot start: {e}"))]
    })?;
    let verdict = BudgetChecker::new(backend, a).check(&config);
    if let Some(problem) = &verdict.problem {
        return Err(vec![preseed.error(line, "camera", problem)]);
    }
    if !verdict.accepted() {
        let message = format!(
            "with these {count} camera(s) the memory budget is {}, over memory_limit ({}) of {}: list fewer cameras or lower their pools",
            human(verdict.total),
            human(verdict.limit),
            file.path.display()
        );
        return Err(vec![preseed.error(line, "camera", &message)]);
    }
    let priced = Priced {
        backend,
        total: verdict.total,
        limit: verdict.limit,
    };
    Ok(Some((merged, priced)))
}

fn factory_reset(a: &RunArgs) -> i32 {
    let file = config_file(a);
    let factory = match file.factory_text() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vigil: {e}");
            return EXIT_USAGE;
        }
    };
    // The data directories a password may be in: the configuration's (or
    // its last good one's), the factory's (where the next start looks),
    // and the command line's.
    let mut dirs: Vec<PathBuf> = Vec::new();
    let name = file.path.display().to_string();
    let current = file.read().ok();
    let config = current
        .as_deref()
        .and_then(|t| Config::parse(t, &name).ok())
        .or_else(|| {
            let good = std::fs::read_to_string(file.sibling(".good")).ok()?;
            Config::parse(&good, &name).ok()
        });
    dirs.extend(config.map(|c| c.data_dir));
    dirs.extend(Config::parse(&factory, "factory").ok().map(|c| c.data_dir));
    dirs.extend(a.data_dir.clone());
    dirs.sort();
    dirs.dedup();
    let step = |what: &str, r: std::io::Result<()>| {
        r.map_err(|e| {
            eprintln!("vigil: factory reset: {what}: {e}");
            1
        })
    };
    if let Some(old) = &current {
        let aside = file.sibling(".before-reset");
        if let Err(code) = step(
            &format!("move {} to {}", file.path.display(), aside.display()),
            std::fs::rename(&file.path, &aside),
        ) {
            return code;
        }
        let entry = changes::entry(unix_now(), "factory-reset", changes::diff(old, &factory));
        if let Err(e) = changes::append(&file.log_path(), &entry) {
            log::warn!("config change log {}: {e}", file.log_path().display());
        }
    }
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    let good = file.sibling(".good");
    if let Err(code) = step(&format!("remove {}", good.display()), remove(&good)) {
        return code;
    }
    let mut forgot = false;
    for dir in &dirs {
        match auth::forget_admin(dir) {
            Ok(had) => forgot |= had,
            Err(e) => {
                eprintln!("vigil: factory reset: {e}");
                return 1;
            }
        }
    }
    // Sessions live in the running vigil's memory, and across a supervised
    // restart in this file: a reset at boot runs before vigil.
    if let Some(handed) = std::env::var_os(HANDOFF_FILE) {
        let handed = PathBuf::from(handed);
        if let Err(code) = step(&format!("remove {}", handed.display()), remove(&handed)) {
            return code;
        }
    }
    let flag = file
        .path
        .parent()
        .map_or_else(|| PathBuf::from(RESET_FLAG), |d| d.join(RESET_FLAG));
    if let Err(code) = step(&format!("remove {}", flag.display()), remove(&flag)) {
        return code;
    }
    println!(
        "factory reset: {} {}; admin password {}; the next start makes a new setup code",
        file.path.display(),
        if current.is_some() {
            "kept as .before-reset, the factory default comes back"
        } else {
            "was not there, the factory default comes"
        },
        if forgot { "removed" } else { "was not set" }
    );
    0
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_command_takes_what_it_needs() {
        let a = parse("preseed", &s(&["--config", "c", "p.toml"])).unwrap();
        assert_eq!(a.preseed, Some(PathBuf::from("p.toml")));
        assert!(matches!(
            parse("preseed", &s(&["--config", "c"])),
            Err(ArgError::Operands(_))
        ));
        assert!(matches!(
            parse("setup-code", &s(&["--config", "c", "extra"])),
            Err(ArgError::Operands(_))
        ));
        assert!(matches!(
            parse("setup-code", &s(&["--factory", "f"])),
            Err(ArgError::Operands(_))
        ));
        assert!(matches!(
            parse("factory-reset", &s(&["--config", "c"])),
            Err(ArgError::Operands(_))
        ));
        assert!(matches!(
            parse("setup-code", &s(&["--config", "c", "--bogus"])),
            Err(ArgError::UnknownOption {
                command: "setup-code",
                ..
            })
        ));
        assert_eq!(
            parse("setup-code", &s(&["--config"])).unwrap_err(),
            ArgError::MissingValue("--config".into())
        );
        let a = parse(
            "factory-reset",
            &s(&["--config", "c", "--factory", "f", "--data-dir", "d"]),
        )
        .unwrap();
        assert_eq!(a.run.data_dir, Some(PathBuf::from("d")));
    }
}
