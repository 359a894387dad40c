#!/usr/bin/env bash
# Debian's prometheus package: promtool for checking the operator's /metrics output and
# alerting rules (`promtool check metrics`, `promtool check rules`, `promtool test
# rules`), and the prometheus server that the alerts e2e test (tests/e2e/alerts.rs)
# starts per test, scraping a real operator with the chart's rules. Nothing runs here;
# start only records the paths.
source "$(dirname "$0")/lib.sh"

PROMTOOL=/usr/bin/promtool
PROMETHEUS=/usr/bin/prometheus

case "${1:-}" in
  install)
    apt_install prometheus
    [[ -x $PROMTOOL ]] || die "$PROMTOOL missing after installing prometheus"
    [[ -x $PROMETHEUS ]] || die "$PROMETHEUS missing after installing prometheus"
    log "promtool: $("$PROMTOOL" --version 2>&1 | head -n 1)"
    ;;
  start)
    [[ -x $PROMTOOL && -x $PROMETHEUS ]] || die "prometheus is not installed; run $0 install"
    write_env promtool "TESTBED_PROMTOOL=$PROMTOOL" "TESTBED_PROMETHEUS=$PROMETHEUS"
    ;;
  stop) ;;
  *) die "usage: $0 install|start|stop" ;;
esac
