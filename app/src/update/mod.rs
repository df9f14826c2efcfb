//! System updates: a signed RAUC bundle in, a new system booted, judged and
//! kept or rolled back (issue 18; docs/ota.md).
//!
//! One component with a small interface, so the page's upload and a later
//! fleet client install the same way: [`Updater::begin`] checks a declared
//! size against `update.max_bundle` and the free space before a byte is
//! written, [`upload::Upload`] puts the body on the data partition one
//! chunk at a time, [`Updater::install`] hands the file to RAUC (`rauc`,
//! one process per install) and keeps its progress, and [`Updater::judge`]
//! carries out the health gate of `probation` on every boot: the first boot
//! of a new system is marked good only when it shows what the old one did,
//! otherwise bad, and the box reboots into the old one. `record` keeps what
//! must survive those reboots.
//!
//! One update at a time: a second upload while one is received, installed
//! or waiting for its reboot is refused (`Busy`), never queued. The state
//! changes under one mutex and bumps [`Updater::generation`], which the web
//! publisher watches to send progress on the event stream.
//!
//! **Invariant:** update knows nothing of the web, the pipeline or the
//! configuration file; the caller gathers [`probation::Health`] and says
//! when to reboot.

mod error;
pub mod probation;
pub mod rauc;
pub mod record;
pub mod upload;
mod view;

pub use error::UpdateError;
pub use view::{OtherSlot, ProbationView, View};

use crate::config::UpdateConfig;
use crate::disk::Disk;
use probation::{Gate, Health, Verdict};
use rauc::Rauc;
use record::{LastResult, Pending, Records};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Free space an upload must leave on the data partition, so events,
/// snapshots and clips keep room while a bundle is on disk.
pub const RESERVE: u64 = 64 << 20;

/// What the RAUC client process costs while it runs (it is vigil's child,
/// so the board's cgroup counts it). vigil logs the client's measured peak
/// after each install ([`rauc::Rauc::install`]); make test-ota prints it:
/// 12,736 KiB for `rauc install` of a 119 MiB bundle on the emulated board
/// (2026-12-08, VmHWM, shared libraries included), rounded up.
pub const RAUC_CLIENT_BYTES: u64 = 16 << 20;

/// RAUC's client on the boards.
pub const DEFAULT_RAUC: &str = "/usr/bin/rauc";

/// How long vigil waits at its start for RAUC's service to answer.
pub const STATUS_PATIENCE: Duration = Duration::from_secs(90);

/// How much longer than the probation the board's supervisor waits for a
/// vigil that cannot even start (the model load and a slow first stream).
pub const SUPERVISOR_GRACE: Duration = Duration::from_secs(60);

/// Where an update is.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Idle,
    Receiving {
        received: u64,
        total: u64,
    },
    Installing {
        percent: u8,
        message: String,
    },
    Installed {
        version: String,
        reboot_at: Option<Instant>,
    },
    Failed {
        error: String,
    },
}

struct State {
    phase: Phase,
    status: Option<rauc::Status>,
    unavailable: Option<String>,
    last: Option<LastResult>,
    /// This boot's gate, until judged.
    gate: Option<Gate>,
    /// What the gate still waits for.
    missing: Vec<String>,
    /// This boot's verdict, once carried out: marked good or bad.
    verdict: Option<bool>,
}

/// The updater of one box.
pub struct Updater {
    config: UpdateConfig,
    records: Records,
    rauc: Rauc,
    disk: Arc<Disk>,
    version: String,
    state: Mutex<State>,
    generation: AtomicU64,
    reboot_requested: AtomicBool,
}

