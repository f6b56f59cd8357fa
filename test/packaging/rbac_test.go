package packaging

import (
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// rbacRules reads the rules of a generated role file.
func rbacRules(t testing.TB, file string) []any {
	t.Helper()
	objs, err := decodeYAML(readFile(t, file))
	if err != nil || len(objs) != 1 || objs[0].GetKind() != "ClusterRole" {
		t.Fatalf("%s: %v (%d objects)", file, err, len(objs))
	}
	rules, _, _ := unstructured.NestedSlice(objs[0].Object, "rules")
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", file)
	}
	return rules
}

// The chart and config/default grant exactly the generated roles: the
// manager's from its +kubebuilder:rbac markers (config/rbac/role.yaml),
// the activator's from activator/rbac (config/rbac/activator/role.yaml),
// each bound to its own ServiceAccount, which its Deployment runs as;
// nothing else, and no wildcards. The API server test checks the same
// grants with SubjectAccessReviews.
func TestRBACIsExactlyTheGeneratedRoles(t *testing.T) {
	managerRules := rbacRules(t, "config/rbac/role.yaml")
	activatorRules := rbacRules(t, "config/rbac/activator/role.yaml")

	// What the activator needs, from docs/activator.md: read EndpointSlices
	// and Functions, cluster-wide.
	wantActivator := []any{
		map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": []any{"get", "list", "watch"}},
		map[string]any{"apiGroups": []any{"lambdapod.io"}, "resources": []any{"functions"}, "verbs": []any{"get", "list", "watch"}},
	}
	if !reflect.DeepEqual(activatorRules, wantActivator) {
		t.Errorf("config/rbac/activator/role.yaml = %v, want %v", activatorRules, wantActivator)
	}

	renders := map[string]struct {
		r      rendered
		prefix string
	}{"config/default": {buildKustomize(t, "default"), "lambdapod"}}
	for _, o := range overrides {
		prefix := o.release
		if o.release != releaseName {
			prefix = o.release + "-lambdapod"
		}
		renders["chart "+o.name] = struct {
			r      rendered
			prefix string
		}{renderChart(t, o.release, o.values), prefix}
	}
	for name, x := range renders {
		r, p := x.r, x.prefix
		if n := len(r.ofKind("Role")) + len(r.ofKind("RoleBinding")); n > 0 {
			t.Errorf("%s: %d namespaced Roles or RoleBindings, want none", name, n)
		}
		roles := r.ofKind("ClusterRole")
		if len(roles) != 2 || len(r.ofKind("ClusterRoleBinding")) != 2 {
			t.Errorf("%s: %d ClusterRoles and %d ClusterRoleBindings, want 2 and 2", name, len(roles), len(r.ofKind("ClusterRoleBinding")))
		}
		for _, role := range roles {
			rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
			for _, rule := range rules {
				rule := rule.(map[string]any)
				for _, f := range []string{"verbs", "resources", "apiGroups"} {
					if slices.Contains(strs(rule[f]), "*") {
						t.Errorf("%s: %s grants %s *", name, role.GetName(), f)
					}
				}
				if len(strs(rule["nonResourceURLs"])) > 0 || len(strs(rule["resourceNames"])) > 0 {
					t.Errorf("%s: %s has nonResourceURLs or resourceNames: %v", name, role.GetName(), rule)
				}
			}
		}
		for _, c := range []struct {
			component string
			rules     []any
		}{{"manager", managerRules}, {"activator", activatorRules}} {
			role := r.mustFind(t, "ClusterRole", p+"-"+c.component+"-role")
			if rules, _, _ := unstructured.NestedSlice(role.Object, "rules"); !reflect.DeepEqual(rules, c.rules) {
				t.Errorf("%s: ClusterRole %s rules = %v\nwant the generated %v", name, role.GetName(), rules, c.rules)
			}
			b := r.mustFind(t, "ClusterRoleBinding", p+"-"+c.component+"-rolebinding")
			if ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "name"); ref != role.GetName() {
				t.Errorf("%s: %s binds %s", name, b.GetName(), ref)
			}
			subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
			want := []any{map[string]any{"kind": "ServiceAccount", "name": p + "-" + c.component, "namespace": namespace}}
			if !reflect.DeepEqual(subjects, want) {
				t.Errorf("%s: %s subjects = %v, want %v", name, b.GetName(), subjects, want)
			}
			r.mustFind(t, "ServiceAccount", p+"-"+c.component)
			d := r.mustFind(t, "Deployment", p+"-"+c.component)
			if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != p+"-"+c.component {
				t.Errorf("%s: Deployment %s runs as %q", name, d.GetName(), sa)
			}
		}
	}
}
