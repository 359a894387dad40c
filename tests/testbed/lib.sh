# shellcheck shell=bash
# Shared helpers for the test bed scripts. Sourced, never executed.
#
# Layout:
#   UNDERSTUDY_CACHE  installed tools, keyed by version, outside the clone
#                     (default ~/.cache/understudy); survives `make clean`.
#   TESTBED_DIR       runtime state of one running test bed (default <repo>/target/testbed):
#                     data/<component>/, logs/<component>.log, pids/<component>.pid,
#                     env.d/<component>.env, and env (all env.d files concatenated).
set -euo pipefail

TESTBED_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TESTBED_SCRIPTS/../.." && pwd)"
UNDERSTUDY_CACHE="${UNDERSTUDY_CACHE:-$HOME/.cache/understudy}"
TESTBED_DIR="${TESTBED_DIR:-$REPO_ROOT/target/testbed}"
export UNDERSTUDY_CACHE TESTBED_DIR

mkdir -p "$UNDERSTUDY_CACHE" "$TESTBED_DIR"/{data,logs,pids,env.d}

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: run CMD until it succeeds; fail after TIMEOUT_S.
# Polls every 0.2 s; this is a condition wait, not a fixed sleep.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# rotate_log FILE: a log past LOG_ROTATE_BYTES (default 256 MiB) becomes FILE.1 (the
# previous FILE.1 is dropped), so a test bed that is started again and again on one
# machine keeps at most two such files per service. Services append to their logs and
# never rotate them themselves (the broker logs every topic it creates at INFO).
rotate_log() {
  local f=$1 limit=${LOG_ROTATE_BYTES:-268435456}
  if [[ -f $f ]] && (( $(stat -c %s "$f") > limit )); then
    mv -f "$f" "$f.1"
  fi
}

# start_bg NAME CMD...: start CMD in the background with its output in logs/NAME.log
# and its pid in pids/NAME.pid. `down.sh` stops exactly these pids. The service gets no
# file descriptor of the caller beyond stdio: a long-lived server must not hold, say, a
# lock file the caller's caller waits on (`flock FILE make testbed`).
start_bg() {
  local name=$1; shift
  rotate_log "$TESTBED_DIR/logs/$name.log"
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec ${fd}>&-" 2>/dev/null
    done
    exec nohup "$@" >>"$TESTBED_DIR/logs/$name.log" 2>&1 </dev/null
  ) &
  echo $! >"$TESTBED_DIR/pids/$name.pid"
}

# is_running NAME: the process recorded for NAME is alive.
is_running() {
  local f="$TESTBED_DIR/pids/$1.pid"
  [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# stop_pid NAME: stop the process recorded for NAME (TERM, then KILL after 10 s).
stop_pid() {
  local f="$TESTBED_DIR/pids/$1.pid" pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# write_env NAME KEY=VALUE...: the component's lines of the env file the tests read.
write_env() {
  local name=$1; shift
  printf '%s\n' "$@" >"$TESTBED_DIR/env.d/$name.env"
}

# apt_install PKG...: install Debian packages that are missing (idempotent).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  (( ${#missing[@]} == 0 )) && return 0
  log "apt-get install ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  # Keep the packages' own system services (named on :53, haproxy, prometheus on :9090)
  # from starting on a systemd machine: the test bed runs its own instances.
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$guard" >/dev/null
    "${SUDO[@]}" chmod +x "$guard"
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    [[ -n $guard ]] && "${SUDO[@]}" rm -f "$guard"; return 1; }
  [[ -n $guard ]] && "${SUDO[@]}" rm -f "$guard"
  return 0
}
