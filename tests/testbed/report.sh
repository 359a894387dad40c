#!/usr/bin/env bash
# What the test bed looked like when an e2e suite failed, printed where CI shows it
# (`make test` runs this before `down.sh`): free disk and memory, every service the test
# bed started with whether it still runs, and for a service that stopped, or for the
# Kafka broker and the API server, the last warnings and errors of its log. The full
# logs stay in $TESTBED_DIR/logs/.
source "$(dirname "$0")/lib.sh"
set +e

echo "=== test bed report ($(date -Is)) ==="
df -h "$TESTBED_DIR" | sed 's/^/  /'
free -m 2>/dev/null | sed 's/^/  /'
for f in "$TESTBED_DIR"/pids/*.pid; do
  [[ -f $f ]] || continue
  name=$(basename "$f" .pid)
  logf="$TESTBED_DIR/logs/$name.log"
  if is_running "$name"; then
    echo "--- $name: running (pid $(cat "$f"))"
  else
    echo "--- $name: NOT RUNNING (pid $(cat "$f")); last lines of $logf:"
    tail -n 30 "$logf" 2>/dev/null | sed 's/^/    /'
    continue
  fi
  case $name in
    kafka|kube-apiserver)
      echo "    last warnings/errors in $logf:"
      grep -aE '\] (WARN|ERROR|FATAL) |^[EF][0-9]{4} |"level":"(warn|error|fatal)"' "$logf" 2>/dev/null \
        | tail -n 15 | cut -c1-300 | sed 's/^/    /'
      ;;
  esac
done
echo "=== end of test bed report ==="
