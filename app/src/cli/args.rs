//! The command line's arguments: what `run` and `detect` accept, parsed by
//! hand into [`RunArgs`] and [`DetectArgs`], and every mistake as an
//! [`ArgError`] kind whose message names the flag and says what it takes.

use crate::detect;
use std::path::PathBuf;

/// Parsed `run` options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunArgs {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--factory FILE`: seeds a missing `--config` file, and what a factory
    /// reset from the page restores.
    pub factory: Option<PathBuf>,
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

/// A mistake on the command line (exit code [`super::EXIT_USAGE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// No such command.
    UnknownCommand(String),
    /// No such option for the command.
    UnknownOption {
        /// The option as given.
        option: String,
        /// The command.
        command: &'static str,
    },
    /// A flag at the end, without its value.
    MissingValue(String),
    /// A flag's value is not what it takes.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// What it takes.
        expected: &'static str,
        /// The value given, when there was one.
        got: Option<String>,
    },
    /// Both `--config` and `--camera`.
    ConfigAndCameras,
    /// Neither `--config` nor `--camera`.
    NoCameras,
    /// `--factory` without `--config`.
    FactoryWithoutConfig,
    /// The command's operands are missing or too many (what it takes).
    Operands(&'static str),
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::UnknownCommand(c) => write!(f, "unknown command `{c}`"),
            ArgError::UnknownOption { option, command } => {
                write!(f, "unknown option `{option}` for {command}")
            }
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::BadValue {
                flag,
                expected,
                got: Some(got),
            } => write!(f, "{flag} takes {expected}, got `{got}`"),
            ArgError::BadValue {
                flag,
                expected,
                got: None,
            } => write!(f, "{flag} takes {expected}"),
            ArgError::ConfigAndCameras => f.write_str("give either --config or --camera, not both"),
            ArgError::NoCameras => f.write_str("no cameras: give --config FILE or --camera URL"),
            ArgError::FactoryWithoutConfig => {
                f.write_str("--factory FILE needs --config FILE (the file it seeds)")
            }
            ArgError::Operands(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ArgError {}

fn value<'a>(
    args: &mut impl Iterator<Item = &'a String>,
    flag: &str,
) -> Result<&'a String, ArgError> {
    args.next()
        .ok_or_else(|| ArgError::MissingValue(flag.to_string()))
}

/// Parses the arguments after `run`.
pub fn parse_run(args: &[String]) -> Result<RunArgs, ArgError> {
    let mut out = RunArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => out.config = Some(value(&mut it, a)?.into()),
            "--factory" => out.factory = Some(value(&mut it, a)?.into()),
            "--camera" => out.cameras.push(value(&mut it, a)?.clone()),
            "--data-dir" => out.data_dir = Some(value(&mut it, a)?.into()),
            "--listen" => out.listen = Some(value(&mut it, a)?.clone()),
            "--model" => out.model = Some(value(&mut it, a)?.into()),
            "--workers" => {
                let v = value(&mut it, a)?;
                out.workers = Some(v.parse().ok().filter(|n| (1..=16).contains(n)).ok_or_else(
                    || ArgError::BadValue {
                        flag: "--workers",
                        expected: "1 to 16",
                        got: Some(v.clone()),
                    },
                )?);
            }
            "--status-every" => {
                let v = value(&mut it, a)?;
                out.status_every = Some(v.parse().map_err(|_| ArgError::BadValue {
                    flag: "--status-every",
                    expected: "whole seconds",
                    got: Some(v.clone()),
                })?);
            }
            "--unpaced" => out.unpaced = true,
            other => {
                return Err(ArgError::UnknownOption {
                    option: other.to_string(),
                    command: "run",
                })
            }
        }
    }
    match (&out.config, out.cameras.is_empty()) {
        (None, _) if out.factory.is_some() => Err(ArgError::FactoryWithoutConfig),
        (Some(_), false) => Err(ArgError::ConfigAndCameras),
        (None, true) => Err(ArgError::NoCameras),
        _ => Ok(out),
    }
}

/// Parsed `detect` options.
#[derive(Debug, PartialEq)]
pub struct DetectArgs {
    /// `--model PATH` (default: where `make model` puts it).
    pub model: PathBuf,
    /// `--min-score S`.
    pub min_score: f32,
    /// The images, at least one.
    pub images: Vec<PathBuf>,
}

/// Parses the arguments after `detect`.
pub fn parse_detect(args: &[String]) -> Result<DetectArgs, ArgError> {
    let mut model = detect::default_model_path();
    let mut min_score = 0.3f32;
    let mut images = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = value(&mut it, a)?.into(),
            "--min-score" => match it.next().and_then(|v| v.parse::<f32>().ok()) {
                Some(v) if v > 0.0 && v <= 1.0 => min_score = v,
                _ => {
                    return Err(ArgError::BadValue {
                        flag: "--min-score",
                        expected: "a number in (0, 1]",
                        got: None,
                    })
                }
            },
            _ if a.starts_with("--") => {
                return Err(ArgError::UnknownOption {
                    option: a.clone(),
                    command: "detect",
                })
            }
            _ => images.push(PathBuf::from(a)),
        }
    }
    if images.is_empty() {
        return Err(ArgError::Operands("detect needs at least one IMAGE"));
    }
    Ok(DetectArgs {
        model,
        min_score,
        images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_needs_exactly_one_camera_source() {
        assert_eq!(parse_run(&s(&[])).unwrap_err(), ArgError::NoCameras);
        // The message says what to give.
        assert!(parse_run(&s(&[]))
            .unwrap_err()
            .to_string()
            .contains("no cameras"));
        assert_eq!(
            parse_run(&s(&["--config", "a", "--camera", "b"])).unwrap_err(),
            ArgError::ConfigAndCameras
        );
        assert_eq!(
            parse_run(&s(&["--factory", "f", "--camera", "b"])).unwrap_err(),
            ArgError::FactoryWithoutConfig
        );
        assert_eq!(
            parse_run(&s(&["--config", "c", "--factory", "f"]))
                .unwrap()
                .factory,
            Some(PathBuf::from("f"))
        );
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
        let e = parse_run(&s(&["--camera"])).unwrap_err();
        assert_eq!(e, ArgError::MissingValue("--camera".into()));
        assert!(e.to_string().contains("needs a value"));
        assert!(matches!(
            parse_run(&s(&["--camera", "a.mp4", "--workers", "0"])),
            Err(ArgError::BadValue {
                flag: "--workers",
                ..
            })
        ));
        let e = parse_run(&s(&["--bogus"])).unwrap_err();
        assert!(matches!(e, ArgError::UnknownOption { command: "run", .. }));
        assert!(e.to_string().contains("unknown option"));
    }
}
