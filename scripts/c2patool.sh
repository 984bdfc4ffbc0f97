#!/usr/bin/env bash
# c2patool, the C2PA project's command-line reader, as a second and independent reader of our
# Content Credentials in the tests (c2pa-python is the first; both wrap c2pa-rs, but c2patool is
# built here from its own crate and release, from crates.io, and parses our files on its own).
#
#   scripts/c2patool.sh build    build .cache/c2patool/bin/c2patool (pinned release, its own
#                                Cargo.lock) with the machine's Rust; reused once built
#
# Not fatal from `make test`: without Rust the other tests run and tests/test_c2patool.py says
# what is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=0.27.22  # the newest release that builds with Rust 1.95 (0.28 needs 1.96)
DIR=${BLOCKIMAGE_C2PATOOL_DIR:-$ROOT/.cache/c2patool}
BIN=$DIR/bin/c2patool

log() { echo "c2patool.sh: $*" >&2; }

build() {
  if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then return; fi
  command -v cargo >/dev/null || { log "Rust (cargo) is needed to build c2patool (https://rustup.rs)"; exit 1; }
  log "building c2patool $VERSION from crates.io into $DIR (about 15 minutes on 2 cores, once)"
  cargo install --quiet --locked --root "$DIR" "c2patool@$VERSION"
}

case "${1:-}" in
  build) build ;;
  *) echo "usage: $0 build" >&2; exit 2 ;;
esac
