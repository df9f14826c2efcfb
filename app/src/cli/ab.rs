//! `vigil ab <command>`: RAUC's custom boot-loader backend interface over the
//! A/B state (`crate::ab`), plus `mark-good-current` for vigil-supervise.
//! /usr/sbin/vigil-ab is a two-line shim that runs this, because RAUC calls
//! the backend by path (system.conf `bootloader-custom-backend`).
//!
//! The commands, their output on stdout and their exit codes are those of
//! the shell script this replaces: 0 on success, 1 with a `vigil-ab: ...`
//! line on stderr for anything else, usage mistakes included (RAUC only
//! looks at the code). Arguments are checked before the partition is
//! mounted, so a refused command touches nothing. `VIGIL_AB_DIR` names the
//! directory holding the copies and `VIGIL_AB_CMDLINE` the file standing in
//! for /proc/cmdline (tests).

use super::ArgError;
use crate::ab::{self, AbError, AbStore, Origin, Slot};
use std::fmt;
use std::path::Path;

const USAGE: &str = "usage: vigil-ab get-primary|set-primary SLOT|get-state SLOT|set-state SLOT good|bad|get-current|mark-good-current";

/// One backend command, its operands checked.
#[derive(Debug, PartialEq)]
enum Command {
    GetPrimary,
    SetPrimary(Slot),
    GetState(Slot),
    SetState(Slot, bool),
    GetCurrent,
    MarkGoodCurrent,
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    Usage(ArgError),
    Ab(AbError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(e) => e.fmt(f),
            Failure::Ab(e) => e.fmt(f),
        }
    }
}

impl From<AbError> for Failure {
    fn from(e: AbError) -> Failure {
        Failure::Ab(e)
    }
}

/// Runs the command on the arguments after `ab`; returns the exit code.
pub(super) fn main(args: &[String]) -> i32 {
    match parse(args).and_then(run) {
        Ok(Some(line)) => {
            println!("{line}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            eprintln!("vigil-ab: {e}");
            1
        }
    }
}

fn parse(args: &[String]) -> Result<Command, Failure> {
    let slot = |s: &String| s.parse::<Slot>().map_err(Failure::Ab);
    let usage = |what| Err(Failure::Usage(ArgError::Operands(what)));
    let Some((cmd, rest)) = args.split_first() else {
        return usage(USAGE);
    };
    match (cmd.as_str(), rest) {
        ("get-primary", []) => Ok(Command::GetPrimary),
        ("set-primary", [s]) => Ok(Command::SetPrimary(slot(s)?)),
        ("set-primary", _) => usage("usage: set-primary SLOT"),
        ("get-state", [s]) => Ok(Command::GetState(slot(s)?)),
        ("get-state", _) => usage("usage: get-state SLOT"),
        ("set-state", [s, state]) => {
            let s = slot(s)?;
            match state.as_str() {
                "good" => Ok(Command::SetState(s, true)),
                "bad" => Ok(Command::SetState(s, false)),
                _ => Err(Failure::Usage(ArgError::BadValue {
                    flag: "the state",
                    expected: "good or bad",
                    got: Some(state.clone()),
                })),
            }
        }
        ("set-state", _) => usage("usage: set-state SLOT good|bad"),
        ("get-current", []) => Ok(Command::GetCurrent),
        ("mark-good-current", []) => Ok(Command::MarkGoodCurrent),
        _ => usage(USAGE),
    }
}

fn run(cmd: Command) -> Result<Option<String>, Failure> {
    match cmd {
        Command::GetCurrent => Ok(Some(booted()?.to_string())),
        Command::MarkGoodCurrent => {
            let slot = booted()?;
            AbStore::open()?.update(|s| s.mark_good(slot))?;
            Ok(None)
        }
        Command::GetPrimary => {
            let state = read(&AbStore::open()?)?;
            Ok(Some(state.primary().ok_or(AbError::NoPrimary)?.to_string()))
        }
        Command::GetState(slot) => {
            let state = read(&AbStore::open()?)?;
            Ok(Some(
                if state.is_good(slot) { "good" } else { "bad" }.to_string(),
            ))
        }
        Command::SetPrimary(slot) => {
            AbStore::open()?.update(|s| s.set_primary(slot))?;
            Ok(None)
        }
        Command::SetState(slot, good) => {
            AbStore::open()?.update(|s| {
                if good {
                    s.mark_good(slot)
                } else {
                    s.mark_bad(slot)
                }
            })?;
            Ok(None)
        }
    }
}

/// The state, saying on stderr when it did not come from copy 0 (the
/// output RAUC reads is stdout).
fn read(store: &AbStore) -> Result<ab::BootState, AbError> {
    let (state, origin) = store.read()?;
    match origin {
        Origin::Copy0 | Origin::Defaults | Origin::OldScript => {}
        Origin::Copy1 => eprintln!("vigil-ab: A/B state copy 0 damaged; using copy 1"),
        Origin::Legacy => {
            eprintln!("vigil-ab: no valid A/B state copy; using the legacy vigil-ab.env")
        }
    }
    Ok(state)
}

fn booted() -> Result<Slot, AbError> {
    match std::env::var_os("VIGIL_AB_CMDLINE") {
        Some(path) => ab::booted_slot_from(Path::new(&path)),
        None => ab::booted_slot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, Failure> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_their_operands() {
        assert_eq!(p(&["get-primary"]).unwrap(), Command::GetPrimary);
        assert_eq!(
            p(&["set-primary", "B"]).unwrap(),
            Command::SetPrimary(Slot::B)
        );
        assert_eq!(
            p(&["set-state", "A", "bad"]).unwrap(),
            Command::SetState(Slot::A, false)
        );
        assert_eq!(p(&["mark-good-current"]).unwrap(), Command::MarkGoodCurrent);
        assert!(matches!(
            p(&["set-state", "C", "good"]),
            Err(Failure::Ab(AbError::UnknownSlot(_)))
        ));
        for bad in [
            &["set-state", "A", "maybe"][..],
            &["set-primary"],
            &["get-state", "A", "B"],
            &["frobnicate"],
            &[],
            &["get-primary", "A"],
        ] {
            assert!(matches!(p(bad), Err(Failure::Usage(_))), "{bad:?}");
        }
    }
}
