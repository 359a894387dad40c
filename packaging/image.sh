#!/usr/bin/env bash
# `make image`: the operator's OCI image, from this checkout, without a container engine or
# a registry. Idempotent and re-runnable; needs root (buildah with its own vfs storage).
#   1. installs buildah, umoci, skopeo and ca-certificates (Debian packages) when missing
#   2. builds the release binary (`cargo build --release`; nothing to do when it is fresh);
#      with IMAGE_PROFILE=debug (`make image-test`) takes the debug binary instead,
#      target/debug/understudy as `cargo test` built it (the Makefile runs
#      `cargo test --no-run` first, a no-op after `make unit`)
#   3. assembles the build context in target/image/context: the binary (debug info
#      stripped, symbols kept), the shared libraries `ldd` lists for it, Debian's CA
#      bundle, /etc/passwd and /etc/group with the non-root user 65532, their copyright files
#   4. `buildah bud -f packaging/Containerfile` (FROM scratch), in a throw-away vfs storage
#      under target/image/, timestamps from the last commit (SOURCE_DATE_EPOCH overrides),
#      so the same commit gives the same image digest
#   5. writes the image twice, tagged with the crate version:
#        target/image/oci                          OCI image layout, tag VERSION
#        target/image/understudy-VERSION.oci.tar   the same as an oci-archive (`skopeo copy`)
#      (IMAGE_PROFILE=debug: target/image-debug/oci and
#      target/image-debug/understudy-VERSION-debug.oci.tar, tag VERSION-debug)
# `make image-check` (tests/image/check.sh) runs the image's entrypoint from these files.
# shellcheck source=packaging/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "make image needs root (buildah without user namespaces)"
cd "$REPO_ROOT"
start=$(date +%s)

apt_install buildah umoci skopeo ca-certificates

VERSION=$(crate_version)
TAG=$(image_tag)
OUT=$IMAGE_DIR
CTX=$OUT/context
STORE=$OUT/.buildah
LOCAL_NAME=localhost/understudy:$TAG

if [[ $IMAGE_PROFILE == release ]]; then
  command -v cargo >/dev/null || die "cargo is not on PATH: install Rust (rustup) first"
  "$TESTBED_SCRIPTS/build-deps.sh"
  log "cargo build --release (understudy $VERSION)"
  cargo build --release --bin understudy
  BIN=$REPO_ROOT/target/release/understudy
else
  BIN=$REPO_ROOT/target/debug/understudy
  [[ -x $BIN ]] || die "no $BIN: run \`make unit\` (cargo test) first"
  log "the debug binary $BIN (understudy $VERSION, $(du -h "$BIN" | cut -f1))"
fi

# --- 3. the build context -------------------------------------------------------------------
rm -rf "$CTX"
mkdir -p "$CTX"/rootfs/{usr/local/bin,usr/lib/x86_64-linux-gnu,usr/lib64,etc/ssl/certs,usr/lib/ssl,tmp} \
  "$CTX"/home/nonroot
R=$CTX/rootfs
# Debian's merged /usr: /lib and /lib64 are links into /usr.
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
chmod 1777 "$R/tmp"

strip --strip-debug -o "$R/usr/local/bin/understudy" "$BIN"

# Every library the dynamic loader resolves for the binary, at the path it resolves it to.
copyright_pkgs=(ca-certificates)
while read -r lib; do
  dir=$(realpath "$(dirname "$lib")")
  mkdir -p "$R$dir"
  cp -L "$lib" "$R$dir/$(basename "$lib")"
  # dpkg knows a file by the path its package ships it at (/lib/… or /usr/lib/…).
  pkg=$({ dpkg -S "$lib" || dpkg -S "$(realpath "$lib")"; } 2>/dev/null | head -n1 | cut -d: -f1) || pkg=""
  [[ -n $pkg ]] && copyright_pkgs+=("$pkg")
done < <(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[[ -e $R/lib64/ld-linux-x86-64.so.2 ]] || die "the dynamic loader is not in the image (ldd $BIN)"

# CA certificates for rdkafka (OpenSSL's default paths) and SSL_CERT_FILE.
cp -L /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
ln -s /etc/ssl/certs "$R/usr/lib/ssl/certs"
ln -s /etc/ssl/certs/ca-certificates.crt "$R/usr/lib/ssl/cert.pem"

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:understudy:/home/nonroot:/sbin/nologin
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"

for pkg in $(printf '%s\n' "${copyright_pkgs[@]}" | sort -u); do
  if [[ -f /usr/share/doc/$pkg/copyright ]]; then
    mkdir -p "$R/usr/share/doc/$pkg"
    cp /usr/share/doc/"$pkg"/copyright "$R/usr/share/doc/$pkg/"
  fi
done

# --- 4. build -------------------------------------------------------------------------------
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
rm -rf "$STORE"
trap 'rm -rf "$STORE"' EXIT
bh() { buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver vfs "$@"; }

log "buildah bud -f packaging/Containerfile ($LOCAL_NAME)"
bh bud --quiet --isolation chroot --format oci --timestamp "$epoch" \
  --build-arg VERSION="$TAG" --build-arg REVISION="$revision" \
  -f packaging/Containerfile -t "$LOCAL_NAME" "$CTX" >/dev/null

# --- 5. outputs -----------------------------------------------------------------------------
archive=$OUT/understudy-$TAG.oci.tar
rm -rf "$OUT/oci" "$OUT"/understudy-*.oci.tar
bh push --quiet "$LOCAL_NAME" "oci:$OUT/oci:$TAG"
bh push --quiet "$LOCAL_NAME" "oci-archive:$archive:$TAG"

digest=$(skopeo inspect --format '{{.Digest}}' "oci:$OUT/oci:$TAG")
log "image: $archive ($(du -h "$archive" | cut -f1), $digest) and $OUT/oci:$TAG"
log "done in $(( $(date +%s) - start )) s"
