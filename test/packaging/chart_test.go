package packaging

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The chart lints clean in strict mode (warnings fail), with default
// values and with each override.
func TestChartLint(t *testing.T) {
	for _, o := range overrides {
		t.Run(o.name, func(t *testing.T) {
			vals := map[string]any{}
			if err := yaml.Unmarshal([]byte(o.values), &vals); err != nil {
				t.Fatal(err)
			}
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			lint.KubeVersion = kubeVersion
			res := lint.Run([]string{chartDir(t)}, vals)
			for _, m := range res.Messages {
				t.Log(m)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("helm lint --strict: %v", res.Errors)
			}
		})
	}
}

// values.schema.json refuses values that would render a broken install.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for name, values := range map[string]string{
		"unknown top-level key":  "replicaCount: 3\n",
		"typo in a known block":  "activator:\n  replica: 3\n",
		"bad pull policy":        "manager:\n  image:\n    pullPolicy: Sometimes\n",
		"non-integer replicas":   "activator:\n  replicas: two\n",
		"build config not a map": "build:\n  config: [a, b]\n",
		"bad service type":       "activator:\n  service:\n    type: External\n",
		"TLS without its secret": "activator:\n  ingress:\n    enabled: true\n    host: a.example.com\n    tls:\n      enabled: true\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tryRenderChart(t, releaseName, values); err == nil {
				t.Fatalf("values were accepted:\n%s", values)
			} else {
				t.Log(err)
			}
		})
	}
}

// The chart's copies of generated files are what make generate wrote: the
// CRD and both roles. (make chart-sync refreshes them; make verify fails
// when they are stale.)
func TestChartGeneratedFilesAreFresh(t *testing.T) {
	for copy, source := range map[string]string{
		"charts/lambdapod/files/crds/lambdapod.io_functions.yaml": "config/crd/bases/lambdapod.io_functions.yaml",
		"charts/lambdapod/files/rbac/manager-role.yaml":           "config/rbac/role.yaml",
		"charts/lambdapod/files/rbac/activator-role.yaml":         "config/rbac/activator/role.yaml",
	} {
		if !bytes.Equal(readFile(t, copy), readFile(t, source)) {
			t.Errorf("%s differs from %s: run `make generate` (or `make chart-sync`)", copy, source)
		}
	}
	// And the rendered CRD is the generated one, plus labels and annotations.
	crd := renderChart(t, releaseName, "").mustFind(t, "CustomResourceDefinition", "functions.lambdapod.io")
	gen, err := decodeYAML(readFile(t, "config/crd/bases/lambdapod.io_functions.yaml"))
	if err != nil || len(gen) != 1 {
		t.Fatalf("generated CRD: %v (%d objects)", err, len(gen))
	}
	if !reflect.DeepEqual(crd.Object["spec"], gen[0].Object["spec"]) {
		t.Error("the chart's CRD spec differs from config/crd/bases")
	}
}

