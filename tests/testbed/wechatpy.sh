#!/usr/bin/env bash
# wechatpy, an independent WeChat/WeCom client, in a virtualenv this script manages
# (keyed by the pinned requirements under $UNDERSTUDY_CACHE): the e2e tests use its WeCom crypto and
# client to check that what understudy speaks is what WeCom's other clients speak.
# Nothing runs; start only records the interpreter's path.
source "$(dirname "$0")/lib.sh"

REQUIREMENTS="$TESTBED_SCRIPTS/wechatpy-requirements.txt"
# Keyed by the pinned set: a changed pin is a new virtualenv.
VENV="$UNDERSTUDY_CACHE/wechatpy-$(sha256sum "$REQUIREMENTS" | cut -c1-12)"
PY="$VENV/bin/python"

case "${1:-}" in
  install)
    if [[ -f $VENV/.installed ]]; then exit 0; fi
    log "wechatpy ($(grep -m1 ^wechatpy== "$REQUIREMENTS")) into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --disable-pip-version-check --no-deps -r "$REQUIREMENTS"
    "$PY" -c 'import wechatpy, wechatpy.work.crypto, wechatpy.work.client' \
      || die "wechatpy does not import from $VENV"
    touch "$VENV/.installed"
    ;;
  start)
    [[ -f $VENV/.installed ]] || die "wechatpy is not installed; run $0 install"
    write_env wechatpy "TESTBED_WECHATPY_PYTHON=$PY"
    ;;
  stop) ;;
  *) die "usage: $0 install|start|stop" ;;
esac
