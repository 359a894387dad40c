#!/usr/bin/env bash
# `make demo PROVIDER=wecom`: a WeCom pair on the real local stack — the test bed
# (kube-apiserver, Kafka, BIND, HAProxy), two corps of the simulator's WeCom API, the
# operator. The primary corp is written through WeCom's own API; its encrypted
# change_contact callbacks reach the operator's /webhooks/wecom/…; the standby corp is
# read back over WeCom's API; then a callback-driven change timed, a lost callback
# caught by the reconciliation scan, and a freeze (errcode 50003) that fails over, with
# a timeline. The test bed keeps running afterwards (`make testbed-down` stops it).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/demo-lib.sh"
cd "$REPO_ROOT"

DEMO_DIR="$TESTBED_DIR/demo/wecom"
mkdir -p "$DEMO_DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

PRIMARY=wwdemoprimary01
STANDBY=wwdemostandby02
P_SECRET=primary-contacts-secret
P_CUSTOMER=primary-customer-secret
S_SECRET=standby-contacts-secret
S_CUSTOMER=standby-customer-secret
# Each corp's callback Token and EncodingAESKey (43 base64 characters, as the admin
# console generates them).
P_TOKEN=primaryCallbackToken
P_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
S_TOKEN=standbyCallbackToken
S_AES_KEY=ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut
export PRIMARY STANDBY P_SECRET P_CUSTOMER S_SECRET S_CUSTOMER

# WeCom's server API as any client calls it: a token from gettoken, then HTTP 200 with
# {"errcode": N, "errmsg": …} for every outcome. Corps: P/S (contacts-sync secret of the
# primary/standby), PC/SC (their customer-contact secret).
read -r -d '' WECOM_PY <<'PY' || true
import json, os, sys, time, urllib.parse, urllib.request
SIM = os.environ["SIM"]

def http(url, body=None):
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)

class Corp:
    def __init__(self, corp, secret):
        self.corp, self.secret, self.token = corp, secret, None

    def answer(self, api, body=None, **query):
        """The whole answer of `api` (a POST with body, else a GET with query)."""
        if self.token is None:
            q = urllib.parse.urlencode({"corpid": self.corp, "corpsecret": self.secret})
            v = http(f"{SIM}/cgi-bin/gettoken?{q}")
            if v.get("errcode") != 0:
                sys.exit(f"gettoken {self.corp}: {json.dumps(v, ensure_ascii=False)}")
            self.token = v["access_token"]
        q = urllib.parse.urlencode({"access_token": self.token, **query})
        return http(f"{SIM}/cgi-bin/{api}?{q}", body)

    def call(self, api, body=None, **query):
        """`api`'s answer, which must be errcode 0."""
        v = self.answer(api, body, **query)
        if v.get("errcode") != 0:
            sys.exit(f"{api} on {self.corp}: {json.dumps(v, ensure_ascii=False)}")
        return v

