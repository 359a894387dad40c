#!/usr/bin/env bash
# `make chart-check`: the chart, the generated manifests and the alerts, without a cluster.
#   1. generated files are up to date: charts/understudy/templates/crds.yaml,
#      manifests/install.yaml, tests/chart/rules.yaml (else: run `make generate`)
#   2. the CRDs the chart renders are exactly manifests/crds/understudy.dev.yaml plus the
#      keep annotation and labels
#   3. helm lint --strict with default values and with every feature on
#   4. promtool check rules and promtool test rules (a unit test per alert)
#   5. every alert's runbook exists; the dashboard is valid JSON
# Writes nothing into the repository (renders into a temporary directory).
# shellcheck source=tests/chart/lib.sh
source "$(dirname "$0")/lib.sh"

HELM=$(helm_bin)
PROMTOOL=$(promtool_bin)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
fail() { log "FAIL: $*"; failed=1; }
ok() { log "ok: $*"; }

# same GENERATED CHECKED_IN WHAT
same() {
  if diff -u "$2" "$1" >"$tmp/diff"; then
    ok "$3"
  else
    head -n 40 "$tmp/diff" >&2
    fail "$2 is out of date ($3): run \`make generate\` and commit the result"
  fi
}

# 1. Generated files.
"$CHART_TESTS/gen-crds-template.sh" >"$tmp/crds.yaml"
same "$tmp/crds.yaml" "$CHART/templates/crds.yaml" "chart CRD template matches manifests/crds"
render_install_yaml "$HELM" >"$tmp/install.yaml"
same "$tmp/install.yaml" manifests/install.yaml "manifests/install.yaml matches the chart"
render_rules "$HELM" >"$tmp/rules.yaml"
same "$tmp/rules.yaml" "$CHART_TESTS/rules.yaml" "tests/chart/rules.yaml matches the chart's alerts"

# 2. What Helm renders for the CRDs, minus what the chart adds, is the generated YAML.
"$HELM" template "$RELEASE" "$CHART" --show-only templates/crds.yaml |
  awk '
    /^# Source:/ { next }
    /^  (annotations|labels):$/ { skip = 1; next }
    skip && /^    / { next }
    { skip = 0; print }
  ' >"$tmp/rendered-crds.yaml"
grep -v '^#' manifests/crds/understudy.dev.yaml >"$tmp/generated-crds.yaml"
if diff -u "$tmp/generated-crds.yaml" "$tmp/rendered-crds.yaml" >"$tmp/diff"; then
  ok "rendered chart CRDs == manifests/crds/understudy.dev.yaml (+ keep annotation, labels)"
else
  head -n 40 "$tmp/diff" >&2
  fail "the chart renders CRDs that differ from manifests/crds/understudy.dev.yaml: run \`make generate\`"
fi
for name in accountpairs switchovers drills; do
  "$HELM" template "$RELEASE" "$CHART" --show-only templates/crds.yaml |
    awk -v n="  name: $name.understudy.dev" '$0 == n { getline; getline; print }' |
    grep -qx '    helm.sh/resource-policy: keep' || fail "CRD $name.understudy.dev lacks helm.sh/resource-policy: keep"
done
if [[ -n $("$HELM" template "$RELEASE" "$CHART" --set crds.install=false --show-only templates/crds.yaml 2>/dev/null) ]]; then
  fail "crds.install=false still renders CRDs"
fi

# 3. Lint.
for values in "" "$CHART_TESTS/values-all-on.yaml"; do
  args=(--strict "$CHART")
  [[ -n $values ]] && args+=(-f "$values")
  if "$HELM" lint "${args[@]}" >"$tmp/lint" 2>&1; then
    ok "helm lint --strict ${values:-(default values)}"
  else
    cat "$tmp/lint" >&2
    fail "helm lint --strict ${values:-(default values)}"
  fi
done

# 4. Alerts.
if "$PROMTOOL" check rules "$CHART_TESTS/rules.yaml" >"$tmp/promtool" 2>&1; then
  ok "promtool check rules: $(grep -o '[0-9]* rules found' "$tmp/promtool")"
else
  cat "$tmp/promtool" >&2
  fail "promtool check rules $CHART_TESTS/rules.yaml"
fi
if "$PROMTOOL" test rules "$CHART_TESTS/alerts_test.yaml" >"$tmp/promtool" 2>&1; then
  ok "promtool test rules $CHART_TESTS/alerts_test.yaml"
else
  cat "$tmp/promtool" >&2
  fail "promtool test rules $CHART_TESTS/alerts_test.yaml"
fi
# Every alert has a unit test.
mapfile -t alerts < <(sed -n 's/^ *- alert: //p' "$CHART_TESTS/rules.yaml")
((${#alerts[@]} == 14)) || fail "expected 14 alerts in $CHART_TESTS/rules.yaml, found ${#alerts[@]}"
for alert in "${alerts[@]}"; do
  grep -q "alertname: $alert\$" "$CHART_TESTS/alerts_test.yaml" || fail "alert $alert has no unit test in alerts_test.yaml"
done

# 5. Runbooks and dashboard.
for alert in "${alerts[@]}"; do
  [[ -s runbooks/$alert.md ]] || fail "alert $alert has no runbook runbooks/$alert.md"
  grep -q "runbooks/$alert.md\$" "$CHART_TESTS/rules.yaml" || fail "alert $alert has no runbook_url to runbooks/$alert.md"
done
python3 -m json.tool "$CHART/dashboards/understudy.json" >/dev/null || fail "$CHART/dashboards/understudy.json is not valid JSON"

if ((failed)); then
  die "chart checks failed"
fi
log "chart checks passed"