// What each realistic install renders.
func TestChartRenders(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		r := renderChart(t, releaseName, "")
		crd := r.mustFind(t, "CustomResourceDefinition", "functions.lambdapod.io")
		if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("CRD resource-policy = %q, want keep", got)
		}
		if got := crd.GetAnnotations()["argocd.argoproj.io/sync-options"]; got != "Delete=false" {
			t.Errorf("CRD Argo CD sync-options = %q, want Delete=false", got)
		}
		m := container(t, r.mustFind(t, "Deployment", "lambdapod-manager"))
		wantArgs := []string{"--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
			"--webhook-bind-address=:8082", "--autoscaler-bind-address=:8083", "--build-configmap=lambdapod-build-config",
			"--autoscaler-reporters=system:serviceaccount:$(POD_NAMESPACE):lambdapod-activator",
			"--activator-pod-labels=app.kubernetes.io/name=lambdapod,app.kubernetes.io/component=activator",
			"--event-queue=nats://lambdapod-nats.lambdapod-system.svc:4222"}
		if got := strs(m["args"]); !slices.Equal(got, wantArgs) {
			t.Errorf("manager args = %q, want %q", got, wantArgs)
		}
		env := envOf(m)
		for name, want := range map[string]string{
			"LAMBDAPOD_SIDECAR_IMAGE": "lambdapod/runtime-sidecar:latest",
			"LAMBDAPOD_ACTIVATOR_URL": "http://lambdapod-activator.lambdapod-system.svc",
			"POD_NAMESPACE":           "fieldRef:metadata.namespace",
		} {
			if env[name] != want {
				t.Errorf("manager env %s = %q, want %q", name, env[name], want)
			}
		}
		if got := m["image"]; got != "lambdapod/manager:latest" {
			t.Errorf("manager image = %v", got)
		}
		a := container(t, r.mustFind(t, "Deployment", "lambdapod-activator"))
		if !slices.Contains(strs(a["args"]), "-autoscaler-url=http://lambdapod-autoscaler.lambdapod-system.svc:8083/v1/stats") {
			t.Errorf("activator args %q lack the autoscaler URL", strs(a["args"]))
		}
		if envOf(a)["POD_NAME"] != "fieldRef:metadata.name" {
			t.Error("activator has no POD_NAME from the downward API")
		}
		// GOMAXPROCS follows the activator's CPU request (make
		// bench-activator runs it so).
		if got, _, _ := unstructured.NestedString(envEntry(a, "GOMAXPROCS"), "valueFrom", "resourceFieldRef", "resource"); got != "requests.cpu" {
			t.Errorf("activator GOMAXPROCS from %q, want its requests.cpu", got)
		}
		// The autoscaler URL's Service exists and reaches the manager's port.
		svc := r.mustFind(t, "Service", "lambdapod-autoscaler")
		if p := portOf(t, svc, "autoscaler"); p["port"] != int64(8083) || p["targetPort"] != "autoscaler" {
			t.Errorf("autoscaler Service port = %v", p)
		}
		if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); sel["app.kubernetes.io/component"] != "manager" {
			t.Errorf("autoscaler Service selects %v, not the manager", sel)
		}
		if p := portOf(t, r.mustFind(t, "Service", "lambdapod-webhook"), "http"); p["targetPort"] != "webhook" {
			t.Errorf("webhook Service port = %v", p)
		}
		if grace, _, _ := unstructured.NestedInt64(r.mustFind(t, "Deployment", "lambdapod-activator").Object,
			"spec", "template", "spec", "terminationGracePeriodSeconds"); grace < 935 {
			t.Errorf("activator terminationGracePeriodSeconds = %d, below drain delay + the 15m function timeout", grace)
		}
		r.mustFind(t, "PodDisruptionBudget", "lambdapod-activator")
		cm := r.mustFind(t, "ConfigMap", "lambdapod-build-config")
		if data, _, _ := unstructured.NestedStringMap(cm.Object, "data"); data["kanikoImage"] == "" || data["helperImage"] != "lambdapod/manager:latest" {
			t.Errorf("build ConfigMap data = %v", data)
		}
		for _, kind := range []string{"Ingress", "ServiceMonitor", "Namespace"} {
			if got := r.ofKind(kind); len(got) > 0 {
				t.Errorf("default values render a %s", kind)
			}
		}
		for _, want := range []string{
			"kind: Function", "kubectl wait --for=condition=Ready fn/hello",
			"kubectl -n lambdapod-system port-forward svc/lambdapod-activator 8080:80",
			"curl -i http://localhost:8080/default/hello/",
			"aws lambda invoke --endpoint-url http://localhost:8080", "--function-name default.hello",
		} {
			if !strings.Contains(r.notes, want) {
				t.Errorf("NOTES lack %q:\n%s", want, r.notes)
			}
		}
	})

	t.Run("ingress-tls", func(t *testing.T) {
		r := renderChart(t, releaseName, overrides[1].values)
		ing := r.mustFind(t, "Ingress", "lambdapod-activator")
		if cls, _, _ := unstructured.NestedString(ing.Object, "spec", "ingressClassName"); cls != "nginx" {
			t.Errorf("ingressClassName = %q", cls)
		}
		tls, _, _ := unstructured.NestedSlice(ing.Object, "spec", "tls")
		if len(tls) != 1 || tls[0].(map[string]any)["secretName"] != "lambdapod-tls" ||
			!slices.Equal(strs(tls[0].(map[string]any)["hosts"]), []string{"lambda.example.com", "*.team-a.fn.example.com"}) {
			t.Errorf("activator Ingress tls = %v", tls)
		}
		// Path routing on host, and a rule without a host for
		// <function>.<namespace>.<domain>: two labels below the domain,
		// which an Ingress wildcard (one label) would not match.
		rules, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
		var hosts []string
		for _, rule := range rules {
			h, _ := rule.(map[string]any)["host"].(string)
			hosts = append(hosts, h)
		}
		if !slices.Equal(hosts, []string{"lambda.example.com", ""}) {
			t.Errorf("activator Ingress hosts = %q, want lambda.example.com and a rule without a host", hosts)
		}
		m := container(t, r.mustFind(t, "Deployment", "lambdapod-manager"))
		if got := envOf(m)["LAMBDAPOD_ACTIVATOR_URL"]; got != "https://lambda.example.com" {
			t.Errorf("activator URL with a TLS Ingress = %q", got)
		}
		if !slices.Contains(strs(m["args"]), "--domain=fn.example.com") || !slices.Contains(strs(m["args"]), "--domain-scheme=https") {
			t.Errorf("manager args %q lack --domain or --domain-scheme=https (TLS at the Ingress)", strs(m["args"]))
		}
		a := container(t, r.mustFind(t, "Deployment", "lambdapod-activator"))
		if !slices.Contains(strs(a["args"]), "-domain=fn.example.com") {
			t.Errorf("activator args %q lack -domain", strs(a["args"]))
		}
		if !slices.Contains(strs(a["args"]), "-trusted-proxies=10.244.0.0/16,10.1.2.3") {
			t.Errorf("activator args %q lack -trusted-proxies from activator.trustedProxies", strs(a["args"]))
		}
		wh := r.mustFind(t, "Ingress", "lambdapod-webhook")
		paths, _, _ := unstructured.NestedSlice(wh.Object, "spec", "rules")
		if b, _ := yaml.Marshal(paths); !strings.Contains(string(b), "name: lambdapod-webhook") || !strings.Contains(string(b), "path: /hooks") {
			t.Errorf("webhook Ingress rules:\n%s", b)
		}
		t.Logf("NOTES:\n%s", r.notes)
		if !strings.Contains(r.notes, "curl -i https://lambda.example.com/default/hello/") {
			t.Errorf("NOTES lack the Ingress URL:\n%s", r.notes)
		}
	})

	t.Run("no-crds", func(t *testing.T) {
		r := renderChart(t, "fn", overrides[2].values)
		if got := r.ofKind("CustomResourceDefinition"); len(got) > 0 {
			t.Error("crds.enabled=false still renders the CRD")
		}
		// Release "fn" prefixes every name with fn-lambdapod.
		r.mustFind(t, "Deployment", "fn-lambdapod-manager")
		a := container(t, r.mustFind(t, "Deployment", "fn-lambdapod-activator"))
		if !slices.Contains(strs(a["args"]), "-autoscaler-url=http://fn-lambdapod-autoscaler.lambdapod-system.svc:8083/v1/stats") {
			t.Errorf("activator args = %q", strs(a["args"]))
		}
		r.mustFind(t, "Service", "fn-lambdapod-autoscaler")
	})

	t.Run("no-network-policies", func(t *testing.T) {
		r := renderChart(t, releaseName, "networkPolicy:\n  enabled: false\n")
		if got := r.ofKind("NetworkPolicy"); len(got) > 0 {
			t.Errorf("networkPolicy.enabled=false still renders %d NetworkPolicies", len(got))
		}
		// and the manager gives Functions none
		m := container(t, r.mustFind(t, "Deployment", "lambdapod-manager"))
		if !slices.Contains(strs(m["args"]), "--network-policies=false") {
			t.Errorf("networkPolicy.enabled=false: manager args %q lack --network-policies=false", strs(m["args"]))
		}
	})

	t.Run("servicemonitor", func(t *testing.T) {
		r := renderChart(t, releaseName, overrides[3].values)
		sm := r.mustFind(t, "ServiceMonitor", "lambdapod")
		if sm.GetLabels()["release"] != "prometheus" {
			t.Errorf("ServiceMonitor labels = %v", sm.GetLabels())
		}
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" || eps[0].(map[string]any)["interval"] != "15s" {
			t.Errorf("ServiceMonitor endpoints = %v", eps)
		}
		// It finds the two metrics Services, and only those have a port
		// named metrics.
		var scraped []string
		for _, svc := range r.ofKind("Service") {
			if !selects(sel, svc.GetLabels()) {
				continue
			}
			ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
			for _, p := range ports {
				if p.(map[string]any)["name"] == "metrics" {
					scraped = append(scraped, svc.GetName())
				}
			}
		}
		slices.Sort(scraped)
		if !slices.Equal(scraped, []string{"lambdapod-activator-metrics", "lambdapod-manager-metrics"}) {
			t.Errorf("ServiceMonitor scrapes %q", scraped)
		}
	})

	t.Run("custom-images", func(t *testing.T) {
		r := renderChart(t, "platform", overrides[4].values)
		md := r.mustFind(t, "Deployment", "platform-lambdapod-manager")
		m := container(t, md)
		if m["image"] != "registry.example.com/lambdapod/manager:v0.3.1" || m["imagePullPolicy"] != "Always" {
			t.Errorf("manager image = %v %v", m["image"], m["imagePullPolicy"])
		}
		if got := envOf(m)["LAMBDAPOD_SIDECAR_IMAGE"]; got != "registry.example.com/lambdapod/runtime-sidecar@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
			t.Errorf("sidecar image = %q", got)
		}
		for _, want := range []string{"--region=eu-west-1", "--zap-log-level=debug", "--build-configmap=platform-lambdapod-build-config"} {
			if !slices.Contains(strs(m["args"]), want) {
				t.Errorf("manager args %q lack %q", strs(m["args"]), want)
			}
		}
		if secrets, _, _ := unstructured.NestedSlice(md.Object, "spec", "template", "spec", "imagePullSecrets"); len(secrets) != 1 {
			t.Errorf("imagePullSecrets = %v", secrets)
		}
		a := container(t, r.mustFind(t, "Deployment", "platform-lambdapod-activator"))
		if a["image"] != "registry.example.com/lambdapod/activator:v0.3.1" || !slices.Contains(strs(a["args"]), "-max-queue=5000") {
			t.Errorf("activator image %v args %q", a["image"], strs(a["args"]))
		}
		cm := r.mustFind(t, "ConfigMap", "platform-lambdapod-build-config")
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		if data["someFutureKey"] != "registry.example.com/mirror/tool:1" || data["dockerfileBuilder"] != "buildah" ||
			data["historyLimit"] != "5" || data["helperImage"] != "registry.example.com/lambdapod/manager:v0.3.1" {
			t.Errorf("build ConfigMap data = %v", data)
		}
	})
}

