package packaging

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// generatedRoles reads a generated role file: the kinds of its documents,
// in order, and the rules of each kind.
func generatedRoles(t testing.TB, file string) ([]string, map[string][]any) {
	t.Helper()
	objs, err := decodeYAML(readFile(t, file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var kinds []string
	rules := map[string][]any{}
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		r, _, _ := unstructured.NestedSlice(o.Object, "rules")
		if len(r) == 0 {
			t.Fatalf("%s: %s has no rules", file, o.GetKind())
		}
		rules[o.GetKind()] = r
	}
	return kinds, rules
}

// rbacRules reads the rules of the one object of that kind (ClusterRole or
// Role) in a generated role file.
func rbacRules(t testing.TB, file, kind string) []any {
	t.Helper()
	kinds, rules := generatedRoles(t, file)
	if n := len(slices.DeleteFunc(slices.Clone(kinds), func(k string) bool { return k != kind })); n != 1 {
		t.Fatalf("%s has %d %ss (%v), want 1", file, n, kind, kinds)
	}
	return rules[kind]
}

// prefixedNames is the manager's generated Role as a render has it: the
// ConfigMap names in its resourceNames are config/'s, before the name
// prefix of config/default (lambdapod-) or of the chart (<fullname>-).
func prefixedNames(rules []any, prefix string) []any {
	out := make([]any, 0, len(rules))
	for _, r := range rules {
		r := maps.Clone(r.(map[string]any))
		if names := strs(r["resourceNames"]); len(names) > 0 && slices.Contains(strs(r["resources"]), "configmaps") {
			var p []any
			for _, n := range names {
				p = append(p, prefix+"-"+n)
			}
			r["resourceNames"] = p
		}
		out = append(out, r)
	}
	return out
}

// The chart and config/default grant exactly the generated roles: the
// manager's from its +kubebuilder:rbac markers (config/rbac/role.yaml: a
// ClusterRole, and a Role in its own namespace for the markers with
// namespace=system), the activator's from activator/rbac
// (config/rbac/activator/role.yaml), each bound to its own ServiceAccount,
// which its Deployment runs as; nothing else, and no wildcards. The API
// server test checks the same grants with SubjectAccessReviews.
func TestRBACIsExactlyTheGeneratedRoles(t *testing.T) {
	if kinds, _ := generatedRoles(t, "config/rbac/role.yaml"); !slices.Equal(kinds, []string{"ClusterRole", "Role"}) {
		t.Fatalf("config/rbac/role.yaml holds %v, want a ClusterRole and a Role", kinds)
	}
	if kinds, _ := generatedRoles(t, "config/rbac/activator/role.yaml"); !slices.Equal(kinds, []string{"ClusterRole", "Role"}) {
		t.Fatalf("config/rbac/activator/role.yaml holds %v, want a ClusterRole and a Role", kinds)
	}
	managerRules := rbacRules(t, "config/rbac/role.yaml", "ClusterRole")
	managerNSRules := rbacRules(t, "config/rbac/role.yaml", "Role")
	activatorRules := rbacRules(t, "config/rbac/activator/role.yaml", "ClusterRole")
	activatorNSRules := rbacRules(t, "config/rbac/activator/role.yaml", "Role")

	// What the activator needs, from docs/activator.md and
	// docs/security.md: read EndpointSlices and Functions, cluster-wide;
	// ask the API server who a caller is and whether RBAC lets them invoke
	// a function; and, in its own namespace only, read the access key
	// Secrets and create the invoke key Secret if the manager has not.
	wantActivator := []any{
		map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}},
		map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"subjectaccessreviews"}, "verbs": []any{"create"}},
		map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": []any{"get", "list", "watch"}},
		map[string]any{"apiGroups": []any{"lambdapod.io"}, "resources": []any{"functions"}, "verbs": []any{"get", "list", "watch"}},
	}
	if !reflect.DeepEqual(activatorRules, wantActivator) {
		t.Errorf("config/rbac/activator/role.yaml = %v, want %v", activatorRules, wantActivator)
	}
	wantActivatorNS := []any{
		map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"create", "get", "list", "watch"}},
	}
	if !reflect.DeepEqual(activatorNSRules, wantActivatorNS) {
		t.Errorf("config/rbac/activator/role.yaml Role = %v, want %v", activatorNSRules, wantActivatorNS)
	}

	// In its own namespace, the manager reads its build ConfigMap, by name,
	// holds its leader election Lease (what client-go's lease lock does)
	// and creates the invoke key Secret if no activator has: nothing else,
	// and none of them cluster-wide.
	wantManagerNS := []any{
		map[string]any{"apiGroups": []any{""}, "resourceNames": []any{"build-config"}, "resources": []any{"configmaps"}, "verbs": []any{"get"}},
		map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"create"}},
		map[string]any{"apiGroups": []any{"coordination.k8s.io"}, "resources": []any{"leases"}, "verbs": []any{"create", "get", "update"}},
	}
	if !reflect.DeepEqual(managerNSRules, wantManagerNS) {
		t.Errorf("config/rbac/role.yaml Role = %v, want %v", managerNSRules, wantManagerNS)
	}
	for _, rule := range managerRules {
		rule := rule.(map[string]any)
		res := strs(rule["resources"])
		if slices.Contains(res, "configmaps") || slices.Contains(res, "leases") {
			t.Errorf("the manager's ClusterRole grants %v cluster-wide: %v", res, rule)
		}
		// Secrets are read one by one, by name, from the API server: a
		// list or watch would read them all.
		if slices.Contains(res, "secrets") && !slices.Equal(strs(rule["verbs"]), []string{"get"}) {
			t.Errorf("the manager's ClusterRole grants %v on Secrets, want get only", strs(rule["verbs"]))
		}
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
		if len(r.ofKind("Role")) != 2 || len(r.ofKind("RoleBinding")) != 2 {
			t.Errorf("%s: %d Roles and %d RoleBindings, want 2 and 2", name, len(r.ofKind("Role")), len(r.ofKind("RoleBinding")))
		}
		// The manager's, the activator's, and the invoker role for users
		// (bound by nobody here).
		roles := r.ofKind("ClusterRole")
		if len(roles) != 3 || len(r.ofKind("ClusterRoleBinding")) != 2 {
			t.Errorf("%s: %d ClusterRoles and %d ClusterRoleBindings, want 3 and 2", name, len(roles), len(r.ofKind("ClusterRoleBinding")))
		}
		invoker := r.mustFind(t, "ClusterRole", p+"-invoker")
		if rules, _, _ := unstructured.NestedSlice(invoker.Object, "rules"); !reflect.DeepEqual(rules, []any{
			map[string]any{"apiGroups": []any{"lambdapod.io"}, "resources": []any{"functions"}, "verbs": []any{"invoke"}},
		}) {
			t.Errorf("%s: the invoker ClusterRole grants %v, want invoke on functions only", name, rules)
		}
		for _, role := range slices.Concat(roles, r.ofKind("Role")) {
			rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
			for _, rule := range rules {
				rule := rule.(map[string]any)
				for _, f := range []string{"verbs", "resources", "apiGroups"} {
					if slices.Contains(strs(rule[f]), "*") {
						t.Errorf("%s: %s %s grants %s *", name, role.GetKind(), role.GetName(), f)
					}
				}
				if len(strs(rule["nonResourceURLs"])) > 0 {
					t.Errorf("%s: %s %s has nonResourceURLs: %v", name, role.GetKind(), role.GetName(), rule)
				}
				// resourceNames only where they narrow a get: the build
				// ConfigMap in the manager's Role (they do not narrow list,
				// watch or create).
				if len(strs(rule["resourceNames"])) > 0 && (role.GetKind() != "Role" || !slices.Equal(strs(rule["verbs"]), []string{"get"})) {
					t.Errorf("%s: %s %s has resourceNames: %v", name, role.GetKind(), role.GetName(), rule)
				}
			}
		}
		for _, c := range []struct {
			kind, component string
			rules           []any
		}{
			{"ClusterRole", "manager", managerRules},
			{"Role", "manager", prefixedNames(managerNSRules, p)},
			{"ClusterRole", "activator", activatorRules},
			{"Role", "activator", activatorNSRules},
		} {
			role := r.mustFind(t, c.kind, p+"-"+c.component+"-role")
			if rules, _, _ := unstructured.NestedSlice(role.Object, "rules"); !reflect.DeepEqual(rules, c.rules) {
				t.Errorf("%s: %s %s rules = %v\nwant the generated %v", name, c.kind, role.GetName(), rules, c.rules)
			}
			b := r.mustFind(t, c.kind+"Binding", p+"-"+c.component+"-rolebinding")
			if ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "name"); ref != role.GetName() {
				t.Errorf("%s: %s binds %s", name, b.GetName(), ref)
			}
			if ref, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind"); ref != c.kind {
				t.Errorf("%s: %s binds a %s", name, b.GetName(), ref)
			}
			if c.kind == "Role" && (role.GetNamespace() != namespace || b.GetNamespace() != namespace) {
				t.Errorf("%s: Role %s and RoleBinding %s are in %q and %q, want the release's namespace %s",
					name, role.GetName(), b.GetName(), role.GetNamespace(), b.GetNamespace(), namespace)
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
		// The ConfigMap the Role names is the one the manager is told to
		// read, and the render has it.
		cm := p + "-build-config"
		r.mustFind(t, "ConfigMap", cm)
		if args := strs(container(t, r.mustFind(t, "Deployment", p+"-manager"))["args"]); !slices.Contains(args, "--build-configmap="+cm) {
			t.Errorf("%s: the manager's args %q do not name the ConfigMap its Role grants, %s", name, args, cm)
		}
	}
}
