#!/usr/bin/env bash
# kube-apiserver (and kubectl) v1.34.4 for the test bed, started the way envtest does:
# no controller-manager, no scheduler, no kubelet; a throwaway CA; admin = client cert in
# group system:masters.
#   install  build both from Go modules (wrapper module tests/testbed/go/kubernetes) into
#            $UNDERSTUDY_CACHE/kubernetes-$KUBE_VERSION/bin/ (skipped when both exist)
#   start    needs etcd (etcd.sh start); fresh certs and a free port each fresh start;
#            writes $TESTBED_DIR/kubeconfig and env.d/kube-apiserver.env
#   stop     stop the recorded pid
#   status   print whether it runs and where
# Usage: kube-apiserver.sh install|start|stop|status
source "$(dirname "$0")/lib.sh"

KUBE_VERSION=v1.34.4 # keep in step with tests/testbed/go/kubernetes/go.mod
KUBE_DIR="$UNDERSTUDY_CACHE/kubernetes-$KUBE_VERSION"
APISERVER_BIN="$KUBE_DIR/bin/kube-apiserver"
KUBECTL_BIN="$KUBE_DIR/bin/kubectl"
WRAPPER="$TESTBED_SCRIPTS/go/kubernetes"
DATA="$TESTBED_DIR/data/kube-apiserver" # certs, keys, port of the running server
KUBECONFIG_PATH="$TESTBED_DIR/kubeconfig"
INSTALL_LOG="$TESTBED_DIR/logs/kube-apiserver-install.log"

install() {
  if [[ -x $APISERVER_BIN && -x $KUBECTL_BIN ]]; then
    log "kube-apiserver and kubectl $KUBE_VERSION already installed in $KUBE_DIR/bin"
    return 0
  fi
  command -v go >/dev/null || die "go is required to build kube-apiserver"
  [[ -x /usr/bin/time ]] || apt_install time

  local major minor
  IFS=. read -r major minor _ <<<"${KUBE_VERSION#v}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done

  mkdir -p "$KUBE_DIR/bin"
  exec 9>"$KUBE_DIR/.install.lock"
  flock 9 # one build at a time; a concurrent install may have finished meanwhile
  if [[ -x $APISERVER_BIN && -x $KUBECTL_BIN ]]; then
    log "kube-apiserver and kubectl $KUBE_VERSION installed by a concurrent run"
    return 0
  fi
  rm -rf "$KUBE_DIR/bin"/.build.* # leftovers of an interrupted build
  # Build into a temporary directory next to the final place, then rename: an interrupted
  # build never leaves a binary under the name that `install` checks for.
  TMP_DIR=$(mktemp -d "$KUBE_DIR/bin/.build.XXXXXX")
  trap 'rm -rf "$TMP_DIR"' EXIT
  local start=$SECONDS
  log "building kube-apiserver and kubectl $KUBE_VERSION; about 11 min on 2 cores with a cold Go build cache (log: $INSTALL_LOG)"
  echo "== $(date -u +%FT%TZ) build kube-apiserver, kubectl $KUBE_VERSION with $(go version)" >>"$INSTALL_LOG"
  if ! (cd "$WRAPPER" && CGO_ENABLED=0 /usr/bin/time -v \
          go build -buildvcs=false -trimpath -tags selinux,notest -ldflags "$ldflags" \
          -o "$TMP_DIR/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
        ) >>"$INSTALL_LOG" 2>&1; then
    tail -n 40 "$INSTALL_LOG" >&2
    die "kube-apiserver build failed (log: $INSTALL_LOG)"
  fi
  local rss_kb
  rss_kb=$(awk '/Maximum resident set size/ {v = $NF} END {print v + 0}' "$INSTALL_LOG")
  echo "== build took $((SECONDS - start))s; peak RSS of the largest build process: $((rss_kb / 1024)) MiB" \
    >>"$INSTALL_LOG"
  "$TMP_DIR/kube-apiserver" --version >>"$INSTALL_LOG" 2>&1 || die "built kube-apiserver does not run"
  "$TMP_DIR/kubectl" version --client >>"$INSTALL_LOG" 2>&1 || die "built kubectl does not run"
  mv -f "$TMP_DIR/kubectl" "$KUBECTL_BIN"
  mv -f "$TMP_DIR/kube-apiserver" "$APISERVER_BIN"
  rm -rf "$TMP_DIR"
  trap - EXIT
  log "kube-apiserver and kubectl $KUBE_VERSION installed in $((SECONDS - start))s" \
    "(peak RSS $((rss_kb / 1024)) MiB): $KUBE_DIR/bin"
}

