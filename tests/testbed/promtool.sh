#!/usr/bin/env bash
# promtool (from Debian's prometheus package) for checking the operator's /metrics
# output and alerting rules: `promtool check metrics`, `promtool check rules`,
# `promtool test rules`. Nothing runs; start only records the path.
source "$(dirname "$0")/lib.sh"

PROMTOOL=/usr/bin/promtool

case "${1:-}" in
  install)
    apt_install prometheus
    [[ -x $PROMTOOL ]] || die "$PROMTOOL missing after installing prometheus"
    log "promtool: $("$PROMTOOL" --version 2>&1 | head -n 1)"
    ;;
  start)
    [[ -x $PROMTOOL ]] || die "promtool is not installed; run $0 install"
    write_env promtool "TESTBED_PROMTOOL=$PROMTOOL"
    ;;
  stop) ;;
  *) die "usage: $0 install|start|stop" ;;
esac
