//! Whether a boot is good enough to keep: the health gate that replaces
//! the supervisor's 30-second timer.
//!
//! A timer commits a system that starts and then does nothing useful (Home
//! Assistant OS's `rauc-good` after a sleep did exactly that). Here the
//! first boot of a new system must show, within `update.probation`, what
//! the old one showed: every camera that streamed before the update streams
//! again (all configured cameras when none did), the detector has run, the
//! store has committed and the web server has answered its own request.
//! Anything missing at the deadline is the reason the slot is marked bad,
//! in words the page shows. An ordinary boot of a proven system only waits
//! for the web server: a camera that is down that day is not the system's
//! fault, and the boot loader's attempt counter still catches a system that
//! never gets that far.
//!
//! Pure logic: the caller gathers [`Health`] once a second and carries out
//! the [`Verdict`].

use super::record::Pending;
use std::time::{Duration, Instant};

/// What the running system shows now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Cameras in state `streaming`.
    pub streaming: Vec<String>,
    /// Some camera's frames went through the detector.
    pub detector_ran: bool,
    /// The store committed a write transaction.
    pub store_committed: bool,
    /// The web server answered `/api/health` over TCP.
    pub web_answered: bool,
}

/// What to do with the boot.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not yet: what is still missing.
    Wait(Vec<String>),
    /// Mark the booted slot good.
    Good,
    /// Mark it bad and reboot into the other one: why.
    Bad(String),
}

/// The gate for one boot.
#[derive(Clone, Debug)]
pub struct Gate {
    /// The update this boot must prove, if it is the first of a new system.
    fresh: Option<Pending>,
    /// Cameras that must stream (fresh boots only).
    cameras: Vec<String>,
    started: Instant,
    limit: Duration,
}

impl Gate {
    /// The gate for a boot started at `started`: `fresh` is the pending
    /// update when this boot is its first, `configured` the cameras of the
    /// running configuration, `limit` the probation.
    pub fn new(
        fresh: Option<Pending>,
        configured: &[String],
        started: Instant,
        limit: Duration,
    ) -> Gate {
        let cameras = match &fresh {
            None => Vec::new(),
            Some(p) => {
                // A camera removed from the configuration since cannot be
                // asked for; with none left, every configured one is.
                let kept: Vec<String> = p
                    .streaming
                    .iter()
                    .filter(|c| configured.contains(c))
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    configured.to_vec()
                } else {
                    kept
                }
            }
        };
        Gate {
            fresh,
            cameras,
            started,
            limit,
        }
    }

    /// Whether this boot is the first of a new system.
    pub fn is_fresh(&self) -> bool {
        self.fresh.is_some()
    }

    /// When the probation ends.
    pub fn deadline(&self) -> Instant {
        self.started + self.limit
    }

    /// The verdict on `health` at `now`.
    pub fn judge(&self, health: &Health, now: Instant) -> Verdict {
        let mut missing = Vec::new();
        if self.fresh.is_some() {
            let down: Vec<&str> = self
                .cameras
                .iter()
                .filter(|c| !health.streaming.contains(c))
                .map(String::as_str)
                .collect();
            if !down.is_empty() {
                missing.push(format!("cameras did not stream ({})", down.join(", ")));
            }
            if !self.cameras.is_empty() && !health.detector_ran {
                missing.push("the detector did not run".to_owned());
            }
            if !health.store_committed {
                missing.push("the event store did not commit".to_owned());
            }
        }
        if !health.web_answered {
            missing.push("the web server did not answer".to_owned());
        }
        if missing.is_empty() {
            return Verdict::Good;
        }
        // `>=`: a deadline passed during a stall or a clock jump still ends
        // the probation (monotonic time; the wall clock is not trusted).
        if self.fresh.is_some() && now >= self.deadline() {
            return Verdict::Bad(format!(
                "{} within {} s",
                missing.join("; "),
                self.limit.as_secs()
            ));
        }
        Verdict::Wait(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(streaming: &[&str]) -> Pending {
        Pending {
            from_slot: "A".into(),
            from_version: "0.2.0".into(),
            to_slot: "B".into(),
            to_version: "0.3.0".into(),
            streaming: streaming.iter().map(|s| s.to_string()).collect(),
            installed_unix: 0,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn healthy(streaming: &[&str]) -> Health {
        Health {
            streaming: names(streaming),
            detector_ran: true,
            store_committed: true,
            web_answered: true,
        }
    }

    #[test]
    fn a_new_system_must_stream_every_camera_that_streamed_before() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(120);
        let g = Gate::new(
            Some(pending(&["door", "yard"])),
            &names(&["door", "yard", "garage"]),
            t0,
            limit,
        );
        assert!(g.is_fresh());
        // garage did not stream before: it is not asked for.
        assert_eq!(g.judge(&healthy(&["door", "yard"]), t0), Verdict::Good);
        match g.judge(&healthy(&["door"]), t0 + Duration::from_secs(119)) {
            Verdict::Wait(m) => assert_eq!(m, vec!["cameras did not stream (yard)"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            g.judge(&healthy(&["door"]), t0 + limit),
            Verdict::Bad("cameras did not stream (yard) within 120 s".into())
        );
        // A clock that jumped far past the deadline ends it too.
        assert!(matches!(
            g.judge(&healthy(&[]), t0 + Duration::from_secs(100_000)),
            Verdict::Bad(_)
        ));
    }

    #[test]
    fn every_other_sign_is_required_and_named() {
        let t0 = Instant::now();
        let g = Gate::new(
            Some(pending(&[])),
            &names(&["door"]),
            t0,
            Duration::from_secs(5),
        );
        let none = Health::default();
        assert_eq!(
            g.judge(&none, t0 + Duration::from_secs(5)),
            Verdict::Bad(
                "cameras did not stream (door); the detector did not run; the event store did not commit; the web server did not answer within 5 s"
                    .into()
            )
        );
        for broken in [
            Health {
                detector_ran: false,
                ..healthy(&["door"])
            },
            Health {
                store_committed: false,
                ..healthy(&["door"])
            },
            Health {
                web_answered: false,
                ..healthy(&["door"])
            },
        ] {
            assert!(
                matches!(g.judge(&broken, t0), Verdict::Wait(_)),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn with_no_camera_configured_the_detector_is_not_asked_for() {
        let t0 = Instant::now();
        let g = Gate::new(Some(pending(&["gone"])), &[], t0, Duration::from_secs(5));
        let h = Health {
            detector_ran: false,
            ..healthy(&[])
        };
        assert_eq!(g.judge(&h, t0), Verdict::Good);
    }

    #[test]
    fn an_ordinary_boot_waits_for_the_web_server_only_and_is_never_bad() {
        let t0 = Instant::now();
        let g = Gate::new(None, &names(&["door"]), t0, Duration::from_secs(5));
        assert!(!g.is_fresh());
        let late = t0 + Duration::from_secs(3600);
        let h = Health {
            web_answered: false,
            ..Health::default()
        };
        assert!(matches!(g.judge(&h, late), Verdict::Wait(_)));
        let h = Health {
            web_answered: true,
            ..Health::default()
        };
        assert_eq!(g.judge(&h, late), Verdict::Good);
    }
}
