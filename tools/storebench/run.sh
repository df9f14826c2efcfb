#!/bin/sh
# Reproduces the sled-vs-redb event-store measurement of decision 0006:
# 200,000 events per variant (EVENTS to change), then a reopen with compaction.
# usage: tools/storebench/run.sh [WORK_DIR]   (default: a fresh temp dir)
set -e
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd ../.. && pwd)/target/storebench}"
cargo build --release -q
B=$CARGO_TARGET_DIR/release/storebench
W=${1:-$(mktemp -d)}
EV=${EVENTS:-200000}
one() { # name, then run args
  d=$W/db-$1; shift
  rm -rf "$d"
  $B run --dir "$d" --events "$EV" "$@"
  $B reopen --dir "$d" --compact "$@"
  echo
}
echo "== $(date -u) host: $(nproc) cpus, $(uname -r), $(rustc --version)"
echo "== load: $(cat /proc/loadavg)"
one sled8    --store sled --cache 8
one sled64   --store sled --cache 64
one redbdef  --store redb
one redb8    --store redb --cache 8
one redb8n16 --store redb --cache 8 --durability none16
echo "== load after: $(cat /proc/loadavg)"
