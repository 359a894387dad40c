# Shared by demo.sh and demo-wecom.sh: what a demo shows once its failover settled.
# Needs KUBECTL (the test bed's kubectl), DNS_HOST/DNS_PORT and the test bed's env.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# demo_after_failover NAMESPACE RECORD: the pair and switchovers, the DNS record, a
# request through HAProxy and the Service's selector.
demo_after_failover() {
  local ns=$1 record=$2
  step "after the failover"
  "${KUBECTL[@]}" -n "$ns" get ap,so -o wide | sed 's/^/   /'
  echo "   DNS $record -> $(dig @"$DNS_HOST" -p "$DNS_PORT" "$record.$TESTBED_DNS_ZONE" A +short +tcp)"
  echo "   through HAProxy: $(curl -fsS "$TESTBED_HAPROXY_FRONTEND_URL/")"
  echo "   Service selector: $("${KUBECTL[@]}" -n "$ns" get svc support-api -o jsonpath='{.spec.selector}')"
}

# demo_timeline NAMESPACE: the namespace's Events and finished Switchovers, in time order,
# relative to the first.
demo_timeline() {
  local ns=$1
  step "timeline"
  {
    "${KUBECTL[@]}" -n "$ns" get events.events.k8s.io -o json
    echo '@@@'
    "${KUBECTL[@]}" -n "$ns" get so -o json
  } | python3 -c '
import json, sys
from datetime import datetime
events_text, so_text = sys.stdin.read().split("@@@")
rows = []
for e in json.loads(events_text)["items"]:
    t = e.get("eventTime") or e.get("deprecatedLastTimestamp") or e["metadata"]["creationTimestamp"]
    rows.append((t, e.get("regarding", {}).get("kind", ""), e.get("reason", ""), e.get("note", "")))
for so in json.loads(so_text)["items"]:
    st = so.get("status", {})
    if st.get("finishedAt"):
        rows.append((st["finishedAt"], "Switchover", st.get("phase", ""), "%s in %s ms, recordsLost %s" % (st.get("message", ""), st.get("durationMs"), st.get("recordsLost"))))
def key(r):
    return datetime.fromisoformat(r[0].replace("Z", "+00:00"))
rows.sort(key=key)
t0 = key(rows[0]) if rows else None
for r in rows:
    if r[2] in ("StepStarted",):
        continue
    print("   %+8.3fs  %-12s %-16s %s" % ((key(r) - t0).total_seconds(), r[1], r[2], r[3][:150]))
'
}
