// Package packaging tests how lambdapod is installed: the Helm chart in
// charts/lambdapod, the kustomize configuration in config/default, and the
// Argo CD health check of Functions. Renders use Helm's and kustomize's Go
// libraries, the same code as `helm template` and `kubectl kustomize`;
// objects are checked on a real kube-apiserver (internal/testenv).
package packaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/lambdapod/lambdapod/internal/testenv"
)

const (
	// The release and namespace under which the chart's default values
	// render the same names as config/default.
	releaseName = "lambdapod"
	namespace   = "lambdapod-system"
)

// kubeVersion is what the renders claim to target: the envtest control
// plane's version.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.36.3", Major: "1", Minor: "36"}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "lambdapod") }

// rendered is one render of the chart or of config/default.
type rendered struct {
	objects []*unstructured.Unstructured
	notes   string
}

// find returns the object of that kind and name, or nil.
func (r rendered) find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func (r rendered) mustFind(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := r.find(kind, name)
	if o == nil {
		t.Fatalf("no %s %q among %s", kind, name, r.names())
	}
	return o
}

func (r rendered) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) names() string {
	var s []string
	for _, o := range r.objects {
		s = append(s, key(o))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func key(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// renderChart renders charts/lambdapod the way `helm template` does
// (a client-only install dry run), values validated against
// values.schema.json.
func renderChart(t testing.TB, release string, values string) rendered {
	t.Helper()
	r, err := tryRenderChart(t, release, values)
	if err != nil {
		t.Fatalf("rendering the chart with values\n%s\n%v", values, err)
	}
	return r
}

func tryRenderChart(t testing.TB, release string, values string) (rendered, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatalf("values: %v", err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.KubeVersion = kubeVersion
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return rendered{}, err
	}
	objs, err := decodeYAML([]byte(rel.Manifest))
	if err != nil {
		return rendered{}, err
	}
	return rendered{objects: objs, notes: rel.Info.Notes}, nil
}

// buildKustomize builds config/<dir> with kustomize's library, as
// `kubectl kustomize` does.
func buildKustomize(t testing.TB, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot(t), "config", dir))
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{objects: objs}
}

// decodeYAML splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeYAML(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
			continue
		}
		// As a client sees objects: integers are int64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("%v in %s", err, raw)
		}
		out = append(out, u)
	}
}

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// overrides are realistic non-default installs; every test that walks all
// renders covers them.
var overrides = []struct {
	name, release, values string
}{
	{"defaults", releaseName, ""},
	{"ingress-tls", releaseName, `
domain: fn.example.com
activator:
  replicas: 3
  ingress:
    enabled: true
    className: nginx
    host: lambda.example.com
    annotations:
      cert-manager.io/cluster-issuer: letsencrypt
    tls:
      enabled: true
      secretName: lambdapod-tls
      hosts: ["*.team-a.fn.example.com"]
  trustedProxies: ["10.244.0.0/16", "10.1.2.3"]
webhook:
  ingress:
    enabled: true
    className: nginx
    host: hooks.example.com
    tls:
      enabled: true
      secretName: hooks-tls
`},
	{"no-crds", "fn", `
crds:
  enabled: false
`},
	{"servicemonitor", releaseName, `
metrics:
  serviceMonitor:
    enabled: true
    interval: 15s
    labels:
      release: prometheus
`},
	{"custom-images", "platform", `
imagePullSecrets:
- name: regcred
manager:
  replicas: 2
  image:
    repository: registry.example.com/lambdapod/manager
    tag: v0.3.1
    pullPolicy: Always
  region: eu-west-1
  extraArgs: ["--zap-log-level=debug"]
sidecar:
  image:
    repository: registry.example.com/lambdapod/runtime-sidecar
    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
activator:
  image:
    repository: registry.example.com/lambdapod/activator
    tag: v0.3.1
  extraArgs: ["-max-queue=5000"]
  nodeSelector:
    kubernetes.io/os: linux
build:
  config:
    dockerfileBuilder: buildah
    buildahImage: registry.example.com/mirror/buildah:v1.41
    goImage: registry.example.com/mirror/golang:1.26
    baseImage: registry.example.com/mirror/static:nonroot
    insecureRegistries: registry.internal:5000
    historyLimit: 5
    someFutureKey: registry.example.com/mirror/tool:1
`},
	{"nats-cluster", releaseName, `
nats:
  replicas: 3
  image:
    repository: registry.example.com/lambdapod/nats
    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  storage:
    storageClassName: fast-ssd
    size: 20Gi
  jetstream:
    maxFileStore: 16GB
`},
	{"nats-external", releaseName, `
eventQueue:
  url: nats://nats.messaging.svc:4222
nats:
  replicas: 3
`},
}
