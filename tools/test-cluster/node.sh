# The real node of the test cluster, sourced by cluster.sh (it uses say, die, spawn, pid_alive,
# wait_for, node_is_ready, free_port, api, $BIN, $RUN, $HOME_DIR, $CACHE_DIR and $HERE from there). A kubelet
# registers a node whose pods run in real containers: Debian's containerd 1.6 and runc, the CNI bridge and host-local
# plugins, a sandbox ("pause") image built here from C, every image imported into containerd's
# `k8s.io` namespace under a `localhost/` name. The node is tainted, so only pods that tolerate
# `codex-k8s.io/real-node` land on it; kwok's node stays for everything else.
#
# Settings this machine needs (see docs/runbook.md, "The test cluster"):
# - containerd's CRI `restrict_oom_score_adj` (no CAP_SYS_RESOURCE for negative scores);
# - runc (crun refuses the cgroup v1/hybrid layout here); kubelet with the cgroupfs driver,
#   `failCgroupV1: false` and eviction thresholds a shared disk does not trip;
# - the node's address is the machine's own (a node IP may not be loopback), and the API server
#   reaches the kubelet there (`--kubelet-preferred-address-types=InternalIP`).
#
# Everything the node makes lives under $RUN/node, except: one bridge (ck8s-<id>), the pods'
# network namespaces, the cgroups under /codex-k8s-<id>, the kubelet's iptables chains, its
# device-plugin socket, the CNI result cache entries and the /var/log/containers links, and the
# host directories holding those; `node_stop` removes all of it (and only that).

NODE_NAME="codex-k8s-node"
# Names on the machine derive from the cluster's home, so two clones' nodes never share them.
NODE_ID="$(printf '%s' "$HOME_DIR" | sha256sum | cut -c1-6)"
NODE_BRIDGE="ck8s-$NODE_ID"
NODE_NET="codex-k8s-$NODE_ID"
NODE_POD_CIDR="10.244.$(( 0x${NODE_ID:0:2} )).0/24"
# The bridge's own address: the pods' gateway, and the one address where host services the pods
# need (forge-sim, model-sim, control-plane) listen for them.
NODE_GATEWAY="10.244.$(( 0x${NODE_ID:0:2} )).1"
NODE_CGROUP_ROOT="/codex-k8s-$NODE_ID"
NODE_TAINT="codex-k8s.io/real-node"
# Host paths the kubelet, containerd and the CNI plugins use whatever they are told; the ones
# missing before the node started are removed (when empty) after it stops.
NODE_HOST_DIRS="/var/lib/kubelet /var/lib/kubelet/device-plugins /var/lib/cni /var/lib/cni/results /var/log/containers /var/run/netns
  /run/containerd /run/containerd/s"
NODE="$RUN/node"
NODE_SOCK="$NODE/containerd/containerd.sock"
# Images built here are imported as localhost/codex-k8s/<name>:<tag>.
NODE_IMAGE_TAG="1"
NODE_PAUSE_IMAGE="localhost/codex-k8s/pause:$NODE_IMAGE_TAG"

node_running() {
  pid_alive containerd && pid_alive kubelet
}