E = os.environ
P, PC = Corp(E["PRIMARY"], E["P_SECRET"]), Corp(E["PRIMARY"], E["P_CUSTOMER"])
S, SC = Corp(E["STANDBY"], E["S_SECRET"]), Corp(E["STANDBY"], E["S_CUSTOMER"])
PY
# wecom_py: run the Python on stdin with the above defined (arguments in sys.argv[1:]).
wecom_py() { python3 -c "$WECOM_PY"$'\n'"$(cat)" "$@"; }
# wecom CORP API [BODY]: one call (a POST with BODY; API may carry a query); fails the
# demo unless errcode is 0; prints the answer.
wecom() {
  wecom_py "$@" <<'PY'
corp, api = {"P": P, "PC": PC, "S": S, "SC": SC}[sys.argv[1]], sys.argv[2]
api, _, query = api.partition("?")
body = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
print(json.dumps(corp.call(api, body, **dict(urllib.parse.parse_qsl(query))), ensure_ascii=False))
PY
}
# corp_config CORP SECRET CUSTOMER_SECRET [CALLBACK_URL TOKEN AES_KEY]: the simulated
# corp's whole config (a PUT replaces it).
corp_config() {
  local body
  body=$(python3 -c '
import json, sys
a = sys.argv[1:]
c = {"secret": a[0], "externalContactSecret": a[1]}
if len(a) > 2:
    c["callback"] = {"url": a[2], "token": a[3], "encodingAesKey": a[4]}
print(json.dumps(c))' "${@:2}")
  curl -fsS -XPUT "$SIM/admin/wecom/corps/$1" -H 'content-type: application/json' -d "$body" >/dev/null
}

step "building understudy"
cargo build -q --bin understudy
UNDERSTUDY="$REPO_ROOT/target/debug/understudy"

step "starting the test bed (the first run builds kube-apiserver, etcd and helm from source)"
"$TESTBED_SCRIPTS/up.sh"
set -a; source "$TESTBED_DIR/env"; set +a
KUBECTL=("$TESTBED_KUBECTL" --kubeconfig "$TESTBED_KUBECONFIG")
DNS_HOST=${TESTBED_DNS_SERVER%:*}; DNS_PORT=${TESTBED_DNS_SERVER##*:}
"${KUBECTL[@]}" version | sed 's/^/   /'

step "installing the CRDs"
"$UNDERSTUDY" crd | "${KUBECTL[@]}" apply --server-side --field-manager=understudy-demo -f - | sed 's/^/   /'
"${KUBECTL[@]}" wait --for=condition=Established crd/accountpairs.understudy.dev crd/switchovers.understudy.dev --timeout=30s >/dev/null

step "starting the simulator's WeCom API: corps $PRIMARY (primary) and $STANDBY (empty standby)"
"$UNDERSTUDY" sim --listen 127.0.0.1:0 --seed-accounts unused=0 >"$DEMO_DIR/sim.out" 2>"$DEMO_DIR/sim.log" &
PIDS+=($!)
wait_for 20 "the simulator" grep -q listening "$DEMO_DIR/sim.out"
SIM=$(grep -o 'http://[0-9.:]*' "$DEMO_DIR/sim.out")
export SIM
corp_config "$PRIMARY" "$P_SECRET" "$P_CUSTOMER"
corp_config "$STANDBY" "$S_SECRET" "$S_CUSTOMER"
echo "   simulator at $SIM; each corp takes its contacts-sync and customer-contact secrets"

step "seeding $PRIMARY through WeCom's API: departments, members, a tag, customer-contact tags"
wecom P department/create '{"id":2,"name":"市场二组","parentid":1}' >/dev/null
wecom P department/create '{"id":3,"name":"🚀团队","parentid":2}' >/dev/null
wecom P user/create '{"userid":"zhang.san","name":"张三","department":[2],"position":"经理"}' >/dev/null
wecom P user/create '{"userid":"rtl.user","name":"مرحبا بالعالم","department":[3]}' >/dev/null
wecom P tag/create '{"tagname":"VIP客户","tagid":7}' >/dev/null
wecom P tag/addtagusers '{"tagid":7,"userlist":["zhang.san"]}' >/dev/null
wecom PC externalcontact/add_corp_tag '{"group_name":"客户等级","tag":[{"name":"金卡"},{"name":"银卡"}]}' >/dev/null
wecom_py <<'PY'
for i in range(1, 301):
    P.call("user/create", {"userid": f"member.{i:03d}", "name": f"成员{i:03d}",
                           "department": [2 if i % 2 else 3], "position": "客服"})
PY
wecom_py <<'PY'
members, cursor = set(), ""
while True:
    v = P.call("user/list_id", {"cursor": cursor, "limit": 1000})
    members |= {m["userid"] for m in v.get("dept_user", [])}
    cursor = v.get("next_cursor", "")
    if not cursor:
        break
print("   %s holds %d departments, %d members, %d tag, %d customer-contact tag group (every answer errcode 0)" % (
    P.corp, len(P.call("department/list")["department"]), len(members), len(P.call("tag/list")["taglist"]),
    len(PC.call("externalcontact/get_corp_tag_list", {})["tag_group"])))
PY

ns="demo-wecom-$(date +%s)"
record="wecom-support-$(date +%s)"
step "namespace $ns: secrets, the Service support-api, the DNS record $record in $TESTBED_DNS_ZONE"
"${KUBECTL[@]}" create namespace "$ns" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic tsig --from-literal=name="$TESTBED_TSIG_KEY_NAME" \
  --from-literal=algorithm="$TESTBED_TSIG_ALGORITHM" --from-literal=secret="$TESTBED_TSIG_SECRET" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic wecom-primary \
  --from-literal=secret="$P_SECRET" --from-literal=customerContact="$P_CUSTOMER" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic wecom-standby \
  --from-literal=secret="$S_SECRET" --from-literal=customerContact="$S_CUSTOMER" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic callback-primary \
  --from-literal=token="$P_TOKEN" --from-literal=encodingAESKey="$P_AES_KEY" >/dev/null
"${KUBECTL[@]}" -n "$ns" create secret generic callback-standby \
  --from-literal=token="$S_TOKEN" --from-literal=encodingAESKey="$S_AES_KEY" >/dev/null
"${KUBECTL[@]}" -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: { name: support-api }
spec:
  selector: { app.kubernetes.io/instance: support-primary }
  ports: [{ port: 80 }]
YAML
nsupdate -y "hmac-sha256:$TESTBED_TSIG_KEY_NAME:$TESTBED_TSIG_SECRET" <<NSU
server $DNS_HOST $DNS_PORT
zone $TESTBED_DNS_ZONE
update add $record.$TESTBED_DNS_ZONE 5 A 10.1.0.1
send
NSU
# HAProxy is shared by the test bed's users: start it on the primary server (as the
# e2e tests do), so the failover below has something to move.
python3 - "$TESTBED_HAPROXY_RUNTIME_API" "$TESTBED_HAPROXY_BACKEND" "$TESTBED_HAPROXY_PRIMARY_SERVER" "$TESTBED_HAPROXY_STANDBY_SERVER" <<'PY'
import socket, sys
addr, backend, primary, standby = sys.argv[1:]
host, port = addr.rsplit(":", 1)
for server, state in ((primary, "ready"), (standby, "maint")):
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"set server {backend}/{server} state {state}\n".encode())
        answer = s.recv(4096).decode().strip()
    if answer:
        sys.exit(f"haproxy: set server {backend}/{server} state {state}: {answer}")
PY
echo "support-api selector: app.kubernetes.io/instance=support-primary; DNS $record -> $(dig @"$DNS_HOST" -p "$DNS_PORT" "$record.$TESTBED_DNS_ZONE" A +short +tcp)" | sed 's/^/   /'
echo "through HAProxy: $(curl -fsS "$TESTBED_HAPROXY_FRONTEND_URL/")" | sed 's/^/   /'

step "starting the operator"
KUBECONFIG="$TESTBED_KUBECONFIG" RUST_LOG=info,kube_runtime=warn,rdkafka=warn \
  "$UNDERSTUDY" operator --listen 127.0.0.1:0 --health-listen 127.0.0.1:0 --namespace "$ns" >"$DEMO_DIR/operator.out" 2>"$DEMO_DIR/operator.log" &
PIDS+=($!)
wait_for 30 "the operator" grep -q "operator health and metrics on" "$DEMO_DIR/operator.out"
# Two listeners: the webhooks (provider notices, WeCom callbacks), and /metrics, /healthz, /readyz.
OP=$(sed -n 's/^understudy operator listening on //p' "$DEMO_DIR/operator.out")
OP_HEALTH=$(sed -n 's/^understudy operator health and metrics on //p' "$DEMO_DIR/operator.out")
echo "   operator webhook at $OP, metrics at $OP_HEALTH/metrics (log: $DEMO_DIR/operator.log)"

step "creating the AccountPair wecom-support (provider: wecom on both sides)"
"${KUBECTL[@]}" -n "$ns" apply -f - <<YAML | sed 's/^/   /'
apiVersion: understudy.dev/v1alpha1
kind: AccountPair
metadata: { name: wecom-support }
spec:
  primary:
    provider: wecom
    corpId: $PRIMARY
    apiBase: "$SIM"
    credentialsSecretRef: { name: wecom-primary }
    externalContactSecretRef: { name: wecom-primary, key: customerContact }
    callback: { secretRef: { name: callback-primary } }
  standby:
    provider: wecom
    corpId: $STANDBY
    apiBase: "$SIM"
    credentialsSecretRef: { name: wecom-standby }
    externalContactSecretRef: { name: wecom-standby, key: customerContact }
    callback: { secretRef: { name: callback-standby } }
  replication: { kafka: { bootstrapServers: "$TESTBED_KAFKA_BOOTSTRAP" }, partitions: 3, reconcileInterval: 10s }
  detection:
    pollInterval: 1s
    confirmations: 2
    failoverDelay: 2s
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
YAML
HOOK="$OP/webhooks/wecom/$ns/wecom-support"
# What an administrator does in each corp's admin console: the contacts-sync app's
# 接收事件服务器 set to the operator's webhook, with the Token and EncodingAESKey.
corp_config "$PRIMARY" "$P_SECRET" "$P_CUSTOMER" "$HOOK" "$P_TOKEN" "$P_AES_KEY"
corp_config "$STANDBY" "$S_SECRET" "$S_CUSTOMER" "$HOOK" "$S_TOKEN" "$S_AES_KEY"
echo "   both corps' callbacks -> $HOOK"
"${KUBECTL[@]}" -n "$ns" wait --for=condition=Replicating ap/wecom-support --timeout=60s >/dev/null
entities() { curl -fsS "$SIM/admin/accounts/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entities"])'; }
bootstrapped() { [ "$(entities "$STANDBY")" = "$(entities "$PRIMARY")" ]; }
wait_for 90 "the standby corp to be bootstrapped" bootstrapped
"${KUBECTL[@]}" -n "$ns" get ap wecom-support -o wide | sed 's/^/   /'
echo "   entities: primary $(entities "$PRIMARY"), standby $(entities "$STANDBY")"

