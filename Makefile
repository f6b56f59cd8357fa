# lambdapod: run Lambda-style functions as scale-to-zero pods.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
GO ?= go
CONTROLLER_GEN := $(GO) tool controller-gen

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code, the CRD and RBAC with controller-gen, and the chart's copies of them.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
# The manager's role comes from the manager's packages only; the activator's
# markers (activator/rbac) make their own role.
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths="./;./api/...;./controllers/...;./internal/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=activator-role paths="./activator/..." output:rbac:artifacts:config=config/rbac/activator
	@$(MAKE) --no-print-directory chart-sync

CHART := charts/lambdapod

.PHONY: chart-sync
chart-sync: ## Copy the generated CRD and roles from config/ into the chart (charts/lambdapod/files).
	@mkdir -p $(CHART)/files/crds $(CHART)/files/rbac
	cp config/crd/bases/lambdapod.io_functions.yaml $(CHART)/files/crds/lambdapod.io_functions.yaml
	cp config/rbac/role.yaml $(CHART)/files/rbac/manager-role.yaml
	cp config/rbac/activator/role.yaml $(CHART)/files/rbac/activator-role.yaml

HELM ?= $(GO) run helm.sh/helm/v3/cmd/helm@v3.21.4

.PHONY: chart-lint
chart-lint: ## Lint the chart and render it with default values (helm CLI from the Go module proxy).
	$(HELM) lint --strict $(CHART)
	$(HELM) template lambdapod $(CHART) --namespace lambdapod-system >/dev/null

.PHONY: test-packaging
test-packaging: envtest ## Test the chart, config/default and the Argo CD health check against a real API server.
	KUBEBUILDER_ASSETS="$$(hack/envtest-binaries.sh)" $(GO) test ./test/packaging/... -count=1

.PHONY: manifests
manifests: generate ## Alias of generate.

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: verify
verify: generate ## Fail if generated files or formatting differ from what is committed.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: run 'make fmt'"; exit 1; }
	@git diff --exit-code -- api config charts PROJECT || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config charts)" || { git status --porcelain -- api config charts; echo "untracked generated files: run 'make generate' and commit"; exit 1; }
	$(GO) mod tidy -diff

.PHONY: envtest
envtest: ## Build kube-apiserver, kube-controller-manager and etcd (and kubectl if missing) into bin/k8s from the Go module proxy.
	@hack/envtest-binaries.sh >/dev/null

.PHONY: test
test: envtest vet ## Run all tests: unit, and integration against a real kube-apiserver, etcd and kube-controller-manager.
	KUBEBUILDER_ASSETS="$$(hack/envtest-binaries.sh)" $(GO) test ./... -count=1 -timeout 20m

##@ Build

BINARIES := manager activator runtime-sidecar

.PHONY: build
build: ## Build bin/manager, bin/activator, bin/runtime-sidecar and bin/supervisor.
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/manager .
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/activator ./activator/cmd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/runtime-sidecar ./runtime-sidecar/cmd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/supervisor ./runtime-sidecar/supervisor/cmd

.PHONY: run
run: generate ## Run the manager against the cluster in KUBECONFIG (installs the CRD first).
	kubectl apply --server-side -f config/crd/bases
	$(GO) run . --leader-elect=false

##@ Benchmarks

# bench-sidecar's peer, AWS's Lambda runtime interface emulator, built from
# the Go module proxy at this version without entering this module's go.mod.
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
RIE_BIN := bin/bench/aws-lambda-rie

.PHONY: bench-sidecar
bench-sidecar: ## Benchmark the runtime sidecar against AWS's runtime interface emulator and a plain net/http floor; writes docs/benchmarks.md.
	@$(GO) version -m $(RIE_BIN) 2>/dev/null | grep -Eq '^[[:space:]]+mod[[:space:]]+github.com/aws/aws-lambda-runtime-interface-emulator[[:space:]]+$(RIE_VERSION)[[:space:]]' || \
		{ mkdir -p $(dir $(RIE_BIN)) && GOBIN=$(abspath $(dir $(RIE_BIN))) CGO_ENABLED=0 $(GO) install -trimpath github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION); }
	$(GO) run ./runtime-sidecar/bench -rie $(RIE_BIN) -doc docs/benchmarks.md

