# vigil: build, run and test on this machine.
#
#   make run    fetch the model and a sample clip, build, run the appliance
#   make test   install test dependencies, build, run the whole test suite
#
# Everything downloaded lands in $(VIGIL_CACHE_DIR), outside git.

SHELL := /bin/bash
export VIGIL_CACHE_DIR ?= $(HOME)/.cache/vigil
CARGO ?= cargo
MODEL := $(VIGIL_CACHE_DIR)/models/ssd_mobilenet_v2_coco.pb
SAMPLE := $(VIGIL_CACHE_DIR)/media/bikes.mp4
VIGIL := target/release/vigil
LISTEN ?= 127.0.0.1:8080

.PHONY: all deps model sample build run test system lint bench clean help

all: build

help:
	@sed -n '2,6p' Makefile

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

clean:
	$(CARGO) clean
