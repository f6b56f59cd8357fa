#!/usr/bin/env bash
# make dev: the local cluster with Tekton and lambdapod installed, and a
# sample Go function built from a git repository served on the node, then
# invoked through the activator. Idempotent: a second run reuses what exists.
# See docs/dev-cluster.md.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

D=${DEV_DIR:-$root/bin/dev}                   # make dev's work directory
GIT_PORT=${GIT_PORT:-5001}
NODE_REGISTRY=$POD_GATEWAY:$REGISTRY_PORT     # the registry as pods (and containerd) see it
NS=${LAMBDAPOD_NAMESPACE:-lambdapod-system}
RELEASE=lambdapod
FN=${DEV_FUNCTION:-hello}
FN_NS=${DEV_FUNCTION_NAMESPACE:-default}
HELM_VERSION=v3.21.4
DOMAIN=${DEV_DOMAIN:-lambdapod.test}          # functions at <name>.<namespace>.$DOMAIN through the Ingress
INGRESS_HOST=activator.$DOMAIN                # path routing through the Ingress
HOOKS_HOST=hooks.$DOMAIN                      # git push webhooks through the Ingress
TLS_SECRET=lambdapod-dev-tls
READY_TIMEOUT=${DEV_READY_TIMEOUT:-600}
NATS_DATA=$W/volumes/nats-0                    # the NATS server's JetStream store (hostPath)
NATS_PV=lambdapod-dev-nats-0
NATS_CLASS=lambdapod-dev-local
NATS_SIZE=2Gi
GO=${GO:-go}

dlog() { printf '[dev %s] %s\n' "$(date +%T)" "$*" >&2; }
t0=$SECONDS
step() { dlog "== $* (at $((SECONDS - t0))s)"; }

cd "$root"
mkdir -p "$D/bin" "$D/git" "$D/src"

step "cluster"
hack/cluster/up.sh >/dev/null
export KUBECONFIG=$KUBECONFIG_OUT
KUBECTL=$(kubectl_cmd)
kc() { "$KUBECTL" "$@"; }

