//! Helpers for the system tests: start the real `vigil` binary, follow its
//! log, read its resource use from /proc, make media with ffmpeg, and run
//! the external peers (GStreamer RTSP server, a disconnecting TCP proxy).
//!
//! Every test binary under `tests/` uses these; they assume `make test` has
//! built `target/release/vigil` and fetched the model and sample clip.
#![deny(missing_docs)]

pub mod http;
pub mod media;
pub mod mosquitto;
pub mod peers;
pub mod process;
pub mod proxy;
pub mod receiver;
