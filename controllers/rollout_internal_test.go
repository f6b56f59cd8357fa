package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/scheme"
)

// The rollout decision on Deployments, ReplicaSets and pods as the
// Kubernetes controllers leave them, with and without the
// DeploymentReplicaSetTerminatingReplicas feature; the integration test
// (rollout_test.go) runs the real controllers, which have it.
func TestObserveDeployment(t *testing.T) {
	const ns, name = "default", "fn"
	template := func(image string, labels map[string]string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "function", Image: image}}},
		}
	}
	// d runs the template of the ReplicaSet with hash "new"; with status
	// counts, unless mutate changes it.
	d := func(replicas, updated int32, terminating *int32, mutate ...func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "deploy-uid", Generation: 2},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptrTo(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"fn": name}},
				Template: template("fn:new", map[string]string{"fn": name}),
			},
			Status: appsv1.DeploymentStatus{
				ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: updated, ReadyReplicas: updated,
				TerminatingReplicas: terminating,
			},
		}
		for _, m := range mutate {
			m(d)
		}
		return d
	}
	unobserved := func(image string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Generation = 3
			d.Spec.Template.Spec.Containers[0].Image = image
		}
	}
	controller := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: "deploy-uid", Controller: ptrTo(true)}
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "other", UID: "other-uid", Controller: ptrTo(true)}
	// rs has the pods of template "fn:<hash>".
	rs := func(hash, revision string, terminating *int32, owner metav1.OwnerReference) *appsv1.ReplicaSet {
		labels := map[string]string{"fn": name, appsv1.DefaultDeploymentUniqueLabelKey: hash}
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Name: name + "-" + hash, Namespace: ns, Labels: labels,
				Annotations:     map[string]string{revisionAnnotation: revision},
				OwnerReferences: []metav1.OwnerReference{owner},
			},
			Spec:   appsv1.ReplicaSetSpec{Replicas: ptrTo(int32(0)), Template: template("fn:"+hash, labels)},
			Status: appsv1.ReplicaSetStatus{ObservedGeneration: 1, TerminatingReplicas: terminating},
		}
	}
	pod := func(podName, hash string, terminating bool, phase corev1.PodPhase) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: podName, Namespace: ns,
				Labels: map[string]string{"fn": name, appsv1.DefaultDeploymentUniqueLabelKey: hash},
			},
			Status: corev1.PodStatus{Phase: phase},
		}
		if terminating {
			p.DeletionTimestamp = ptrTo(metav1.Now())
			p.Finalizers = []string{"test.lambdapod.io/linger"}
		}
		return p
	}
	// ReplicaSets want no pods and have none unless these say otherwise.
	withPods := func(rs *appsv1.ReplicaSet, n int32) *appsv1.ReplicaSet {
		rs.Spec.Replicas, rs.Status.Replicas = ptrTo(n), n
		return rs
	}
	wanting := func(rs *appsv1.ReplicaSet, n int32) *appsv1.ReplicaSet {
		rs.Spec.Replicas = ptrTo(n)
		return rs
	}
	zero, one := ptrTo(int32(0)), ptrTo(int32(1))
	deadline := func(d *appsv1.Deployment) {
		d.Status.Conditions = []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
			Message: `ReplicaSet "fn-new" has timed out progressing.`,
		}}
	}

	for _, tc := range []struct {
		name    string
		deploy  *appsv1.Deployment
		objects []client.Object
		// lists is how many List calls the decision may make.
		lists    int
		deployed bool
		stalled  bool
		says     string
	}{{
		name:     "rolled out and nothing terminating: no read",
		deploy:   d(2, 2, zero),
		deployed: true,
	}, {
		name:   "still rolling out by the Deployment's own counts: no read",
		deploy: d(3, 2, one),
		says:   "2 of 3 pods run the current template",
	}, {
		name:     "a pod of the current template terminating (scaling down) keeps it deployed",
		deploy:   d(1, 1, one),
		objects:  []client.Object{rs("new", "2", one, controller), rs("old", "1", zero, controller)},
		lists:    1,
		deployed: true,
	}, {
		name:   "pods of earlier templates terminating are a rollout in progress",
		deploy: d(1, 1, ptrTo(int32(2))),
		objects: []client.Object{
			rs("new", "3", zero, controller), rs("old", "2", one, controller), rs("older", "1", one, controller),
		},
		lists: 1,
		says:  "Deployment fn is rolling out: 2 pods of an earlier template are still terminating",
	}, {
		name:     "a rollback: the template rolled back to is the newest revision",
		deploy:   d(0, 0, one),
		objects:  []client.Object{rs("new", "3", one, controller), rs("old", "2", zero, controller)},
		lists:    1,
		deployed: true,
	}, {
		name:     "another Deployment's ReplicaSet with the same labels does not count",
		deploy:   d(1, 1, one),
		objects:  []client.Object{rs("new", "2", one, controller), rs("theirs", "1", ptrTo(int32(4)), other)},
		lists:    1,
		deployed: true,
	}, {
		name:   "without the feature, the pods of earlier templates are read",
		deploy: d(1, 1, nil),
		objects: []client.Object{
			rs("new", "2", nil, controller), rs("old", "1", nil, controller),
			pod("new-a", "new", false, corev1.PodRunning), pod("new-b", "new", true, corev1.PodRunning),
			pod("old-a", "old", true, corev1.PodRunning), pod("old-b", "old", true, corev1.PodFailed),
			pod("old-c", "old", false, corev1.PodRunning),
		},
		lists: 2,
		says:  ": 1 pod of an earlier template is still terminating",
	}, {
		name:   "without the feature, terminating pods of the current template keep it deployed",
		deploy: d(0, 0, nil),
		objects: []client.Object{
			rs("new", "2", nil, controller), rs("old", "1", nil, controller), pod("new-a", "new", true, corev1.PodRunning),
		},
		lists:    2,
		deployed: true,
	}, {
		name:     "a new replica count the Deployment controller has not seen keeps it deployed",
		deploy:   d(1, 1, zero, unobserved("fn:new")),
		objects:  []client.Object{rs("new", "2", zero, controller), rs("old", "1", zero, controller)},
		lists:    1,
		deployed: true,
	}, {
		name:   "a new replica count the Deployment controller has not seen, with an earlier template's pod terminating",
		deploy: d(1, 1, zero, unobserved("fn:new")),
		objects: []client.Object{
			rs("new", "2", zero, controller), rs("old", "1", one, controller),
		},
		lists: 1,
		says:  "1 pod of an earlier template is still terminating",
	}, {
		name:   "a new template the Deployment controller has created a ReplicaSet for but not counted yet",
		deploy: d(1, 1, zero, unobserved("fn:newer")),
		objects: []client.Object{
			rs("newer", "3", zero, controller), withPods(rs("new", "2", zero, controller), 1), rs("old", "1", zero, controller),
		},
		lists: 1,
		says:  "waiting for Deployment fn to observe generation 3",
	}, {
		name:   "an earlier ReplicaSet still wanted: a rollout in progress",
		deploy: d(1, 1, zero, unobserved("fn:new")),
		objects: []client.Object{
			rs("new", "2", zero, controller), wanting(rs("old", "1", zero, controller), 1),
		},
		lists: 1,
		says:  "waiting for Deployment fn to observe generation 3",
	}, {
		name:    "a new template the Deployment controller has not seen is a rollout in progress",
		deploy:  d(1, 1, zero, unobserved("fn:newer")),
		objects: []client.Object{rs("new", "2", zero, controller), rs("old", "1", zero, controller)},
		lists:   1,
		says:    "waiting for Deployment fn to observe generation 3",
	}, {
		name:    "a rollout past its progress deadline stalls",
		deploy:  d(2, 1, zero, deadline),
		stalled: true,
		says:    `Deployment fn made no progress: ReplicaSet "fn-new" has timed out progressing; see`,
	}, {
		name:   "a new Deployment the controller has not seen is a rollout in progress",
		deploy: d(0, 0, nil, unobserved("fn:new")),
		lists:  1,
		says:   "waiting for Deployment fn to observe generation 3",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lists := 0
			c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc.objects...).
				WithInterceptorFuncs(interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					lists++
					return c.List(ctx, list, opts...)
				}}).Build()
			s := newScope(&lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
			s.deploy = tc.deploy
			err := s.observeDeployment(context.Background(), c)
			if lists != tc.lists {
				t.Errorf("%d List calls, want %d", lists, tc.lists)
			}
			if s.fn.Status.Replicas != tc.deploy.Status.Replicas || s.fn.Status.DesiredReplicas != *tc.deploy.Spec.Replicas {
				t.Errorf("status replicas %d desired %d, want the Deployment's", s.fn.Status.Replicas, s.fn.Status.DesiredReplicas)
			}
			if tc.deployed {
				if err != nil || !strings.HasPrefix(s.deployed, "Deployment fn runs the current template") || s.recheck != 0 {
					t.Errorf("err %v, deployed %q, recheck in %s: want deployed, no recheck", err, s.deployed, s.recheck)
				}
				return
			}
			var problem *stepError
			if !errors.As(err, &problem) {
				t.Fatalf("err = %v, want a stepError", err)
			}
			reason := "Progressing"
			if tc.stalled {
				reason = "ProgressDeadlineExceeded"
			}
			if problem.Condition != lambdapodv1alpha1.ConditionDeployed || problem.conditionStatus() != metav1.ConditionFalse ||
				problem.Reason != reason || problem.Stalled != tc.stalled || !strings.Contains(problem.Error(), tc.says) || s.deployed != "" {
				t.Errorf("%+v (%q), deployed %q: want Deployed False %s, stalled %v, saying %q", problem, problem.Error(), s.deployed, reason, tc.stalled, tc.says)
			}
			want := time.Duration(0)
			if strings.Contains(tc.says, "terminating") {
				want = terminatingRecheck
			}
			if s.recheck != want {
				t.Errorf("recheck in %s, want %s", s.recheck, want)
			}
		})
	}

	t.Run("a failed read fails the pass", func(t *testing.T) {
		c := fake.NewClientBuilder().WithScheme(scheme.New()).
			WithInterceptorFuncs(interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
				return errors.New("forbidden")
			}}).Build()
		for _, deploy := range []*appsv1.Deployment{d(1, 1, one), d(1, 1, zero, unobserved("fn:new"))} {
			s := newScope(&lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
			s.deploy = deploy
			err := s.observeDeployment(context.Background(), c)
			var problem *stepError
			if err == nil || !strings.Contains(err.Error(), "forbidden") || errors.As(err, &problem) {
				t.Errorf("err = %v, want the List error as it is", err)
			}
		}
	})
}
