package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// stepError is what stands in a reconcile step's way, as the Function's
// conditions tell it. Any other error a step returns is unexpected (the
// API server refused or could not be reached): summarize says
// ReconcileFailed, and the rate limiter retries it.
type stepError struct {
	// Reason is the reason of Ready, and of Condition.
	Reason string
	// Stalled marks a problem only the user can fix; otherwise it passes
	// by itself (a build or rollout running, a git server away), and
	// Reconciling says so meanwhile.
	Stalled bool
	// Warn marks a problem that may pass by itself yet is worth a Warning
	// event when it begins (a git server away, or refusing the
	// credentials): kubectl describe shows it among the events too.
	Warn bool
	// Condition is the condition besides Ready the problem is about:
	// ConditionBuilt, ConditionDeployed, or "" for neither.
	Condition string
	// Status is Condition's: "" for False, or Unknown while the outcome
	// is not known yet.
	Status metav1.ConditionStatus
	// Err is what went wrong, as Condition says it.
	Err error
	// Message, if set, is what Ready says instead of Err: Condition
	// tells about one part, Ready about the whole Function.
	Message string
}

// stalled is a problem the user must fix.
func stalled(condition, reason string, err error) *stepError {
	return &stepError{Reason: reason, Stalled: true, Condition: condition, Err: err}
}

// waiting is a problem that passes without the user.
func waiting(condition, reason string, err error) *stepError {
	return &stepError{Reason: reason, Condition: condition, Err: err}
}

// retrying is a problem that may pass without the user, announced with a
// Warning event when it begins.
func retrying(condition, reason string, err error) *stepError {
	return &stepError{Reason: reason, Condition: condition, Err: err, Warn: true}
}

func (e *stepError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return e.Err.Error()
}

func (e *stepError) Unwrap() error { return e.Err }

// conditionStatus is the status of e's Condition.
func (e *stepError) conditionStatus() metav1.ConditionStatus {
	if e.Status == "" {
		return metav1.ConditionFalse
	}
	return e.Status
}
