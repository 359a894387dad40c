#!/usr/bin/env bash
# Stop what up.sh started (only the pids it recorded), in reverse order.
source "$(dirname "$0")/lib.sh"
ALL=(wechatpy promtool haproxy bind kafka helm kube-apiserver etcd)
for c in "${ALL[@]}"; do
  "$TESTBED_SCRIPTS/$c.sh" stop || true
done
rm -f "$TESTBED_DIR/env"
log "test bed down"