step "the standby corp $STANDBY, read back over WeCom's API, compared byte for byte with the primary"
wecom_py <<'PY'
def same(what, p, s):
    a, b = (json.dumps(x, ensure_ascii=False, sort_keys=True).encode() for x in (p, s))
    if a != b:
        sys.exit(f"{what} differs:\n  primary {a.decode()}\n  standby {b.decode()}")
    return "%d bytes, identical" % len(b)

def strip(v):
    return {k: x for k, x in v.items() if k != "errmsg"}

depts = [S.call("department/list"), P.call("department/list")]
names = ", ".join("%s %s" % (d["id"], d["name"]) for d in sorted(depts[0]["department"], key=lambda d: d["id"]))
by_id = [sorted(d["department"], key=lambda d: d["id"]) for d in depts]
print("   department/list: %s (%s)" % (names, same("department/list", by_id[1], by_id[0])))
s, p = S.call("user/get", userid="rtl.user"), P.call("user/get", userid="rtl.user")
print("   user/get rtl.user: name %s, UTF-8 %s (%s)" % (s["name"], s["name"].encode().hex(" "), same("user/get rtl.user", strip(p), strip(s))))
s, p = S.call("user/get", userid="zhang.san"), P.call("user/get", userid="zhang.san")
print("   user/get zhang.san: %s, position %s (%s)" % (s["name"], s["position"], same("user/get zhang.san", strip(p), strip(s))))
s, p = S.call("tag/get", tagid="7"), P.call("tag/get", tagid="7")
print("   tag/get 7: %s, users %s (%s)" % (s["tagname"], [u["userid"] for u in s["userlist"]], same("tag/get 7", strip(p), strip(s))))
# Customer-contact tag groups: WeCom assigns their ids, so each corp has its own; the
# names, orders and tags are compared without them.
def groups(v):
    return sorted(({"group_name": g["group_name"], "order": g.get("order"),
                    "tag": [{"name": t["name"], "order": t.get("order")} for t in g["tag"]]}
                   for g in v["tag_group"]), key=lambda g: g["group_name"])
