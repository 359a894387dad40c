# shellcheck shell=bash
# Shared by packaging/image.sh and tests/image/check.sh. Sourced, never executed.
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/testbed/lib.sh"
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Which image: `release` (default; `make image`, `make image-check`: the release binary, in
# target/image, tagged VERSION) or `debug` (`make image-test`: the debug binary `cargo test`
# built, in target/image-debug, tagged VERSION-debug, so it is never taken for a release).
IMAGE_PROFILE=${IMAGE_PROFILE:-release}
case $IMAGE_PROFILE in
  release) IMAGE_TAG_SUFFIX="" ;;
  debug) IMAGE_TAG_SUFFIX=-debug ;;
  *) die "IMAGE_PROFILE=$IMAGE_PROFILE: release or debug" ;;
esac
# Where the image is written and read (override: another copy to check).
IMAGE_DIR=${IMAGE_DIR:-$REPO_ROOT/target/image${IMAGE_TAG_SUFFIX}}

# crate_version: the version in Cargo.toml's [package] table; the image's tag.
crate_version() {
  sed -n '/^\[package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$REPO_ROOT/Cargo.toml" | head -n1
}

# image_tag: the image's tag, the crate version (plus -debug for the debug image).
image_tag() {
  printf '%s%s\n' "$(crate_version)" "$IMAGE_TAG_SUFFIX"
}
