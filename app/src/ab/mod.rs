//! The A/B boot state (which root slot U-Boot boots, and how many attempts
//! each has left), read and changed from Linux: RAUC's custom boot-loader
//! backend (`vigil ab`, called as /usr/sbin/vigil-ab), vigil-supervise's
//! mark-good and, through [`AbStore`], vigil's own update code.
//!
//! The boot script (board/common/boot.cmd) takes an attempt on every boot,
//! so the state is rewritten on every boot and a power cut can land in the
//! middle of a write. It is therefore kept twice, `vigil-ab.0` and
//! `vigil-ab.1` on the FAT boot partition, each a checksummed block in
//! U-Boot's environment format ([`format`]). Every writer writes copy 0
//! completely, then copy 1; every reader takes copy 0 if its checksum holds,
//! else copy 1, else the legacy text file `vigil-ab.env` of older images,
//! else the defaults. A cut during copy 0's write leaves copy 1 holding the
//! old state; a cut during copy 1's leaves copy 0 holding the new one: what
//! is read is always a state that was written (docs/decisions/0009-ab-state.md).
//!
//! Public API: [`Slot`], [`BootState`], [`AbStore`] (`open`, `read`,
//! `update`), [`Origin`] and [`booted_slot`]; errors are [`AbError`].

mod error;
pub mod format;
mod mount;
mod store;

pub use error::AbError;
pub use store::{AbStore, Origin};

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The attempts a slot gets when it is made primary or marked good, as the
/// boot script's defaults.
pub const ATTEMPTS: u8 = 3;

/// A root filesystem slot: partition `rootfs_a` or `rootfs_b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `rootfs_a`, RAUC's `rootfs.0`.
    A,
    /// `rootfs_b`, RAUC's `rootfs.1`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

impl FromStr for Slot {
    type Err = AbError;

    fn from_str(s: &str) -> Result<Slot, AbError> {
        match s {
            "A" => Ok(Slot::A),
            "B" => Ok(Slot::B),
            _ => Err(AbError::UnknownSlot(s.to_string())),
        }
    }
}

/// What the boot script reads: the slots in order of preference
/// (`BOOT_ORDER`) and the attempts each has left (`BOOT_A_LEFT`,
/// `BOOT_B_LEFT`). A slot with attempts left is "good".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    order: [Slot; 2],
    left: [u8; 2],
}

impl Default for BootState {
    /// The boot script's defaults: A first, 3 attempts each.
    fn default() -> BootState {
        BootState {
            order: [Slot::A, Slot::B],
            left: [ATTEMPTS; 2],
        }
    }
}

impl BootState {
    /// The slot the boot script will try next: the first in the order with
    /// attempts left (none: both are bad, and the script resets both).
    pub fn primary(&self) -> Option<Slot> {
        self.order.into_iter().find(|&s| self.is_good(s))
    }

    /// Whether `slot` has attempts left.
    pub fn is_good(&self, slot: Slot) -> bool {
        self.attempts_left(slot) > 0
    }

    /// The boot attempts `slot` has left.
    pub fn attempts_left(&self, slot: Slot) -> u8 {
        self.left[slot.index()]
    }

    /// The slots in order of preference.
    pub fn order(&self) -> [Slot; 2] {
        self.order
    }

    /// `slot` gets its attempts back (RAUC's mark-good; vigil once healthy).
    pub fn mark_good(&mut self, slot: Slot) {
        self.left[slot.index()] = ATTEMPTS;
    }

    /// `slot` gets no attempts (RAUC's mark-bad).
    pub fn mark_bad(&mut self, slot: Slot) {
        self.left[slot.index()] = 0;
    }

    /// `slot` is tried first, with fresh attempts (after an install).
    pub fn set_primary(&mut self, slot: Slot) {
        self.order = [slot, slot.other()];
        self.mark_good(slot);
    }
}

/// The slot running now, from `rauc.slot=` on /proc/cmdline (the boot
/// script puts it there).
pub fn booted_slot() -> Result<Slot, AbError> {
    booted_slot_from(Path::new("/proc/cmdline"))
}

/// [`booted_slot`] from another file (tests; `VIGIL_AB_CMDLINE`).
pub fn booted_slot_from(cmdline: &Path) -> Result<Slot, AbError> {
    let text = std::fs::read_to_string(cmdline).map_err(|e| AbError::io(cmdline, e))?;
    // The last one counts, as for every kernel parameter.
    let value = text
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("rauc.slot="))
        .next_back()
        .ok_or(AbError::NotBooted)?;
    value.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[test]
    fn operations_as_the_backend_had_them() {
        let mut s = BootState::default();
        assert_eq!(s.primary(), Some(Slot::A));
        s.set_primary(Slot::B);
        assert_eq!(
            (s.order(), s.primary()),
            ([Slot::B, Slot::A], Some(Slot::B))
        );
        s.mark_bad(Slot::B);
        assert!(!s.is_good(Slot::B));
        assert_eq!(s.primary(), Some(Slot::A));
        s.mark_bad(Slot::A);
        assert_eq!(s.primary(), None);
        s.mark_good(Slot::A);
        assert_eq!(s.attempts_left(Slot::A), ATTEMPTS);
        assert_eq!(s.order(), [Slot::B, Slot::A]);
    }

    #[test]
    fn slot_names() {
        assert_eq!("B".parse::<Slot>().unwrap(), Slot::B);
        assert_eq!(Slot::A.to_string(), "A");
        assert!(matches!("a".parse::<Slot>(), Err(AbError::UnknownSlot(s)) if s == "a"));
    }

    #[test]
    fn booted_slot_from_the_command_line() {
        let dir = TempDir::new("ab-cmdline");
        let file = dir.0.join("cmdline");
        let read = |text: &str| {
            std::fs::write(&file, text).unwrap();
            booted_slot_from(&file)
        };
        assert_eq!(
            read("console=ttyAMA0 root=PARTLABEL=rootfs_b rauc.slot=B quiet\n").unwrap(),
            Slot::B
        );
        assert!(matches!(
            read("console=ttyAMA0 quiet\n"),
            Err(AbError::NotBooted)
        ));
        assert!(matches!(read("rauc.slot=C\n"), Err(AbError::UnknownSlot(s)) if s == "C"));
        assert!(matches!(
            booted_slot_from(&dir.0.join("missing")),
            Err(AbError::Io { .. })
        ));
    }
}