s, p = SC.call("externalcontact/get_corp_tag_list", {}), PC.call("externalcontact/get_corp_tag_list", {})
print("   get_corp_tag_list (customer-contact secret): %s (%s without WeCom's ids; group id %s on the standby, %s on the primary)" % (
    "; ".join("%s: %s" % (g["group_name"], ", ".join(t["name"] for t in g["tag"])) for g in groups(s)),
    same("get_corp_tag_list", groups(p), groups(s)), s["tag_group"][0]["group_id"], p["tag_group"][0]["group_id"]))
def userids(corp):
    members, cursor = set(), ""
    while True:
        v = corp.call("user/list_id", {"cursor": cursor, "limit": 1000})
        members |= {m["userid"] for m in v.get("dept_user", [])}
        cursor = v.get("next_cursor", "")
        if not cursor:
            return members
s, p = userids(S), userids(P)
if s != p:
    sys.exit("user/list_id differs: only on the primary %s, only on the standby %s" % (sorted(p - s)[:5], sorted(s - p)[:5]))
print("   user/list_id: the same %d userids on both corps" % len(s))
PY

step "a change carried by its callback: user/update zhang.san position 总监 on the primary"
wecom_py <<'PY'
P.call("user/update", {"userid": "zhang.san", "position": "总监"})
written = time.monotonic()
while S.call("user/get", userid="zhang.san").get("position") != "总监":
    if time.monotonic() - written > 30:
        sys.exit("timed out after 30 s waiting for the update on the standby")
    time.sleep(0.01)
