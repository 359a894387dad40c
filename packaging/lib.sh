# shellcheck shell=bash
# Shared by packaging/image.sh and tests/image/check.sh. Sourced, never executed.
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/testbed/lib.sh"
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Where `make image` writes and `make image-check` reads (override: another copy to check).
IMAGE_DIR=${IMAGE_DIR:-$REPO_ROOT/target/image}

# crate_version: the version in Cargo.toml's [package] table; the image's tag.
crate_version() {
  sed -n '/^\[package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$REPO_ROOT/Cargo.toml" | head -n1
}
