#!/usr/bin/env bash
# etcd v3.6 for the test bed's kube-apiserver, built from Go modules.
#   install  build go.etcd.io/etcd/server/v3 (wrapper module tests/testbed/go/etcd) into
#            $UNDERSTUDY_CACHE/etcd-$ETCD_VERSION/bin/etcd (skipped when present)
#   start    one member on 127.0.0.1 (free client and peer ports), fresh data dir each
#            start, --unsafe-no-fsync; writes env.d/etcd.env (TESTBED_ETCD_URL)
#   stop     stop the recorded pid
#   status   print whether it runs and where
# Usage: etcd.sh install|start|stop|status
source "$(dirname "$0")/lib.sh"

ETCD_VERSION=v3.6.16 # keep in step with tests/testbed/go/etcd/go.mod
ETCD_DIR="$UNDERSTUDY_CACHE/etcd-$ETCD_VERSION"
ETCD_BIN="$ETCD_DIR/bin/etcd"
WRAPPER="$TESTBED_SCRIPTS/go/etcd"
DATA="$TESTBED_DIR/data/etcd"      # member data, wiped on every fresh start
STATE="$TESTBED_DIR/data/etcd.url" # client URL of the running member
INSTALL_LOG="$TESTBED_DIR/logs/etcd-install.log"

install() {
  if [[ -x $ETCD_BIN ]]; then
    log "etcd $ETCD_VERSION already installed: $ETCD_BIN"
    return 0
  fi
  command -v go >/dev/null || die "go is required to build etcd"
  mkdir -p "$ETCD_DIR/bin"
  exec 9>"$ETCD_DIR/.install.lock"
  flock 9 # one build at a time; a concurrent install may have finished meanwhile
  if [[ -x $ETCD_BIN ]]; then
    log "etcd $ETCD_VERSION installed by a concurrent run"
    return 0
  fi
  rm -rf "$ETCD_DIR/bin"/.build.* # leftovers of an interrupted build
  local start=$SECONDS
  TMP_BIN="$ETCD_DIR/bin/.build.etcd.$$"
  trap 'rm -f "$TMP_BIN"' EXIT
  log "building etcd $ETCD_VERSION (log: $INSTALL_LOG)"
  echo "== $(date -u +%FT%TZ) build etcd $ETCD_VERSION with $(go version)" >>"$INSTALL_LOG"
  if ! (cd "$WRAPPER" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" \
          -o "$TMP_BIN" go.etcd.io/etcd/server/v3) >>"$INSTALL_LOG" 2>&1; then
    tail -n 30 "$INSTALL_LOG" >&2
    die "etcd build failed (log: $INSTALL_LOG)"
  fi
  echo "== build took $((SECONDS - start))s" >>"$INSTALL_LOG"
  "$TMP_BIN" --version >>"$INSTALL_LOG" 2>&1 || die "built etcd does not run"
  mv -f "$TMP_BIN" "$ETCD_BIN" # atomic: a half-built binary never has the final name
  trap - EXIT
  log "etcd $ETCD_VERSION installed in $((SECONDS - start))s: $ETCD_BIN"
}

healthy() { # healthy URL: /health answers {"health":"true",...}
  curl -fsS --max-time 2 "$1/health" | grep -q '"health":"true"'
}

# Condition for wait_for: stop waiting as soon as etcd is healthy or has exited.
healthy_or_dead() { ! is_running etcd || healthy "$1"; }

write_etcd_env() { write_env etcd "TESTBED_ETCD_URL=$1"; }

start() {
  if is_running etcd && [[ -f $STATE ]]; then
    local url; url=$(cat "$STATE")
    log "etcd already running at $url"
    write_etcd_env "$url"
    return 0
  fi
  [[ -x $ETCD_BIN ]] || die "etcd not installed; run $0 install"
  stop_pid etcd # a stale pid file of a dead process

  local cport pport
  cport=$(free_port)
  pport=$(free_port)
  while [[ $pport == "$cport" ]]; do pport=$(free_port); done
  local client="http://127.0.0.1:$cport" peer="http://127.0.0.1:$pport"

  rm -rf "$DATA" "$STATE"
  mkdir -p "$DATA"
  chmod 700 "$DATA"
  log "starting etcd on $client (peer $peer)"
  start_bg etcd "$ETCD_BIN" \
    --name testbed \
    --data-dir "$DATA" \
    --listen-client-urls "$client" \
    --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" \
    --initial-advertise-peer-urls "$peer" \
    --initial-cluster "testbed=$peer" \
    --initial-cluster-state new \
    --unsafe-no-fsync=true

  # Stop waiting early if the process died; decide afterwards.
  wait_for 60 "etcd health at $client" healthy_or_dead "$client" || true
  if ! is_running etcd || ! healthy "$client"; then
    tail -n 30 "$TESTBED_DIR/logs/etcd.log" >&2 || true
    stop_pid etcd
    die "etcd did not become healthy (log: $TESTBED_DIR/logs/etcd.log)"
  fi
  echo "$client" >"$STATE"
  write_etcd_env "$client"
  log "etcd up at $client"
}

stop() {
  stop_pid etcd
  rm -f "$STATE" "$TESTBED_DIR/env.d/etcd.env"
}

status() {
  if is_running etcd && [[ -f $STATE ]]; then
    echo "etcd running (pid $(cat "$TESTBED_DIR/pids/etcd.pid")) at $(cat "$STATE")"
  else
    echo "etcd not running"; return 1
  fi
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
