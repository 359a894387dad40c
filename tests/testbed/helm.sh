#!/usr/bin/env bash
# helm v3.19 (built against Kubernetes 1.34) for the test bed; nothing runs.
#   install  go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION into
#            $UNDERSTUDY_CACHE/helm-$HELM_VERSION/bin/helm (skipped when present), with the
#            Makefile's ldflags so the default .Capabilities.KubeVersion is 1.34 (not 1.20)
#   start    write env.d/helm.env (TESTBED_HELM)
#   stop     nothing to stop; removes env.d/helm.env
#   status   print the version
# Usage: helm.sh install|start|stop|status
source "$(dirname "$0")/lib.sh"

HELM_VERSION=v3.19.5 # newest v3.19 patch the module proxy serves
KUBE_MAJOR=1 KUBE_MINOR=34 # helm v3.19 uses k8s.io/client-go v0.34
HELM_DIR="$UNDERSTUDY_CACHE/helm-$HELM_VERSION"
HELM_BIN="$HELM_DIR/bin/helm"
INSTALL_LOG="$TESTBED_DIR/logs/helm-install.log"

# check_kube_version: `helm template` renders .Capabilities.KubeVersion as v1.34.x.
check_kube_version() {
  local bin=$1 chart got
  chart=$(mktemp -d)
  mkdir -p "$chart/templates"
  printf 'apiVersion: v2\nname: probe\nversion: 0.1.0\n' >"$chart/Chart.yaml"
  printf 'kube: "{{ .Capabilities.KubeVersion.Version }}"\n' >"$chart/templates/probe.yaml"
  got=$("$bin" template probe "$chart" | sed -n 's/^kube: "\(.*\)"$/\1/p') || true
  rm -rf "$chart"
  [[ $got == "v$KUBE_MAJOR.$KUBE_MINOR."* ]] || die "helm reports KubeVersion '$got', expected v$KUBE_MAJOR.$KUBE_MINOR.x"
}

install() {
  if [[ -x $HELM_BIN ]]; then
    log "helm $HELM_VERSION already installed: $HELM_BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is required to build helm"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=$KUBE_MAJOR -X $pkg.k8sVersionMinor=$KUBE_MINOR"
  done
  mkdir -p "$HELM_DIR/bin"
  exec 9>"$HELM_DIR/.install.lock"
  flock 9 # one build at a time; a concurrent install may have finished meanwhile
  if [[ -x $HELM_BIN ]]; then
    log "helm $HELM_VERSION installed by a concurrent run"
    return 0
  fi
  rm -rf "$HELM_DIR/bin"/.build.* # leftovers of an interrupted build
  # go install into a temporary GOBIN, then rename into place.
  TMP_DIR=$(mktemp -d "$HELM_DIR/bin/.build.XXXXXX")
  trap 'rm -rf "$TMP_DIR"' EXIT
  local start=$SECONDS
  log "building helm $HELM_VERSION (log: $INSTALL_LOG)"
  echo "== $(date -u +%FT%TZ) go install helm $HELM_VERSION with $(go version)" >>"$INSTALL_LOG"
  if ! (cd / && GOBIN="$TMP_DIR" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
          "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >>"$INSTALL_LOG" 2>&1; then
    tail -n 30 "$INSTALL_LOG" >&2
    die "helm build failed (log: $INSTALL_LOG)"
  fi
  echo "== build took $((SECONDS - start))s" >>"$INSTALL_LOG"
  "$TMP_DIR/helm" version >>"$INSTALL_LOG" 2>&1 || die "built helm does not run"
  check_kube_version "$TMP_DIR/helm"
  mv -f "$TMP_DIR/helm" "$HELM_BIN"
  rm -rf "$TMP_DIR"
  trap - EXIT
  log "helm $HELM_VERSION installed in $((SECONDS - start))s: $HELM_BIN"
}

start() {
  [[ -x $HELM_BIN ]] || die "helm not installed; run $0 install"
  write_env helm "TESTBED_HELM=$HELM_BIN"
}

stop() { rm -f "$TESTBED_DIR/env.d/helm.env"; }

status() {
  [[ -x $HELM_BIN ]] || { echo "helm not installed"; return 1; }
  echo "helm $("$HELM_BIN" version --short) at $HELM_BIN"
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
