#!/usr/bin/env bash
# `make demo`: bring up the real local stack and show each component alive through the
# project's own code paths. Leaves the test bed running (`make testbed-down` stops it).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building understudy"
cargo build -q --bin understudy
UNDERSTUDY="$REPO_ROOT/target/debug/understudy"

step "starting the test bed (first run builds kube-apiserver, etcd and helm from source)"
"$TESTBED_SCRIPTS/up.sh"
set -a; source "$TESTBED_DIR/env"; set +a
KUBECTL=("$TESTBED_KUBECTL" --kubeconfig "$TESTBED_KUBECONFIG")

step "kube-apiserver $TESTBED_KUBE_VERSION at $TESTBED_KUBE_APISERVER_URL"
"${KUBECTL[@]}" version
"$UNDERSTUDY" crd | "${KUBECTL[@]}" apply --server-side --field-manager=understudy-demo -f -
"${KUBECTL[@]}" wait --for=condition=Established crd/accountpairs.understudy.dev --timeout=30s
ns="demo-$(date +%s)"
"${KUBECTL[@]}" create namespace "$ns"
"${KUBECTL[@]}" -n "$ns" apply -f - <<YAML
apiVersion: understudy.dev/v1alpha1
kind: AccountPair
metadata: { name: wecom-support }
spec:
  primary: { endpoint: "http://127.0.0.1:18080", accountId: corp-a, credentialsSecretRef: { name: corp-a-token } }
  standby: { endpoint: "http://127.0.0.1:18080", accountId: corp-b, credentialsSecretRef: { name: corp-b-token } }
  replication: { kafka: { bootstrapServers: "$TESTBED_KAFKA_BOOTSTRAP" } }
YAML
"${KUBECTL[@]}" -n "$ns" get ap
echo "-- an invalid pair (same account on both sides) is rejected by the CEL rule:"
"${KUBECTL[@]}" -n "$ns" apply -f - <<YAML || true
apiVersion: understudy.dev/v1alpha1
kind: AccountPair
metadata: { name: broken }
spec:
  primary: { endpoint: "http://127.0.0.1:18080", accountId: corp-a, credentialsSecretRef: { name: t } }
  standby: { endpoint: "http://127.0.0.1:18080", accountId: corp-a, credentialsSecretRef: { name: t } }
  replication: { kafka: { bootstrapServers: "$TESTBED_KAFKA_BOOTSTRAP" } }
YAML

step "Kafka $TESTBED_KAFKA_VERSION (KRaft) at $TESTBED_KAFKA_BOOTSTRAP"
java -cp "$TESTBED_KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$TESTBED_KAFKA_BOOTSTRAP" --list 2>/dev/null | head -5 || true

step "BIND at $TESTBED_DNS_SERVER (zone $TESTBED_DNS_ZONE, TSIG-only updates)"
dig @"${TESTBED_DNS_SERVER%:*}" -p "${TESTBED_DNS_SERVER##*:}" "api.$TESTBED_DNS_ZONE" A +short

step "HAProxy at $TESTBED_HAPROXY_FRONTEND_URL (runtime API $TESTBED_HAPROXY_RUNTIME_API)"
for _ in 1 2 3; do curl -fsS "$TESTBED_HAPROXY_FRONTEND_URL/"; echo; done

step "helm and promtool"
"$TESTBED_HELM" version --short
"$TESTBED_PROMTOOL" --version 2>&1 | head -1

step "done — the test bed keeps running; stop it with: make testbed-down"
