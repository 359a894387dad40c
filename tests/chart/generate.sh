#!/usr/bin/env bash
# `make generate`, chart part (run after manifests/crds/ was regenerated from the Rust types):
#   charts/understudy/templates/crds.yaml  from manifests/crds/understudy.dev.yaml
#   manifests/install.yaml                 helm template of the chart with default values
#   tests/chart/rules.yaml                 the alerting rules, for promtool
# Idempotent: a file is rewritten only when its content changes.
# shellcheck source=tests/chart/lib.sh
source "$(dirname "$0")/lib.sh"

# write_if_changed FILE: stdin into FILE, replacing it only when the content differs.
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp"
    mv -f "$tmp" "$file"
    log "wrote $file"
  fi
}

HELM=$(helm_bin)
# Each step renders completely before anything is written: a failing render leaves the
# checked-in file untouched.
crds=$("$CHART_TESTS/gen-crds-template.sh")
printf '%s\n' "$crds" | write_if_changed "$CHART/templates/crds.yaml"
install=$(render_install_yaml "$HELM")
printf '%s\n' "$install" | write_if_changed manifests/install.yaml
rules=$(render_rules "$HELM")
printf '%s\n' "$rules" | write_if_changed "$CHART_TESTS/rules.yaml"
