#!/usr/bin/env bash
# System packages the Rust build needs (librdkafka is compiled from source by rdkafka-sys
# with cmake; its TLS/OAUTHBEARER support needs the OpenSSL and curl headers). Idempotent.
source "$(dirname "$0")/lib.sh"
apt_install cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev build-essential
command -v cargo >/dev/null || die "cargo is not on PATH: install Rust (rustup) first"
