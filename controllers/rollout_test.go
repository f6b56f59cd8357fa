package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/controllers"
	"github.com/lambdapod/lambdapod/internal/contract"
	"github.com/lambdapod/lambdapod/internal/testenv"
)

// lingerFinalizer keeps a deleted pod terminating until the test removes
// it, as a kubelet does for the pod's grace period: no kubelet runs here.
const lingerFinalizer = "test.lambdapod.io/linger"

// TestRolloutWaitsForOldPods: a Function is not Ready while a pod of an
// earlier template is still terminating, since that pod may still answer
// with the old code; a terminating pod of the current template (scaling
// down) never makes it unready. The Deployment and ReplicaSet controllers
// are kube-controller-manager's; the test plays the kubelet's part by
// marking pods ready and holding deleted ones with a finalizer.
func TestRolloutWaitsForOldPods(t *testing.T) {
	env := testenv.Start(t, testenv.WithControllers("deployment", "replicaset", "garbagecollector"))
	ctx := context.Background()
	c := env.Client
	startManager(t, env, func(*controllers.FunctionReconciler) {})

	fn := newFunction("rolling", func(fn *lambdapodv1alpha1.Function) {
		fn.Spec.Source.Image = "example/hello:1"
		fn.Spec.Scale.MinReplicas = 1
	})
	create(t, c, fn)
	first := waitPod(t, c, fn, "")
	linger(t, c, first)
	markReady(t, c, first)
	fn = waitReady(t, c, fn)
	history := watchReady(t, env, fn)

	// Roll to a new image: the new pod turns ready, so the old ReplicaSet
	// is scaled down and its pod deleted, and lingers.
	eventually(t, func() error {
		fn = getFunction(t, c, fn)
		fn.Spec.Source.Image = "example/hello:2"
		return c.Update(ctx, fn)
	})
	rolledAt := fn.Generation
	second := waitPod(t, c, fn, first.Labels[appsv1.DefaultDeploymentUniqueLabelKey])
	linger(t, c, second)
	markReady(t, c, second)

	t.Run("a terminating pod of the earlier template keeps the Function from Ready", func(t *testing.T) {
		eventually(t, func() error {
			if err := c.Get(ctx, key(first), first); err != nil {
				return err
			}
			if first.DeletionTimestamp == nil {
				return fmt.Errorf("the first pod is not deleted yet")
			}
			return nil
		})
		eventually(t, func() error {
			got := getFunction(t, c, fn)
			deployed := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionDeployed)
			ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady)
			if got.Status.ObservedGeneration != rolledAt || deployed == nil || deployed.Status != metav1.ConditionFalse ||
				deployed.Reason != "Progressing" || !strings.Contains(deployed.Message, "1 pod of an earlier template is still terminating") ||
				ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != "Progressing" {
				return fmt.Errorf("conditions %+v", got.Status.Conditions)
			}
			return nil
		})
		// kube-controller-manager 1.35 and later count terminating pods in
		// the Deployment's status (DeploymentReplicaSetTerminatingReplicas);
		// the Function reads which template they run from the ReplicaSets.
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, key(fn), d); err != nil {
			t.Fatal(err)
		}
		if d.Status.TerminatingReplicas == nil || *d.Status.TerminatingReplicas != 1 ||
			d.Status.Replicas != 1 || d.Status.UpdatedReplicas != 1 {
			t.Errorf("Deployment status %+v, want 1 pod, updated, and 1 terminating", d.Status)
		}
		// It stays so while the pod lingers, with no moment of Ready.
		time.Sleep(time.Second)
		if got := history.ready(rolledAt); slices.Contains(got, readyStatus(metav1.ConditionTrue)) {
			t.Errorf("Ready at generation %d while the old pod terminates: %v", rolledAt, got)
		}
	})

	t.Run("the Function turns Ready once the old pod is gone", func(t *testing.T) {
		unlinger(t, c, first)
		eventually(t, func() error {
			if err := c.Get(ctx, key(first), &corev1.Pod{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the first pod is still there (err %v)", err)
			}
			return nil
		})
		got := waitReady(t, c, fn)
		if got.Generation != rolledAt || !meta.IsStatusConditionTrue(got.Status.Conditions, lambdapodv1alpha1.ConditionDeployed) {
			t.Errorf("generation %d, conditions %+v", got.Generation, got.Status.Conditions)
		}
	})

	t.Run("a terminating pod of the current template (scaling to zero) keeps it Ready", func(t *testing.T) {
		// From where the watch has seen it Ready.
		var seen int
		eventually(t, func() error {
			got := history.ready(rolledAt)
			if len(got) == 0 || got[len(got)-1] != readyStatus(metav1.ConditionTrue) {
				return fmt.Errorf("Ready at generation %d: %v", rolledAt, got)
			}
			seen = len(got)
			return nil
		})
		setReplicas(t, c, fn, 0)
		eventually(t, func() error {
			if err := c.Get(ctx, key(second), second); err != nil {
				return err
			}
			if second.DeletionTimestamp == nil {
				return fmt.Errorf("the second pod is not deleted yet")
			}
			d := &appsv1.Deployment{}
			if err := c.Get(ctx, key(fn), d); err != nil {
				return err
			}
			if d.Status.TerminatingReplicas == nil || *d.Status.TerminatingReplicas != 1 || d.Status.Replicas != 0 {
				return fmt.Errorf("Deployment status %+v", d.Status)
			}
			got := getFunction(t, c, fn)
			if got.Status.DesiredReplicas != 0 || got.Status.Replicas != 0 {
				return fmt.Errorf("Function status replicas %d/%d", got.Status.Replicas, got.Status.DesiredReplicas)
			}
			return nil
		})
		time.Sleep(time.Second)
		got := history.ready(rolledAt)
		if len(got) == seen {
			t.Errorf("the Function's status did not change while scaling to zero")
		}
		for _, st := range got[seen:] {
			if st != readyStatus(metav1.ConditionTrue) {
				t.Errorf("not Ready while scaling to zero: %v", got[seen:])
				break
			}
		}
		waitReady(t, c, fn)
		unlinger(t, c, second)
	})
}

