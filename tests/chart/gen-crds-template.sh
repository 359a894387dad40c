#!/usr/bin/env bash
# Print charts/understudy/templates/crds.yaml, generated from the CRDs that `understudy crd`
# wrote to manifests/crds/understudy.dev.yaml: the same documents, wrapped in
# `{{- if .Values.crds.install }}`, each with the annotation helm.sh/resource-policy: keep
# (helm uninstall and upgrades leave CRDs, and so every custom resource, in place) and the
# chart's standard labels. Anything Helm would read as a template action ("{{", "}}") is
# escaped. Run by `make generate`; `make chart-check` fails when the checked-in file differs.
#
# Usage: gen-crds-template.sh [CRDS_YAML]   (default: manifests/crds/understudy.dev.yaml)
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:-manifests/crds/understudy.dev.yaml}
[[ -s $src ]] || { echo "gen-crds-template.sh: $src is missing or empty; run \`make generate\`" >&2; exit 1; }

cat <<'HEAD'
{{- /*
Generated from manifests/crds/understudy.dev.yaml (`understudy crd`) by
tests/chart/gen-crds-template.sh during `make generate`. Do not edit by hand: change the
Rust types in src/api/ and run `make generate`.
*/}}
{{- if .Values.crds.install }}
HEAD
awk -v src="$src" '
  function fail(msg) { printf "gen-crds-template.sh: %s:%d: %s\n", src, NR, msg > "/dev/stderr"; failed = 1; exit 1 }
  /^#/ && !started { next }              # the header comment of the generated file
  { started = 1 }
  {
    line = $0
    gsub(/\{\{/, "\001", line); gsub(/\}\}/, "\002", line)
    gsub(/\001/, "{{ \"{{\" }}", line); gsub(/\002/, "{{ \"}}\" }}", line)
  }
  state == "meta" {
    if (line !~ /^  name: /) fail("expected \"  name:\" right after \"metadata:\", got: " line)
    print line
    print "  annotations:"
    print "    helm.sh/resource-policy: keep"
    print "  labels:"
    print "    {{- include \"understudy.labels\" . | nindent 4 }}"
    print "    app.kubernetes.io/component: crd"
    state = "after-name"; docs++
    next
  }
  state == "after-name" && line ~ /^  / {
    fail("CRD metadata has more than a name (" line "); teach gen-crds-template.sh to merge it")
  }
  { state = "" }
  line == "metadata:" { state = "meta" }
  { print line }
  END {
    if (failed) exit 1
    if (docs != 3) { printf "gen-crds-template.sh: expected 3 CRDs in %s, found %d\n", src, docs > "/dev/stderr"; exit 1 }
  }
' "$src"
echo '{{- end }}'
