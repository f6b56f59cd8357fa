#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster on this Linux machine, as root,
# with no Docker: etcd and the Kubernetes components built from their Go
# modules (hack/cluster/binaries.sh), containerd, runc and the CNI plugins
# from Debian, a bridge pod network, and an OCI registry on the node
# (hack/cluster/registry) that containerd pulls from over plain HTTP, and
# NetworkPolicies enforced by kube-router's NetworkPolicy controller
# (iptables and ipset; NETWORK_POLICIES=0 leaves them unenforced).
#
# Everything lives under bin/cluster (CLUSTER_DIR): config, certificates,
# logs/<component>.log, pids/<component>.pid, etcd's data, the registry's
# storage. Idempotent: what runs is kept, what is built is reused.
# Prints the kubeconfig's path at the end. See docs/dev-cluster.md.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root (the kubelet, containerd and the pod network need it)"
[[ $(uname -s) == Linux ]] || die "Linux only"
t0=$SECONDS
mkdir -p "$W"/{pki,logs,pids,bin,etcd,kubelet,containerd/certs.d}

# --- node address ----------------------------------------------------------
NODE_IP=${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
[[ -n $NODE_IP ]] || NODE_IP=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1)
[[ -n $NODE_IP ]] || die "cannot find the node's IPv4 address; set NODE_IP"
log "node $NODE_NAME at $NODE_IP, pods $POD_CIDR (gateway $POD_GATEWAY), services $SERVICE_CIDR"

# --- packages from Debian ----------------------------------------------------
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
((NETWORK_POLICIES)) && ! command -v ipset >/dev/null && need+=(ipset)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  log "installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: do not let the package start a containerd of its own
  prc=false
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc=true
  fi
  rc=0
  nice -n 19 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
  $prc && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install ${need[*]} failed"
fi

# --- binaries ------------------------------------------------------------------
log "checking Kubernetes binaries (built from the Go module proxy on first use)"
K=$(kube_bin_dir)
KUBECTL=$(kubectl_cmd)
log "Kubernetes binaries: $K ($("$K/kube-apiserver" --version 2>/dev/null))"
if [[ ! -x $W/bin/registry || -n $(find "$root/hack/cluster/registry" -newer "$W/bin/registry" -name '*.go' | head -n1) ]]; then
  log "building the registry"
  (cd "$root" && CGO_ENABLED=0 nice -n 19 go build -trimpath -o "$W/bin/registry" ./hack/cluster/registry)
fi

# --- certificates and tokens ---------------------------------------------------
P=$W/pki
if [[ ! -f $P/ca.crt ]]; then
  log "creating the cluster CA"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=lambdapod-dev-ca" \
    -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
fi
san="IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:$POD_GATEWAY,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
if [[ ! -f $P/apiserver.crt || "$(cat "$P/apiserver.san" 2>/dev/null)" != "$san" ]]; then
  log "creating the API server's serving certificate"
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=kube-apiserver" -keyout "$P/apiserver.key" -out "$P/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 3650 -sha256 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out "$P/apiserver.crt" 2>/dev/null
  echo "$san" >"$P/apiserver.san"
fi
if [[ ! -f $P/sa.key ]]; then
  log "creating the service-account signing key"
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
fi
# static tokens: token,user,uid,"groups"
if [[ ! -f $P/tokens.csv ]]; then
  tok() { openssl rand -hex 16; }
  {
    echo "$(tok),admin,admin,\"system:masters\""
    echo "$(tok),system:kube-controller-manager,kcm,"
    echo "$(tok),system:kube-scheduler,sched,"
    echo "$(tok),system:kube-proxy,proxy,"
    echo "$(tok),system:node:$NODE_NAME,node,\"system:nodes\""
  } >"$P/tokens.csv"
  chmod 600 "$P/tokens.csv"
fi
# kube-router's identity, added to a cluster created before it: the API
# server reads the file at start only, so a running one is restarted
if ! grep -q ',system:kube-router,' "$P/tokens.csv"; then
  echo "$(openssl rand -hex 16),system:kube-router,kube-router," >>"$P/tokens.csv"
  stop kube-apiserver