// waitPod waits for a pod of fn that is not terminating and whose template
// hash is not notHash, and returns it.
func waitPod(t *testing.T, c client.Client, fn *lambdapodv1alpha1.Function, notHash string) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	eventually(t, func() error {
		pods := &corev1.PodList{}
		if err := c.List(context.Background(), pods, client.InNamespace(fn.Namespace), client.MatchingLabels{contract.LabelFunction: fn.Name}); err != nil {
			return err
		}
		for i, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != notHash {
				found = &pods.Items[i]
				return nil
			}
		}
		return fmt.Errorf("no pod of %s among %d", fn.Name, len(pods.Items))
	})
	return found
}

func linger(t *testing.T, c client.Client, pod *corev1.Pod) {
	t.Helper()
	patch := client.MergeFrom(pod.DeepCopy())
	pod.Finalizers = append(pod.Finalizers, lingerFinalizer)
	if err := c.Patch(context.Background(), pod, patch); err != nil {
		t.Fatal(err)
	}
}

func unlinger(t *testing.T, c client.Client, pod *corev1.Pod) {
	t.Helper()
	eventually(t, func() error {
		if err := c.Get(context.Background(), key(pod), pod); err != nil {
			return err
		}
		pod.Finalizers = slices.DeleteFunc(pod.Finalizers, func(f string) bool { return f == lingerFinalizer })
		return c.Update(context.Background(), pod)
	})
}

// markReady writes the status a kubelet writes once the pod's readiness
// probes pass.
func markReady(t *testing.T, c client.Client, pod *corev1.Pod) {
	t.Helper()
	eventually(t, func() error {
		if err := c.Get(context.Background(), key(pod), pod); err != nil {
			return err
		}
		now := metav1.Now()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.StartTime = &now
		for _, typ := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		return c.Status().Update(context.Background(), pod)
	})
}

// readyHistory is every Ready status a watch saw on one Function, by the
// generation the status describes.
type readyHistory struct {
	mu   sync.Mutex
	seen map[int64][]readyStatus
}

// readyStatus is "True" or "False: Reason".
type readyStatus string

func (h *readyHistory) ready(generation int64) []readyStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen[generation])
}

// watchReady records each Ready status fn goes through from now until the
// test ends: a watch sees every write, where polling could miss a blip.
func watchReady(t *testing.T, env *testenv.Env, fn *lambdapodv1alpha1.Function) *readyHistory {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &lambdapodv1alpha1.FunctionList{}, client.InNamespace(fn.Namespace),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", fn.Name)},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: fn.ResourceVersion}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &readyHistory{seen: map[int64][]readyStatus{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			got, ok := ev.Object.(*lambdapodv1alpha1.Function)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			if ready := meta.FindStatusCondition(got.Status.Conditions, lambdapodv1alpha1.ConditionReady); ready != nil {
				st := readyStatus(ready.Status)
				if ready.Status != metav1.ConditionTrue {
					st += readyStatus(": " + ready.Reason + ": " + ready.Message)
				}
				h.mu.Lock()
				h.seen[ready.ObservedGeneration] = append(h.seen[ready.ObservedGeneration], st)
				h.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		cancel()
		<-done
	})
	return h
}
