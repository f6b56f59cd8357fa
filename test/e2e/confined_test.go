//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// TestConfinedFunction: a Function deployed into a namespace that enforces
// the restricted Pod Security Standard gets its pod admitted and run, turns
// Ready and answers through the activator, with the confinement lambdapod
// gives function pods by default (no spec.runtime setting).
func TestConfinedFunction(t *testing.T) {
	ctx := context.Background()
	restricted := restrictedNamespace(t, "restricted")

	// The namespace must really refuse an unconfined pod, or the rest
	// proves nothing.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "unconfined-", Namespace: restricted},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: builtImage(t)}}},
	}
	if err := k.Create(ctx, probe, client.DryRunAll); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("namespace %s admits a pod without a securityContext (err %v): is the PodSecurity admission plugin off?", restricted, err)
	}

	fn := &lambdapodv1alpha1.Function{
		ObjectMeta: metav1.ObjectMeta{Name: "confined", Namespace: restricted},
		Spec: lambdapodv1alpha1.FunctionSpec{
			Source: lambdapodv1alpha1.Source{Image: builtImage(t)},
			// the activator asks RBAC functions' callers for credentials
			AuthType: lambdapodv1alpha1.AuthNone,
			// one pod from the start, which the namespace must admit
			Scale: lambdapodv1alpha1.ScaleSpec{MinReplicas: 1, MaxReplicas: 1},
		},
	}
	if err := k.Create(ctx, fn); err != nil {
		t.Fatalf("create fn/%s in %s: %v", fn.Name, restricted, err)
	}
	start := time.Now()
	if out, errOut, err := kubectl(t, "", "-n", restricted, "wait", "--for=condition=Ready", "fn/"+fn.Name, "--timeout=180s"); err != nil {
		dumpIn(t, restricted, fn.Name)
		t.Fatalf("kubectl wait fn/%s in %s: %v\n%s%s", fn.Name, restricted, err, out, errOut)
	}
	t.Logf("fn/%s Ready %s after create", fn.Name, time.Since(start).Round(time.Millisecond))
	// A pod the namespace refused would leave the Deployment with none:
	// the pod must exist and be ready, its sidecar and bootstrap running
	// as the confinement lets them.
	deadline := time.Now().Add(2 * time.Minute)
	for _, ready := pods(t, restricted, fn.Name); ready != 1; _, ready = pods(t, restricted, fn.Name) {
		if time.Now().After(deadline) {
			dumpIn(t, restricted, fn.Name)
			t.Fatalf("fn/%s has no ready pod 2m after it was Ready", fn.Name)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("its pod is ready %s after create", time.Since(start).Round(time.Millisecond))

	// the pod that runs is confined as the restricted standard asks
	var list corev1.PodList
	if err := k.List(ctx, &list, client.InNamespace(restricted), client.MatchingLabels{"lambdapod.io/function": fn.Name}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatalf("fn/%s has no pod", fn.Name)
	}
	for _, c := range list.Items[0].Spec.Containers {
		if c.Name != "function" {
			continue
		}
		sc := c.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("function container securityContext %+v, want runAsNonRoot and a uid other than 0", sc)
		} else {
			t.Logf("function container runs as uid %d", *sc.RunAsUser)
		}
	}

	path := fmt.Sprintf("/%s/%s/confined?name=restricted", restricted, fn.Name)
	a := getKnown(t, path)
	t.Logf("GET %s: HTTP %d in %s", path, a.status, a.elapsed.Round(time.Millisecond))
	if want := helloBody("restricted", "/confined", fn.Name); a.status != 200 || a.body != want {
		dumpIn(t, restricted, fn.Name)
		t.Fatalf("GET %s: %d %q, want 200 %q", path, a.status, a.body, want)
	}
}