fi
token_of() { awk -F, -v u="$1" '$2 == u {print $1}' "$P/tokens.csv"; }
kubeconfig() { # file user
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lambdapod-dev
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $P/ca.crt
users:
- name: $2
  user:
    token: $(token_of "$2")
contexts:
- name: lambdapod-dev
  context: {cluster: lambdapod-dev, user: $2}
current-context: lambdapod-dev
KC
  chmod 600 "$1"
}
kubeconfig "$KUBECONFIG_OUT" admin
kubeconfig "$W/controller-manager.kubeconfig" system:kube-controller-manager
kubeconfig "$W/scheduler.kubeconfig" system:kube-scheduler
kubeconfig "$W/proxy.kubeconfig" system:kube-proxy
kubeconfig "$W/kubelet.kubeconfig" "system:node:$NODE_NAME"
kubeconfig "$W/kube-router.kubeconfig" system:kube-router
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_OUT" "$@"; }

# --- pod network -----------------------------------------------------------------
# The bridge exists before any pod so that the registry can listen on the
# pods' gateway address; the bridge plugin adopts it.
if [[ ! -f $W/sysctl.orig ]]; then
  for s in "${HOST_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$W/sysctl.orig"
fi
sysctl -qw net.ipv4.ip_forward=1
# pods talk to each other across the bridge: NetworkPolicies (iptables
# rules) see that traffic only with bridge netfilter on
[[ -e /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.bridge.bridge-nf-call-iptables=1 || die "cannot turn bridge netfilter on (net.bridge.bridge-nf-call-iptables)"
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "creating bridge $BRIDGE ($POD_GATEWAY/${POD_CIDR#*/})"
  ip link add "$BRIDGE" type bridge
fi
# (not `ip | grep -q`: under pipefail, grep quitting early can fail the pipe)
grep -q "inet $POD_GATEWAY/" <<<"$(ip addr show dev "$BRIDGE")" || ip addr add "$POD_GATEWAY/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
mkdir -p "$(dirname "$CNI_CONF")"
cat >"$CNI_CONF.tmp" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
mv "$CNI_CONF.tmp" "$CNI_CONF"

# --- registry ----------------------------------------------------------------------
start registry "$W/bin/registry" -dir "$W/registry" -addr "127.0.0.1:$REGISTRY_PORT" -addr "$POD_GATEWAY:$REGISTRY_PORT"
wait_for "the registry" 20 curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/"

# --- etcd and the control plane ------------------------------------------------------
start etcd "$K/etcd" --name lambdapod-dev --data-dir "$W/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "lambdapod-dev=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
wait_for "etcd" 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$K/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
  --client-ca-file "$P/ca.crt" --token-auth-file "$P/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --kubelet-preferred-address-types InternalIP,Hostname \
  --allow-privileged --profiling=false
wait_for "kube-apiserver /readyz" 120 kc get --raw /readyz

start kube-controller-manager "$K/kube-controller-manager" \
  --kubeconfig "$W/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$W/controller-manager.kubeconfig" --authorization-kubeconfig "$W/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
  --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
start kube-scheduler "$K/kube-scheduler" \
  --kubeconfig "$W/scheduler.kubeconfig" \
  --authentication-kubeconfig "$W/scheduler.kubeconfig" --authorization-kubeconfig "$W/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false

# --- containerd -------------------------------------------------------------------------
for h in "localhost:$REGISTRY_PORT" "127.0.0.1:$REGISTRY_PORT" "$POD_GATEWAY:$REGISTRY_PORT"; do
  mkdir -p "$W/containerd/certs.d/$h"
  cat >"$W/containerd/certs.d/$h/hosts.toml" <<HOSTS
server = "http://$h"

[host."http://$h"]
  capabilities = ["pull", "resolve", "push"]
HOSTS
done
cat >"$W/containerd/config.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # lowering oom_score_adj below the parent's is refused on these machines:
  # without this every sandbox fails with "can't get final child's PID from pipe: EOF"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$(dirname "$CNI_CONF")"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$W/containerd/certs.d"
TOML
start containerd containerd --config "$W/containerd/config.toml"
ctr() { command ctr --address "$CONTAINERD_SOCK" "$@"; }
wait_for "containerd" 30 ctr version

# the sandbox image: built here, imported (so no pull is ever needed) and pushed
pause_repo=${PAUSE_IMAGE#*/}; pause_repo=${pause_repo%:*}
if ! ctr -n k8s.io images ls -q | grep -qx "$PAUSE_IMAGE" ||
  ! curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:$REGISTRY_PORT/v2/$pause_repo/manifests/${PAUSE_IMAGE##*:}" >/dev/null; then
  log "building the sandbox image $PAUSE_IMAGE"
  (cd "$root" && nice -n 19 go run ./hack/images -images pause -registry "$REGISTRY" -tag "$IMAGE_TAG" -tarball "$W/pause.tar" >/dev/null)
  ctr -n k8s.io images import "$W/pause.tar" >/dev/null
  ctr -n k8s.io images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
fi

# --- kubelet and kube-proxy -----------------------------------------------------------------
cat >"$W/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
volumePluginDir: $W/kubelet/volume-plugins
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
maxPods: 200
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
YAML
mkdir -p "$KUBELET_DIR"
# a node object left in etcd by an earlier run still says Ready: only a
# heartbeat newer than this kubelet's start counts
since=0
running kubelet || since=$(date +%s)
start kubelet "$K/kubelet" --config "$W/kubelet/config.yaml" --kubeconfig "$W/kubelet.kubeconfig" \
  --root-dir "$KUBELET_DIR" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
start kube-proxy "$K/kube-proxy" --kubeconfig "$W/proxy.kubeconfig" --hostname-override "$NODE_NAME" \
  --proxy-mode iptables --cluster-cidr "$POD_CIDR" --masquerade-all \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256

node_ready() {
  local st hb
  read -r st hb < <(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}')
  [[ $st == True ]] && (($(date -d "$hb" +%s) >= since))
}
wait_for "node $NODE_NAME Ready" 180 node_ready
wait_for "the default service account" 60 kc get serviceaccount default

# --- NetworkPolicies: kube-router's NetworkPolicy controller only -------------------------
# No routing, service proxy or load balancer of kube-router: the bridge and
# kube-proxy do those. It reads pods, namespaces and NetworkPolicies (and,
# from its shared informers, services, endpoints and nodes) and writes the
# node's iptables filter table (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*
# chains) and ipsets (KUBE-SRC-*, KUBE-DST-*); down.sh removes them. Traffic
# from the node's own addresses to its pods (kubelet probes, the e2e suite,
# the git server) is always allowed. It starts once the node is registered
# (it exits when its Node does not exist).
if ((NETWORK_POLICIES)); then
  kc apply -f - >/dev/null <<'RBAC'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: lambdapod-dev:kube-router
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: lambdapod-dev:kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: lambdapod-dev:kube-router
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:kube-router
RBAC
  start kube-router "$K/kube-router" --kubeconfig "$W/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-port 0 --metrics-port 0
  # (its health check would listen on every address of the host: it is
  # off, and its chains tell that its NetworkPolicy controller has synced)
  netpol_synced() { running kube-router && iptables -t filter -S KUBE-ROUTER-FORWARD; }
  wait_for "kube-router's NetworkPolicy rules" 60 netpol_synced || die "kube-router: see $W/logs/kube-router.log"
else
  # a kube-router of an earlier up: its rules would go on enforcing
  stop kube-router
  netpol_cleanup
fi

log "cluster up in $((SECONDS - t0))s"
kc get nodes -o wide >&2
cat >&2 <<MSG

  export KUBECONFIG=$KUBECONFIG_OUT
  registry: $REGISTRY (from pods: $POD_GATEWAY:$REGISTRY_PORT); images: make images
  logs: $W/logs/   stop: make cluster-down

MSG
echo "$KUBECONFIG_OUT"
