//! The system tests: the real `vigil` binary driven from outside, one module
//! per area. One test binary rather than one per file: each test binary links
//! the whole crate graph with LTO (about a minute per binary on 2 cores), and
//! `make system` runs them one at a time anyway (`--test-threads=1`: several
//! measure the RSS and threads of a running vigil).

mod access;
mod board_system;
mod budget;
mod camera_probe;
mod cli_config;
mod detect_cli;
mod disk_stall;
mod events_out;
mod first_boot;
mod hardware;
mod network_confirm;
mod pipeline_files;
mod record;
mod record_upload;
mod rtsp;
mod settings;
mod settings_page;
mod system_env;
mod update;
mod v4l2_absent;
mod version_stamp;
mod web;
mod web_guard;
mod web_memory;
