package packaging

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Differences between the chart (default values, release lambdapod in
// lambdapod-system) and config/default that are allowed, and why.
var (
	// Helm's own labels, on objects and in selectors: the instance label
	// keeps two releases' pods apart; kustomize has one install per
	// namespace.
	helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}
	// Annotations only the chart sets: the CRD's keep policies
	// (crds.keep), and the checksums that roll the manager when
	// build.config changes and NATS when its configuration changes under
	// helm upgrade.
	helmAnnotations = []string{"helm.sh/resource-policy", "argocd.argoproj.io/sync-options", "checksum/build-config", "checksum/nats-config"}
	// Objects only config/default has: Helm installs into a namespace it is
	// given (--create-namespace) and does not own it; the Namespace in
	// config/default carries the restricted PSS label.
	kustomizeOnly = []string{"Namespace/lambdapod-system"}
)

// The chart with default values and config/default render the same
// objects: same kinds, names and namespaces, and after removing the
// differences above, equal objects (RBAC rules, container args, env,
// ports, probes, security contexts, resources, Services, the CRD...).
func TestChartMatchesConfigDefault(t *testing.T) {
	chart := renderChart(t, releaseName, "")
	kust := buildKustomize(t, "default")

	chartObjs := map[string]*unstructured.Unstructured{}
	for _, o := range chart.objects {
		chartObjs[key(o)] = normalize(o)
	}
	kustObjs := map[string]*unstructured.Unstructured{}
	for _, o := range kust.objects {
		if slices.Contains(kustomizeOnly, key(o)) {
			continue
		}
		kustObjs[key(o)] = normalize(o)
	}
	if got, want := keys(chartObjs), keys(kustObjs); !slices.Equal(got, want) {
		t.Fatalf("the chart renders\n  %s\nconfig/default builds\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for k, c := range chartObjs {
		if kk := kustObjs[k]; !reflect.DeepEqual(c.Object, kk.Object) {
			cy, _ := yaml.Marshal(c.Object)
			ky, _ := yaml.Marshal(kk.Object)
			t.Errorf("%s differs\n%s", k, lineDiff(string(ky), string(cy)))
		}
	}
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// normalize drops the allowed differences from a copy of o.
func normalize(o *unstructured.Unstructured) *unstructured.Unstructured {
	o = o.DeepCopy()
	dropKeys := func(fields ...string) {
		m, ok, _ := unstructured.NestedStringMap(o.Object, fields...)
		if !ok {
			return
		}
		for _, k := range append(slices.Clone(helmLabels), helmAnnotations...) {
			delete(m, k)
		}
		if len(m) == 0 {
			unstructured.RemoveNestedField(o.Object, fields...)
			return
		}
		_ = unstructured.SetNestedStringMap(o.Object, m, fields...)
	}
	dropKeys("metadata", "labels")
	dropKeys("metadata", "annotations")
	dropKeys("spec", "selector", "matchLabels")
	dropKeys("spec", "template", "metadata", "labels")
	dropKeys("spec", "template", "metadata", "annotations")
	if o.GetKind() == "Service" {
		dropKeys("spec", "selector")
	}
	if m, ok, _ := unstructured.NestedMap(o.Object, "spec", "template", "metadata"); ok && len(m) == 0 {
		unstructured.RemoveNestedField(o.Object, "spec", "template", "metadata")
	}
	return o
}

// lineDiff shows the lines of want (config/default) missing from got (the
// chart) with -, and the lines only the chart has with +: enough to see a
// difference between two YAML documents with sorted keys.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(the same lines in another order)\n--- config/default\n" + want + "\n--- chart\n" + got
	}
	return b.String()
}
