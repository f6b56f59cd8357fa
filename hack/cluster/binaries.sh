#!/usr/bin/env bash
# Builds Kubernetes binaries from the Go module proxy, static (CGO_ENABLED=0),
# with the version ldflags so they report v1.X.Y instead of
# v0.0.0-master+$Format:%H$, into bin/k8s/<version>: the ones named as
# arguments (hack/envtest-binaries.sh names what envtest needs), or by
# default everything a single-node cluster needs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, and
# kube-router for NetworkPolicies); always etcd, and kubectl where none is
# installed.
# The Kubernetes version follows k8s.io/api in go.mod (v0.X.Y -> v1.X.Y), the
# etcd version what that release requires; kube-router's is pinned below
# (KUBE_ROUTER_VERSION). Prints the directory holding the
# binaries; a second run is a no-op. Builds run under `nice -n 19`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
api=$(go list -m -f '{{.Version}}' k8s.io/api)
kube="v1${api#v0}"
out="$root/bin/k8s/$kube"
# kube-router, of which the local cluster runs only the NetworkPolicy
# controller (hack/cluster/up.sh). v2.1.0 is the newest release the module
# proxy serves; kube-network-policies cannot run here (docs/networkpolicy.md).
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}
kube_router_mod=github.com/cloudnativelabs/kube-router/v2
if (($#)); then
  bins=("$@")
else
  bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)
fi
command -v kubectl >/dev/null || bins+=(kubectl)
# kube_router_ok: the kube-router binary is there and of the pinned version
kube_router_ok() {
  [[ -x "$out/kube-router" ]] &&
    grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+$kube_router_mod[[:space:]]+$KUBE_ROUTER_VERSION([[:space:]]|$)" \
      <<<"$(go version -m "$out/kube-router" 2>/dev/null)"
}
have() {
  for b in "${bins[@]}" etcd; do
    if [[ $b == kube-router ]]; then kube_router_ok || return 1; else [[ -x "$out/$b" ]] || return 1; fi
  done
}
if have; then
  echo "$out"
  exit 0
fi

log() { echo "k8s-binaries: $*" >&2; }
src="$root/bin/k8s/src-$kube"
mkdir -p "$out" "$src/kube" "$src/etcd"
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

# kubernetes' own go.mod points its staging modules at ./staging; a module
# that requires k8s.io/kubernetes must point them at their published tags.
kubemod=$(go mod download -json "k8s.io/kubernetes@$kube" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
etcd=$(sed -n 's/^[[:space:]]*go.etcd.io\/etcd\/server\/v3 \(v[^ ]*\).*/\1/p' "$kubemod" | head -n1)
[[ -n "$etcd" ]] || { log "cannot find etcd's version in $kubemod"; exit 1; }

cd "$src/kube"
if [[ ! -f go.mod ]] || ! grep -q "k8s.io/kubernetes $kube" go.mod; then
  rm -f go.mod go.sum
  go mod init lambdapod.local/envtest-kube >/dev/null 2>&1
  go mod edit -require "k8s.io/kubernetes@$kube"
  sed -n 's/^[[:space:]]*\(k8s.io\/[a-z0-9-]*\) => \.\/staging\/.*/\1/p' "$kubemod" | while read -r m; do
    go mod edit -replace "$m=$m@$api"
  done
fi
minor=${kube#v1.}; minor=${minor%%.*}
for b in "${bins[@]}"; do
  [[ $b == kube-router || -x "$out/$b" ]] && continue
  start=$SECONDS
  log "building $b $kube (a few minutes the first time)"
  go get "k8s.io/kubernetes/cmd/$b@$kube" 2>/dev/null
  nice -n 19 go build -trimpath -o "$out/$b.tmp" -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$kube \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor" \
    "k8s.io/kubernetes/cmd/$b"
  mv "$out/$b.tmp" "$out/$b"
  log "built $b in $((SECONDS - start))s"
done

if [[ ! -x "$out/etcd" ]]; then
  log "building etcd $etcd"
  cd "$src/etcd"
  if [[ ! -f go.mod ]] || ! grep -q "go.etcd.io/etcd/server/v3 $etcd" go.mod; then
    rm -f go.mod go.sum
    go mod init lambdapod.local/envtest-etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$etcd" 2>/dev/null
  fi
  nice -n 19 go build -trimpath -o "$out/etcd.tmp" -ldflags "-s -w" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp" "$out/etcd"
fi
if [[ " ${bins[*]} " == *" kube-router "* ]] && ! kube_router_ok; then
  start=$SECONDS
  log "building kube-router $KUBE_ROUTER_VERSION (a few minutes the first time)"
  mkdir -p "$src/kube-router"
  cd "$src/kube-router"
  if [[ ! -f go.mod ]] || ! grep -q "$kube_router_mod $KUBE_ROUTER_VERSION" go.mod; then
    rm -f go.mod go.sum
    go mod init lambdapod.local/kube-router >/dev/null 2>&1
    go get "$kube_router_mod/cmd/kube-router@$KUBE_ROUTER_VERSION" 2>/dev/null
  fi
  nice -n 19 go build -trimpath -o "$out/kube-router.tmp" -ldflags "-s -w \
    -X $kube_router_mod/pkg/version.Version=$KUBE_ROUTER_VERSION" "$kube_router_mod/cmd/kube-router"
  mv "$out/kube-router.tmp" "$out/kube-router"
  log "built kube-router in $((SECONDS - start))s"
fi
echo "$out"
