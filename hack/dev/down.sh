#!/usr/bin/env bash
# make dev-down: stops what make dev started on top of the cluster (the git
# server), then the cluster itself (hack/cluster/down.sh, which takes
# --purge). The Function, lambdapod and Tekton stay in etcd for the next
# make dev unless --purge.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
stop gitserver
exec "$root/hack/cluster/down.sh" "$@"
