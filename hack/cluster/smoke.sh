#!/usr/bin/env bash
# Checks that the local cluster runs pods from the node registry the way
# lambdapod's function pods need: a pod as user 65532 with a read-only root
# filesystem whose init container copies /supervisor into an emptyDir
# (pulled as localhost:5000/...) and whose container runs it from there
# (pulled as 10.244.0.1:5000/..., the name pods use), to completion; and a
# runtime-sidecar pod whose /healthz the host reaches on the pod's address and through a
# Service (kube-proxy). Needs `make images`.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_OUT}
k() { "$(kubectl_cmd)" -n cluster-smoke "$@"; }
"$(kubectl_cmd)" delete namespace cluster-smoke --ignore-not-found --timeout=60s >/dev/null
"$(kubectl_cmd)" create namespace cluster-smoke >/dev/null
cat <<YAML | k apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: supervisor}
spec:
  restartPolicy: Never
  dnsPolicy: Default
  securityContext: {runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true}
  volumes: [{name: lambdapod, emptyDir: {}}]
  initContainers:
  - name: install
    image: $REGISTRY/lambdapod/runtime-sidecar:$IMAGE_TAG
    imagePullPolicy: Always
    command: [/supervisor, install, /lambdapod/supervisor]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
    volumeMounts: [{name: lambdapod, mountPath: /lambdapod}]
  containers:
  - name: run
    image: $POD_GATEWAY:$REGISTRY_PORT/lambdapod/runtime-sidecar:$IMAGE_TAG
    imagePullPolicy: Always
    command: [/lambdapod/supervisor, --help]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
    volumeMounts: [{name: lambdapod, mountPath: /lambdapod}]
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 65532, runAsNonRoot: true}
  containers:
  - name: sidecar
    image: $REGISTRY/lambdapod/runtime-sidecar:$IMAGE_TAG
    args: [--invoke-addr, ":8080", --, /supervisor, --help]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{port: 80, targetPort: 8080}]
YAML
t=$SECONDS
k wait --for=jsonpath='{.status.phase}'=Succeeded pod/supervisor --timeout=120s >/dev/null
log "pod supervisor Succeeded in $((SECONDS - t))s; its output:"
out=$(k logs supervisor -c run); sed -n 1,3p <<<"$out" >&2
k wait --for=condition=Ready pod/server --timeout=60s >/dev/null
ip=$(k get pod server -o jsonpath='{.status.podIP}')
log "pod server (runtime-sidecar, standalone) Ready at $ip"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$ip:8080/healthz")
[[ $code == 200 ]] || die "host -> http://$ip:8080/healthz: $code"
log "host -> http://$ip:8080/healthz: $code"
svc=$(k get service server -o jsonpath='{.spec.clusterIP}')
code=000
for _ in $(seq 20); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$svc/healthz" || true)
  [[ $code == 200 ]] && break
  sleep 0.5
done
[[ $code == 200 ]] || die "host -> Service http://$svc/healthz: $code"
log "host -> Service http://$svc/healthz (kube-proxy): $code"
"$(kubectl_cmd)" delete namespace cluster-smoke --wait=false >/dev/null
log "smoke test passed"
