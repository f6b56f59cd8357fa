package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// scope carries one reconcile pass: the Function as read, and the status
// this pass builds for it. Steps record what they see; summarize derives
// Ready, Reconciling and Stalled from that, kstatus-style.
type scope struct {
	fn     *lambdapodv1alpha1.Function
	before *lambdapodv1alpha1.Function
	// ready is the verdict so far; nil until a step decides.
	ready *metav1.Condition
	// stall marks a problem only the user can fix.
	stall bool
}

func newScope(fn *lambdapodv1alpha1.Function) *scope {
	return &scope{fn: fn, before: fn.DeepCopy()}
}

func (s *scope) set(condition string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&s.fn.Status.Conditions, metav1.Condition{
		Type: condition, Status: status, Reason: reason, Message: message,
		ObservedGeneration: s.fn.Generation,
	})
}

// notReady records why the Function does not serve its spec, keeping the
// first reason found in a pass.
func (s *scope) notReady(reason, message string) {
	if s.ready == nil {
		s.ready = &metav1.Condition{Status: metav1.ConditionFalse, Reason: reason, Message: message}
	}
}

func (s *scope) stalled(reason, message string) {
	s.ready = nil
	s.notReady(reason, message)
	s.stall = true
}

// failed records an error that the next pass may not hit.
func (s *scope) failed(err error) {
	s.ready = nil
	s.notReady("ReconcileFailed", err.Error())
}

// observeDeployment reads the rollout. A Function is deployed when every pod
// runs the current template: scaling, including to and from zero, never
// makes a deployed Function unready.
func (s *scope) observeDeployment(d *appsv1.Deployment) {
	st := &s.fn.Status
	st.Replicas = d.Status.Replicas
	st.ReadyReplicas = d.Status.ReadyReplicas
	st.DesiredReplicas = 0
	if d.Spec.Replicas != nil {
		st.DesiredReplicas = *d.Spec.Replicas
	}
	done, reason, message := rollout(d)
	if done {
		s.set(lambdapodv1alpha1.ConditionDeployed, metav1.ConditionTrue, reason, message)
		return
	}
	s.set(lambdapodv1alpha1.ConditionDeployed, metav1.ConditionFalse, reason, message)
	if reason == "ProgressDeadlineExceeded" {
		s.stalled(reason, message)
		return
	}
	s.notReady(reason, message)
}

// rollout says whether a Deployment runs its current template on every pod,
// the way `kubectl rollout status` does, but without waiting for a replica
// count: the autoscaler changes that all the time.
func rollout(d *appsv1.Deployment) (done bool, reason, message string) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, "Progressing", fmt.Sprintf("waiting for Deployment %s to observe generation %d", d.Name, d.Generation)
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, "ProgressDeadlineExceeded", fmt.Sprintf("Deployment %s made no progress: %s; see `kubectl describe deployment %s` and its pods' events", d.Name, c.Message, d.Name)
		}
	}
	if old := d.Status.Replicas - d.Status.UpdatedReplicas; old > 0 {
		return false, "Progressing", fmt.Sprintf("Deployment %s is rolling out: %d of %d pods run the current template", d.Name, d.Status.UpdatedReplicas, d.Status.Replicas)
	}
	return true, "RolledOut", fmt.Sprintf("Deployment %s runs the current template on all %d pods (%d ready)", d.Name, d.Status.Replicas, d.Status.ReadyReplicas)
}

// summarize derives the kstatus conditions: Ready always, Reconciling and
// Stalled only while true.
func (s *scope) summarize() {
	if s.ready == nil {
		s.set(lambdapodv1alpha1.ConditionReady, metav1.ConditionTrue, "Ready", fmt.Sprintf("serving at %s", s.fn.Status.URL))
	} else {
		s.set(lambdapodv1alpha1.ConditionReady, s.ready.Status, s.ready.Reason, s.ready.Message)
	}
	conds := &s.fn.Status.Conditions
	switch {
	case s.stall:
		meta.RemoveStatusCondition(conds, lambdapodv1alpha1.ConditionReconciling)
		s.set(lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, s.ready.Reason, s.ready.Message)
	case s.ready != nil:
		meta.RemoveStatusCondition(conds, lambdapodv1alpha1.ConditionStalled)
		s.set(lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, s.ready.Reason, s.ready.Message)
	default:
		meta.RemoveStatusCondition(conds, lambdapodv1alpha1.ConditionStalled)
		meta.RemoveStatusCondition(conds, lambdapodv1alpha1.ConditionReconciling)
	}
}