# The machine's own IPv4 address: the first global one.
node_ip() {
  ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

node_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v umoci >/dev/null || missing+=(umoci)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  command -v iptables >/dev/null || missing+=(iptables)
  [ "${#missing[@]}" = 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "the real node needs ${missing[*]} (apt) and root; install them or run as root"
  say "installing ${missing[*]} from Debian's archive"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get could not install ${missing[*]}"
}

# Builds one static C program of images/ into a single-file OCI image archive; prints its path.
# The archive is cached by the source's digest.
node_image() {
  local name="$1" tag="$NODE_IMAGE_TAG" user="$2"
  local src="$HERE/images/$name.c" sum out work
  sum="$(sha256sum "$src" | cut -c1-16)"
  out="$CACHE_DIR/images/$name-$tag-$sum.tar"
  if [ ! -f "$out" ]; then
    work="$(mktemp -d)"
    gcc -static -Os -s -o "$work/$name" "$src" || die "building $name from $src failed"
    (
      cd "$work"
      umoci init --layout layout
      umoci new --image "layout:$tag"
      umoci unpack --image "layout:$tag" bundle
      install -m 0755 "$name" "bundle/rootfs/$name"
      # Fixed times: the same source and compiler give the same image digest.
      find bundle/rootfs -exec touch -h -d @0 {} +
      umoci repack --image "layout:$tag" --history.created 1970-01-01T00:00:00Z --history.created_by "codex-k8s test-cluster" bundle
      umoci config --image "layout:$tag" --created 1970-01-01T00:00:00Z --history.created 1970-01-01T00:00:00Z --config.entrypoint "/$name" --config.user "$user" \
        --config.workingdir / --clear=config.env
      umoci gc --layout layout
      tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C layout -cf image.tar .
    ) >"$work/umoci.log" 2>&1 || { cat "$work/umoci.log" >&2; die "packing the $name image failed"; }
    mkdir -p "$CACHE_DIR/images"
    mv "$work/image.tar" "$out"
    rm -rf "$work"
  fi
  echo "$out"
}

# Builds (or takes from the cache) the image of images/$1.c, running as $2, and imports it.
node_import() {
  local archive
  archive="$(node_image "$1" "$2")"
  ctr --address "$NODE_SOCK" -n k8s.io images import --base-name "localhost/codex-k8s/$1" "$archive" >/dev/null \
    || die "importing $archive into containerd failed (log: $RUN/containerd.log)"
}

# Imports OCI image archives (scripts/images.sh makes them) as localhost/codex-k8s/<file name>.
node_import_archives() {
  node_running || die "the real node is not running (tools/test-cluster/cluster.sh start-node)"
  local a
  for a in "$@"; do
    [ -f "$a" ] || die "no image archive $a (scripts/images.sh builds them)"
    ctr --address "$NODE_SOCK" -n k8s.io images import --base-name "localhost/codex-k8s/$(basename "$a" .tar)" "$a" >/dev/null \
      || die "importing $a into containerd failed (log: $RUN/containerd.log)"
  done
}

node_certs() {
  local d="$RUN/pki" ip="$1"
  (
    cd "$d"
    openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj "/O=system:nodes/CN=system:node:$NODE_NAME" 2>/dev/null
    openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out node.crt -days 3650 -extfile client.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-serving.key -out kubelet-serving.csr -subj "/CN=$NODE_NAME" 2>/dev/null
    printf 'subjectAltName=IP:%s,DNS:%s\nextendedKeyUsage=serverAuth\n' "$ip" "$NODE_NAME" >kubelet-serving.ext
    openssl x509 -req -in kubelet-serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-serving.crt -days 3650 \
      -extfile kubelet-serving.ext 2>/dev/null
  ) || die "openssl could not generate the node's certificates"
  chmod 600 "$d"/*.key
}

node_start() {
  node_running && return 0
  [ "$(id -u)" = 0 ] || die "the real node runs containers and needs root"
  node_packages
  local begun ip kubelet_port healthz_port
  begun=$(date +%s)
  ip="$(node_ip)"
  [ -n "$ip" ] || die "this machine has no global IPv4 address for the node to register with"
  node_stop
  local d
  : >"$RUN/node.host-dirs"
  for d in $NODE_HOST_DIRS; do [ -e "$d" ] || echo "$d" >>"$RUN/node.host-dirs"; done
  mkdir -p "$NODE/containerd" "$NODE/cni/net.d" "$NODE/cni/ipam" "$NODE/kubelet"
  node_certs "$ip"

  cat >"$NODE/containerd/config.toml" <<EOF
version = 2
root = "$NODE/containerd/root"
state = "$NODE/containerd/state"
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$NODE/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni/net.d"
EOF
  cat >"$NODE/cni/net.d/10-codex-k8s.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NODE_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE/cni/ipam", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]]}},
    {"type": "loopback"}
  ]
}
EOF
  # The bridge exists with its gateway address before any pod does, so host services can bind
  # to that address first (the bridge plugin takes the bridge as it finds it).
  # (node_stop above removed any bridge of this name: it derives from this cluster's home.)
  { ip link add "$NODE_BRIDGE" type bridge && ip addr add "$NODE_GATEWAY/24" dev "$NODE_BRIDGE" && ip link set "$NODE_BRIDGE" up; } \
    || { node_stop; die "could not make the bridge $NODE_BRIDGE with the address $NODE_GATEWAY"; }
  spawn containerd containerd --config "$NODE/containerd/config.toml"
  wait_for containerd 30 ctr --address "$NODE_SOCK" version \
    || { tail -20 "$RUN/containerd.log" >&2; node_stop; die "containerd did not start (log: $RUN/containerd.log)"; }
  node_import pause 65535:65535
  node_import probe 1000:1000

  local pki="$RUN/pki" api_port
  api_port="$(cat "$RUN/apiserver.port")"
  cat >"$NODE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: codex-k8s-test
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- name: node
  user: {client-certificate: "$pki/node.crt", client-key: "$pki/node.key"}
contexts:
- name: node
  context: {cluster: codex-k8s-test, user: node}
current-context: node
EOF
  chmod 600 "$NODE/kubeconfig"
  kubelet_port=$(free_port); healthz_port=$(free_port)
  cat >"$NODE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$ip"
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
containerRuntimeEndpoint: "unix://$NODE_SOCK"
cgroupDriver: cgroupfs
cgroupRoot: "$NODE_CGROUP_ROOT"
failCgroupV1: false
podLogsDir: "$NODE/pod-logs"
failSwapOn: false
tlsCertFile: "$pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$pki/kubelet-serving.key"
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
evictionHard: {memory.available: "64Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
podPidsLimit: 1024
serializeImagePulls: false
registerWithTaints:
- {key: "$NODE_TAINT", value: "true", effect: NoSchedule}
clusterDomain: cluster.local
resolvConf: ""
localStorageCapacityIsolation: false
EOF
  # The pods' cgroups live under a root of this node's own, in every controller.
  for d in /sys/fs/cgroup/*/; do
    mkdir -p "$d${NODE_CGROUP_ROOT#/}" || die "cannot create the cgroup $d${NODE_CGROUP_ROOT#/}"
  done
  if [ -d /sys/fs/cgroup/cpuset ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset$NODE_CGROUP_ROOT/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset$NODE_CGROUP_ROOT/cpuset.mems"
  fi
  # The kubelet adds iptables chains: what was there before is kept, to remove only its own.
  iptables-save >"$RUN/iptables.before"
  ip6tables-save >"$RUN/ip6tables.before" 2>/dev/null || true
  spawn kubelet "$BIN/kubelet" --config "$NODE/kubelet.yaml" --kubeconfig "$NODE/kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$ip" --root-dir "$NODE/kubelet" --cert-dir "$NODE/kubelet/pki" \
    --node-labels "codex-k8s.io/node=real" --pod-infra-container-image "$NODE_PAUSE_IMAGE"
  wait_for node 120 node_is_ready "$NODE_NAME" \
    || { tail -30 "$RUN/kubelet.log" >&2; node_stop; die "the kubelet did not make $NODE_NAME Ready (log: $RUN/kubelet.log)"; }
  say "real node $NODE_NAME ($ip) ready in $(( $(date +%s) - begun ))s: containerd $NODE_SOCK, pods on $NODE_BRIDGE ($NODE_POD_CIDR)"
}

# The names of the network namespaces (under /var/run/netns) of this containerd's containers.
node_netns() {
  local c
  for c in $(ctr --address "$NODE_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
    ctr --address "$NODE_SOCK" -n k8s.io containers info "$c" 2>/dev/null
  done | python3 -c '
import json, sys
dec, text, i = json.JSONDecoder(), sys.stdin.read(), 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    info, i = dec.raw_decode(text, i)
    for ns in (info.get("Spec") or {}).get("linux", {}).get("namespaces", []):
        path = ns.get("path") or ""
        if ns.get("type") == "network" and path.startswith("/var/run/netns/"):
            print(path.rsplit("/", 1)[1])
'
}

# Stops the kubelet, the pods' containers and containerd, by process id.
node_stop_processes() {
  local p pid shim
  for p in kubelet containerd; do
    if [ -f "$RUN/$p.pid" ]; then
      pid="$(cat "$RUN/$p.pid")"
      if [ "$p" = containerd ] && kill -0 "$pid" 2>/dev/null; then
        # The pods' containers first (each task killed, its shim goes with it), and the network
        # namespaces of their sandboxes remembered for removal.
        node_netns >>"$NODE/netns.owned" 2>/dev/null || true
        ctr --address "$NODE_SOCK" -n k8s.io containers ls -q >>"$NODE/containers.owned" 2>/dev/null || true
        for t in $(ctr --address "$NODE_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
          ctr --address "$NODE_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
        done
      fi
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$RUN/$p.pid"
    fi
  done
  # Shims (and anything left in their containers) of this node's containerd only.
  for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_SOCK" 2>/dev/null); do
    pkill -KILL -P "$shim" 2>/dev/null || true
    kill -KILL "$shim" 2>/dev/null || true
  done
}

# Removes what the node made outside its processes: mounts under $NODE, the pods' network
# namespaces, the bridge, and the kubepods cgroups.
node_stop() {
  node_stop_processes
  local m ns d c
  if [ -d "$NODE" ]; then
    for m in $(awk -v n="$NODE" 'index($2, n) == 1 { print $2 }' /proc/self/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
  fi
  if [ -f "$NODE/netns.owned" ]; then
    for ns in $(sort -u "$NODE/netns.owned"); do
      [ -e "/var/run/netns/$ns" ] && ip netns delete "$ns" 2>/dev/null || true
    done
  fi
  if [ -f "$RUN/iptables.before" ]; then
    python3 "$HERE/iptables-undo.py" "$RUN/iptables.before" iptables || true
    [ -s "$RUN/ip6tables.before" ] && { python3 "$HERE/iptables-undo.py" "$RUN/ip6tables.before" ip6tables || true; }
    rm -f "$RUN/iptables.before" "$RUN/ip6tables.before"
  fi
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE" 2>/dev/null || true
  local c
  for c in /sys/fs/cgroup/*"$NODE_CGROUP_ROOT" /sys/fs/cgroup"$NODE_CGROUP_ROOT"; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  local l
  for l in /var/log/containers/*.log; do
    [ -L "$l" ] && case "$(readlink "$l")" in "$NODE"/*) rm -f "$l" ;; esac
  done
  # The CNI plugins' result cache: entries of this node's network, and of the loopback network
  # containerd sets up for each of its sandboxes (named by the sandbox's container id).
  rm -f /var/lib/cni/results/"$NODE_NET"-* 2>/dev/null || true
  if [ -f "$NODE/containers.owned" ]; then
    for c in $(sort -u "$NODE/containers.owned"); do rm -f /var/lib/cni/results/*-"$c"-* 2>/dev/null || true; done
  fi
  if [ -f "$RUN/node.host-dirs" ]; then
    # The kubelet's device-plugin socket is always at the same place: it is ours when we made
    # its directory.
    grep -qx /var/lib/kubelet/device-plugins "$RUN/node.host-dirs" && { rm -f /var/lib/kubelet/device-plugins/kubelet.sock || true; }
    # Likewise the shims' sockets.
    grep -qx /run/containerd/s "$RUN/node.host-dirs" && { find /run/containerd/s -maxdepth 1 -type s -delete 2>/dev/null || true; }
    for d in $(sort -r "$RUN/node.host-dirs"); do rmdir "$d" 2>/dev/null || true; done
    rm -f "$RUN/node.host-dirs"
  fi
  rm -rf "$NODE"
}
