#!/usr/bin/env bash
# `make image-check`: run the image that `make image` built, without a container engine.
# With IMAGE_PROFILE=debug (`make image-test`): the same checks of the debug image in
# target/image-debug, tagged VERSION-debug.
#   1. the OCI layout target/image/oci has a tag equal to the crate version, which is also
#      the chart's appVersion (the chart's default image tag), and the oci-archive beside it
#      holds the same image (same manifest digest)
#   2. the image config's user is numeric and non-root and is the chart's runAsUser;
#      its entrypoint is an absolute path; its version label is its tag (VERSION, or
#      VERSION-debug for the debug image)
#   3. `umoci unpack` the image into a bundle, then run the entrypoint from the image config
#      (Entrypoint, Env, WorkingDir, User) as a runtime would: chroot into the unpacked
#      rootfs, as that user, with only that environment:
#        ENTRYPOINT --version        prints "understudy VERSION"
#        ENTRYPOINT operator --help  documents --listen and --health-listen
#        ENTRYPOINT operator         without a cluster: exits 1 naming the kube config it
#                                    looked for in the user's home (from the image's passwd)
#      The rootfs holds no shell: the binary is what runs.
# Needs root (umoci unpack keeps the image's ownership; chroot). Writes only a temp dir.
# shellcheck source=packaging/lib.sh
source "$(dirname "$0")/../../packaging/lib.sh"

[[ $(id -u) -eq 0 ]] || die "make image-check needs root (umoci unpack, chroot)"
apt_install umoci skopeo
cd "$REPO_ROOT"

VERSION=$(crate_version)
TAG=$(image_tag)
LAYOUT=$IMAGE_DIR/oci
ARCHIVE=$IMAGE_DIR/understudy-$TAG.oci.tar
if [[ $IMAGE_PROFILE == release ]]; then make_image="make image"; else make_image="make image-test"; fi
[[ -d $LAYOUT && -f $ARCHIVE ]] || die "no image $TAG in $IMAGE_DIR: run \`$make_image\` first"
log "checking the image $TAG in $IMAGE_DIR"

# Checks report and go on; what the later checks need dies explicitly.
set +e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0 nfailed=0
fail() { log "FAIL: $*"; failed=1; nfailed=$((nfailed + 1)); }
ok() { log "ok: $*"; }
passed=0
check() { if [[ $1 == 0 ]]; then ok "$2"; passed=$((passed + 1)); else fail "$2${3:+: $3}"; fi; }

# --- 1. tags --------------------------------------------------------------------------------
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/understudy/Chart.yaml)
[[ $app_version == "$VERSION" ]]
check $? "the chart's appVersion ($app_version) is the crate version ($VERSION)"

layout_digest=$(skopeo inspect --format '{{.Digest}}' "oci:$LAYOUT:$TAG" 2>"$tmp/err") ||
  die "the OCI layout has no tag $TAG: $(cat "$tmp/err")"
archive_digest=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$ARCHIVE:$TAG" 2>"$tmp/err") ||
  die "$ARCHIVE has no image tagged $TAG: $(cat "$tmp/err")"
[[ $layout_digest == "$archive_digest" ]]
check $? "oci-archive and OCI layout hold the same image ($layout_digest)" "$archive_digest"

# --- 2. the image config ----------------------------------------------------------------------
skopeo inspect --config "oci:$LAYOUT:$TAG" >"$tmp/config.json" || die "cannot read the image config"
# Files: user, working dir, entrypoint and env (NUL-separated).
python3 - "$tmp/config.json" "$tmp" <<'PY' || die "cannot parse the image config"
import json, sys
cfg = json.load(open(sys.argv[1])).get("config", {})
out = sys.argv[2]
open(out + "/user", "w").write(cfg.get("User", ""))
open(out + "/workdir", "w").write(cfg.get("WorkingDir", "") or "/")
open(out + "/entrypoint", "w").write("".join(a + "\0" for a in cfg.get("Entrypoint") or []))
open(out + "/env", "w").write("".join(e + "\0" for e in cfg.get("Env") or []))
open(out + "/version_label", "w").write((cfg.get("Labels") or {}).get("org.opencontainers.image.version", ""))
PY
user=$(cat "$tmp/user")
workdir=$(cat "$tmp/workdir")
mapfile -d '' entrypoint <"$tmp/entrypoint"
version_label=$(cat "$tmp/version_label")
[[ $version_label == "$TAG" ]]
check $? "the image's org.opencontainers.image.version label is its tag ($TAG)" "label: $version_label"

