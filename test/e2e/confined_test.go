//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
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
	restricted := restrictedNamespace(t)

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
	var a answer
	deadline = time.Now().Add(30 * time.Second)
	for {
		a = get(t, path)
		// the activator may learn of the function a moment after Ready
		if a.status != 404 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("GET %s: HTTP %d in %s", path, a.status, a.elapsed.Round(time.Millisecond))
	if want := helloBody("restricted", "/confined", fn.Name); a.status != 200 || a.body != want {
		dumpIn(t, restricted, fn.Name)
		t.Fatalf("GET %s: %d %q, want 200 %q", path, a.status, a.body, want)
	}
}

// restrictedNamespace creates a namespace of its own that enforces the
// restricted Pod Security Standard, deleted (and waited for) when the test
// ends unless E2E_KEEP is set.
func restrictedNamespace(t *testing.T) string {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "lambdapod-e2e-restricted-" + hex.EncodeToString(suffix),
		Labels: map[string]string{
			"app.kubernetes.io/part-of":                  "lambdapod-e2e",
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		},
	}}
	if err := k.Create(context.Background(), nsObj); err != nil {
		t.Fatalf("create namespace %s: %v", nsObj.Name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") != "" {
			t.Logf("E2E_KEEP set: namespace %s kept", nsObj.Name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := k.Delete(ctx, nsObj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", nsObj.Name, err)
			return
		}
		for {
			if err := k.Get(ctx, client.ObjectKey{Name: nsObj.Name}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
				return
			}
			select {
			case <-ctx.Done():
				t.Errorf("namespace %s still there after 3m", nsObj.Name)
				return
			case <-time.After(time.Second):
			}
		}
	})
	return nsObj.Name
}

// dumpIn logs a Function's status, its pods, its ReplicaSets (where a
// PodSecurity refusal shows) and the events of namespace.
func dumpIn(t *testing.T, namespace, name string) {
	t.Helper()
	for _, args := range [][]string{
		{"-n", namespace, "get", "fn", name, "-o", "yaml"},
		{"-n", namespace, "get", "deploy,rs,pods", "-l", "lambdapod.io/function=" + name, "-o", "wide"},
		{"-n", namespace, "describe", "rs", "-l", "lambdapod.io/function=" + name},
		{"-n", namespace, "get", "events", "--sort-by=.lastTimestamp"},
	} {
		out, errOut, _ := kubectl(t, "", args...)
		t.Logf("kubectl %s:\n%s%s", strings.Join(args, " "), out, errOut)
	}
}
