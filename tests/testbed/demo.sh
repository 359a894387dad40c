#!/usr/bin/env bash
# `make demo`: the whole story on the real local stack — the test bed (kube-apiserver,
# Kafka, BIND, HAProxy), the provider simulator, the operator, a pair replicating under
# load, a DR drill with a rehearsal flip (through `kubectl understudy`), a signed freeze
# notice, the automatic failover, a timeline of what happened and the drill's report.
# The test bed keeps running afterwards (`make testbed-down` stops it).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/demo-lib.sh"
cd "$REPO_ROOT"

DEMO_DIR="$TESTBED_DIR/demo"
mkdir -p "$DEMO_DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

step "building understudy"
cargo build -q --bin understudy
UNDERSTUDY="$REPO_ROOT/target/debug/understudy"
# The same binary as the kubectl plugin, found by kubectl on PATH.
mkdir -p "$DEMO_DIR/bin"
ln -sf "$UNDERSTUDY" "$DEMO_DIR/bin/kubectl-understudy"
export PATH="$DEMO_DIR/bin:$PATH"

step "starting the test bed (the first run builds kube-apiserver, etcd and helm from source)"
"$TESTBED_SCRIPTS/up.sh"
set -a; source "$TESTBED_DIR/env"; set +a
KUBECTL=("$TESTBED_KUBECTL" --kubeconfig "$TESTBED_KUBECONFIG")
# kubectl takes no flags before a plugin's name: `kubectl understudy --kubeconfig …`.
PLUGIN=("$TESTBED_KUBECTL" understudy --kubeconfig "$TESTBED_KUBECONFIG")
DNS_HOST=${TESTBED_DNS_SERVER%:*}; DNS_PORT=${TESTBED_DNS_SERVER##*:}
"${KUBECTL[@]}" version | sed 's/^/   /'

step "installing the CRDs"
"$UNDERSTUDY" crd | "${KUBECTL[@]}" apply --server-side --field-manager=understudy-demo -f - | sed 's/^/   /'
"${KUBECTL[@]}" wait --for=condition=Established crd/accountpairs.understudy.dev crd/switchovers.understudy.dev --timeout=30s >/dev/null

step "starting the provider simulator: corp-a (primary, 2000 entities) and corp-b (empty standby)"
"$UNDERSTUDY" sim --listen 127.0.0.1:0 --seed-accounts corp-a=2000,corp-b=0 >"$DEMO_DIR/sim.out" 2>"$DEMO_DIR/sim.log" &
PIDS+=($!)
wait_for 20 "the simulator" grep -q listening "$DEMO_DIR/sim.out"
SIM=$(grep -o 'http://[0-9.:]*' "$DEMO_DIR/sim.out")
echo "   simulator at $SIM"

ns="demo-$(date +%s)"
record="support-$(date +%s)"
drill_record="drill-$record"
step "namespace $ns: secrets, Services, the DNS records $record and $drill_record (drills' own) in $TESTBED_DNS_ZONE"
"${KUBECTL[@]}" create namespace "$ns" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic corp-token --from-literal=token=demo-token >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic tsig --from-literal=name="$TESTBED_TSIG_KEY_NAME" \
  --from-literal=algorithm="$TESTBED_TSIG_ALGORITHM" --from-literal=secret="$TESTBED_TSIG_SECRET" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic notices --from-literal=secret=demo-notice-secret >/dev/null
"${KUBECTL[@]}" -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: { name: support-api }
spec:
  selector: { app.kubernetes.io/instance: support-primary }
  ports: [{ port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: support-api-drill }
spec:
  selector: { app.kubernetes.io/instance: support-drill-primary }
  ports: [{ port: 80 }]
YAML
nsupdate -y "hmac-sha256:$TESTBED_TSIG_KEY_NAME:$TESTBED_TSIG_SECRET" <<NSU
server $DNS_HOST $DNS_PORT
zone $TESTBED_DNS_ZONE
update add $record.$TESTBED_DNS_ZONE 5 A 10.1.0.1
update add $drill_record.$TESTBED_DNS_ZONE 5 A 10.1.0.9
send
NSU
echo "support-api selector: app.kubernetes.io/instance=support-primary; DNS $record -> $(dig @"$DNS_HOST" -p "$DNS_PORT" "$record.$TESTBED_DNS_ZONE" A +short +tcp)" | sed 's/^/   /'
echo "through HAProxy: $(curl -fsS "$TESTBED_HAPROXY_FRONTEND_URL/")" | sed 's/^/   /'

step "starting the operator"
KUBECONFIG="$TESTBED_KUBECONFIG" RUST_LOG=info,kube_runtime=warn,rdkafka=warn \
  "$UNDERSTUDY" operator --listen 127.0.0.1:0 --health-listen 127.0.0.1:0 --namespace "$ns" >"$DEMO_DIR/operator.out" 2>"$DEMO_DIR/operator.log" &
PIDS+=($!)
wait_for 30 "the operator" grep -q "operator health and metrics on" "$DEMO_DIR/operator.out"
# Two listeners: the provider-notice webhook, and /metrics, /healthz, /readyz.
OP=$(sed -n 's/^understudy operator listening on //p' "$DEMO_DIR/operator.out")
OP_HEALTH=$(sed -n 's/^understudy operator health and metrics on //p' "$DEMO_DIR/operator.out")
echo "   operator webhook at $OP, metrics at $OP_HEALTH/metrics (log: $DEMO_DIR/operator.log)"

step "creating the AccountPair wecom-support"
"${KUBECTL[@]}" -n "$ns" apply -f - <<YAML | sed 's/^/   /'
apiVersion: understudy.dev/v1alpha1
kind: AccountPair
metadata: { name: wecom-support }
spec:
  primary: { endpoint: "$SIM", accountId: corp-a, credentialsSecretRef: { name: corp-token } }
  standby: { endpoint: "$SIM", accountId: corp-b, credentialsSecretRef: { name: corp-token } }
  replication: { kafka: { bootstrapServers: "$TESTBED_KAFKA_BOOTSTRAP" }, partitions: 3 }
  detection:
    pollInterval: 1s
    confirmations: 2
    failoverDelay: 2s
    notices: { secretRef: { name: notices } }
  traffic:
    dns:
      - servers: ["$TESTBED_DNS_SERVER"]
        zone: "$TESTBED_DNS_ZONE"
        name: "$record"
        type: A
        ttl: 5
        tsigSecretRef: { name: tsig }
        primary: ["10.1.0.1"]
        standby: ["10.2.0.1"]
    loadBalancers:
      - service: { name: support-api, selectorKey: app.kubernetes.io/instance, primary: support-primary, standby: support-standby }
      - haproxy: { runtimeApi: "$TESTBED_HAPROXY_RUNTIME_API", backend: "$TESTBED_HAPROXY_BACKEND", primaryServer: "$TESTBED_HAPROXY_PRIMARY_SERVER", standbyServer: "$TESTBED_HAPROXY_STANDBY_SERVER" }
  drills:
    schedule: "0 3 1 * *"
    timeZone: Asia/Shanghai
    rehearsalTraffic:
      dns:
        - servers: ["$TESTBED_DNS_SERVER"]
          zone: "$TESTBED_DNS_ZONE"
          name: "$drill_record"
          type: A
          ttl: 5
          tsigSecretRef: { name: tsig }
          primary: ["10.1.0.9"]
          standby: ["10.2.0.9"]
      loadBalancers:
        - service: { name: support-api-drill, selectorKey: app.kubernetes.io/instance, primary: support-drill-primary, standby: support-drill-standby }
YAML
"${KUBECTL[@]}" -n "$ns" wait --for=condition=Replicating ap/wecom-support --timeout=60s >/dev/null

entities() {
  printf '   entities: primary %s, standby %s\n' \
    "$(curl -fsS "$SIM/admin/accounts/corp-a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entities"])')" \
    "$(curl -fsS "$SIM/admin/accounts/corp-b" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entities"])')"
}
load_done() { curl -fsS "$SIM/admin/accounts/corp-a/load" | grep -q '"running":false'; }
lag_zero() { [ "$("${KUBECTL[@]}" -n "$ns" get ap wecom-support -o jsonpath='{.status.replication.lagRecords}')" = 0 ]; }

