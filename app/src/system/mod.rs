//! The box around vigil on a board: host name, time zone, NTP servers and
//! the network, as `[system]` configures them (issue 17, items 7 and 8).
//!
//! vigil does not apply these itself: it runs unprivileged in spirit and
//! restarts on every save, while the network must outlive it. The board's
//! script `/usr/sbin/vigil-system` (rootfs-overlay) applies them at boot and
//! before each start of vigil, reading the validated values through
//! `vigil system-env` ([`env`]). A new static address is kept only once
//! the owner confirms it from the page, else the script goes back to DHCP
//! (the router pattern); [`network`] reads the script's state for the page
//! and writes the confirmation.

pub mod env;
pub mod network;
