#!/usr/bin/env bash
# make dev-down: stops what make dev started on top of the cluster (the git
# server), then the cluster itself (hack/cluster/down.sh, which takes
# --purge). The Function, lambdapod and Tekton stay in etcd for the next
# make dev unless --purge, which also deletes the data of make dev's
# PersistentVolumes (bin/cluster/volumes).
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
stop gitserver
"$root/hack/cluster/down.sh" "$@"
if [[ ${1:-} == --purge ]]; then
  # the hostPath volumes of make dev's PersistentVolumes (NATS's JetStream
  # store), whose objects went with etcd's data
  log "purging $W/volumes"
  rm -rf "$W/volumes"
fi
