# vigil: build, run and test on this machine.
#
#   make run    fetch the model and a sample clip, build, run the appliance
#   make test   install test dependencies, build, run the whole test suite
#   make cross       aarch64 release binary (Debian's rustc-web) for the RK3588 board
#   make test-cross  the library's unit tests built for aarch64, run under qemu-aarch64-static
#
# Everything downloaded lands in $(VIGIL_CACHE_DIR), outside git.

SHELL := /bin/bash
export VIGIL_CACHE_DIR ?= $(HOME)/.cache/vigil
CARGO ?= cargo
MODEL := $(VIGIL_CACHE_DIR)/models/ssd_mobilenet_v2_coco.pb
SAMPLE := $(VIGIL_CACHE_DIR)/media/bikes.mp4
VIGIL := target/release/vigil
LISTEN ?= 127.0.0.1:8080

.PHONY: all deps model sample build run test system lint bench clean help \
	deps-cross deps-test-cross cross test-cross

all: build

help:
	@sed -n '2,8p' Makefile

deps:
	@bash scripts/install-deps.sh

model: $(MODEL)
$(MODEL):
	@bash scripts/fetch-model.sh

sample: $(SAMPLE)
$(SAMPLE):
	@bash scripts/fetch-sample.sh

build: deps
	$(CARGO) build --release -p vigil

# The appliance on this machine: the sample street clip, the CPU detector.
run: deps model sample build
	mkdir -p $(VIGIL_CACHE_DIR)/data
	$(VIGIL) run --camera $(SAMPLE) --data-dir $(VIGIL_CACHE_DIR)/data --listen $(LISTEN) --status-every 10

# The whole suite: unit tests of the library, then black-box system tests
# that run the real binary, then formatting and lints.
test: deps model sample
	$(CARGO) test --release -p vigil
	$(MAKE) system lint

# Black-box tests of the release binary, one at a time: several measure the
# RSS and threads of a running vigil and must not share the 2 cores.
system: deps model sample
	$(CARGO) build --release -p vigil
	$(CARGO) test --release -p vigil-system-tests -- --test-threads=1

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Figures, not assertions: decode, glue and inference throughput on the
# sample clip, CPU-seconds per frame, peak RSS against the budget.
bench: deps model sample
	$(CARGO) bench -p vigil --bench pipeline

# --- aarch64 cross build ----------------------------------------------------
# The rustup toolchain on PATH has no aarch64 std, so these use Debian's
# rustc-web/cargo-web (/usr/bin/rustc, /usr/bin/cargo) and its arm64 std. The
# linker and the test runner (qemu-aarch64-static) are set for this target only
# in .cargo/config.toml. Output goes to target/aarch64-unknown-linux-gnu/; the
# build scripts and proc macros it compiles for the host carry rustc-web's
# version in their hashes, so the host build never rebuilds because of it.
# CC_/CXX_ name the aarch64 compilers for the cc crate (openh264's C++ and NEON
# assembly, tract-linalg's kernels) even when CC or CXX is set for the host.
CROSS_TARGET := aarch64-unknown-linux-gnu
CROSS_CARGO := RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
	CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ /usr/bin/cargo
CROSS_VIGIL = $(or $(CARGO_TARGET_DIR),target)/$(CROSS_TARGET)/release/vigil
# Unit tests skipped under emulation: reset_keeps_the_decoder_and_does_not_grow_memory
# re-executes its own test binary (current_exe) to measure RSS alone, and an
# aarch64 ELF started from inside qemu-user only runs through a qemu-aarch64
# binfmt_misc handler, which containers usually lack (skipped only then).
CROSS_TEST_SKIP := $(if $(wildcard /proc/sys/fs/binfmt_misc/qemu-aarch64),,\
	--skip decode::openh264::tests::reset_keeps_the_decoder_and_does_not_grow_memory)

deps-cross:
	@bash scripts/install-deps.sh cross

# The unit tests also need ffmpeg/ffprobe, darknet's dog.jpg and the GStreamer
# RTSP server (media, rtsp), the model and the sample clip.
deps-test-cross:
	@bash scripts/install-deps.sh cross media rtsp

cross: deps-cross
	$(CROSS_CARGO) build --release --target $(CROSS_TARGET) -p vigil
	@printf '%s: %s bytes\n' '$(CROSS_VIGIL)' "$$(stat -c %s '$(CROSS_VIGIL)')"
	@file '$(CROSS_VIGIL)'

# The whole library suite, release like `make test`. Emulated, one SSD inference
# takes about 10 s; the suite runs in about 3.5 minutes on 2 cores.
test-cross: deps-test-cross model sample
	$(CROSS_CARGO) test --release --target $(CROSS_TARGET) -p vigil --lib -- $(CROSS_TEST_SKIP)

clean:
	$(CARGO) clean
