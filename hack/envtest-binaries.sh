#!/usr/bin/env bash
# Builds the binaries the integration tests run (kube-apiserver, etcd, and
# kube-controller-manager, whose deployment, replicaset and garbage
# collector controllers the tests run for real) from their Go modules,
# because nothing may be downloaded from anywhere but the Go module proxy.
# Prints the directory holding them (bin/k8s/<version>); a second run is a
# no-op. hack/cluster/binaries.sh does the work for both.
exec "$(dirname "$0")/cluster/binaries.sh" kube-apiserver kube-controller-manager
