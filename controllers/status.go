package controllers

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// scope carries one reconcile pass: the Function as read, what each step
// found, and the status summarize derives from that. Steps never write
// conditions: they leave results here and return their problems, so that
// one function decides what the Function's conditions say.
type scope struct {
	fn     *lambdapodv1alpha1.Function
	before *lambdapodv1alpha1.Function

	// image is what the Deployment runs, once the source step found one.
	image string
	// deploy is the Deployment as applied.
	deploy *appsv1.Deployment

	// built and deployed are what Built and Deployed say when True; ""
	// when the pass did not get that far.
	built, deployed string
	// run is the PipelineRun whose outcome Built tells, if one does: its
	// completion is announced.
	run *tektonv1.PipelineRun
	// problems are the steps' stepErrors, in step order.
	problems []*stepError
	// err is the unexpected error that ended the pass.
	err error
	// recheck, when set, is how soon the pass wants to look again without
	// waiting for an event.
	recheck time.Duration
}

func newScope(fn *lambdapodv1alpha1.Function) *scope {
	return &scope{fn: fn, before: fn.DeepCopy()}
}

// recheckIn asks to look again within d.
func (s *scope) recheckIn(d time.Duration) {
	s.recheck = soonest(s.recheck, d)
}

// soonest is the shorter of two requeue delays, where 0 means none.
func soonest(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// record keeps a step's error for summarize, and reports whether the pass
// goes on. An error ends it, but for a problem of the build while an
// earlier build's image is at hand: the Function keeps running that image,
// and its Deployment and Service keep following the rest of the spec.
func (s *scope) record(err error) bool {
	var problem *stepError
	switch {
	case err == nil:
		return true
	case errors.As(err, &problem):
		s.problems = append(s.problems, problem)
		return problem.Condition == lambdapodv1alpha1.ConditionBuilt && s.image != ""
	default:
		s.err = err
		return false
	}
}

// verdict is why the Function is not ready, nil if it is. An unexpected
// error is what the pass last saw, so it says; otherwise a stall outranks
// the problems found before it, since it is the one the user must act on,
// and among the others the first found stands.
func (s *scope) verdict() *stepError {
	if s.err != nil {
		return waiting("", "ReconcileFailed", s.err)
	}
	var v *stepError
	for _, p := range s.problems {
		if v == nil || p.Stalled {
			v = p
		}
	}
	return v
}

// about is the problem concerning condition, if any.
func (s *scope) about(condition string) *stepError {
	for _, p := range s.problems {
		if p.Condition == condition {
			return p
		}
	}
	return nil
}

func (s *scope) set(condition string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&s.fn.Status.Conditions, metav1.Condition{
		Type: condition, Status: status, Reason: reason, Message: conditionMessage(message),
		ObservedGeneration: s.fn.Generation,
	})
}

// maxConditionMessage bounds a condition's message, in bytes. Messages
// quote errors, and an error may quote whatever a server a Function names
// answered: cut here, every condition stays readable, and small in the
// Function and in the events that repeat it, and a status update is never
// refused for a message over the API's limit of 32768 characters.
const maxConditionMessage = 512

// conditionMessage is message cut to maxConditionMessage bytes, at a rune
// boundary, with "…" saying it was cut.
func conditionMessage(message string) string {
	if len(message) <= maxConditionMessage {
		return message
	}
	const cutMark = "…"
	n := maxConditionMessage - len(cutMark)
	for n > 0 && !utf8.RuneStart(message[n]) {
		n--
	}
	return message[:n] + cutMark
}

func (s *scope) remove(condition string) {
	meta.RemoveStatusCondition(&s.fn.Status.Conditions, condition)
}