step "replicating under load: 3000 changes at 200/s on the primary"
curl -fsS -XPOST "$SIM/admin/accounts/corp-a/load" -H 'content-type: application/json' -d '{"rate":200,"count":3000,"seed":42}' >/dev/null
for _ in 1 2 3 4; do
  sleep 2
  "${KUBECTL[@]}" -n "$ns" get ap wecom-support -o wide --no-headers | sed 's/^/   /'
done
wait_for 120 "the load to finish" load_done
wait_for 120 "replication to settle" lag_zero
entities

step "a DR drill on demand: kubectl understudy drill wecom-support --rehearse"
"${PLUGIN[@]}" -n "$ns" drill wecom-support --rehearse | tee "$DEMO_DIR/drill.out" | sed 's/^/   /'
DRILL=$(sed -n 's/^drill \([^ ]*\) of .*/\1/p' "$DEMO_DIR/drill.out")
"${KUBECTL[@]}" -n "$ns" wait --for=jsonpath='{.status.phase}'=Finished "drill/$DRILL" --timeout=300s >/dev/null
"${KUBECTL[@]}" -n "$ns" get drill "$DRILL" -o wide | sed 's/^/   /'
echo "   the drill's record $drill_record -> $(dig @"$DNS_HOST" -p "$DNS_PORT" "$drill_record.$TESTBED_DNS_ZONE" A +short +tcp) (flipped and restored); production $record -> $(dig @"$DNS_HOST" -p "$DNS_PORT" "$record.$TESTBED_DNS_ZONE" A +short +tcp) (untouched)"

