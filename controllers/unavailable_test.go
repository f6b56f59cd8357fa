package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// TestPodsThatCannotRun: a Function whose pods cannot be created (the
// namespace enforces the restricted Pod Security Standard and the
// Function runs as root) or cannot start (their image cannot be pulled)
// is not Ready and says why, whether its pods come from minReplicas or
// from the autoscaler, and turns Ready again by itself once the cause is
// gone. kube-controller-manager's Deployment and ReplicaSet controllers
// and the API server's PodSecurity admission are the real ones; the test
// plays the kubelet's part for the pod statuses.
func TestPodsThatCannotRun(t *testing.T) {
	env := testenv.Start(t, testenv.WithControllers("deployment", "replicaset", "garbagecollector"))
	ctx := context.Background()
	c := env.Client
	startManager(t, env, func(*controllers.FunctionReconciler) {})

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	create(t, c, ns)
	inRestricted := func(name string, minReplicas int32) *lambdapodv1alpha1.Function {
		return newFunction(name, func(fn *lambdapodv1alpha1.Function) {
			fn.Namespace = ns.Name
			fn.Spec.Source.Image = "example/hello:1"
			fn.Spec.Runtime.RunAsRoot = true
			fn.Spec.Scale.MinReplicas = minReplicas
		})
	}

	rooted := inRestricted("rooted", 1)
	scaled := inRestricted("scaled", 0)

	t.Run("pods refused by PodSecurity admission make the Function not Ready, saying so", func(t *testing.T) {
		start := time.Now()
		create(t, c, rooted)
		got := waitCannotRun(t, c, rooted, "PodSecurity")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Ready=False after %s, want within a few seconds", d)
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		if !strings.Contains(ready.Message, "cannot create pods") || !strings.Contains(ready.Message, "forbidden") {
			t.Errorf("Ready says %q, want the admission's refusal", ready.Message)
		}
	})

	t.Run("so do they when the autoscaler scales a Function up from zero", func(t *testing.T) {
		create(t, c, scaled)
		waitReady(t, c, scaled) // at zero, nothing to refuse
		setReplicas(t, c, scaled, 1)
		waitCannotRun(t, c, scaled, "PodSecurity")
	})

	t.Run("the Function turns Ready by itself once the namespace allows its pods", func(t *testing.T) {
		eventually(t, func() error {
			if err := c.Get(ctx, key(ns), ns); err != nil {
				return err
			}
			delete(ns.Labels, "pod-security.kubernetes.io/enforce")
			return c.Update(ctx, ns)
		})
		// No kubelet runs here, so the pods never turn ready: Ready then
		// means every pod runs the current template.
		// The ReplicaSet controller creates the pod after its backoff: the
		// Function is Ready with its pod, without Stalled or Reconciling.
		for _, fn := range []*lambdapodv1alpha1.Function{rooted, scaled} {
			eventually(t, func() error {
				got := waitReady(t, c, fn)
				for _, absent := range []string{lambdapodv1alpha1.ConditionStalled, lambdapodv1alpha1.ConditionReconciling} {
					if meta.FindStatusCondition(got.Status.Conditions, absent) != nil {
						return fmt.Errorf("%s: %s present on a ready Function: %+v", fn.Name, absent, got.Status.Conditions)
					}
				}
				if got.Status.Replicas != 1 {
					return fmt.Errorf("%s: %d pods, want 1", fn.Name, got.Status.Replicas)
				}
				return nil
			})
		}
	})

	t.Run("a pod whose image cannot be pulled makes it not Ready until the pod starts", func(t *testing.T) {
		fn := newFunction("unpulled", func(fn *lambdapodv1alpha1.Function) {
			fn.Spec.Source.Image = "example/missing:1"
			fn.Spec.Scale.MinReplicas = 1
		})
		create(t, c, fn)
		waitReady(t, c, fn)
		pod := waitPod(t, c, fn, "")
		setContainers(t, c, pod, func(cs *corev1.ContainerStatus) {
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "ImagePullBackOff", Message: `Back-off pulling image "example/missing:1"`,
			}}
		})
		got := waitCannotRun(t, c, fn, "ImagePullBackOff")
		ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		if !strings.Contains(ready.Message, pod.Name) || !strings.Contains(ready.Message, `Back-off pulling image "example/missing:1"`) {
			t.Errorf("Ready says %q, want the pod and the kubelet's message", ready.Message)
		}

		setContainers(t, c, pod, func(cs *corev1.ContainerStatus) {
			cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
		})
		waitReady(t, c, fn)
	})
}

// waitCannotRun waits for fn to say that its pods cannot run, with says in
// the message, as kstatus wants a failure only the user can fix told:
// Ready False, Stalled True, no Reconciling.
func waitCannotRun(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, says string) *lambdapodv1alpha1.Function {
	t.Helper()
	var got *lambdapodv1alpha1.Function
	eventually(t, func() error {
		got = getFunction(t, c, fn)
		ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
		stalled := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionStalled)
		deployed := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionDeployed)
		switch {
		case ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != controllers.ReasonPodsCannotRun ||
			!strings.Contains(ready.Message, says) || ready.ObservedGeneration != got.Generation:
			return fmt.Errorf("Ready %+v, want False %s saying %q", ready, controllers.ReasonPodsCannotRun, says)
		case stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != controllers.ReasonPodsCannotRun:
			return fmt.Errorf("Stalled %+v, want True", stalled)
		case deployed == nil || deployed.Status != metav1.ConditionFalse || deployed.Reason != controllers.ReasonPodsCannotRun:
			return fmt.Errorf("Deployed %+v, want False", deployed)
		case meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReconciling) != nil:
			return fmt.Errorf("Reconciling present on a stalled Function: %+v", got.Status.Conditions)
		}
		return nil
	})
	return got
}

// setContainers writes the pod's container statuses as a kubelet would,
// each as set says.
func setContainers(t *testing.T, c client.Client, pod *corev1.Pod, set func(*corev1.ContainerStatus)) {
	t.Helper()
	eventually(t, func() error {
		if err := c.Get(context.Background(), key(pod), pod); err != nil {
			return err
		}
		pod.Status.Phase = corev1.PodPending
		pod.Status.InitContainerStatuses = nil
		pod.Status.ContainerStatuses = nil
		for _, ct := range pod.Spec.InitContainers {
			cs := corev1.ContainerStatus{Name: ct.Name, Image: ct.Image, Started: ptr(true), Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}
			pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, cs)
		}
		for _, ct := range pod.Spec.Containers {
			cs := corev1.ContainerStatus{Name: ct.Name, Image: ct.Image}
			set(&cs)
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
		}
		return c.Status().Update(context.Background(), pod)
	})
}