impl Updater {
    /// The updater for the system `version`, keeping its files under
    /// `data_dir/update`; nothing runs until [`Updater::start`].
    pub fn new(config: UpdateConfig, data_dir: &Path, disk: Arc<Disk>, version: &str) -> Updater {
        Updater {
            rauc: Rauc::new(config.rauc.as_deref().unwrap_or(Path::new(DEFAULT_RAUC))),
            config,
            records: Records::new(data_dir.join("update")),
            disk,
            version: version.to_owned(),
            state: Mutex::new(State {
                phase: Phase::Idle,
                status: None,
                unavailable: Some("RAUC has not answered yet".into()),
                last: None,
                gate: None,
                missing: Vec::new(),
                verdict: None,
            }),
            generation: AtomicU64::new(0),
            reboot_requested: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Bumped on every change of the state document.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the slots from RAUC and this boot's place in an update: the
    /// first boot of a new system gets the full gate, a boot of the old
    /// system after a failed update records why, any other boot waits for
    /// the web server only. `configured` are the running configuration's
    /// cameras; the probation counts from `started`.
    pub async fn start(&self, configured: Vec<String>, started: Instant) {
        let status = self.first_status().await;
        let records = self.records.clone();
        let read = self
            .disk
            .run(move || {
                // An upload or install cut short by a power cut left its
                // file: it would take the room the next upload needs.
                records.remove_leftovers();
                let pending = records.pending();
                let last = records.last();
                let reason = records.take_supervisor_reason();
                (pending, last, reason)
            })
            .await;
        let (pending, last, reason) = match read {
            Ok(r) => r,
            Err(e) => (Err(e.into()), Ok(None), Ok(None)),
        };
        let pending = pending.unwrap_or_else(|e| {
            log::warn!("update: {e}; ignoring the pending update");
            None
        });
        let last = last.unwrap_or_else(|e| {
            log::warn!("update: {e}");
            None
        });
        let reason = reason.unwrap_or_else(|e| {
            log::warn!("update: {e}");
            None
        });
        // The guard is scoped: none may live across the awaits below.
        let record_failure = {
            let mut fresh = None;
            let mut record_failure = None;
            let mut s = self.lock();
            s.last = last;
            match status {
                Ok(status) => {
                    s.unavailable = None;
                    if let Some(p) = pending {
                        if p.to_slot == status.booted {
                            log::info!(
                                "update: first boot of {} on slot {}; probation {} s",
                                p.to_version,
                                p.to_slot,
                                self.config.probation.as_secs()
                            );
                            fresh = Some(p);
                        } else {
                            // The new system never committed: it marked itself
                            // bad, the supervisor gave up on it, or the boot
                            // loader ran out of attempts.
                            let why = match (&s.last, reason) {
                                (Some(l), _) if !l.ok && l.to_version == p.to_version => None,
                                (_, Some(r)) => Some(r),
                                _ => Some(format!(
                                    "slot {} did not come up; the boot loader went back to slot {}",
                                    p.to_slot, status.booted
                                )),
                            };
                            record_failure = Some((p, why, status.booted.clone()));
                        }
                    }
                    s.status = Some(status);
                }
                Err(e) => {
                    log::info!("update: not available: {e}");
                    s.unavailable = Some(e.to_string());
                }
            }
            if s.unavailable.is_none() {
                s.gate = Some(Gate::new(
                    fresh,
                    &configured,
                    started,
                    self.config.probation,
                ));
            }
            record_failure
        };
        if let Some((p, why, booted)) = record_failure {
            let last = match why {
                Some(why) => LastResult {
                    ok: false,
                    message: format!(
                        "update to {} failed: {why}; running {} on slot {booted}",
                        p.to_version, self.version
                    ),
                    from_version: p.from_version.clone(),
                    to_version: p.to_version.clone(),
                    unix: unix_now(),
                },
                // The new system wrote its own verdict before it rebooted:
                // add where the box is now.
                None => {
                    let mut l = self.lock().last.clone().unwrap_or_else(|| LastResult {
                        ok: false,
                        from_version: p.from_version.clone(),
                        to_version: p.to_version.clone(),
                        message: format!("update to {} failed", p.to_version),
                        unix: unix_now(),
                    });
                    if !l.message.contains("; running ") {
                        l.message =
                            format!("{}; running {} on slot {booted}", l.message, self.version);
                    }
                    l
                }
            };
            log::warn!("{}", last.message);
            self.save_last(last, true).await;
        }
        self.changed();
    }

    /// RAUC's first answer. Its service starts with the board, in parallel
    /// with vigil: a client that runs but finds no service yet is asked
    /// again for [`STATUS_PATIENCE`]; a client that is not there at all (a
    /// host) is not waited for.
    async fn first_status(&self) -> Result<rauc::Status, UpdateError> {
        if self.config.rauc.is_none() && !booted_by_ab_script() {
            return Err(UpdateError::Unavailable(
                "this system was not started by the A/B boot script (no rauc.slot= on the kernel command line)".into(),
            ));
        }
        let t0 = Instant::now();
        loop {
            match self.rauc.status().await {
                Ok(s) => return Ok(s),
                Err(e @ (UpdateError::Spawn { .. } | UpdateError::Unavailable(_))) => {
                    return Err(e)
                }
                Err(e) if t0.elapsed() >= STATUS_PATIENCE => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    }

    /// Admits an upload of `len` bytes (`None`: not declared) when `free`
    /// bytes are free on the data partition: checked before a byte is
    /// written. The upload is then [`Updater::receive`]d.
    pub fn begin(&self, len: Option<u64>, free: u64) -> Result<u64, UpdateError> {
        let mut s = self.lock();
        if let Some(why) = &s.unavailable {
            return Err(UpdateError::Unavailable(why.clone()));
        }
        match s.phase {
            Phase::Receiving { .. } => {
                return Err(UpdateError::Busy("another bundle is being uploaded"))
            }
            Phase::Installing { .. } => return Err(UpdateError::Busy("an update is installing")),
            Phase::Installed { .. } => {
                return Err(UpdateError::Busy(
                    "an update is installed and waits for the reboot",
                ))
            }
            Phase::Idle | Phase::Failed { .. } => {}
        }
        if s.gate.as_ref().is_some_and(Gate::is_fresh) && s.verdict.is_none() {
            return Err(UpdateError::Busy(
                "this system is still on probation after an update",
            ));
        }
        let len = len.ok_or(UpdateError::LengthRequired)?;
        if len > self.config.max_bundle {
            return Err(UpdateError::TooLarge {
                len,
                max: self.config.max_bundle,
            });
        }
        if len.saturating_add(RESERVE) > free {
            return Err(UpdateError::NoSpace {
                len,
                free,
                reserve: RESERVE,
            });
        }
        s.phase = Phase::Receiving {
            received: 0,
            total: len,
        };
        drop(s);
        self.changed();
        Ok(len)
    }

    /// The directory uploads are written to.
    pub fn dir(&self) -> &Path {
        self.records.dir()
    }

    /// The disk thread uploads are written on.
    pub fn disk(&self) -> &Arc<Disk> {
        &self.disk
    }

    /// Progress of the admitted upload.
    pub fn received(&self, received: u64) {
        let mut s = self.lock();
        if let Phase::Receiving { received: r, total } = &mut s.phase {
            // One message per percent: the stream is not flooded.
            let step = (*total / 100).max(1);
            let before = *r / step;
            *r = received;
            let moved = received / step != before;
            drop(s);
            if moved {
                self.changed();
            }
        }
    }

    /// The admitted upload failed: the error for the page.
    pub fn failed(&self, e: &UpdateError) {
        self.lock().phase = Phase::Failed {
            error: e.to_string(),
        };
        self.changed();
    }

    /// Installs the uploaded `bundle` with RAUC, then removes it. On
    /// success the update is recorded as pending (with the cameras in
    /// `streaming` now) and the reboot is due after `update.reboot_after`.
    pub async fn install(&self, bundle: PathBuf, streaming: Vec<String>) {
        self.lock().phase = Phase::Installing {
            percent: 0,
            message: "Starting".into(),
        };
        self.changed();
        let result = self
            .rauc
            .install(&bundle, |percent, message| {
                let mut s = self.lock();
                s.phase = Phase::Installing {
                    percent,
                    message: message.to_owned(),
                };
                drop(s);
                self.changed();
            })
            .await;
        if let Ok(peak) = &result {
            log::info!(
                "update: RAUC's client peaked at {} KiB RSS (the budget's update line counts {} KiB)",
                peak >> 10,
                RAUC_CLIENT_BYTES >> 10
            );
        }
        let b = bundle.clone();
        let _ = self.disk.run(move || std::fs::remove_file(&b)).await;
        let result = match result {
            Ok(_) => self.installed(streaming).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn!("update: install failed: {e}");
            // RAUC marks the target slot bad before it writes: a failure
            // part-way leaves it so, and the page must not go on calling
            // it good.
            if let Ok(status) = self.rauc.status().await {
                self.lock().status = Some(status);
            }
            self.failed(&e);
        }
    }

    /// After RAUC succeeded: the new slot's version from RAUC, the pending
    /// record, the countdown.
    async fn installed(&self, streaming: Vec<String>) -> Result<(), UpdateError> {
        let status = self.rauc.status().await?;
        let booted = status.booted.clone();
        let other = status
            .other_slot()
            .ok_or_else(|| UpdateError::Answer("no other root filesystem slot".into()))?;
        let pending = Pending {
            from_slot: booted,
            from_version: self.version.clone(),
            to_slot: other.bootname.clone(),
            to_version: other.version.clone().unwrap_or_default(),
            streaming,
            installed_unix: unix_now(),
        };
        let records = self.records.clone();
        let deadline = self.config.probation + SUPERVISOR_GRACE;
        let p = pending.clone();
        self.disk
            .run(move || records.set_pending(&p, deadline))
            .await??;
        log::info!(
            "update: {} installed into slot {}; reboot to run it",
            pending.to_version,
            pending.to_slot
        );
        let after = self.config.reboot_after;
        let mut s = self.lock();
        s.status = Some(status);
        s.phase = Phase::Installed {
            version: pending.to_version,
            reboot_at: (!after.is_zero()).then(|| Instant::now() + after),
        };
        drop(s);
        self.changed();
        Ok(())
    }

    /// The admin's reboot button: only with an installed update.
    pub fn reboot_now(&self) -> Result<(), UpdateError> {
        if !matches!(self.lock().phase, Phase::Installed { .. }) {
            return Err(UpdateError::Busy("no update waits for a reboot"));
        }
        self.reboot_requested.store(true, Ordering::Release);
        self.changed();
        Ok(())
    }

    /// Stops the countdown; the reboot then waits for the button.
    pub fn cancel_reboot(&self) -> Result<(), UpdateError> {
        let mut s = self.lock();
        match &mut s.phase {
            Phase::Installed { reboot_at, .. } => *reboot_at = None,
            _ => return Err(UpdateError::Busy("no reboot is counting down")),
        }
        drop(s);
        self.changed();
        Ok(())
    }

    /// Whether vigil should stop now for the board to reboot: the button,
    /// the countdown, or a new system that failed its probation.
    pub fn reboot_due(&self, now: Instant) -> bool {
        if self.reboot_requested.load(Ordering::Acquire) {
            return true;
        }
        let s = self.lock();
        if let Phase::Installed {
            reboot_at: Some(t), ..
        } = s.phase
        {
            if now >= t {
                self.reboot_requested.store(true, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Whether this boot still waits for its verdict.
    pub fn judging(&self) -> bool {
        let s = self.lock();
        s.gate.is_some() && s.verdict.is_none()
    }

    /// Whether this boot is the first of a new system, still on probation.
    pub fn on_probation(&self) -> bool {
        let s = self.lock();
        s.verdict.is_none() && s.gate.as_ref().is_some_and(Gate::is_fresh)
    }

    /// One look at `health` at `now`: carries out a verdict once.
    pub async fn judge(&self, health: &Health, now: Instant) {
        let (verdict, fresh) = {
            let mut s = self.lock();
            let Some(gate) = &s.gate else { return };
            if s.verdict.is_some() {
                return;
            }
            let fresh = gate.is_fresh();
            let v = gate.judge(health, now);
            if let Verdict::Wait(missing) = v {
                if missing != s.missing {
                    s.missing = missing;
                    drop(s);
                    self.changed();
                }
                return;
            }
            // Decided: not judged again, whatever marking answers.
            s.verdict = Some(v == Verdict::Good);
            (v, fresh)
        };
        let pending = if fresh {
            let records = self.records.clone();
            match self.disk.run(move || records.pending()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    log::error!("update: {e}");
                    None
                }
                Err(e) => {
                    log::error!("update: {e}");
                    None
                }
            }
        } else {
            None
        };
        match (verdict, pending) {
            (Verdict::Good, pending) => match self.rauc.mark_booted(true).await {
                Ok(()) => match pending {
                    Some(p) => {
                        let last = LastResult {
                            ok: true,
                            message: format!(
                                "updated from {} to {}; slot {} marked good",
                                p.from_version, p.to_version, p.to_slot
                            ),
                            from_version: p.from_version,
                            to_version: p.to_version,
                            unix: unix_now(),
                        };
                        log::info!("update: {}", last.message);
                        self.save_last(last, true).await;
                    }
                    None => log::info!("update: this slot is marked good"),
                },
                Err(e) => {
                    log::error!("update: cannot mark this slot good: {e}");
                    // A new system that cannot mark itself good cannot be
                    // updated again either: it goes back like a failed one.
                    if let Some(p) = pending {
                        self.fail(p, format!("RAUC could not mark the slot good ({e})"))
                            .await;
                    }
                }
            },
            (Verdict::Bad(why), Some(p)) => self.fail(p, why).await,
            (Verdict::Bad(why), None) => log::error!("update: {why}"),
            (Verdict::Wait(_), _) => {}
        }
        self.changed();
    }

    /// A new system failed: recorded for the old one to show, the slot
    /// marked bad, the reboot requested.
    async fn fail(&self, p: Pending, why: String) {
        let last = LastResult {
            ok: false,
            message: format!("update to {} failed: {why}", p.to_version),
            from_version: p.from_version,
            to_version: p.to_version,
            unix: unix_now(),
        };
        log::error!(
            "{}; marking slot {} bad and rebooting",
            last.message,
            p.to_slot
        );
        // The pending record stays: the old system's vigil finds it and
        // adds where the box is running now.
        self.save_last(last, false).await;
        if let Err(e) = self.rauc.mark_booted(false).await {
            log::error!("update: cannot mark this slot bad ({e}); the boot loader's attempts will");
        }
        self.lock().verdict = Some(false);
        self.reboot_requested.store(true, Ordering::Release);
        self.changed();
    }

    async fn save_last(&self, last: LastResult, clear_pending: bool) {
        let records = self.records.clone();
        let l = last.clone();
        let saved = self
            .disk
            .run(move || {
                records.set_last(&l)?;
                if clear_pending {
                    records.clear_pending()?;
                }
                Ok::<(), UpdateError>(())
            })
            .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("update: {e}"),
            Err(e) => log::error!("update: {e}"),
        }
        self.lock().last = Some(last);
    }
}

/// Whether the boot script named the slot it booted (`rauc.slot=`), as it
/// does on the boards and the emulated one.
fn booted_by_ab_script() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .is_ok_and(|c| c.split_whitespace().any(|w| w.starts_with("rauc.slot=")))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
