package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// terminatingRecheck is how often a Function waiting for an earlier
// template's pods to finish terminating looks again. Their ReplicaSet's
// status normally announces it (through the Deployment's); where the
// cluster does not count terminating pods, nothing does.
const terminatingRecheck = 5 * time.Second

// revisionAnnotation numbers a Deployment's ReplicaSets: the Deployment
// controller gives the one it rolls to, new or rolled back to, the highest.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// reconcileRollout reads whether the Deployment has rolled out, from the
// API server: lambdapod's cache holds no ReplicaSets or pods.
func (r *FunctionReconciler) reconcileRollout(ctx context.Context, s *scope) error {
	return s.observeDeployment(ctx, r.APIReader)
}

// observeDeployment reads the rollout of s.deploy. A Function is deployed
// when every pod runs the current template and no pod of an earlier one is
// left, not even a terminating one: until its grace period ends it may
// still answer, with the old code. Scaling, including to and from zero,
// never makes a deployed Function unready: terminating pods of the current
// template do not count, and neither does a new replica count the
// Deployment controller has not seen yet.
//
// c reads the Deployment's ReplicaSets, and pods, when the Deployment's
// status cannot answer; it should not be a cache: lambdapod's holds
// neither.
func (s *scope) observeDeployment(ctx context.Context, c client.Reader) error {
	d := s.deploy
	st := &s.fn.Status
	st.Replicas = d.Status.Replicas
	st.ReadyReplicas = d.Status.ReadyReplicas
	st.DesiredReplicas = 0
	if d.Spec.Replicas != nil {
		st.DesiredReplicas = *d.Spec.Replicas
	}
	r := &rolloutReader{c: c, d: d}
	done, reason, message, err := r.rollout(ctx)
	switch {
	case err != nil:
		return err
	case done:
		s.deployed = message
		return nil
	case reason == "ProgressDeadlineExceeded":
		return stalled(lambdapodv1alpha1.ConditionDeployed, reason, errors.New(message))
	}
	if r.oldTerminating > 0 {
		s.recheckIn(terminatingRecheck)
	}
	return waiting(lambdapodv1alpha1.ConditionDeployed, reason, errors.New(message))
}

// rolloutReader reads one Deployment's rollout: its status, and its
// ReplicaSets (at most once) where the status cannot answer.
type rolloutReader struct {
	c client.Reader
	d *appsv1.Deployment
	// sets are d's ReplicaSets, and current the newest of them, once read.
	sets     []*appsv1.ReplicaSet
	current  *appsv1.ReplicaSet
	selector labels.Selector
	// oldTerminating is how many pods of earlier templates were found
	// terminating.
	oldTerminating int32
}

// rollout says whether the Deployment runs its current template on every
// pod, the way `kubectl rollout status` does, but without waiting for a
// replica count: the autoscaler changes that all the time. The Deployment's
// status leaves terminating pods out, so those are looked for when it says
// there are some.
func (r *rolloutReader) rollout(ctx context.Context) (done bool, reason, message string, err error) {
	d := r.d
	observed := d.Generation <= d.Status.ObservedGeneration
	if !observed {
		// A change the Deployment controller has not seen yet, so its
		// status does not tell. If the change left the template alone
		// (the autoscaler changes only the replicas), the ReplicaSets do.
		only, err := r.onlyCurrentTemplate(ctx)
		if err != nil || !only {
			return false, "Progressing", fmt.Sprintf("waiting for Deployment %s to observe generation %d", d.Name, d.Generation), err
		}
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "ProgressDeadlineExceeded", fmt.Sprintf("Deployment %s made no progress: %s; see `kubectl describe deployment %s` and its pods' events", d.Name, c.Message, d.Name), nil
		}
	}
	if old := d.Status.Replicas - d.Status.UpdatedReplicas; observed && old > 0 {
		return false, "Progressing", fmt.Sprintf("Deployment %s is rolling out: %d of %d pods run the current template", d.Name, d.Status.UpdatedReplicas, d.Status.Replicas), nil
	}
	if t := d.Status.TerminatingReplicas; !observed || t == nil || *t > 0 {
		// Some may be of an earlier template. nil: the cluster does not
		// count terminating pods (the DeploymentReplicaSetTerminatingReplicas
		// feature, on by default from Kubernetes 1.35); unobserved: the
		// count may be stale.
		old, err := r.countOldTerminating(ctx)
		if err != nil {
			return false, "", "", err
		}
		if r.oldTerminating = old; old > 0 {
			pods, verb := "pods", "are"
			if old == 1 {
				pods, verb = "pod", "is"
			}
			return false, "Progressing", fmt.Sprintf("Deployment %s is rolling out: %d %s of an earlier template %s still terminating", d.Name, old, pods, verb), nil
		}
	}
	return true, "RolledOut", fmt.Sprintf("Deployment %s runs the current template on all %d pods (%d ready)", d.Name, d.Status.Replicas, d.Status.ReadyReplicas), nil
}

