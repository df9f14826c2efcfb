//! The network state the board's script keeps, as the page shows it, and
//! the owner's confirmation of a new static address.
//!
//! `/usr/sbin/vigil-system` writes one line to `/run/vigil-network`:
//! `dhcp`, `static <id>` (confirmed), `static-pending <deadline> <id>` (a
//! new static address that goes back to DHCP at the Unix time `deadline`
//! unless `<data_dir>/network-confirmed` holds `<id>` by then) or
//! `reverted <id>` (it did go back; the box stays on DHCP until the
//! settings change). No file means no script manages the network here: a
//! host, where the page says so. The path is `VIGIL_NETWORK_STATE` when set
//! (tests), else [`DEFAULT_STATE`].

use serde::Serialize;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where the board's script keeps the state.
pub const DEFAULT_STATE: &str = "/run/vigil-network";
/// The environment variable that moves it (tests).
pub const STATE_ENV: &str = "VIGIL_NETWORK_STATE";
/// The confirmation file in the data directory.
pub const CONFIRMED: &str = "network-confirmed";
/// The longest state line read (an id is 12 characters).
const MAX_STATE: u64 = 256;

/// The state file's path.
pub fn state_path() -> PathBuf {
    std::env::var_os(STATE_ENV).map_or_else(|| PathBuf::from(DEFAULT_STATE), PathBuf::from)
}

/// One state line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// DHCP, as configured.
    Dhcp,
    /// A confirmed static address.
    Static {
        /// Its `VIGIL_NET_ID`.
        id: String,
    },
    /// A static address waiting for confirmation.
    Pending {
        /// Unix seconds when it goes back to DHCP.
        deadline: u64,
        /// Its `VIGIL_NET_ID`.
        id: String,
    },
    /// A static address that was not confirmed in time: DHCP.
    Reverted {
        /// Its `VIGIL_NET_ID`.
        id: String,
    },
}

impl State {
    /// Parses a state line; `None` when it is none of the four.
    pub fn parse(line: &str) -> Option<State> {
        let id_ok = |id: &&str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit());
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["dhcp"] => Some(State::Dhcp),
            ["static", id] if id_ok(id) => Some(State::Static { id: (*id).into() }),
            ["reverted", id] if id_ok(id) => Some(State::Reverted { id: (*id).into() }),
            ["static-pending", deadline, id] if id_ok(id) => Some(State::Pending {
                deadline: deadline.parse().ok()?,
                id: (*id).into(),
            }),
            _ => None,
        }
    }
}

/// What the page shows about the network (`network` in `GET /api/settings`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Whether the board's script manages the network (false on a host).
    pub managed: bool,
    /// `dhcp`, `static`, `static-pending` or `reverted` (`None`: not
    /// managed, or the state file is unreadable).
    pub state: Option<&'static str>,
    /// The settings' id the state is about.
    pub id: Option<String>,
    /// Pending: seconds left before the box goes back to DHCP.
    pub seconds_left: Option<u64>,
    /// Why the state could not be read.
    pub error: Option<String>,
}

/// Reads the state file (at most [`MAX_STATE`] bytes).
fn read_state(path: &Path) -> io::Result<Option<State>> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_STATE)
        .read_to_string(&mut text)?;
    Ok(State::parse(text.trim()))
}

/// Whether `<data_dir>/network-confirmed` holds `id`.
fn confirmed(data_dir: &Path, id: &str) -> bool {
    let mut text = String::new();
    std::fs::File::open(data_dir.join(CONFIRMED))
        .and_then(|f| f.take(MAX_STATE).read_to_string(&mut text))
        .is_ok_and(|_| text.trim() == id)
}

/// The network state at `now` (Unix seconds). A pending address already
/// confirmed shows as `static`: the script notices within a second.
pub fn status(state: &Path, data_dir: &Path, now: u64) -> Status {
    let read = match read_state(state) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Status::default(),
        Err(e) => Err(format!("cannot read {}: {e}", state.display())),
        Ok(None) => Err(format!("{} holds no known state", state.display())),
        Ok(Some(s)) => Ok(s),
    };
    let mut out = Status {
        managed: true,
        ..Status::default()
    };
    match read {
        Err(e) => out.error = Some(e),
        Ok(State::Dhcp) => out.state = Some("dhcp"),
        Ok(State::Static { id }) => (out.state, out.id) = (Some("static"), Some(id)),
        Ok(State::Reverted { id }) => (out.state, out.id) = (Some("reverted"), Some(id)),
        Ok(State::Pending { id, .. }) if confirmed(data_dir, &id) => {
            (out.state, out.id) = (Some("static"), Some(id))
        }
        Ok(State::Pending { deadline, id }) => {
            out.state = Some("static-pending");
            out.seconds_left = Some(deadline.saturating_sub(now));
            out.id = Some(id);
        }
    }
    out
}

