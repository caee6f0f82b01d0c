#!/usr/bin/env bash
# A real Kubernetes control plane for the test suite, with no Docker engine and no VM:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler as plain processes on
# loopback, and kwok playing the nodes (it moves pods through Running to Succeeded or Failed).
#
#   tools/test-cluster/cluster.sh build    build the binaries if the cache lacks them
#   tools/test-cluster/cluster.sh start    build if needed, start if not running, wait until ready
#   tools/test-cluster/cluster.sh start-node   start (as above), then the real node (node.sh; root)
#   tools/test-cluster/cluster.sh stop     stop every process (by process id), remove what the real
#                                          node made, and forget the state
#   tools/test-cluster/cluster.sh status   exit 0 and print the kubeconfig path if running, 3 otherwise
#   tools/test-cluster/cluster.sh kubeconfig   print the kubeconfig path
#   tools/test-cluster/cluster.sh node-names   print what the real node names on the machine
#                                          (bridge, network, pod CIDR, gateway address, cgroup root),
#                                          one key=value a line
#   tools/test-cluster/cluster.sh import ARCHIVE...   import OCI image archives (scripts/images.sh)
#                                          into the real node as localhost/codex-k8s/<file name>
#
# Binaries are built from their Go modules at the versions pinned in go/kube/go.mod (Kubernetes,
# through a wrapper module whose `replace` directives pin the k8s.io staging modules to the
# matching published versions) and go/kwok/go.mod (kwok), and cached under
# $CODEXK8S_CLUSTER_CACHE/bin-<versions> (default: the cluster's home $CODEXK8S_CLUSTER_HOME,
# itself by default <repo>/.cache/test-cluster, git-ignored), so only the first run pays the build. etcd is built the same way from go/etcd/go.mod: Debian's
# etcd-server (3.4.23) starts, but the API server then disables the RequestWatchProgress storage
# feature (it needs etcd >= 3.4.31), and kwok's watch-list informers keep failing and miss pod
# and node events, so pods stall and the node flaps NotReady.
#
# Every call is idempotent and serialised with flock: `start` on a running cluster just prints
# the kubeconfig path.
set -euo pipefail

K8S_VERSION="v1.34.4"
KWOK_VERSION="v0.7.0"
ETCD_VERSION="v3.6.16"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
HOME_DIR="${CODEXK8S_CLUSTER_HOME:-$ROOT/.cache/test-cluster}"
# Built binaries and images; another cluster home may share them (the cleanup test's cluster does).
CACHE_DIR="${CODEXK8S_CLUSTER_CACHE:-$HOME_DIR}"
GO_VERSION="$(go env GOVERSION 2>/dev/null || echo none)"
BIN="$CACHE_DIR/bin-k8s-$K8S_VERSION-kwok-$KWOK_VERSION-etcd-$ETCD_VERSION-$GO_VERSION"
RUN="$HOME_DIR/run"
KUBECONFIG_PATH="$RUN/kubeconfig"

say() { echo "test-cluster: $*" >&2; }
die() { echo "test-cluster: error: $*" >&2; exit 1; }

binaries_present() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubelet; do [ -x "$BIN/$b" ] || return 1; done
}

