package packaging

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/lambdapod/lambdapod/internal/stats"
)

// Activators authenticate their load reports with a projected
// ServiceAccount token, and the manager takes reports only from the
// ServiceAccounts it is told: in every render the activator mounts the
// token where -autoscaler-token-file looks by default, and the manager's
// -autoscaler-reporters names exactly the ServiceAccount the activator runs
// as, whatever the release's name.
func TestActivatorTokenMatchesTheAutoscalersReporters(t *testing.T) {
	renders := map[string]rendered{"config/default": buildKustomize(t, "default")}
	for _, o := range overrides {
		renders["chart "+o.name] = renderChart(t, o.release, o.values)
	}
	for name, r := range renders {
		t.Run(name, func(t *testing.T) {
			var manager, activator *unstructured.Unstructured
			for _, d := range r.ofKind("Deployment") {
				switch {
				case strings.HasSuffix(d.GetName(), "-manager"):
					manager = d
				case strings.HasSuffix(d.GetName(), "-activator"):
					activator = d
				}
			}
			if manager == nil || activator == nil {
				t.Fatalf("no manager or activator Deployment")
			}
			sa, _, _ := unstructured.NestedString(activator.Object, "spec", "template", "spec", "serviceAccountName")
			r.mustFind(t, "ServiceAccount", sa)

			// The manager's POD_NAMESPACE is its own namespace, the
			// activator's: $(POD_NAMESPACE) in the argument is expanded
			// from it.
			m := container(t, manager)
			if envOf(m)["POD_NAMESPACE"] != "fieldRef:metadata.namespace" || manager.GetNamespace() != activator.GetNamespace() {
				t.Fatalf("the manager's POD_NAMESPACE is not the activator's namespace")
			}
			var reporters []string
			for _, a := range strs(m["args"]) {
				if v, ok := strings.CutPrefix(a, "--autoscaler-reporters="); ok {
					reporters = append(reporters, v)
				}
				if a == "--autoscaler-auth=false" {
					t.Errorf("the manager runs with %s", a)
				}
			}
			if want := []string{"system:serviceaccount:$(POD_NAMESPACE):" + sa}; !slices.Equal(reporters, want) {
				t.Errorf("manager -autoscaler-reporters %q, want %q (the activator runs as %s)", reporters, want, sa)
			}

			// The token: a projected ServiceAccount token for the
			// autoscaler's audience, where the activator reads it.
			a := container(t, activator)
			for _, arg := range strs(a["args"]) {
				if strings.HasPrefix(arg, "-autoscaler-token-file") {
					t.Errorf("the activator is given %s; the mount below is at the flag's default", arg)
				}
			}
			mounts, _ := a["volumeMounts"].([]any)
			var vol string
			for _, mt := range mounts {
				mt := mt.(map[string]any)
				if mt["mountPath"] == "/var/run/secrets/lambdapod/autoscaler" && mt["readOnly"] == true {
					vol, _ = mt["name"].(string)
				}
			}
			if vol == "" {
				t.Fatalf("the activator mounts nothing read-only at /var/run/secrets/lambdapod/autoscaler: %v", mounts)
			}
			volumes, _, _ := unstructured.NestedSlice(activator.Object, "spec", "template", "spec", "volumes")
			var sources []any
			for _, v := range volumes {
				if v := v.(map[string]any); v["name"] == vol {
					sources, _, _ = unstructured.NestedSlice(v, "projected", "sources")
				}
			}
			want := []any{map[string]any{"serviceAccountToken": map[string]any{
				"audience": stats.TokenAudience, "expirationSeconds": int64(3600), "path": "token"}}}
			if !reflect.DeepEqual(sources, want) {
				t.Errorf("volume %s projects %v, want %v", vol, sources, want)
			}
		})
	}
}