// Every pod template (the Deployments', NATS's StatefulSet), in every
// render and in config/default, meets the
// restricted Pod Security Standard field by field. (The API server test
// also has kube-apiserver's PodSecurity admission judge them.)
func TestPodTemplatesRestricted(t *testing.T) {
	renders := map[string]rendered{"config/default": buildKustomize(t, "default")}
	for _, o := range overrides {
		renders["chart "+o.name] = renderChart(t, o.release, o.values)
	}
	for name, r := range renders {
		deployments := r.ofKind("Deployment")
		if len(deployments) != 2 {
			t.Errorf("%s: %d Deployments, want the manager and the activator", name, len(deployments))
		}
		for _, d := range append(deployments, r.ofKind("StatefulSet")...) {
			for _, problem := range restrictedProblems(d) {
				t.Errorf("%s: %s: %s", name, key(d), problem)
			}
		}
	}
}

func restrictedProblems(d *unstructured.Unstructured) []string {
	var out []string
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	psc, _, _ := unstructured.NestedMap(pod, "securityContext")
	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if pod[f] == true {
			out = append(out, f)
		}
	}
	for _, v := range nested(pod, "volumes") {
		// The volume types the restricted level allows.
		for f := range v.(map[string]any) {
			if f != "name" && !slices.Contains([]string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}, f) {
				out = append(out, fmt.Sprintf("volume %v: type %s", v.(map[string]any)["name"], f))
			}
		}
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	inits, _, _ := unstructured.NestedSlice(pod, "initContainers")
	for _, c := range append(containers, inits...) {
		c := c.(map[string]any)
		sc, _ := c["securityContext"].(map[string]any)
		name := c["name"]
		get := func(f string) any {
			if v, ok := sc[f]; ok {
				return v
			}
			return psc[f]
		}
		if get("runAsNonRoot") != true {
			out = append(out, fmt.Sprintf("container %s: runAsNonRoot is not true", name))
		}
		if u, ok := get("runAsUser").(int64); ok && u == 0 {
			out = append(out, fmt.Sprintf("container %s: runAsUser 0", name))
		}
		seccomp, _ := get("seccompProfile").(map[string]any)
		if seccomp["type"] != "RuntimeDefault" && seccomp["type"] != "Localhost" {
			out = append(out, fmt.Sprintf("container %s: seccompProfile %v", name, seccomp))
		}
		if sc["allowPrivilegeEscalation"] != false {
			out = append(out, fmt.Sprintf("container %s: allowPrivilegeEscalation is not false", name))
		}
		if sc["privileged"] == true {
			out = append(out, fmt.Sprintf("container %s: privileged", name))
		}
		if sc["readOnlyRootFilesystem"] != true {
			out = append(out, fmt.Sprintf("container %s: readOnlyRootFilesystem is not true", name))
		}
		caps, _ := sc["capabilities"].(map[string]any)
		if !slices.Equal(strs(caps["drop"]), []string{"ALL"}) || len(strs(caps["add"])) > 0 {
			out = append(out, fmt.Sprintf("container %s: capabilities %v, want drop [ALL] and no add", name, caps))
		}
		ports, _ := c["ports"].([]any)
		for _, p := range ports {
			if hp, ok := p.(map[string]any)["hostPort"]; ok && hp != int64(0) {
				out = append(out, fmt.Sprintf("container %s: hostPort", name))
			}
		}
	}
	return out
}

