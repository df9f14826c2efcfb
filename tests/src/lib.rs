//! The system-test harness: write vigil's configuration with a typed
//! builder ([`config`]), start the real `vigil` binary and follow its log
//! and /proc figures ([`process`]), read its status, cameras and metrics over
//! HTTP ([`api`], [`http`]) and the memory budget it printed ([`budget`]),
//! stop it; inject faults from outside it ([`fault`]); make media with ffmpeg ([`media`]) and
//! run the external peers (GStreamer RTSP server, a disconnecting TCP proxy,
//! an HTTP receiver, mosquitto).
//!
//! Every system test (the modules of `tests/tests/system/`) uses these instead of its own copies, so
//! a new system test starts from `Config::new()...write(dir)` and
//! `Vigil::serve`. vigil is closed by default, so the harness claims every
//! vigil it serves ([`login`]: the setup code, a fixed test password) and
//! [`http`] sends that session with every request to its address. They assume `make test` has built `target/release/vigil`
//! (or `VIGIL_BIN` names a binary) and fetched the model and sample clip.
#![deny(missing_docs)]

pub mod api;
pub mod budget;
pub mod config;
pub mod fault;
pub mod http;
pub mod login;
pub mod media;
pub mod mosquitto;
pub mod peers;
pub mod process;
pub mod proxy;
pub mod receiver;