step "replicating under load again: 200 changes/s on the primary"
curl -fsS -XPOST "$SIM/admin/accounts/corp-a/load" -H 'content-type: application/json' -d '{"rate":200,"count":20000,"seed":43}' >/dev/null
for _ in 1 2; do
  sleep 2
  "${KUBECTL[@]}" -n "$ns" get ap wecom-support -o wide --no-headers | sed 's/^/   /'
done
entities

step "the provider freezes corp-a and sends a signed notice to the operator's webhook"
curl -fsS -XPOST "$SIM/admin/accounts/corp-a/notice" -H 'content-type: application/json' \
  -d "{\"url\":\"$OP/webhooks/notices/$ns/wecom-support\",\"secret\":\"demo-notice-secret\",\"event\":{\"type\":\"frozen\",\"reason\":\"abnormal login from a new device\"},\"applyStatus\":true}" | sed 's/^/   /'
echo
wait_for 60 "the failover" sh -c "'${KUBECTL[0]}' ${KUBECTL[*]:1} -n $ns get so -o jsonpath='{.items[?(@.spec.trigger==\"Automatic\")].status.phase}' | grep -qE 'Succeeded|Failed'"

pair_settled() { ! "${KUBECTL[@]}" -n "$ns" get ap wecom-support -o jsonpath='{.status.phase}' | grep -q SwitchingOver; }
wait_for 30 "the pair to record its new active side" pair_settled || true

demo_after_failover "$ns" "$record"
demo_timeline "$ns"

step "the drill's report: kubectl understudy drill report $DRILL"
"${PLUGIN[@]}" -n "$ns" drill report "$DRILL" | sed 's/^/   /'

step "done — the operator and simulator stop now; the test bed keeps running (make testbed-down)"