.PHONY: bench-activator
bench-activator: ## Benchmark the activator in front of a runtime sidecar (added latency at 1,000 req/s, throughput, memory per held request, ready to forwarded); writes docs/benchmarks.md.
	@mkdir -p bin/bench
	CGO_ENABLED=0 $(GO) build -o bin/bench/runtime-sidecar ./runtime-sidecar/cmd
	CGO_ENABLED=0 $(GO) build -o bin/bench/bootstrap ./activator/integration/testdata/bootstrap
	$(GO) build -o bin/bench/activator-bench ./activator/bench
	bin/bench/activator-bench -sidecar bin/bench/runtime-sidecar -bootstrap bin/bench/bootstrap -doc docs/benchmarks.md

.PHONY: bench-coldstart
bench-coldstart: ## Cold starts of the Go function through the activator (with a breakdown) next to the floor (bare Deployment 0->1), on the make dev cluster (brought up first unless BENCH_SKIP_DEV=1); writes docs/benchmarks.md.
	$(if $(BENCH_SKIP_DEV),,hack/dev/up.sh)
	KUBECONFIG=$(CURDIR)/bin/cluster/kubeconfig nice -n 19 $(GO) run ./hack/bench/coldstart -doc docs/benchmarks.md $(BENCH_FLAGS)

##@ Deployment

.PHONY: install
install: generate ## Install the CRD into the cluster in KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: ## Remove the CRD (and every Function) from the cluster in KUBECONFIG.
	kubectl delete --ignore-not-found -f config/crd/bases

##@ Local cluster

# A single-node cluster on this machine, built from source (root, no Docker):
# see docs/dev-cluster.md.
REGISTRY ?= localhost:5000
IMAGE_TAG ?= dev
IMAGES_FLAGS ?=

.PHONY: cluster-up
cluster-up: ## Bring up (or reuse) the local single-node cluster; prints its kubeconfig (bin/cluster/kubeconfig).
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster: no process, mount or interface left (CLUSTER_PURGE=1 also drops its state).
	hack/cluster/down.sh $(if $(CLUSTER_PURGE),--purge)

.PHONY: cluster-smoke
cluster-smoke: ## Check the local cluster: pods from the node registry run (as 65532, read-only root), pod and Service addresses answer.
	hack/cluster/smoke.sh

.PHONY: images
images: ## Build the manager, activator, runtime-sidecar and pause images without Docker and push them to the node registry (REGISTRY=localhost:5000; IMAGES_FLAGS=-tekton adds Tekton's).
	nice -n 19 $(GO) run ./hack/images -registry $(REGISTRY) -tag $(IMAGE_TAG) $(IMAGES_FLAGS)

.PHONY: dev
dev: ## The local cluster with Tekton and lambdapod (Helm), a sample Go function built from git, Ready and invoked through the activator.
	hack/dev/up.sh

.PHONY: e2e
e2e: ## The end-to-end suite (test/e2e, tag e2e) on the make dev cluster: brings it up first unless E2E_SKIP_DEV=1.
	$(if $(E2E_SKIP_DEV),,hack/dev/up.sh)
	KUBECONFIG=$(CURDIR)/bin/cluster/kubeconfig nice -n 19 $(GO) test -tags e2e ./test/e2e/... -count=1 -v -timeout 30m -parallel 4 $(E2E_FLAGS)

.PHONY: dev-down
dev-down: ## Stop what make dev started and the cluster (CLUSTER_PURGE=1 also drops its state).
	hack/dev/down.sh $(if $(CLUSTER_PURGE),--purge)

.PHONY: cluster-floor
cluster-floor: ## Measure a bare Deployment's 0->1 ready pod time on the local cluster (the cold-start floor).
	KUBECONFIG=$${KUBECONFIG:-bin/cluster/kubeconfig} $(GO) run ./hack/cluster/floor -n 10
