package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/contract"
)

// terminatingRecheck is how often a Function waiting for an earlier
// template's pods to finish terminating looks again. Their ReplicaSet's
// status normally announces it (through the Deployment's); where the
// cluster does not count terminating pods, nothing does.
const terminatingRecheck = 5 * time.Second

// revisionAnnotation numbers a Deployment's ReplicaSets: the Deployment
// controller gives the one it rolls to, new or rolled back to, the highest.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// ReasonPodsCannotRun is the reason of Ready, Deployed and Stalled when
// the Function's pods cannot be created or cannot start: admission refused
// them (PodSecurity, a ResourceQuota), their image cannot be pulled, their
// bootstrap crash-loops. The user must act; meanwhile the activator answers
// requests that find no ready pod at once, with the condition's message,
// instead of holding them (activator/functions keys on this reason).
const ReasonPodsCannotRun = "PodsCannotRun"

// reconcileRollout reads whether the Deployment has rolled out, and
// whether its pods can run: ReplicaSets from the API server (lambdapod's
// cache holds none), pods from the cache, which holds lambdapod's pods,
// trimmed (trimPod), so that a pod that cannot start wakes the Function.
func (r *FunctionReconciler) reconcileRollout(ctx context.Context, s *scope) error {
	return s.observeRollout(ctx, r.APIReader, r.Client)
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
// status cannot answer; it should not be a cache: lambdapod's holds no
// ReplicaSets, and only trimmed pods. observeDeployment looks at no pod
// to tell whether it can start (observeRollout does).
func (s *scope) observeDeployment(ctx context.Context, c client.Reader) error {
	return s.observeRollout(ctx, c, nil)
}

// observeRollout is observeDeployment that also tells, through pods (the
// manager's cache), whether the current template's pods can start. A
// Function whose pods cannot run is stalled (ReasonPodsCannotRun), even if
// the rollout is otherwise done: a Deployment that could create no pod
// runs its current template on all of them.
func (s *scope) observeRollout(ctx context.Context, c, pods client.Reader) error {
	d := s.deploy
	st := &s.fn.Status
	st.Replicas = d.Status.Replicas
	st.ReadyReplicas = d.Status.ReadyReplicas
	st.DesiredReplicas = 0
	if d.Spec.Replicas != nil {
		st.DesiredReplicas = *d.Spec.Replicas
	}
	r := &rolloutReader{c: c, pods: pods, d: d}
	done, reason, message, err := r.rollout(ctx)
	if err != nil {
		return err
	}
	why, err := r.cannotRun(ctx)
	switch {
	case err != nil:
		return err
	case why != "":
		return stalled(lambdapodv1alpha1.ConditionDeployed, ReasonPodsCannotRun, errors.New(why))
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
	// pods reads pods (the cache, in the manager); c reads the rest.
	pods client.Reader
	d    *appsv1.Deployment
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
			return false, "ProgressDeadlineExceeded", fmt.Sprintf("Deployment %s made no progress: %s; see `kubectl describe deployment %s` and its pods' events", d.Name, strings.TrimRight(c.Message, "."), d.Name), nil
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

// cannotStart are the reasons a container waits with when it will not
// start by itself: its image cannot be pulled, the kubelet cannot create
// it, or it crash-loops (a bootstrap that exits). ErrImagePull is not one:
// the kubelet says it at the first failed pull, which may be a registry's
// passing hiccup during a cold start (the activator would fail the held
// requests at once); ImagePullBackOff follows when the pull keeps failing.
var cannotStart = map[string]bool{
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"CrashLoopBackOff":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
}

// cannotRun says why the Deployment's pods cannot run, "" when nothing
// says they cannot: a ReplicaFailure (admission refused its pods: a
// PodSecurity level, a ResourceQuota), on the Deployment or on its
// current ReplicaSet, or a pod of the current template whose container
// waits for something that will not come by itself. Only while the
// Deployment wants pods: scaled to zero, nothing is failing, and the
// activator must keep holding requests while the autoscaler scales up.
// And only once the Deployment controller has observed the Deployment:
// before, its status and newest ReplicaSet may tell of a template the
// user just replaced (the status change that follows wakes the Function).
//
// It makes no API read of its own but for a failing pod: the Deployment's
// status tells about admission (the Deployment controller copies its
// ReplicaSets' ReplicaFailure), the current ReplicaSet is looked at only
// if the rollout read it already, and pods come from r.pods (the cache);
// the ReplicaSets are read to tell whether a failing pod is of the current
// template.
func (r *rolloutReader) cannotRun(ctx context.Context) (string, error) {
	d := r.d
	if d.Spec.Replicas == nil || *d.Spec.Replicas == 0 || d.Generation > d.Status.ObservedGeneration {
		return "", nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("Deployment %s cannot create pods (%s): %s", d.Name, c.Reason, c.Message), nil
		}
	}
	if why := replicaFailure(r.current); why != "" {
		return why, nil
	}
	if r.pods == nil {
		return "", nil
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return "", fmt.Errorf("reading Deployment %s's selector: %w", d.Name, err)
	}
	pods := &corev1.PodList{}
	if err := r.pods.List(ctx, pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return "", fmt.Errorf("listing Deployment %s's pods: %w", d.Name, err)
	}
	var failing []*corev1.Pod
	for i := range pods.Items {
		if _, why := podFailure(&pods.Items[i]); why != "" {
			failing = append(failing, &pods.Items[i])
		}
	}
	if len(failing) == 0 {
		return "", nil
	}
	if err := r.readReplicaSets(ctx); err != nil || r.current == nil {
		return "", err
	}
	if why := replicaFailure(r.current); why != "" {
		return why, nil
	}
	hash := r.current.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	for _, p := range failing {
		if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash && metav1.IsControlledBy(p, r.current) {
			_, why := podFailure(p)
			return fmt.Sprintf("pod %s cannot start: %s", p.Name, why), nil
		}
	}
	return "", nil
}

// replicaFailure says why rs cannot create its pods, "" if it can (or is
// nil).
func replicaFailure(rs *appsv1.ReplicaSet) string {
	if rs == nil {
		return ""
	}
	for _, c := range rs.Status.Conditions {
		if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("ReplicaSet %s cannot create pods (%s): %s", rs.Name, c.Reason, c.Message)
		}
	}
	return ""
}

// podFailure says which of p's containers cannot start and why: reason is
// the container and its waiting reason, why says it at length; both "" if
// none (a pod being deleted or finished has none).
func podFailure(p *corev1.Pod) (reason, why string) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return "", ""
	}
	for _, statuses := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range statuses {
			w := cs.State.Waiting
			if w == nil || !cannotStart[w.Reason] {
				continue
			}
			why = fmt.Sprintf("container %s: %s", cs.Name, w.Reason)
			if w.Message != "" {
				why += ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil && w.Reason == "CrashLoopBackOff" {
				why += fmt.Sprintf(" (restarted %d times; last exit code %d", cs.RestartCount, t.ExitCode)
				if t.Reason != "" {
					why += ", " + t.Reason
				}
				why += ")"
			}
			return cs.Name + "/" + w.Reason, why
		}
	}
	return "", ""
}