/// Why a confirmation was refused.
#[derive(Debug)]
pub enum ConfirmError {
    /// No state file: nothing manages the network here.
    NotManaged,
    /// No static address is waiting (the state as read).
    NotPending(String),
    /// The page confirmed another address than the one waiting.
    OtherId {
        /// The id waiting.
        pending: String,
    },
    /// The state could not be read or the confirmation written.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Display for ConfirmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfirmError::NotManaged => {
                f.write_str("the network is not managed by vigil here (no board scripts)")
            }
            ConfirmError::NotPending(s) => {
                write!(f, "no network address is waiting for confirmation ({s})")
            }
            ConfirmError::OtherId { pending } => write!(
                f,
                "the address waiting for confirmation is another one (id {pending}); reload the page"
            ),
            ConfirmError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for ConfirmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfirmError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Confirms the static address waiting: writes its id to
/// `<data_dir>/network-confirmed` (atomically), and answers the id. `seen`
/// is the id the page showed, if it sent one. The deadline is the script's
/// to judge (on its monotonic clock, under its lock): a confirmation that
/// arrives as it expires is either seen by the script's last check or
/// answered `NotPending` once the state says `reverted`.
pub fn confirm(state: &Path, data_dir: &Path, seen: Option<&str>) -> Result<String, ConfirmError> {
    let current = match read_state(state) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ConfirmError::NotManaged),
        Err(source) => {
            return Err(ConfirmError::Io {
                path: state.to_owned(),
                source,
            })
        }
        Ok(s) => s,
    };
    let id = match current {
        Some(State::Pending { id, .. }) => id,
        Some(State::Static { id }) if confirmed(data_dir, &id) => return Ok(id),
        other => {
            let shown = other.map_or_else(|| "unreadable".to_owned(), |s| format!("{s:?}"));
            return Err(ConfirmError::NotPending(shown));
        }
    };
    if seen.is_some_and(|s| s != id) {
        return Err(ConfirmError::OtherId { pending: id });
    }
    let path = data_dir.join(CONFIRMED);
    crate::settings::write_atomic(&path, format!("{id}\n").as_bytes())
        .map_err(|source| ConfirmError::Io { path, source })?;
    log::info!("network: static address {id} confirmed from the page");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[test]
    fn state_lines_parse_and_junk_does_not() {
        assert_eq!(State::parse("dhcp"), Some(State::Dhcp));
        assert_eq!(
            State::parse("static-pending 1700000000 0a1b2c3d4e5f"),
            Some(State::Pending {
                deadline: 1_700_000_000,
                id: "0a1b2c3d4e5f".into()
            })
        );
        assert_eq!(
            State::parse("reverted 0a1b"),
            Some(State::Reverted { id: "0a1b".into() })
        );
        for junk in [
            "",
            "static",
            "static zz",
            "static-pending soon 0a",
            "dhcp 1",
            "up",
        ] {
            assert_eq!(State::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_pending_address_is_confirmed_only_when_it_is_the_one_waiting() {
        let dir = TempDir::new("network-confirm");
        let state = dir.0.join("vigil-network");
        let data = dir.0.join("data");
        // No state file: a host.
        assert_eq!(status(&state, &data, 0), Status::default());
        assert!(matches!(
            confirm(&state, &data, None),
            Err(ConfirmError::NotManaged)
        ));
        std::fs::write(&state, "dhcp\n").unwrap();
        assert_eq!(status(&state, &data, 0).state, Some("dhcp"));
        assert!(matches!(
            confirm(&state, &data, None),
            Err(ConfirmError::NotPending(_))
        ));
        std::fs::write(&state, "static-pending 1000 abc123\n").unwrap();
        let s = status(&state, &data, 970);
        assert_eq!(
            (s.state, s.seconds_left),
            (Some("static-pending"), Some(30))
        );
        assert!(matches!(
            confirm(&state, &data, Some("fff")),
            Err(ConfirmError::OtherId { .. })
        ));
        assert!(
            !data.join(CONFIRMED).exists(),
            "nothing written when refused"
        );
        assert_eq!(confirm(&state, &data, Some("abc123")).unwrap(), "abc123");
        assert_eq!(
            std::fs::read_to_string(data.join(CONFIRMED)).unwrap(),
            "abc123\n"
        );
        // Confirmed: shown as static before the script notices; again: the same.
        let s = status(&state, &data, 999);
        assert_eq!((s.state, s.seconds_left), (Some("static"), None));
        std::fs::write(&state, "static abc123\n").unwrap();
        assert_eq!(confirm(&state, &data, None).unwrap(), "abc123");
        std::fs::write(&state, "reverted abc123\n").unwrap();
        assert!(matches!(
            confirm(&state, &data, None),
            Err(ConfirmError::NotPending(_))
        ));
        std::fs::write(&state, "garbage").unwrap();
        let s = status(&state, &data, 0);
        assert!(s.managed && s.state.is_none() && s.error.is_some());
    }
}