// summarize turns what the pass found into the conditions: Built and
// Deployed for the parts, and the kstatus ones for the whole Function,
// Ready always, Reconciling and Stalled only while true. It announces the
// transitions a user watches for, and returns what controller-runtime is
// told. It expects status.url set.
func (s *scope) summarize(rec events.EventRecorder) (ctrl.Result, error) {
	fn := s.fn
	switch p := s.about(lambdapodv1alpha1.ConditionBuilt); {
	case fn.Spec.Source.Image != "":
		s.remove(lambdapodv1alpha1.ConditionBuilt)
	case p != nil:
		s.set(lambdapodv1alpha1.ConditionBuilt, p.conditionStatus(), p.Reason, p.Err.Error())
	case s.built != "":
		s.set(lambdapodv1alpha1.ConditionBuilt, metav1.ConditionTrue, "Built", s.built)
	}
	switch p := s.about(lambdapodv1alpha1.ConditionDeployed); {
	case p != nil:
		s.set(lambdapodv1alpha1.ConditionDeployed, p.conditionStatus(), p.Reason, p.Err.Error())
	case s.deployed != "":
		s.set(lambdapodv1alpha1.ConditionDeployed, metav1.ConditionTrue, "RolledOut", s.deployed)
	}

	v := s.verdict()
	switch {
	case v == nil:
		s.set(lambdapodv1alpha1.ConditionReady, metav1.ConditionTrue, "Ready", fmt.Sprintf("serving at %s", fn.Status.URL))
		s.remove(lambdapodv1alpha1.ConditionReconciling)
		s.remove(lambdapodv1alpha1.ConditionStalled)
	case v.Stalled:
		s.set(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, v.Reason, v.Error())
		s.set(lambdapodv1alpha1.ConditionStalled, metav1.ConditionTrue, v.Reason, v.Error())
		s.remove(lambdapodv1alpha1.ConditionReconciling)
	default:
		s.set(lambdapodv1alpha1.ConditionReady, metav1.ConditionFalse, v.Reason, v.Error())
		s.set(lambdapodv1alpha1.ConditionReconciling, metav1.ConditionTrue, v.Reason, v.Error())
		s.remove(lambdapodv1alpha1.ConditionStalled)
	}
	s.announce(rec, v != nil && v.Warn)

	switch {
	case s.err != nil:
		return ctrl.Result{}, s.err
	case v != nil && v.Stalled && s.recheck == 0:
		// Nothing to look at again: only an event (a change to the
		// Function or to what it owns) can change the outcome.
		return ctrl.Result{}, reconcile.TerminalError(v)
	}
	return ctrl.Result{RequeueAfter: s.recheck}, nil
}

// announce records an event when a build finished, and when readiness
// changed to ready, to stalled, or to a problem that warn says is worth a
// Warning though it is retried.
func (s *scope) announce(rec events.EventRecorder, warn bool) {
	fn := s.fn
	if built := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionBuilt); s.run != nil && built != nil {
		before := s.before.Status.LatestBuild
		changed := before == nil || before.PipelineRun != s.run.Name ||
			!meta.IsStatusConditionPresentAndEqual(s.before.Status.Conditions, lambdapodv1alpha1.ConditionBuilt, built.Status)
		switch {
		case !changed:
		case built.Status == metav1.ConditionTrue:
			rec.Eventf(fn, s.run, corev1.EventTypeNormal, "BuildSucceeded", "Build", "%s", built.Message)
		case built.Status == metav1.ConditionFalse:
			rec.Eventf(fn, s.run, corev1.EventTypeWarning, built.Reason, "Build", "%s", built.Message)
		}
	}

	was := meta.FindStatusCondition(s.before.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	now := meta.FindStatusCondition(fn.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	if was != nil && was.Status == now.Status && was.Reason == now.Reason {
		return
	}
	switch {
	case now.Status == metav1.ConditionTrue:
		rec.Eventf(fn, nil, corev1.EventTypeNormal, "Ready", "Reconcile", "serving at %s", fn.Status.URL)
	case meta.IsStatusConditionTrue(fn.Status.Conditions, lambdapodv1alpha1.ConditionStalled), warn:
		rec.Eventf(fn, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
	}
}
