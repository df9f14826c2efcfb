//! `vigil system-env --config FILE`: the `[system]` section of FILE as
//! shell assignments (`crate::system::env`) for the board's
//! `/usr/sbin/vigil-system`, which evals them. FILE is parsed by the same
//! parser as `vigil run`; a file that does not parse is exit code 2 with
//! its located errors on stderr, and the script tries the next file (the
//! last good one, then the factory default): the fallback is the caller's.

use super::{config_errors, usage_error, ArgError, EXIT_USAGE};
use crate::config::Config;
use std::path::Path;

/// Runs the command on the arguments after `system-env`.
pub(super) fn main(args: &[String]) -> i32 {
    let file = match args {
        [flag, file] if flag == "--config" => file,
        [flag] if flag == "--config" => {
            return usage_error(&ArgError::MissingValue(flag.clone()));
        }
        _ => return usage_error(&ArgError::Operands("system-env takes --config FILE")),
    };
    let config = match Config::load(Path::new(file)) {
        Ok(c) => c,
        Err(e) => return config_errors(&e),
    };
    match crate::system::env::render(&config) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("vigil: {e}");
            EXIT_USAGE
        }
    }
}
