//! The state document of an update (`GET /api/update`, the page's card,
//! the `update` events): what the updater holds, read in one lock.

use super::record::LastResult;
use super::{Phase, Updater};
use serde::Serialize;
use std::time::Instant;

/// The state document (`GET /api/update`, the page's card, the stream).
#[derive(Clone, Debug, Serialize)]
pub struct View {
    /// Whether this box takes updates.
    pub available: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
    /// The slot running now.
    pub slot: Option<String>,
    /// The version running now.
    pub version: String,
    /// The other slot: its name, the version installed there and whether
    /// the boot loader would still boot it.
    pub other: Option<OtherSlot>,
    /// `idle`, `receiving`, `installing`, `installed`, `failed`.
    pub phase: &'static str,
    /// Bytes of the upload received so far.
    pub received: Option<u64>,
    /// Bytes the upload declared.
    pub total: Option<u64>,
    /// How far the upload or the install is.
    pub percent: Option<u8>,
    /// What RAUC is doing now.
    pub message: Option<String>,
    /// The error of a failed upload or install.
    pub error: Option<String>,
    /// The version installed and waiting for the reboot.
    pub installed: Option<String>,
    /// Seconds to the automatic reboot (none: the admin's button).
    pub reboot_in_s: Option<u64>,
    /// The first boot of a new system: what it still has to show, and the
    /// seconds left.
    pub probation: Option<ProbationView>,
    /// How the last update ended.
    pub last: Option<LastResult>,
    /// The largest bundle taken.
    pub max_bundle: u64,
}

/// The slot that is not running.
#[derive(Clone, Debug, Serialize)]
pub struct OtherSlot {
    /// Its boot name (`B`).
    pub slot: String,
    /// The version installed there, when RAUC installed one.
    pub version: Option<String>,
    /// The boot loader's verdict on it.
    pub good: Option<bool>,
    /// When it was installed (RAUC's timestamp).
    pub installed: Option<String>,
}

/// A probation under way.
#[derive(Clone, Debug, Serialize)]
pub struct ProbationView {
    /// What the new system has not shown yet.
    pub waiting_for: Vec<String>,
    /// Seconds until it is marked bad.
    pub seconds_left: u64,
}

impl Updater {
    /// The state document at `now`.
    pub fn view(&self, now: Instant) -> View {
        let s = self.lock();
        let status = s.status.as_ref();
        let mut v = View {
            available: s.unavailable.is_none(),
            reason: s.unavailable.clone(),
            slot: status.map(|st| st.booted.clone()),
            version: self.version.clone(),
            other: status.and_then(|st| st.other_slot()).map(|o| OtherSlot {
                slot: o.bootname.clone(),
                version: o.version.clone(),
                good: o.boot_good,
                installed: o.installed.clone(),
            }),
            phase: "idle",
            received: None,
            total: None,
            percent: None,
            message: None,
            error: None,
            installed: None,
            reboot_in_s: None,
            probation: None,
            last: s.last.clone(),
            max_bundle: self.config.max_bundle,
        };
        match &s.phase {
            Phase::Idle => {}
            Phase::Receiving { received, total } => {
                v.phase = "receiving";
                v.received = Some(*received);
                v.total = Some(*total);
                v.percent = Some((received * 100 / (*total).max(1)) as u8);
            }
            Phase::Installing { percent, message } => {
                v.phase = "installing";
                v.percent = Some(*percent);
                v.message = Some(message.clone());
            }
            Phase::Installed { version, reboot_at } => {
                v.phase = "installed";
                v.installed = Some(version.clone());
                v.reboot_in_s = reboot_at.map(|t| t.saturating_duration_since(now).as_secs());
            }
            Phase::Failed { error } => {
                v.phase = "failed";
                v.error = Some(error.clone());
            }
        }
        if let (Some(g), None) = (&s.gate, s.verdict) {
            if g.is_fresh() {
                v.probation = Some(ProbationView {
                    waiting_for: s.missing.clone(),
                    seconds_left: g.deadline().saturating_duration_since(now).as_secs(),
                });
            }
        }
        v
    }
}
