package packaging

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lambdapod/lambdapod/internal/testenv"
)

const fieldOwner = client.FieldOwner("lambdapod-packaging-test")

// serviceMonitorCRD is the part of the Prometheus Operator's ServiceMonitor
// CRD that the chart uses, without x-kubernetes-preserve-unknown-fields
// where the chart writes, so that a typo there is refused.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [selector]
            properties:
              selector:
                type: object
                properties:
                  matchLabels: {type: object, additionalProperties: {type: string}}
                  matchExpressions: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
              namespaceSelector:
                type: object
                properties:
                  any: {type: boolean}
                  matchNames: {type: array, items: {type: string}}
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {type: string}
                    path: {type: string}
                    scheme: {type: string}
                    interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
`

// One real kube-apiserver for the checks that need one: every render is
// accepted by server-side apply (dry run), every pod template passes the
// PodSecurity admission at the restricted level, the RBAC grants are
// exactly the generated roles, and the Argo CD health check reads real
// Functions right.
func TestAgainstAPIServer(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client

	// The release namespace exists for real (dry-run objects in it need
	// it), labelled as config/default labels it.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sm, err := decodeYAML([]byte(serviceMonitorCRD))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, sm[0]); err != nil {
		t.Fatal(err)
	}

	renders := map[string]rendered{"config/default": buildKustomize(t, "default")}
	for _, o := range overrides {
		renders["chart "+o.name] = renderChart(t, o.release, o.values)
	}

	t.Run("server-side dry-run apply", func(t *testing.T) {
		// The check is live: the API server refuses a field it does not know.
		bad := renderChart(t, releaseName, "").mustFind(t, "Deployment", "lambdapod-activator").DeepCopy()
		_ = unstructured.SetNestedField(bad.Object, int64(1), "spec", "template", "spec", "replicas")
		if err := dryRunApply(ctx, c, bad); err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Fatalf("a Deployment with spec.template.spec.replicas was accepted: %v", err)
		}
		for name, r := range renders {
			t.Run(name, func(t *testing.T) {
				for _, o := range r.objects {
					if err := dryRunApply(ctx, c, o); err != nil {
						t.Errorf("%s: %v", key(o), err)
					}
				}
			})
		}
	})

	t.Run("restricted pod security admission", func(t *testing.T) {
		// The check is live: a pod without a security context is refused.
		bare := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: namespace},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if err := c.Create(ctx, bare, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
			t.Fatalf("a pod without a security context was admitted in a restricted namespace: %v", err)
		}
		for name, r := range renders {
			for _, d := range append(r.ofKind("Deployment"), r.ofKind("StatefulSet")...) {
				spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
				// A StatefulSet's pods get a persistentVolumeClaim volume
				// per claim template, as its controller adds them.
				vcts, _, _ := unstructured.NestedSlice(d.Object, "spec", "volumeClaimTemplates")
				for _, vct := range vcts {
					n, _, _ := unstructured.NestedString(vct.(map[string]any), "metadata", "name")
					spec["volumes"] = append(nested(spec, "volumes"), map[string]any{
						"name":                  n,
						"persistentVolumeClaim": map[string]any{"claimName": n + "-" + d.GetName() + "-0"},
					})
				}
				pod := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "v1", "kind": "Pod",
					"metadata": map[string]any{"name": "pss-" + d.GetName(), "namespace": namespace},
					"spec":     spec,
				}}
				if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
					t.Errorf("%s: %s: a pod from its template: %v", name, key(d), err)
				}
			}
		}
	})

	t.Run("RBAC grants exactly the generated roles", func(t *testing.T) {
		for _, o := range renders["chart defaults"].objects {
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), fieldOwner, client.ForceOwnership); err != nil {
				t.Fatalf("applying %s: %v", key(o), err)
			}
		}
		allVerbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
		for _, x := range []struct {
			sa    string
			rules []any
		}{
			{"lambdapod-manager", rbacRules(t, "config/rbac/role.yaml", "ClusterRole")},
			{"lambdapod-activator", rbacRules(t, "config/rbac/activator/role.yaml", "ClusterRole")},
		} {
			user := "system:serviceaccount:" + namespace + ":" + x.sa
			granted := map[string][]string{} // group/resource -> verbs
			for _, rule := range x.rules {
				rule := rule.(map[string]any)
				for _, g := range strs(rule["apiGroups"]) {
					for _, res := range strs(rule["resources"]) {
						granted[g+"/"+res] = append(granted[g+"/"+res], strs(rule["verbs"])...)
					}
				}
			}
			for gr, verbs := range granted {
				group, resource, _ := strings.Cut(gr, "/")
				for _, verb := range allVerbs {
					want := slices.Contains(verbs, verb)
					// In another namespace too: the roles are cluster-wide.
					if got := allowed(ctx, t, c, user, group, resource, verb, "team-a"); got != want {
						t.Errorf("%s may %s %s: %v, want %v", x.sa, verb, gr, got, want)
					}
				}
			}
			// ConfigMaps and Leases too: the manager's are in its own
			// namespace only (below).
			for _, gr := range []string{"/secrets", "/pods", "rbac.authorization.k8s.io/clusterroles", "/nodes", "/configmaps", "coordination.k8s.io/leases"} {
				if _, ok := granted[gr]; ok {
					continue
				}
				group, resource, _ := strings.Cut(gr, "/")
				for _, verb := range allVerbs {
					for _, ns := range []string{"team-a", "kube-system"} {
						if allowed(ctx, t, c, user, group, resource, verb, ns) {
							t.Errorf("%s may %s %s in %s, which its role does not grant", x.sa, verb, gr, ns)
						}
					}
				}
			}
		}

		// The manager's Role: in its own namespace, its build ConfigMap by
		// name and its leader election Lease; in no other namespace.
		manager := "system:serviceaccount:" + namespace + ":lambdapod-manager"
		for _, x := range []struct {
			group, resource, verb, ns, name string
			want                            bool
		}{
			{"", "configmaps", "get", namespace, "lambdapod-build-config", true},
			{"", "configmaps", "get", namespace, "kube-root-ca.crt", false},
			{"", "configmaps", "list", namespace, "", false},
			{"", "configmaps", "watch", namespace, "", false},
			{"", "configmaps", "update", namespace, "lambdapod-build-config", false},
			{"", "configmaps", "get", "team-a", "lambdapod-build-config", false},
			{"coordination.k8s.io", "leases", "get", namespace, "lambdapod-manager.lambdapod.io", true},
			{"coordination.k8s.io", "leases", "create", namespace, "", true},
			{"coordination.k8s.io", "leases", "update", namespace, "lambdapod-manager.lambdapod.io", true},
			{"coordination.k8s.io", "leases", "list", namespace, "", false},
			{"coordination.k8s.io", "leases", "watch", namespace, "", false},
			{"coordination.k8s.io", "leases", "patch", namespace, "lambdapod-manager.lambdapod.io", false},
			{"coordination.k8s.io", "leases", "delete", namespace, "lambdapod-manager.lambdapod.io", false},
			{"coordination.k8s.io", "leases", "get", "kube-system", "kube-controller-manager", false},
			{"coordination.k8s.io", "leases", "update", "kube-node-lease", "node-1", false},
		} {
			if got := allowedNamed(ctx, t, c, manager, x.group, x.resource, x.verb, x.ns, x.name); got != x.want {
				t.Errorf("lambdapod-manager may %s %s/%s %q in %s: %v, want %v", x.verb, x.group, x.resource, x.name, x.ns, got, x.want)
			}
		}
	})

	t.Run("Argo CD health of real Functions", func(t *testing.T) {
		testArgoCDHealth(ctx, t, env)
	})
}

func dryRunApply(ctx context.Context, c client.Client, o *unstructured.Unstructured) error {
	var err error
	// A freshly created CRD (the ServiceMonitor's) takes a moment to serve.
	for range 50 {
		err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), fieldOwner, client.ForceOwnership, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "no matches for kind") {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

func allowed(ctx context.Context, t *testing.T, c client.Client, user, group, resource, verb, ns string) bool {
	t.Helper()
	return allowedNamed(ctx, t, c, user, group, resource, verb, ns, "")
}

// allowedNamed asks about one object, by name ("" for any).
func allowedNamed(ctx context.Context, t *testing.T, c client.Client, user, group, resource, verb, ns, name string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: group, Resource: resource, Verb: verb, Name: name,
		},
	}}
	sub := ""
	if r, s, ok := strings.Cut(resource, "/"); ok {
		sar.Spec.ResourceAttributes.Resource, sub = r, s
		sar.Spec.ResourceAttributes.Subresource = sub
	}
	if err := c.Create(ctx, sar); err != nil {
		t.Fatal(fmt.Errorf("SubjectAccessReview: %w", err))
	}
	return sar.Status.Allowed
}
