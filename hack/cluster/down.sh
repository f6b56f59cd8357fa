#!/usr/bin/env bash
# Tears down the cluster of hack/cluster/up.sh: no process, mount or network
# interface of it is left behind. Kept for the next `up`: built binaries,
# certificates, etcd's data (Deployments and the like come back; pods that no
# controller owns do not) and the registry's images.
# --purge also deletes etcd's data, the kubelet's state and the registry's
# storage (the images in containerd's store stay).
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root"
purge=false
[[ ${1:-} == --purge ]] && purge=true
ctr() { command ctr --address "$CONTAINERD_SOCK" "$@"; }
running_tasks() { ctr -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED" {print $1}'; }
kc() { "$(kubectl_cmd)" --kubeconfig "$KUBECONFIG_OUT" --request-timeout 10s "$@"; }

# 1. No new pods: stop the controllers and the scheduler first.
stop kube-scheduler
stop kube-controller-manager

# 2. Let the kubelet stop every pod itself, so that the CNI plugins release
#    addresses and remove veths and the runtime unmounts what it mounted:
#    delete the pods (owners recreate them on the next up).
if running kubelet && running kube-apiserver && running containerd; then
  if [[ -n $(kc get pods -A -o name 2>/dev/null | head -n1) ]]; then
    log "deleting pods so the kubelet stops them"
    kc delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    no_tasks() { [[ -z $(running_tasks) ]]; }
    wait_for "the kubelet to stop all pods" 60 no_tasks || true
  fi
fi
stop kube-router
stop kube-proxy
stop kubelet 20

# 3. Anything still running in containerd: kill it, the hard way.
if running containerd; then
  for t in $(running_tasks); do
    log "killing leftover task $t"
    ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true; done
fi
stop containerd 20
# shims outlive containerd by design; ours are the ones on our socket
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
  log "killing containerd shim $pid"
  kill -KILL "$pid" 2>/dev/null || true
done
sleep 0.3

stop kube-apiserver
stop etcd
stop registry
# make dev's git server (hack/dev/up.sh) listens on the bridge's address
stop gitserver

# 4. Mounts: pod volumes, sandbox /dev/shm, container root filesystems,
#    network namespaces. Deepest first.
umount_under() {
  local m
  for m in $(awk -v p="$1" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r | uniq); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done
}
umount_under "$KUBELET_DIR"
umount_under /run/containerd/
umount_under /var/lib/containerd/
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
  rm -f "$ns"
done

# 5. Network: veths on the bridge, the bridge, iptables rules.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  ip link del "$BRIDGE"
  log "removed bridge $BRIDGE"
fi
rm -rf "/var/lib/cni/networks/$CNI_NET" "/var/lib/cni/results/$CNI_NET"-*
# kube-proxy's chains
if [[ -x $root/bin/k8s ]]; then
  K=$(ls -d "$root"/bin/k8s/v*/kube-proxy 2>/dev/null | head -n1 || true)
  [[ -n $K ]] && "$K" --cleanup >/dev/null 2>&1 || true
fi
# the bridge plugin's masquerade rules (commented with our network's name)
# and the CNI-<hash> chains they jump to
rules=$(iptables-save -t nat 2>/dev/null | grep -F "name: \"$CNI_NET\"" | grep '^-A POSTROUTING' || true)
if [[ -n $rules ]]; then
  chains=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rules" | sort -u)
  while read -r rule; do eval "iptables -t nat ${rule/#-A/-D}" 2>/dev/null || true; done <<<"$rules"
  for c in $chains; do iptables -t nat -F "$c" 2>/dev/null; iptables -t nat -X "$c" 2>/dev/null || true; done
fi
# the kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT),
# kube-router's (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) and anything of
# kube-proxy's that --cleanup left: jumps from built-in chains first, then
# the chains
for ipt in iptables ip6tables; do
  command -v $ipt-save >/dev/null || continue
  for table in filter nat mangle; do
    jumps=$($ipt-save -t $table 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' || true)
    [[ -z $jumps ]] || while read -r rule; do eval "$ipt -t $table ${rule/#-A/-D}" 2>/dev/null || true; done <<<"$jumps"
    chains=$($ipt-save -t $table 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p')
    for c in $chains; do $ipt -t $table -F "$c" 2>/dev/null || true; done
    for c in $chains; do $ipt -t $table -X "$c" 2>/dev/null || true; done
  done
done
# kube-router's ipsets (and any of its rules the loop above left)
netpol_cleanup
rm -f "$CNI_CONF"

# 6. The kubelet's sysctls back as they were.
if [[ -f $W/sysctl.orig ]]; then
  while IFS="=" read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$W/sysctl.orig"
  rm -f "$W/sysctl.orig"
fi

if $purge; then
  log "purging etcd data, kubelet state and the registry's storage"
  rm -rf "$W/etcd" "$W/registry" "$KUBELET_DIR" /var/lib/cni
fi

left=$(for c in "${COMPONENTS[@]}"; do if running "$c"; then echo "$c"; fi; done)
[[ -z $left ]] || die "still running: $left"
rules=$(for ipt in iptables ip6tables; do
  command -v $ipt-save >/dev/null && $ipt-save 2>/dev/null | grep -E '^(:|-A .*-j )KUBE-' || true
done)
[[ -z $rules ]] || die "iptables rules left: $rules"
sets=$(command -v ipset >/dev/null && ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-' || true)
[[ -z $sets ]] || die "ipsets left: $sets"
mounts=$(awk -v k="$KUBELET_DIR" '(index($2, k) == 1 || $2 ~ /^\/run\/containerd\// || $2 ~ /^\/run\/netns\/cni-/)' /proc/self/mounts)
[[ -z $mounts ]] || die "mounts left: $mounts"
log "cluster down"
