#!/usr/bin/env bash
# Builds the control-plane binaries that envtest runs (kube-apiserver, etcd,
# and kube-controller-manager, whose deployment, replicaset and garbage
# collector controllers the integration tests run for real) from their Go
# modules, because nothing may be downloaded from anywhere but
# the Go module proxy. The Kubernetes version follows k8s.io/api in go.mod
# (v0.X.Y -> v1.X.Y); etcd follows what that Kubernetes release requires.
# Prints the directory holding the binaries; a second run is a no-op.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
api=$(go list -m -f '{{.Version}}' k8s.io/api)
kube="v1${api#v0}"
out="$root/bin/k8s/$kube"
bins=(kube-apiserver kube-controller-manager)
# The integration tests drive kubectl; build it too where none is installed.
command -v kubectl >/dev/null || bins+=(kubectl)
have() { for b in "${bins[@]}" etcd; do [[ -x "$out/$b" ]] || return 1; done; }
if have; then
  echo "$out"
  exit 0
fi

log() { echo "envtest-binaries: $*" >&2; }
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
  [[ -x "$out/$b" ]] && continue
  log "building $b $kube (a few minutes the first time)"
  go get "k8s.io/kubernetes/cmd/$b@$kube" 2>/dev/null
  go build -trimpath -o "$out/$b" -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$kube \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor" \
    "k8s.io/kubernetes/cmd/$b"
done

if [[ ! -x "$out/etcd" ]]; then
  log "building etcd $etcd"
  cd "$src/etcd"
  rm -f go.mod go.sum
  go mod init lambdapod.local/envtest-etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$etcd" 2>/dev/null
  go build -trimpath -o "$out/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
fi
echo "$out"