// podStartChanged passes the updates of a pod that change whether one of
// its containers cannot start, which nothing else the manager watches
// announces: a pod that never turned ready changes no count in its
// Deployment's status. Creations and deletions change the Deployment's.
func podStartChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, ok1 := e.ObjectOld.(*corev1.Pod)
			now, ok2 := e.ObjectNew.(*corev1.Pod)
			if !ok1 || !ok2 {
				return false
			}
			a, _ := podFailure(old)
			b, _ := podFailure(now)
			return a != b
		},
	}
}

// podFunction is the Function a pod runs, by its label.
func podFunction(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[contract.LabelFunction]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// trimPod keeps of a pod what the manager reads, so that the cache of
// lambdapod's pods stays small: its name, labels, owners and deletion, its
// phase and its containers' states. Nothing else reads pods through the
// cache.
func trimPod(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	trim := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		out := make([]corev1.ContainerStatus, len(in))
		for i, cs := range in {
			out[i] = corev1.ContainerStatus{Name: cs.Name, State: cs.State, LastTerminationState: cs.LastTerminationState,
				Ready: cs.Ready, RestartCount: cs.RestartCount}
			if t := out[i].LastTerminationState.Terminated; t != nil {
				t.Message = ""
			}
			if t := out[i].State.Terminated; t != nil {
				t.Message = ""
			}
		}
		return out
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{
			Phase:                 p.Status.Phase,
			InitContainerStatuses: trim(p.Status.InitContainerStatuses),
			ContainerStatuses:     trim(p.Status.ContainerStatuses),
		},
	}, nil
}
