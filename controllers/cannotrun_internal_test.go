package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/scheme"
)

// Whether a Deployment's pods can run, from its status, its current
// ReplicaSet and the pods of the current template, with the API reads
// that takes (pods come from the cache, which is no API read).
func TestCannotRun(t *testing.T) {
	const ns, name = "default", "fn"
	d := func(replicas int32, mutate ...func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "deploy-uid", Generation: 2},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptrTo(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"fn": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"fn": name}}},
			},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, TerminatingReplicas: ptrTo(int32(0))},
		}
		for _, m := range mutate {
			m(d)
		}
		return d
	}
	refused := func(d *appsv1.Deployment) {
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
			Reason: "FailedCreate", Message: `pods "fn-new-x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true`}}
	}
	rs := func(hash, revision string) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Name: name + "-" + hash, Namespace: ns, UID: hashUID(hash),
			Labels:          map[string]string{"fn": name, appsv1.DefaultDeploymentUniqueLabelKey: hash},
			Annotations:     map[string]string{revisionAnnotation: revision},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: "deploy-uid", Controller: ptrTo(true)}},
		}}
	}
	pod := func(hash string, waiting string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + hash + "-pod", Namespace: ns,
				Labels:          map[string]string{"fn": name, appsv1.DefaultDeploymentUniqueLabelKey: hash},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-" + hash, UID: hashUID(hash), Controller: ptrTo(true)}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "runtime-sidecar", Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "function",
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
		}
		if waiting != "" {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting, Message: "the kubelet says " + waiting}}
			p.Status.ContainerStatuses[0].RestartCount = 4
			p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}
		}
		return p
	}

	for _, tc := range []struct {
		name    string
		deploy  *appsv1.Deployment
		sets    []client.Object
		pods    []client.Object
		noCache bool
		lists   int
		says    string
	}{{
		name:   "admission refused the pods: the Deployment's status says so, no read",
		deploy: d(1, refused),
		says:   `Deployment fn cannot create pods (FailedCreate): pods "fn-new-x" is forbidden: violates PodSecurity`,
	}, {
		name: "a template the Deployment controller has not seen: its old refusal does not tell",
		deploy: d(1, refused, func(d *appsv1.Deployment) {
			d.Generation = 3
			d.Spec.Template.Labels["changed"] = "yes"
		}),
		sets:  []client.Object{rs("new", "2")},
		lists: 1,
	}, {
		name:   "scaled to zero, nothing fails",
		deploy: d(0, refused),
	}, {
		name:   "pods starting: no API read",
		deploy: d(1),
		sets:   []client.Object{rs("new", "2")},
		pods:   []client.Object{pod("new", "ContainerCreating")},
	}, {
		name:   "a pod of the current template whose image cannot be pulled",
		deploy: d(1),
		sets:   []client.Object{rs("new", "2"), rs("old", "1")},
		pods:   []client.Object{pod("new", "ImagePullBackOff")},
		lists:  1,
		says:   "pod fn-new-pod cannot start: container function: ImagePullBackOff: the kubelet says ImagePullBackOff",
	}, {
		name:   "a crash loop says how the bootstrap exited",
		deploy: d(1),
		sets:   []client.Object{rs("new", "2")},
		pods:   []client.Object{pod("new", "CrashLoopBackOff")},
		lists:  1,
		says:   "container function: CrashLoopBackOff: the kubelet says CrashLoopBackOff (restarted 4 times; last exit code 2, Error)",
	}, {
		name:   "a failing pod of an earlier template does not count",
		deploy: d(1),
		sets:   []client.Object{rs("new", "2"), rs("old", "1")},
		pods:   []client.Object{pod("old", "CrashLoopBackOff"), pod("new", "")},
		lists:  1,
	}, {
		name:    "without a cache of pods, none is looked at",
		deploy:  d(1),
		sets:    []client.Object{rs("new", "2")},
		pods:    []client.Object{pod("new", "ImagePullBackOff")},
		noCache: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lists := 0
			api := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc.sets...).
				WithInterceptorFuncs(interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					lists++
					return c.List(ctx, list, opts...)
				}}).Build()
			var cache client.Reader = fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc.pods...).Build()
			s := newScope(&lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
			s.deploy = tc.deploy
			var err error
			if tc.noCache {
				api = fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(append(tc.sets, tc.pods...)...).Build()
				err = s.observeDeployment(context.Background(), api)
			} else {
				err = s.observeRollout(context.Background(), api, cache)
			}
			if lists != tc.lists {
				t.Errorf("%d API List calls, want %d", lists, tc.lists)
			}
			var problem *stepError
			errors.As(err, &problem)
			if tc.says == "" {
				if problem != nil && problem.Reason == ReasonPodsCannotRun {
					t.Errorf("%v, want no %s", err, ReasonPodsCannotRun)
				}
				return
			}
			if problem == nil || problem.Reason != ReasonPodsCannotRun || !problem.Stalled ||
				problem.Condition != lambdapodv1alpha1.ConditionDeployed || !strings.Contains(problem.Error(), tc.says) {
				t.Errorf("%+v, want Deployed stalled %s saying %q", err, ReasonPodsCannotRun, tc.says)
			}
		})
	}
}

func hashUID(hash string) types.UID { return types.UID("rs-" + hash) }

// A pod's updates wake its Function when, and only when, whether one of
// its containers cannot start changes; the cache keeps what that needs.
func TestPodStartChanged(t *testing.T) {
	waiting := func(reason, message string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"lambdapod.io/function": "fn"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: "x"}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "function",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}}}
		trimmed, _ := trimPod(p)
		return trimmed.(*corev1.Pod)
	}
	pred := podStartChanged()
	for _, tc := range []struct {
		old, now *corev1.Pod
		want     bool
	}{
		// A first failed pull may pass; the back-off says it does not.
		{waiting("ContainerCreating", ""), waiting("ErrImagePull", "pull failed"), false},
		{waiting("ErrImagePull", "pull failed"), waiting("ImagePullBackOff", "back-off"), true},
		{waiting("CrashLoopBackOff", "back-off 10s"), waiting("CrashLoopBackOff", "back-off 20s"), false},
		{waiting("ImagePullBackOff", "back-off"), waiting("", ""), true},
		{waiting("ContainerCreating", ""), waiting("PodInitializing", ""), false},
	} {
		if got := pred.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.now}); got != tc.want {
			t.Errorf("%s -> %s: %v, want %v", tc.old.Status.ContainerStatuses[0].State.Waiting.Reason, tc.now.Status.ContainerStatuses[0].State.Waiting.Reason, got, tc.want)
		}
	}
	p := waiting("ImagePullBackOff", "back-off")
	if len(p.Spec.Containers) != 0 || p.Labels["lambdapod.io/function"] != "fn" {
		t.Errorf("trimmed pod %+v: want no spec, its labels kept", p)
	}
	if reqs := podFunction(context.Background(), p); len(reqs) != 1 || reqs[0].Name != "fn" {
		t.Errorf("pod maps to %v, want fn", reqs)
	}
}