step "images: lambdapod (and NATS), Tekton $(sed -n 's/^\ttektonVersion = "\(v[^"]*\)".*/\1/p' hack/images/main.go), kaniko and Traefik (go build, push to $REGISTRY)"
[[ -x $root/bin/images/bin/traefik-traefik ]] || dlog "the first run builds Traefik from its module: about 10 minutes"
nice -n 19 "$GO" run ./hack/images -registry "$REGISTRY" -tag "$IMAGE_TAG" -tekton -kaniko -traefik >"$D/images.txt"
digest_of() { awk -F@ -v r="$REGISTRY/$1" '$1 == r {print $2}' "$D/images.txt"; }
for i in lambdapod/manager lambdapod/activator lambdapod/runtime-sidecar lambdapod/nats lambdapod/kaniko-executor tekton/controller traefik/traefik; do
  [[ -n $(digest_of $i) ]] || die "no digest for $i in $D/images.txt"
done

step "sample function source: examples/hello-go -> $D/git/hello-go.git"
src=$D/src/hello-go
rm -rf "$src.new" && mkdir -p "$src.new"
cp -r examples/hello-go/. "$src.new/"
(cd "$src.new" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod vendor)
if [[ ! -d $D/git/hello-go.git ]]; then
  git init -q --bare -b main "$D/git/hello-go.git"
fi
if [[ ! -d $src/.git ]]; then
  rm -rf "$src" && mkdir -p "$src"
  git -C "$src" init -q -b main
  git -C "$src" remote add origin "$D/git/hello-go.git"
fi
# the new tree replaces the old one, history is kept
find "$src" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
cp -r "$src.new/." "$src/" && rm -rf "$src.new"
git -C "$src" add -A
if ! git -C "$src" rev-parse -q --verify HEAD >/dev/null || ! git -C "$src" diff --cached --quiet; then
  git -C "$src" -c user.name="lambdapod dev" -c user.email=dev@lambdapod.invalid commit -q -m "hello-go from examples/hello-go"
fi
git -C "$src" push -q origin main
commit=$(git -C "$src" rev-parse HEAD)
dlog "hello-go.git main at $commit"

step "git server on $POD_GATEWAY:$GIT_PORT"
"$GO" build -o "$D/bin/gitserver" ./hack/dev/gitserver
start gitserver "$D/bin/gitserver" -root "$D/git" -listen "127.0.0.1:$GIT_PORT,$POD_GATEWAY:$GIT_PORT"
wait_for "the git server" 20 git ls-remote "http://127.0.0.1:$GIT_PORT/hello-go.git"

step "Go toolchain image (goImage) from $("$GO" env GOROOT)"
# Compile the sample once here with the flags of the build's compile step,
# so the image carries a build cache and a pod does not compile the
# standard library again.
(cd "$src" && GOCACHE=$D/go-cache CGO_ENABLED=0 GOOS=linux GOARCH=$("$GO" env GOARCH) GOFLAGS=-mod=vendor GOWORK=off GOTOOLCHAIN=local \
  nice -n 19 "$GO" build -trimpath -buildvcs=false "-ldflags=-s -w" -o /dev/null .)
GO_IMAGE=$(nice -n 19 "$GO" run ./hack/dev/goimage -registry "$REGISTRY" -seed-cache "$D/go-cache" -work "$D" | tail -n1)
GO_IMAGE=$NODE_REGISTRY/${GO_IMAGE#"$REGISTRY"/}
dlog "goImage $GO_IMAGE"

step "bash+curl function images (hack/dev/bashimage, for make e2e)"
# the Lambda Developer Guide's bash custom runtime on the host's bash and
# curl; the e2e suite runs it as an image-sourced Function, and the same
# image with an external extension in /opt/extensions (the second line)
BASH_IMAGES=$(nice -n 19 "$GO" run ./hack/dev/bashimage -registry "$REGISTRY" -go "$GO" | tail -n2)
BASH_IMAGE=${BASH_IMAGES%%$'\n'*} BASH_EXT_IMAGE=${BASH_IMAGES#*$'\n'}
[[ $BASH_IMAGE != "$BASH_EXT_IMAGE" ]] || die "hack/dev/bashimage printed one image, not two"
echo "$NODE_REGISTRY/${BASH_IMAGE#"$REGISTRY"/}" >"$D/bash-image.txt"
echo "$NODE_REGISTRY/${BASH_EXT_IMAGE#"$REGISTRY"/}" >"$D/bash-ext-image.txt"
dlog "bash+curl image $(cat "$D/bash-image.txt"), with the extension $(cat "$D/bash-ext-image.txt")"

step "Tekton Pipelines"
# the version the project's go.mod requires, which hack/images builds too
$GO mod download github.com/tektoncd/pipeline
TEKTON=$("$GO" list -m -f '{{.Dir}}' github.com/tektoncd/pipeline)
[[ -d $TEKTON/config/300-crds ]] || die "no Tekton config in '$TEKTON'"
C=$TEKTON/config
kc apply -f "$C/100-namespace/" >/dev/null
kc apply -f "$C/200-clusterrole.yaml" -f "$C/200-role.yaml" -f "$C/200-serviceaccount.yaml" \
  -f "$C/201-clusterrolebinding.yaml" -f "$C/201-rolebinding.yaml" >/dev/null
kc apply --server-side --force-conflicts -f "$C/300-crds/" >/dev/null
for f in "$C"/config-*.yaml; do kc apply -f "$f" >/dev/null; done
# The controller as a Deployment with the images built above, by digest. No
# webhook (no defaulting or admission; lambdapod's PipelineRuns need none)
# and no shell image: lambdapod's steps have no script, so the shell images
# point at the nop image rather than at a public registry.
img() { echo "$REGISTRY/tekton/$1@$(digest_of "tekton/$1")"; }
sed -e "s|ko://github.com/tektoncd/pipeline/cmd/controller|$(img controller)|" \
    -e "s|ko://github.com/tektoncd/pipeline/cmd/entrypoint|$(img entrypoint)|" \
    -e "s|ko://github.com/tektoncd/pipeline/cmd/nop|$(img nop)|" \
    -e "s|ko://github.com/tektoncd/pipeline/cmd/sidecarlogresults|$(img sidecarlogresults)|" \
    -e "s|ko://github.com/tektoncd/pipeline/cmd/workingdirinit|$(img workingdirinit)|" \
    -e "s|\"-shell-image\", \"[^\"]*\"|\"-shell-image\", \"$(img nop)\"|" \
    -e "s|\"-shell-image-win\", \"[^\"]*\"|\"-shell-image-win\", \"$(img nop)\"|" \
    "$C/controller.yaml" >"$D/tekton-controller.yaml"
if grep -q 'ko://\|shell-image", "[^"]*\.\(dev\|com\|io\)/' "$D/tekton-controller.yaml"; then
  die "unreplaced image in $D/tekton-controller.yaml"
fi
kc apply -f "$D/tekton-controller.yaml" >/dev/null
dlog "waiting for the Tekton controller"
kc -n tekton-pipelines rollout status deploy/tekton-pipelines-controller --timeout=180s

step "Ingress controller: Traefik (hack/dev/traefik.yaml), TLS for $INGRESS_HOST and *.$FN_NS.$DOMAIN"
sed "s|TRAEFIK_IMAGE|$NODE_REGISTRY/traefik/traefik@$(digest_of traefik/traefik)|" hack/dev/traefik.yaml >"$D/traefik.yaml"
kc apply -f "$D/traefik.yaml" >/dev/null
kc -n traefik rollout status deploy/traefik --timeout=180s
TRAEFIK=$(kc -n traefik get svc traefik -o jsonpath='{.spec.clusterIP}')
# The activator believes X-Forwarded-* from Traefik's pods alone (the ready
# ones: not one that a rollout is stopping).
read -ra ips <<<"$(kc -n traefik get endpointslices -l kubernetes.io/service-name=traefik \
  -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{" "}{end}')"
((${#ips[@]} > 0)) || die "no ready Traefik pod"
TRAEFIK_POD_IPS=$(printf '%s/32,' "${ips[@]}")
TRAEFIK_POD_IPS=${TRAEFIK_POD_IPS%,}
# A self-signed authority (bin/dev/tls/ca.crt: curl --cacert) and a
# certificate for the activator's host, the webhook host and the functions
# of $FN_NS (a wildcard covers one label: one name per namespace).
"$GO" run ./hack/dev/devcert -dir "$D/tls" -host "$INGRESS_HOST" -host "$HOOKS_HOST" -host "*.$FN_NS.$DOMAIN"
kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n "$NS" create secret tls "$TLS_SECRET" --cert="$D/tls/tls.crt" --key="$D/tls/tls.key" --dry-run=client -o yaml |
  kc apply -f - >/dev/null
dlog "Traefik at $TRAEFIK (pods $TRAEFIK_POD_IPS)"

step "NATS's volume: a hostPath PersistentVolume at $NATS_DATA"
# There is no dynamic provisioner: the claim of the chart's NATS server
# (data-$RELEASE-nats-0, storage class $NATS_CLASS) binds to this volume,
# made for it. make dev-down CLUSTER_PURGE=1 deletes the directory with
# etcd's data.
mkdir -p "$NATS_DATA"
chown 65532:65532 "$NATS_DATA"
if [[ $(kc get pv "$NATS_PV" -o jsonpath='{.status.phase}' 2>/dev/null) == Released ]]; then
  # its claim was deleted (helm uninstall and a PVC delete): free it for the next
  kc patch pv "$NATS_PV" --type json -p '[{"op":"remove","path":"/spec/claimRef/uid"},{"op":"remove","path":"/spec/claimRef/resourceVersion"}]' >/dev/null
fi
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $NATS_PV
  labels:
    app.kubernetes.io/part-of: lambdapod-dev
spec:
  capacity:
    storage: $NATS_SIZE
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $NATS_CLASS
  claimRef:
    namespace: $NS
    name: data-$RELEASE-nats-0
  hostPath:
    path: $NATS_DATA
    type: Directory
EOF

step "lambdapod (Helm chart charts/lambdapod)"
HELM=$D/bin/helm
# (helm installed by go install reports only v3.X: read the module version)
if [[ ! -x $HELM ]] || ! "$GO" version -m "$HELM" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v3[[:space:]]+$HELM_VERSION\b"; then
  dlog "building helm $HELM_VERSION (first run only)"
  GOBIN=$D/bin nice -n 19 "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
# There is no cluster DNS: the activator reaches the autoscaler, and users
# the activator, at Service IPs. They are known once the Services exist, so
# a first install is followed by an upgrade with them.
helm_install() {
  local args=(
    --namespace "$NS" --create-namespace
    --set "manager.image.repository=$REGISTRY/lambdapod/manager,manager.image.digest=$(digest_of lambdapod/manager)"
    --set "activator.image.repository=$REGISTRY/lambdapod/activator,activator.image.digest=$(digest_of lambdapod/activator)"
    --set "sidecar.image.repository=$REGISTRY/lambdapod/runtime-sidecar,sidecar.image.digest=$(digest_of lambdapod/runtime-sidecar)"
    --set "manager.leaderElect=false"
    --set "build.config.helperImage=$NODE_REGISTRY/lambdapod/manager@$(digest_of lambdapod/manager)"
    --set "build.config.goImage=$GO_IMAGE,build.config.baseImage=scratch"
    --set "build.config.kanikoImage=$NODE_REGISTRY/lambdapod/kaniko-executor@$(digest_of lambdapod/kaniko-executor)"
    --set "build.config.insecureRegistries=$NODE_REGISTRY\,$REGISTRY"
    # Behind Traefik: host routing on $DOMAIN, TLS, forwarded headers
    # believed from Traefik's pod alone, webhooks from its namespace.
    --set "domain=$DOMAIN"
    --set "activator.ingress.enabled=true,activator.ingress.className=traefik,activator.ingress.host=$INGRESS_HOST"
    --set "activator.ingress.tls.enabled=true,activator.ingress.tls.secretName=$TLS_SECRET"
    --set "activator.ingress.tls.hosts[0]=*.$FN_NS.$DOMAIN"
    --set "activator.trustedProxies={$TRAEFIK_POD_IPS}"
    --set "webhook.ingress.enabled=true,webhook.ingress.className=traefik,webhook.ingress.host=$HOOKS_HOST"
    --set "webhook.ingress.tls.enabled=true,webhook.ingress.tls.secretName=$TLS_SECRET"
    --set "networkPolicy.webhook.namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=traefik"
    # Events in NATS JetStream (eventQueue, on by default), on the volume
    # above; retries 2 s apart and a dead activator's events taken over
    # after 10 s (not 1 minute and 30 s), so that make e2e sees them soon.
    --set "nats.image.repository=$REGISTRY/lambdapod/nats,nats.image.digest=$(digest_of lambdapod/nats)"
    --set "nats.storage.storageClassName=$NATS_CLASS,nats.storage.size=$NATS_SIZE"
    --set "activator.extraArgs[0]=-event-retry-delay=2s,activator.extraArgs[1]=-event-ack-wait=10s"
  )
  local as ac nq
  as=$(kc -n "$NS" get svc "$RELEASE-autoscaler" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  ac=$(kc -n "$NS" get svc "$RELEASE-activator" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  nq=$(kc -n "$NS" get svc "$RELEASE-nats" -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  if [[ -n $as && -n $ac && -n $nq ]]; then
    # (a flag given twice: the last wins, so these replace the chart's
    # Service names)
    args+=(--set "activator.extraArgs[2]=-autoscaler-url=http://$as:8083/v1/stats" --set "manager.activatorURL=http://$ac")
    args+=(--set "activator.extraArgs[3]=-event-queue=nats://$nq:4222" --set "manager.extraArgs[0]=--event-queue=nats://$nq:4222")
  fi
  nice -n 19 "$HELM" upgrade --install "$RELEASE" charts/lambdapod "${args[@]}" --wait --timeout 5m >/dev/null ||
    die "helm upgrade --install $RELEASE failed"
  [[ -n $as && -n $ac && -n $nq ]]
}
if ! helm_install; then
  dlog "first install: again with the autoscaler's, activator's and NATS's Service IPs"
  helm_install
fi
kc -n "$NS" rollout status statefulset/"$RELEASE-nats" --timeout=180s
kc -n "$NS" rollout status deploy/"$RELEASE-manager" --timeout=120s
kc -n "$NS" rollout status deploy/"$RELEASE-activator" --timeout=120s
ACTIVATOR=$(kc -n "$NS" get svc "$RELEASE-activator" -o jsonpath='{.spec.clusterIP}')
NATS=$(kc -n "$NS" get svc "$RELEASE-nats" -o jsonpath='{.spec.clusterIP}')

step "NATS JetStream at nats://$NATS:4222: ready, with the activators' event stream"
# From the node, on the server's monitoring port: JetStream up, then the
# stream LAMBDAPOD_EVENTS and its consumer, which the activators create
# once they are connected.
nats_pod=$(kc -n "$NS" get pod "$RELEASE-nats-0" -o jsonpath='{.status.podIP}')
wait_for "NATS JetStream at $nats_pod" 60 curl -fsS -o /dev/null "http://$nats_pod:8222/healthz?js-enabled-only=true" ||
  die "NATS at $nats_pod is not ready: kubectl -n $NS logs $RELEASE-nats-0"
jsz="http://$nats_pod:8222/jsz?streams=true&consumers=true"
wait_for "the activators' stream LAMBDAPOD_EVENTS" 60 bash -c "curl -fsS '$jsz' | grep -q '\"name\": *\"LAMBDAPOD_EVENTS\"'" ||
  die "no activator created its event stream in NATS: kubectl -n $NS logs deploy/$RELEASE-activator"
top() { curl -fsS "$1" | sed -n "s/^  \"$2\": *\([0-9]*\).*/\1/p"; }
dlog "NATS ready: $(top "$jsz" streams) stream(s), $(top "$jsz" consumers) consumer(s), $(top "$jsz" messages) event(s) stored, $(top "http://$nats_pod:8222/connz" num_connections) client connection(s)"

step "Function $FN_NS/$FN from http://$POD_GATEWAY:$GIT_PORT/hello-go.git (Go strategy)"
cat >"$D/function.yaml" <<EOF
apiVersion: lambdapod.io/v1alpha1
kind: Function
metadata:
  name: $FN
  namespace: $FN_NS
spec:
  # Public: anyone who reaches the activator may call it (the default,
  # RBAC, asks callers for credentials: see $FN-private below).
  authType: None
  source:
    git:
      url: http://$POD_GATEWAY:$GIT_PORT/hello-go.git
      revision: main
      pollInterval: 10s
  build:
    strategy: Go
    image: $NODE_REGISTRY/functions/$FN
  runtime:
    timeout: 10s
  scale:
    minReplicas: 0
    maxReplicas: 3
    scaleToZeroAfter: 1m
EOF
kc apply -f "$D/function.yaml"
applied=$SECONDS
dlog "waiting for fn/$FN to run commit ${commit:0:12} and be Ready (a new commit is built in the cluster first)"
(
  last=""
  while sleep 3; do
    s=$(kc -n "$FN_NS" get fn "$FN" -o jsonpath='{range .status.conditions[*]}{.type}={.status}/{.reason} {end}' 2>/dev/null || true)
    if [[ $s != "$last" ]]; then dlog "  $s"; last=$s; fi
  done
) &
watcher=$!
trap 'kill $watcher 2>/dev/null || true' EXIT
# the manager polls the repository every pollInterval (10s): until then a
# Ready Function may still run the previous commit
built() { [[ $(kc -n "$FN_NS" get fn "$FN" -o jsonpath='{.status.commit}') == "$commit" ]]; }
until built || ((SECONDS - applied > READY_TIMEOUT)); do sleep 1; done
if ! kc -n "$FN_NS" wait --for=condition=Ready "fn/$FN" --timeout="$((READY_TIMEOUT - (SECONDS - applied) + 1))s" || ! built; then
  kill $watcher 2>/dev/null || true
  kc -n "$FN_NS" get fn "$FN" -o yaml | sed -n '/^status:/,$p' >&2
  kc -n "$FN_NS" get pipelineruns,taskruns,pods -l "lambdapod.io/function=$FN" >&2 || true
  die "fn/$FN is not Ready"
fi
kill $watcher 2>/dev/null || true
dlog "fn/$FN Ready $((SECONDS - applied))s after apply"
kc -n "$FN_NS" get fn "$FN"

step "invoking $FN through the activator (http://$ACTIVATOR/$FN_NS/$FN/)"
pods=$(kc -n "$FN_NS" get pods -l "lambdapod.io/function=$FN,!tekton.dev/taskRun" --field-selector=status.phase=Running --no-headers 2>/dev/null | wc -l)
dlog "$FN has $pods running pod(s) now$( ((pods == 0)) && echo ': this request starts one (a cold start)')"
url=http://$ACTIVATOR/$FN_NS/$FN/
start=$(date +%s%N)
answer=$(curl -sS --max-time 120 -w '\n%{http_code}' "$url?name=dev") || die "no answer from $url"
code=${answer##*$'\n'}
dlog "HTTP $code after $((($(date +%s%N) - start) / 1000000)) ms:"
printf '%s\n' "${answer%$'\n'*}"
[[ $code == 2* ]] || die "the activator answered HTTP $code"

step "invoking $FN through the Ingress (Traefik, HTTPS, host routing): $(kc -n "$FN_NS" get fn "$FN" -o jsonpath='{.status.url}')"
furl=$(kc -n "$FN_NS" get fn "$FN" -o jsonpath='{.status.url}')
[[ $furl == "https://$FN.$FN_NS.$DOMAIN/" ]] || die "fn/$FN has status.url '$furl', want https://$FN.$FN_NS.$DOMAIN/"
resolve="$FN.$FN_NS.$DOMAIN:443:$TRAEFIK"
answer=$(curl -sS --max-time 120 --cacert "$D/tls/ca.crt" --resolve "$resolve" -w '\n%{http_code}' "${furl}?name=ingress") ||
  die "no answer from $furl through Traefik at $TRAEFIK"
code=${answer##*$'\n'}
dlog "HTTP $code: ${answer%$'\n'*}"
[[ $code == 2* ]] || die "the answer through the Ingress was HTTP $code"

step "Function $FN_NS/$FN-private: the same image, for callers RBAC lets invoke it"
image=$(kc -n "$FN_NS" get fn "$FN" -o jsonpath='{.status.image}')
cat >"$D/function-private.yaml" <<EOF
apiVersion: lambdapod.io/v1alpha1
kind: Function
metadata:
  name: $FN-private
  namespace: $FN_NS
spec:
  source:
    image: $image
  runtime:
    timeout: 10s
  scale:
    minReplicas: 0
    maxReplicas: 3
    scaleToZeroAfter: 1m
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: invoker
  namespace: $FN_NS
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: invoker
  namespace: $FN_NS
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: $RELEASE-invoker
subjects:
- kind: ServiceAccount
  name: invoker
  namespace: $FN_NS
EOF
kc apply -f "$D/function-private.yaml"
kc -n "$FN_NS" wait --for=condition=Ready "fn/$FN-private" --timeout=120s || die "fn/$FN-private is not Ready"
purl=http://$ACTIVATOR/$FN_NS/$FN-private/
code=$(curl -sS -o /dev/null --max-time 60 -w '%{http_code}' "$purl") || die "no answer from $purl"
dlog "without credentials: HTTP $code"
[[ $code == 401 ]] || die "the activator answered HTTP $code to a caller without credentials, want 401"
token=$(kc -n "$FN_NS" create token invoker --duration=10m)
answer=$(curl -sS --max-time 120 -w '\n%{http_code}' -H "Authorization: Bearer $token" "$purl?name=invoker") || die "no answer from $purl"
code=${answer##*$'\n'}
dlog "with the invoker ServiceAccount's token: HTTP $code"
[[ $code == 2* ]] || die "the activator answered HTTP $code to the invoker"

step "done in $((SECONDS - t0))s"
echo
echo "lambdapod runs on the local cluster. Next:"
echo
printf '  %-62s # %s\n' \
  "export KUBECONFIG=$KUBECONFIG_OUT" "kubectl and helm use the cluster" \
  "curl '$url?name=you'" "invoke through the activator" \
  "curl --cacert $D/tls/ca.crt --resolve $resolve ${furl}" "through the Ingress (Traefik): HTTPS, host routing" \
  "curl -H \"Authorization: Bearer \$(kubectl -n $FN_NS create token invoker)\" $purl" "an authenticated function" \
  "kubectl get fn" "functions: URL, image, replicas" \
  "kubectl get pipelineruns -l lambdapod.io/function=$FN" "its builds" \
  "kubectl -n $NS logs deploy/$RELEASE-manager" "the manager's log" \
  "make dev-down" "stop it all (CLUSTER_PURGE=1: drop its state)"
echo
echo "  Change examples/hello-go and run 'make dev' again: a new commit is pushed to"
echo "  http://127.0.0.1:$GIT_PORT/hello-go.git, built by Tekton (polled every 10s) and invoked."
