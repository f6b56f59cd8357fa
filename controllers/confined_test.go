package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/controllers/imageconfig"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestConfinedPodsAreAdmitted: in a namespace that enforces the restricted
// Pod Security Standard, the API server admits a Function's pods, whatever
// its image's user, and the ReplicaSet's pods are created; a Function that
// opts out with runAsRoot has its pods refused, for its function container
// only. The proof is the API server's own PodSecurity admission: a
// server-side dry-run create of a pod from the Deployment's template, and
// kube-controller-manager's ReplicaSet creating (or failing to create) the
// pods.
func TestConfinedPodsAreAdmitted(t *testing.T) {
	env := testenv.Start(t, testenv.WithControllers("deployment", "replicaset"))
	ctx := context.Background()
	c := env.Client
	reg := startRegistry(t)
	// root's image, whose supervisor comes through the volume
	rootImage := pushImageOf(t, reg, "example/as-root:1", "root", nil)
	// a uid:gid image that carries the supervisor (no volume)
	uidImage := pushImageOf(t, reg, "example/as-uid:1", "1000:1000", map[string]string{contract.SupervisorLabel: contract.SupervisorPath})
	startManager(t, env, func(r *controllers.FunctionReconciler) { r.Images = imageconfig.New() })

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	create(t, c, ns)
	inNamespace := func(image string, mutate func(*lambdapodv1alpha1.Function)) func(*lambdapodv1alpha1.Function) {
		return func(fn *lambdapodv1alpha1.Function) {
			fn.Namespace = ns.Name
			fn.Spec.Source.Image = image
			fn.Spec.Scale.MinReplicas = 1
			if mutate != nil {
				mutate(fn)
			}
		}
	}

	for _, tc := range []struct {
		name     string
		fn       *lambdapodv1alpha1.Function
		uid, gid int64
	}{
		{"a root image runs as uid 993 and its pods are admitted", newFunction("root-image", inNamespace(rootImage, nil)), 993, 993},
		{"a uid:gid image keeps its uid and gid and its pods are admitted", newFunction("uid-image", inNamespace(uidImage, nil)), 1000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			create(t, c, tc.fn)
			d := deploymentOf(t, c, tc.fn)
			sc := d.Spec.Template.Spec.Containers[0].SecurityContext
			if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != tc.uid || sc.RunAsGroup == nil || *sc.RunAsGroup != tc.gid {
				t.Errorf("function container securityContext %s, want runAsUser %d and runAsGroup %d", describeSC(sc), tc.uid, tc.gid)
			}
			if err := dryRunPod(ctx, c, d); err != nil {
				t.Fatalf("a pod of the Deployment's template is refused in a restricted namespace: %v", err)
			}
			// and the ReplicaSet's pod is created: admitted as the
			// cluster admits it (no node runs it here)
			eventually(t, func() error {
				pods := &corev1.PodList{}
				if err := c.List(ctx, pods, client.InNamespace(ns.Name), client.MatchingLabels{contract.LabelFunction: tc.fn.Name}); err != nil {
					return err
				}
				if len(pods.Items) != 1 {
					return fmt.Errorf("%d pods, want 1; ReplicaSets: %s", len(pods.Items), replicaSetFailures(ctx, c, tc.fn))
				}
				return nil
			})
		})
	}

	t.Run("runAsRoot opts out, and the namespace refuses the function container", func(t *testing.T) {
		fn := newFunction("as-root", inNamespace(rootImage, func(fn *lambdapodv1alpha1.Function) { fn.Spec.Runtime.RunAsRoot = true }))
		create(t, c, fn)
		d := deploymentOf(t, c, fn)
		if sc := d.Spec.Template.Spec.Containers[0].SecurityContext; sc != nil {
			t.Errorf("function container securityContext %s, want none with runAsRoot", describeSC(sc))
		}
		err := dryRunPod(ctx, c, d)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
			t.Fatalf("dry-run create of a runAsRoot pod: %v, want forbidden by PodSecurity restricted", err)
		}
		// what is refused is the function container's, never the sidecar's
		if msg := err.Error(); !strings.Contains(msg, `container "function"`) || strings.Contains(msg, `"runtime-sidecar"`) {
			t.Errorf("PodSecurity refusal names the wrong containers: %s", msg)
		}
		// and the ReplicaSet says so, as kubectl describe shows a user
		eventually(t, func() error {
			if f := replicaSetFailures(ctx, c, fn); !strings.Contains(f, "violates PodSecurity") {
				return fmt.Errorf("ReplicaSet failures %q, want a PodSecurity refusal", f)
			}
			return nil
		})
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns.Name), client.MatchingLabels{contract.LabelFunction: fn.Name}); err != nil || len(pods.Items) != 0 {
			t.Errorf("%d pods of a runAsRoot Function in a restricted namespace (err %v), want none", len(pods.Items), err)
		}
	})
}

// deploymentOf waits for the Function's Deployment.
func deploymentOf(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	eventually(t, func() error { return c.Get(context.Background(), key(fn), d) })
	return d
}

// dryRunPod asks the API server to create a pod of the Deployment's
// template, without keeping it: admission, PodSecurity included, runs as for
// a real one.
func dryRunPod(ctx context.Context, c client.Client, d *appsv1.Deployment) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-", Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	return c.Create(ctx, pod, client.DryRunAll)
}

// replicaSetFailures is the ReplicaFailure messages of the Function's
// ReplicaSets.
func replicaSetFailures(ctx context.Context, c client.Client, fn *lambdapodv1alpha1.Function) string {
	list := &appsv1.ReplicaSetList{}
	if err := c.List(ctx, list, client.InNamespace(fn.Namespace), client.MatchingLabels{contract.LabelFunction: fn.Name}); err != nil {
		return err.Error()
	}
	var out []string
	for _, rs := range list.Items {
		for _, cond := range rs.Status.Conditions {
			if cond.Type == appsv1.ReplicaSetReplicaFailure && cond.Status == corev1.ConditionTrue {
				out = append(out, rs.Name+": "+cond.Message)
			}
		}
	}
	return strings.Join(out, "; ")
}

func describeSC(sc *corev1.SecurityContext) string {
	if sc == nil {
		return "<none>"
	}
	u, g := "<nil>", "<nil>"
	if sc.RunAsUser != nil {
		u = fmt.Sprint(*sc.RunAsUser)
	}
	if sc.RunAsGroup != nil {
		g = fmt.Sprint(*sc.RunAsGroup)
	}
	return fmt.Sprintf("{runAsUser %s runAsGroup %s runAsNonRoot %v}", u, g, sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
}

// pushImageOf pushes a small random image whose bootstrap is
// /var/task/bootstrap and whose USER is user, and returns its reference.
func pushImageOf(t *testing.T, reg, repoTag, user string, labels map[string]string) string {
	return pushConfig(t, reg, repoTag, func(c *v1.Config) {
		c.Entrypoint, c.User, c.Labels = []string{"/var/task/bootstrap"}, user, labels
	})
}