uid=${user%%:*}
gid=${user#*:}
[[ $user == *:* ]] || gid=$uid
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ && $uid != 0 ]]
check $? "the image runs as a numeric non-root user ($user)" "runAsNonRoot can verify only a numeric, non-zero uid"
chart_uid=$(awk '/^securityContext:/ {s=1} s && /runAsUser:/ {print $2; exit}' charts/understudy/values.yaml)
[[ $uid == "$chart_uid" ]]
check $? "the image user is the chart's securityContext.runAsUser ($chart_uid)" "image: $uid"
(( ${#entrypoint[@]} >= 1 )) && [[ ${entrypoint[0]} == /* ]]
check $? "the entrypoint is an absolute path (${entrypoint[*]:-none})"
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ && ${entrypoint[0]:-} == /* ]] ||
  die "the image config has no numeric user or no absolute entrypoint; not running it"

# --- 3. run the entrypoint from the unpacked image ------------------------------------------
umoci unpack --image "$LAYOUT:$TAG" "$tmp/bundle" >/dev/null || die "umoci unpack failed"
rootfs=$tmp/bundle/rootfs
[[ ! -e $rootfs/bin/sh && ! -e $rootfs/usr/bin/sh ]]
check $? "the image has no shell"
[[ -s $rootfs/etc/ssl/certs/ca-certificates.crt ]]
check $? "the image has the CA bundle"

# run ARGS...: the entrypoint with ARGS as a container runtime starts it: chroot into the
# image's rootfs, chdir to its WorkingDir, drop to its User (no supplementary groups), exec
# with only its Env. (The image has no shell or `env` to do any of this from inside.)
# Bounded by `timeout`: a hang fails the check instead of the run.
run() {
  timeout 60 python3 -c '
import os, sys
rootfs, workdir, uid, gid, env_file, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
env = dict(e.split("=", 1) for e in open(env_file).read().split("\0") if e)
try:
    os.chroot(rootfs)
    os.chdir(workdir)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.execve(argv[0], argv, env)
except OSError as e:
    sys.exit(f"cannot start the entrypoint (WorkingDir {workdir}): {e}")
' "$rootfs" "$workdir" "$uid" "$gid" "$tmp/env" "${entrypoint[@]}" "$@"
}

out=$(run --version 2>&1)
[[ $out == "understudy $VERSION" ]]
check $? "\`${entrypoint[*]} --version\` as $uid:$gid prints \"understudy $VERSION\"" "got: $(tail -n 3 <<<"$out")"

out=$(run operator --help 2>&1)
rc=$?
[[ $rc == 0 && $out == *--listen* && $out == *--health-listen* ]]
check $? "\`${entrypoint[*]} operator --help\` as $uid:$gid documents --listen and --health-listen" \
  "exit $rc: $(head -n 5 <<<"$out")"

# Started for real without a cluster, the operator gets as far as looking for a kube config
# (async runtime, TLS, the user's home from /etc/passwd) and says what is missing: no crash on
# a library or file missing from the image.
home=$(awk -F: -v u="$uid" '$3 == u {print $6}' "$rootfs/etc/passwd")
[[ -n $home ]]
check $? "the image's /etc/passwd has the user $uid ($home)"
out=$(run operator --listen 127.0.0.1:0 --health-listen 127.0.0.1:0 2>&1 </dev/null)
rc=$?
[[ $rc == 1 && $out == *"cannot build a Kubernetes client"* && $out == *"${home:-HOME}/.kube/config"* ]]
check $? "\`operator\` without a cluster says it has no Kubernetes client config (exit $rc)" "$(tail -n 3 <<<"$out")"

log "$passed passed, $nfailed failed"
(( failed == 0 ))
