#!/usr/bin/env bash
# agora-token, Agora's own npm package for AccessToken2 ("007" tokens), installed under
# $UNDERSTUDY_CACHE keyed by its pinned version: the e2e tests build and parse Agora Chat
# tokens with it to check that what understudy signs is what Agora's reference signs.
# Nothing runs; start only records the package directory.
source "$(dirname "$0")/lib.sh"

# Pinned: the version the registry served when this was written (`npm view agora-token version`).
VERSION=2.0.6
DIR="$UNDERSTUDY_CACHE/agora-token-$VERSION"

case "${1:-}" in
  install)
    if [[ -f $DIR/.installed ]]; then exit 0; fi
    command -v npm >/dev/null || die "npm is not installed (agora-token needs node and npm)"
    log "agora-token $VERSION into $DIR"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-save --no-audit --no-fund --loglevel=error \
      "agora-token@$VERSION" >/dev/null
    (cd "$DIR" && node -e 'const { ChatTokenBuilder } = require("agora-token");
      const { AccessToken2 } = require("agora-token/src/AccessToken2");
      if (!ChatTokenBuilder || !AccessToken2) process.exit(1)') \
      || die "agora-token does not load from $DIR"
    touch "$DIR/.installed"
    ;;
  start)
    [[ -f $DIR/.installed ]] || die "agora-token is not installed; run $0 install"
    write_env agora-token "TESTBED_AGORA_TOKEN_DIR=$DIR"
    ;;
  stop) ;;
  *) die "usage: $0 install|start|stop" ;;
esac