func container(t testing.TB, d *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%s has %d containers, want 1", key(d), len(cs))
	}
	return cs[0].(map[string]any)
}

// envOf maps a container's env to values, "fieldRef:<path>" for the
// downward API.
func envOf(c map[string]any) map[string]string {
	out := map[string]string{}
	env, _ := c["env"].([]any)
	for _, e := range env {
		e := e.(map[string]any)
		name := e["name"].(string)
		if v, ok := e["value"].(string); ok {
			out[name] = v
		} else if p, ok, _ := unstructured.NestedString(e, "valueFrom", "fieldRef", "fieldPath"); ok {
			out[name] = "fieldRef:" + p
		}
	}
	return out
}

// envEntry is the env entry of c named name (nil if none).
func envEntry(c map[string]any, name string) map[string]any {
	env, _ := c["env"].([]any)
	for _, e := range env {
		if e := e.(map[string]any); e["name"] == name {
			return e
		}
	}
	return nil
}

func portOf(t testing.TB, svc *unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		if p.(map[string]any)["name"] == name {
			return p.(map[string]any)
		}
	}
	t.Fatalf("%s has no port %q", key(svc), name)
	return nil
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, s := range l {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

func nested(m map[string]any, f string) []any {
	l, _ := m[f].([]any)
	return l
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
