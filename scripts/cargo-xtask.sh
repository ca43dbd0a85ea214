#!/usr/bin/env bash
# Runs `cargo xtask "$@"` on a machine where cargo may not be on PATH yet.
# This is the only shell the pipeline needs: finding cargo cannot be done by
# the xtask, which cargo builds. Everything else lives in xtask/.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo-xtask.sh: cargo is not installed; install Rust (https://rustup.rs), then rerun" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
exec cargo xtask "$@"