// readReplicaSets reads the ReplicaSets the Deployment controls, and picks
// the newest: the one with the highest revision.
func (r *rolloutReader) readReplicaSets(ctx context.Context) error {
	if r.selector != nil {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(r.d.Spec.Selector)
	if err != nil {
		return fmt.Errorf("reading Deployment %s's selector: %w", r.d.Name, err)
	}
	list := &appsv1.ReplicaSetList{}
	if err := r.c.List(ctx, list, client.InNamespace(r.d.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return fmt.Errorf("listing Deployment %s's ReplicaSets: %w", r.d.Name, err)
	}
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], r.d) {
			r.sets = append(r.sets, &list.Items[i])
		}
	}
	if len(r.sets) > 0 {
		r.current = slices.MaxFunc(r.sets, func(a, b *appsv1.ReplicaSet) int { return cmp.Compare(revision(a), revision(b)) })
	}
	r.selector = selector
	return nil
}

// onlyCurrentTemplate reports whether the Deployment's template is its
// newest ReplicaSet's (compared as the Deployment controller does: but for
// the pod-template-hash label), and every other ReplicaSet has no pods and
// wants none. Terminating pods aside, every pod then runs the current
// template.
func (r *rolloutReader) onlyCurrentTemplate(ctx context.Context) (bool, error) {
	if err := r.readReplicaSets(ctx); err != nil || r.current == nil {
		return false, err
	}
	a, b := r.current.Spec.Template.DeepCopy(), r.d.Spec.Template.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if !equality.Semantic.DeepEqual(a, b) {
		return false, nil
	}
	for _, rs := range r.sets {
		if rs != r.current && (rs.Spec.Replicas == nil || *rs.Spec.Replicas > 0 || rs.Status.Replicas > 0) {
			return false, nil
		}
	}
	return true, nil
}

// countOldTerminating counts the Deployment's pods that are terminating
// (deleted, in their grace period, not yet finished) and run a template
// other than its newest ReplicaSet's. The ReplicaSets count their
// terminating pods where the cluster has the
// DeploymentReplicaSetTerminatingReplicas feature; elsewhere the pods are
// read.
func (r *rolloutReader) countOldTerminating(ctx context.Context) (int32, error) {
	if err := r.readReplicaSets(ctx); err != nil || r.current == nil {
		return 0, err
	}
	var old int32
	counted := true
	for _, rs := range r.sets {
		switch {
		case rs == r.current:
		case rs.Status.TerminatingReplicas != nil:
			old += *rs.Status.TerminatingReplicas
		case rs.Status.ObservedGeneration == 0:
			// Never synced by the ReplicaSet controller, so without pods.
		default:
			counted = false
		}
	}
	if counted {
		return old, nil
	}

	pods := &corev1.PodList{}
	if err := r.c.List(ctx, pods, client.InNamespace(r.d.Namespace), client.MatchingLabelsSelector{Selector: r.selector}); err != nil {
		return 0, fmt.Errorf("listing Deployment %s's pods: %w", r.d.Name, err)
	}
	hash := r.current.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	old = 0
	for _, p := range pods.Items {
		terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		if p.DeletionTimestamp != nil && !terminal && p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
			old++
		}
	}
	return old, nil
}

// revision is a ReplicaSet's revision number, 0 if it has none.
func revision(rs *appsv1.ReplicaSet) int64 {
	n, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}
