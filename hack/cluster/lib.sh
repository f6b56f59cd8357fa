# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings are used by the scripts that source this file
# Shared settings and helpers of hack/cluster/{up,down}.sh. Every setting can
# be overridden from the environment.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
W=${CLUSTER_DIR:-$root/bin/cluster}           # work directory: config, certs, logs, pids, etcd data
NODE_NAME=${NODE_NAME:-lambdapod-dev}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
POD_GATEWAY=${POD_GATEWAY:-10.244.0.1}        # the bridge's address: the node as seen from pods
BRIDGE=${BRIDGE:-cni0}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
KUBERNETES_SVC_IP=${KUBERNETES_SVC_IP:-10.96.0.1}
API_PORT=${API_PORT:-6443}
ETCD_PORT=${ETCD_PORT:-23790}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
REGISTRY_PORT=${REGISTRY_PORT:-5000}
REGISTRY=${REGISTRY:-localhost:$REGISTRY_PORT}
IMAGE_TAG=${IMAGE_TAG:-dev}
PAUSE_IMAGE=${PAUSE_IMAGE:-$REGISTRY/lambdapod/pause:$IMAGE_TAG}
CONTAINERD_SOCK=${CONTAINERD_SOCK:-/run/containerd/containerd.sock}
KUBELET_DIR=${KUBELET_DIR:-/var/lib/kubelet}
CNI_CONF=${CNI_CONF:-/etc/cni/net.d/10-lambdapod.conflist}
CNI_NET=lambdapod
CLUSTER_NICE=${CLUSTER_NICE:-0}               # niceness of the cluster's processes
KUBECONFIG_OUT=$W/kubeconfig

# sysctls the cluster changes on the host (forwarding for the pod network,
# iptables on bridged traffic for NetworkPolicies, vm.overcommit_memory and
# friends set by the kubelet); up.sh saves their
# values before changing any, down.sh restores them.
HOST_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# NETWORK_POLICIES=1 (the default) enforces NetworkPolicies with kube-router's
# NetworkPolicy controller (iptables and ipset rules on the node); 0 runs no
# enforcer, so NetworkPolicies are stored but have no effect.
NETWORK_POLICIES=${NETWORK_POLICIES:-1}

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(registry etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-router)

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pidfile() { echo "$W/pids/$1.pid"; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
  local st
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# running NAME: true when the process recorded for NAME is alive.
running() {
  local f pid
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid ]] && alive "$pid" || return 1
  # guard against a recycled pid: it must still be the binary we started
  [[ "$(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null)" == *"$1"* ]]
}

# start NAME CMD...: starts CMD in its own session, logging to logs/NAME.log,
# unless NAME already runs with the same command line (a changed one is
# restarted).
start() {
  local name=$1; shift
  local args="$*"
  if running "$name"; then
    if [[ "$(cat "$W/pids/$name.args" 2>/dev/null)" == "$args" ]]; then
      log "$name already running (pid $(<"$(pidfile "$name")"))"
      return 0
    fi
    log "$name runs with other flags: restarting it"
    stop "$name"
  fi
  mkdir -p "$W/logs" "$W/pids"
  log "starting $name (log: $W/logs/$name.log)"
  setsid nice -n "$CLUSTER_NICE" "$@" >>"$W/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
  echo "$args" >"$W/pids/$name.args"
}

# stop NAME [TIMEOUT]: SIGTERM, then SIGKILL after TIMEOUT seconds.
stop() {
  local name=$1 t=${2:-15} pid i
  running "$name" || { rm -f "$(pidfile "$name")"; return 0; }
  pid=$(<"$(pidfile "$name")")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name did not stop in ${t}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$(pidfile "$name")" "$W/pids/$name.args"
}

# wait_for DESC TIMEOUT CMD...: polls CMD every 0.5 s, printing the elapsed
# time every 5 s; fails after TIMEOUT seconds.
wait_for() {
  local desc=$1 t=$2; shift 2
  local start=$SECONDS next=5
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= t)); then
      log "timed out after ${t}s waiting for $desc"
      return 1
    fi
    if ((SECONDS - start >= next)); then
      log "waiting for $desc (${next}s)"
      next=$((next + 5))
    fi
    sleep 0.5
  done
  log "$desc after $((SECONDS - start))s"
}

# netpol_cleanup: removes what kube-router's NetworkPolicy controller wrote,
# once it is stopped: its filter chains (KUBE-ROUTER-*, KUBE-POD-FW-*,
# KUBE-NWPLCY-*) and the jumps to them, then its ipsets (KUBE-SRC-*,
# KUBE-DST-*), which the rules used.
netpol_cleanup() {
  local ipt rule c chains s
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    while read -r rule; do
      [[ -n $rule ]] && { eval "$ipt -t filter ${rule/#-A/-D}" 2>/dev/null || true; }
    done < <("$ipt-save" -t filter 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD) .*-j KUBE-ROUTER-' || true)
    chains=$("$ipt-save" -t filter 2>/dev/null | sed -n 's/^:\(KUBE-\(ROUTER\|POD-FW\|NWPLCY\)-[^ ]*\) .*/\1/p')
    for c in $chains; do "$ipt" -t filter -F "$c" 2>/dev/null || true; done
    for c in $chains; do "$ipt" -t filter -X "$c" 2>/dev/null || true; done
  done
  command -v ipset >/dev/null || return 0
  for s in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-(SRC|DST)-' || true); do
    ipset destroy "$s" 2>/dev/null || log "cannot destroy ipset $s"
  done
}

kube_bin_dir() {
  "$root/hack/cluster/binaries.sh"
}

kubectl_cmd() {
  if command -v kubectl >/dev/null; then echo kubectl; else echo "$(kube_bin_dir)/kubectl"; fi
}
