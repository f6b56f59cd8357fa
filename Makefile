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
generate: ## Generate deepcopy code, the CRD and RBAC with controller-gen.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases

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
	@git diff --exit-code -- api config PROJECT || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config)" || { git status --porcelain -- api config; echo "untracked generated files: run 'make generate' and commit"; exit 1; }
	$(GO) mod tidy -diff

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest into bin/k8s (from the Go module proxy).
	@hack/envtest-binaries.sh >/dev/null

.PHONY: test
test: envtest vet ## Run all tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$(hack/envtest-binaries.sh)" $(GO) test ./... -count=1 -timeout 20m

##@ Build

BINARIES := manager activator runtime-sidecar

.PHONY: build
build: ## Build bin/manager, bin/activator and bin/runtime-sidecar.
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/manager .
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/activator ./activator/cmd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/runtime-sidecar ./runtime-sidecar/cmd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/supervisor ./runtime-sidecar/supervisor/cmd

.PHONY: run
run: generate ## Run the manager against the cluster in KUBECONFIG (installs the CRD first).
	kubectl apply --server-side -f config/crd/bases
	$(GO) run . --leader-elect=false

##@ Benchmarks

.PHONY: bench-sidecar
bench-sidecar: ## Benchmark the runtime sidecar against a plain net/http floor; writes docs/benchmarks.md.
	$(GO) run ./runtime-sidecar/bench -doc docs/benchmarks.md

.PHONY: bench-activator
bench-activator: ## Benchmark the activator in front of a runtime sidecar (added latency at 1,000 req/s, throughput, memory per held request, ready to forwarded); writes docs/benchmarks.md.
	@mkdir -p bin/bench
	CGO_ENABLED=0 $(GO) build -o bin/bench/runtime-sidecar ./runtime-sidecar/cmd
	CGO_ENABLED=0 $(GO) build -o bin/bench/bootstrap ./activator/integration/testdata/bootstrap
	$(GO) build -o bin/bench/activator-bench ./activator/bench
	bin/bench/activator-bench -sidecar bin/bench/runtime-sidecar -bootstrap bin/bench/bootstrap -doc docs/benchmarks.md

##@ Deployment

.PHONY: install
install: generate ## Install the CRD into the cluster in KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: ## Remove the CRD (and every Function) from the cluster in KUBECONFIG.
	kubectl delete --ignore-not-found -f config/crd/bases