print("   the standby's user/get shows position 总监 %.0f ms after the primary answered the update" % ((time.monotonic() - written) * 1000))
PY
callbacks() { curl -fsS "$SIM/admin/wecom/corps/$1" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("callbacks")))'; }
echo "   callbacks sent: by the primary $(callbacks "$PRIMARY"), by the standby $(callbacks "$STANDBY") (the standby's announce the operator's own writes: its feed learns what replication put there)"
grep '^understudy_provider_callbacks_total' <(curl -fsS "$OP_HEALTH/metrics") | sed 's/^/   /'

step "a lost callback: the primary's next callback is dropped, then member li.si is created"
curl -fsS -XPOST "$SIM/admin/wecom/corps/$PRIMARY/drop-callbacks" -H 'content-type: application/json' -d '{"count":1}' | sed 's/^/   /'
echo
wecom_py <<'PY'
P.call("user/create", {"userid": "li.si", "name": "李四", "department": [2]})
created = time.monotonic()
while S.answer("user/get", userid="li.si").get("errcode") != 0:
    if time.monotonic() - created > 60:
        sys.exit("timed out after 60 s waiting for li.si on the standby")
    time.sleep(0.1)
print("   li.si is on the standby %.1f s after it was created (no callback; the reconciliation scan runs every 10 s)" % (time.monotonic() - created))
PY
echo "   callbacks of the primary: $(callbacks "$PRIMARY")"
grep '^understudy_reconcile_changes_total' <(curl -fsS "$OP_HEALTH/metrics") | sed 's/^/   /'

step "a freeze: the primary corp's app is disabled, every call answers errcode 50003 (应用已禁用)"
curl -fsS -XPOST "$SIM/admin/accounts/$PRIMARY/status" -H 'content-type: application/json' \
  -d '{"status":"frozen","reason":"应用已禁用"}' | sed 's/^/   /'
echo
wecom_py <<'PY'
print("   department/list on the primary now: %s" % json.dumps(P.answer("department/list"), ensure_ascii=False))
PY
wait_for 60 "the failover" sh -c "'${KUBECTL[0]}' ${KUBECTL[*]:1} -n $ns get so -o jsonpath='{.items[?(@.spec.trigger==\"Automatic\")].status.phase}' | grep -qE 'Succeeded|Failed'"

pair_settled() { ! "${KUBECTL[@]}" -n "$ns" get ap wecom-support -o jsonpath='{.status.phase}' | grep -q SwitchingOver; }
wait_for 30 "the pair to record its new active side" pair_settled || true
reversed() { [ "$("${KUBECTL[@]}" -n "$ns" get ap wecom-support -o jsonpath='{.status.phase}/{.status.replication.direction}')" = Replicating/standby-to-primary ]; }
wait_for 30 "replication from the standby" reversed || true

demo_after_failover "$ns" "$record"
demo_timeline "$ns"

step "done — the operator and simulator stop now; the test bed keeps running (make testbed-down)"