# gen_certs DIR: throwaway CA, serving cert for 127.0.0.1/localhost, admin client cert,
# service-account key pair.
gen_certs() {
  local d=$1
  (
    cd "$d"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -sha256 \
      -keyout ca.key -out ca.crt -subj "/CN=understudy-testbed-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr \
      -subj "/CN=kube-apiserver"
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 365 -sha256 -out serving.crt -extfile <(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=admin"
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 365 -sha256 -out admin.crt -extfile <(printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=clientAuth")
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    rm -f ./*.csr ca.srl
  ) >>"$TESTBED_DIR/logs/kube-apiserver-certs.log" 2>&1 || die "certificate generation failed"
}

write_kubeconfig() { # write_kubeconfig URL
  local url=$1 tmp="$KUBECONFIG_PATH.tmp"
  (
    umask 077
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: understudy-testbed
  cluster:
    server: $url
    certificate-authority-data: $(base64 -w0 "$DATA/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$DATA/admin.crt")
    client-key-data: $(base64 -w0 "$DATA/admin.key")
contexts:
- name: understudy-testbed
  context:
    cluster: understudy-testbed
    user: admin
current-context: understudy-testbed
EOF
  )
  mv -f "$tmp" "$KUBECONFIG_PATH"
}

write_apiserver_env() { # write_apiserver_env URL
  write_env kube-apiserver \
    "KUBECONFIG=$KUBECONFIG_PATH" \
    "TESTBED_KUBECONFIG=$KUBECONFIG_PATH" \
    "TESTBED_KUBE_APISERVER_URL=$1" \
    "TESTBED_KUBECTL=$KUBECTL_BIN" \
    "TESTBED_KUBE_VERSION=$KUBE_VERSION"
}

ready() { # ready URL: /readyz answers ok over TLS with the admin cert
  curl -fsS --max-time 3 --cacert "$DATA/ca.crt" --cert "$DATA/admin.crt" --key "$DATA/admin.key" \
    "$1/readyz" | grep -qx ok
}

# Condition for wait_for: stop waiting as soon as the server is ready or has exited.
ready_or_dead() { ! is_running kube-apiserver || ready "$1"; }

# verify: kubectl sees the expected server version and can list namespaces.
verify() {
  local got
  got=$(KUBECONFIG=$KUBECONFIG_PATH "$KUBECTL_BIN" version -o json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') ||
    die "kubectl version failed"
  [[ $got == "$KUBE_VERSION" ]] || die "server reports $got, expected $KUBE_VERSION"
  KUBECONFIG=$KUBECONFIG_PATH "$KUBECTL_BIN" get ns >/dev/null || die "kubectl get ns failed"
}

start() {
  if is_running kube-apiserver && [[ -f $DATA/url ]]; then
    local url; url=$(cat "$DATA/url")
    log "kube-apiserver already running at $url"
    write_kubeconfig "$url"
    write_apiserver_env "$url"
    return 0
  fi
  [[ -x $APISERVER_BIN && -x $KUBECTL_BIN ]] || die "kube-apiserver not installed; run $0 install"
  local etcd_url
  etcd_url=$(sed -n 's/^TESTBED_ETCD_URL=//p' "$TESTBED_DIR/env.d/etcd.env" 2>/dev/null) || true
  [[ -n $etcd_url ]] || die "etcd is not up (no TESTBED_ETCD_URL in $TESTBED_DIR/env.d/etcd.env); run etcd.sh start"
  curl -fsS --max-time 2 "$etcd_url/health" >/dev/null || die "etcd at $etcd_url is not healthy"
  stop_pid kube-apiserver # a stale pid file of a dead process

  rm -rf "$DATA"
  mkdir -p "$DATA"
  chmod 700 "$DATA"
  gen_certs "$DATA"
  local port url
  port=$(free_port)
  url="https://127.0.0.1:$port"

  # --endpoint-reconciler-type=none: the Endpoints of the `kubernetes` Service may not be
  # a loopback address, so with --advertise-address=127.0.0.1 the default reconciler logs
  # "may not be in the loopback range" every 10 s. Nothing here runs in-cluster; the
  # Service is still created, only without endpoints.
  log "starting kube-apiserver $KUBE_VERSION on $url (etcd $etcd_url)"
  start_bg kube-apiserver "$APISERVER_BIN" \
    --etcd-servers="$etcd_url" \
    --tls-cert-file="$DATA/serving.crt" \
    --tls-private-key-file="$DATA/serving.key" \
    --client-ca-file="$DATA/ca.crt" \
    --secure-port="$port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --service-account-issuer="$url/" \
    --service-account-key-file="$DATA/sa.pub" \
    --service-account-signing-key-file="$DATA/sa.key"

  wait_for 180 "kube-apiserver /readyz at $url" ready_or_dead "$url" || true
  if ! is_running kube-apiserver || ! ready "$url"; then
    tail -n 40 "$TESTBED_DIR/logs/kube-apiserver.log" >&2 || true
    stop_pid kube-apiserver
    die "kube-apiserver did not become ready (log: $TESTBED_DIR/logs/kube-apiserver.log)"
  fi
  echo "$url" >"$DATA/url"
  write_kubeconfig "$url"
  verify
  write_apiserver_env "$url"
  log "kube-apiserver $KUBE_VERSION up at $url; kubeconfig: $KUBECONFIG_PATH"
}

stop() {
  stop_pid kube-apiserver
  rm -f "$DATA/url" "$TESTBED_DIR/env.d/kube-apiserver.env"
}

status() {
  if is_running kube-apiserver && [[ -f $DATA/url ]]; then
    echo "kube-apiserver running (pid $(cat "$TESTBED_DIR/pids/kube-apiserver.pid")) at $(cat "$DATA/url")"
  else
    echo "kube-apiserver not running"; return 1
  fi
}

case "${1:-}" in
  install | start | stop | status) "$1" ;;
  *) die "usage: $0 install|start|stop|status" ;;
esac