build() {
  binaries_present && return 0
  command -v go >/dev/null || die "Go is required to build the test cluster (etcd, Kubernetes, kwok)"
  say "building what $BIN lacks of etcd $ETCD_VERSION, Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager,"
  say "kube-scheduler, kubelet) and kwok $KWOK_VERSION from their Go modules: once per version, about 15 minutes on 2 cores"
  local started
  started=$(date +%s)
  mkdir -p "$BIN"
  # Each binary is built into a temporary name and moved in when complete.
  if [ ! -x "$BIN/etcd" ]; then
    (cd "$HERE/go/etcd" && go build -trimpath -ldflags=-s -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3) \
      || die "building etcd failed (is the Go module proxy reachable? see the output above)"
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    say "etcd built after $(( $(date +%s) - started ))s"
  fi
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    [ -x "$BIN/$b" ] && continue
    (cd "$HERE/go/kube" && go build -trimpath -ldflags=-s -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b") \
      || die "building $b failed (is the Go module proxy reachable? see the output above)"
    mv "$BIN/$b.tmp" "$BIN/$b"
    say "$b built after $(( $(date +%s) - started ))s"
  done
  if [ ! -x "$BIN/kwok" ]; then
    (cd "$HERE/go/kwok" && go build -trimpath -ldflags=-s -o "$BIN/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok) \
      || die "building kwok failed (see the output above)"
    mv "$BIN/kwok.tmp" "$BIN/kwok"
  fi
  say "built in $(( $(date +%s) - started ))s; later runs reuse $BIN"
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

pid_alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

running() {
  for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do pid_alive "$p" || return 1; done
  [ -f "$KUBECONFIG_PATH" ]
}

# Starts a daemon with its own log, detached from our stdio and from the flock descriptor.
spawn() {
  local name="$1"; shift
  setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/$name.pid"
}

certs() {
  local d="$RUN/pki"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=codex-k8s-test-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=codex-k8s-test-admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 3650 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "openssl could not generate the cluster's certificates"
  chmod 600 "$d"/*.key
}

kubeconfig() {
  local port="$1" d="$RUN/pki"
  cat >"$KUBECONFIG_PATH.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: codex-k8s-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$d/admin.crt")
    client-key-data: $(base64 -w0 "$d/admin.key")
contexts:
- name: codex-k8s-test
  context: {cluster: codex-k8s-test, user: admin}
current-context: codex-k8s-test
EOF
  chmod 600 "$KUBECONFIG_PATH.tmp"
  mv "$KUBECONFIG_PATH.tmp" "$KUBECONFIG_PATH"
}

api() {
  # GET a path on the API server as the admin; prints the body.
  curl -sS --max-time 5 --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key" \
    "https://127.0.0.1:$(cat "$RUN/apiserver.port")$1"
}

wait_for() {
  local what="$1" seconds="$2"; shift 2
  local i
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}

# Whether the node named $1 has condition Ready=True.
node_is_ready() {
  api "/api/v1/nodes/$1" | python3 -c 'import json,sys; n=json.load(sys.stdin); sys.exit(0 if any(c["type"]=="Ready" and c["status"]=="True" for c in n.get("status",{}).get("conditions",[])) else 1)'
}

stop_all() {
  local p pid
  for p in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [ -f "$RUN/$p.pid" ]; then
      pid="$(cat "$RUN/$p.pid")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$RUN/$p.pid"
    fi
  done
}

start() {
  if running; then echo "$KUBECONFIG_PATH"; return 0; fi
  build
  command -v openssl >/dev/null || die "openssl is required to generate the cluster's certificates"
  command -v curl >/dev/null || die "curl is required to wait for the API server"
  stop_all
  rm -rf "$RUN"
  mkdir -p "$RUN"
  local begun etcd_port peer_port api_port kcm_port sched_port kwok_port
  begun=$(date +%s)
  certs
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  kcm_port=$(free_port); sched_port=$(free_port); kwok_port=$(free_port)
  echo "$api_port" >"$RUN/apiserver.port"

  spawn etcd "$BIN/etcd" --name codex-k8s-test --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "codex-k8s-test=http://127.0.0.1:$peer_port" --quota-backend-bytes 2147483648
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health" \
    || { tail -20 "$RUN/etcd.log" >&2; stop_all; die "etcd did not become healthy (log: $RUN/etcd.log)"; }

  local pki="$RUN/pki"
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$RUN/apiserver-certs" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type none \
    --kubelet-preferred-address-types InternalIP \
    --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --enable-priority-and-fairness=false \
    --profiling=false
  api_ready() { [ "$(api /readyz 2>/dev/null)" = ok ]; }
  wait_for kube-apiserver 120 api_ready \
    || { tail -30 "$RUN/kube-apiserver.log" >&2; api '/readyz?verbose' 2>&1 | grep -v '^\[+\]' >&2; stop_all; die "kube-apiserver did not become ready (log: $RUN/kube-apiserver.log)"; }
  kubeconfig "$api_port"

  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_PATH" --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --cluster-name codex-k8s-test --profiling=false
  spawn kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$KUBECONFIG_PATH" --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false
  spawn kwok "$BIN/kwok" \
    --kubeconfig "$KUBECONFIG_PATH" --config "$HERE/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$kwok_port" --cidr 10.0.0.0/16 --node-ip 127.0.0.1

  # One fake node, played by kwok.
  curl -sS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    -X POST -H 'Content-Type: application/json' "https://127.0.0.1:$api_port/api/v1/nodes" --data @- >/dev/null <<'EOF' \
    || { stop_all; die "could not create the kwok node"; }
{"apiVersion":"v1","kind":"Node","metadata":{"name":"kwok-node-0","annotations":{"kwok.x-k8s.io/node":"fake"},
 "labels":{"kubernetes.io/hostname":"kwok-node-0","kubernetes.io/os":"linux","type":"kwok"}},
 "status":{"allocatable":{"cpu":"32","memory":"256Gi","pods":"110"},"capacity":{"cpu":"32","memory":"256Gi","pods":"110"}}}
EOF
  wait_for node 60 node_is_ready kwok-node-0 || { tail -20 "$RUN/kwok.log" >&2; stop_all; die "kwok did not make the node Ready (log: $RUN/kwok.log)"; }
  sa_ready() { api /api/v1/namespaces/default/serviceaccounts/default | grep -q '"name": "default"'; }
  wait_for controllers 60 sa_ready \
    || { tail -20 "$RUN/kube-controller-manager.log" >&2; stop_all; die "kube-controller-manager did not start (log: $RUN/kube-controller-manager.log)"; }
  for p in kube-controller-manager kube-scheduler kwok; do
    pid_alive "$p" || { tail -20 "$RUN/$p.log" >&2; stop_all; die "$p exited (log: $RUN/$p.log)"; }
  done
  say "ready in $(( $(date +%s) - begun ))s: API server https://127.0.0.1:$api_port, kubeconfig $KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

# shellcheck source=node.sh
. "$HERE/node.sh"

cmd="${1:-}"
case "$cmd" in
  build|start|start-node|stop|status|kubeconfig|node-names|import) ;;
  *) echo "usage: $0 build|start|start-node|stop|status|kubeconfig|node-names|import ARCHIVE..." >&2; exit 2 ;;
esac
mkdir -p "$HOME_DIR"
exec 9>"$HOME_DIR/lock"
flock 9
case "$cmd" in
  build) build ;;
  start) start ;;
  start-node) start >/dev/null; node_start; echo "$KUBECONFIG_PATH" ;;
  stop) node_stop; stop_all; rm -rf "$RUN" ;;
  status) if running; then echo "$KUBECONFIG_PATH"; else echo "test-cluster: not running" >&2; exit 3; fi ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  node-names) printf 'bridge=%s\nnetwork=%s\npod_cidr=%s\ngateway=%s\ncgroup_root=%s\n' "$NODE_BRIDGE" "$NODE_NET" "$NODE_POD_CIDR" "$NODE_GATEWAY" "$NODE_CGROUP_ROOT" ;;
  import) shift; node_import_archives "$@" ;;
esac
