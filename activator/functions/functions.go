// Package functions keeps what the activator needs of every Function
// (existence, timeout, concurrency, event format), fed by an informer, so
// that requests never call the API server.
package functions

import (
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/handler"
	"github.com/lambdapod/lambdapod/activator/queue"
	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// Store maps namespace/name to the function's configuration.
type Store struct {
	mu  sync.RWMutex
	fns map[queue.Key]handler.Function
	// OnChange, if set, is called after a function was added or updated.
	OnChange func(queue.Key, handler.Function)
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{fns: map[queue.Key]handler.Function{}} }

// Config returns the activator's view of f.
func Config(f *lambdapodv1alpha1.Function) handler.Function {
	return handler.Function{
		Timeout:     f.Spec.Runtime.TimeoutOrDefault(),
		Concurrency: int(f.Spec.Runtime.ConcurrencyOrDefault()),
		EventFormat: eventFormat(f),
		Public:      f.Spec.AuthTypeOrDefault() == lambdapodv1alpha1.AuthNone,
		Async:       asyncPolicy(f),
	}
}

func eventFormat(f *lambdapodv1alpha1.Function) event.Format {
	ef := event.Format(f.Spec.HTTP.EventFormatOrDefault())
	if ef == event.ALB && f.Spec.HTTP.MultiValueHeaders != nil && *f.Spec.HTTP.MultiValueHeaders {
		return event.ALBMultiValue
	}
	return ef
}

func asyncPolicy(f *lambdapodv1alpha1.Function) eventqueue.Policy {
	p := eventqueue.Policy{
		MaxRetries: f.Spec.MaximumRetryAttemptsOrDefault(),
		MaxAge:     f.Spec.MaximumEventAgeOrDefault(),
	}
	if f.Spec.Async != nil && f.Spec.Async.Destinations != nil {
		p.OnSuccess = destination(f.Spec.Async.Destinations.OnSuccess)
		p.OnFailure = destination(f.Spec.Async.Destinations.OnFailure)
	}
	return p
}

func destination(d *lambdapodv1alpha1.Destination) *eventqueue.Destination {
	if d == nil || (d.Function == "" && d.URL == "") {
		return nil
	}
	return &eventqueue.Destination{Function: d.Function, URL: d.URL}
}

// cannotRunReasons are the reasons of a Function's Ready condition that
// say its pods cannot run and will not without the user: the manager's
// PodsCannotRun (controllers.ReasonPodsCannotRun: admission refused them,
// their image cannot be pulled, they crash-loop), and a rollout past its
// progress deadline.
var cannotRunReasons = map[string]bool{"PodsCannotRun": true, "ProgressDeadlineExceeded": true}

// CannotRun is why f's pods cannot run, as its status says, or nil: its
// Ready condition False with one of cannotRunReasons, about f's current
// generation (a changed spec may have fixed it: requests wait for the
// manager's word).
func CannotRun(f *lambdapodv1alpha1.Function) error {
	c := meta.FindStatusCondition(f.Status.Conditions, lambdapodv1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || !cannotRunReasons[c.Reason] || c.ObservedGeneration != f.Generation {
		return nil
	}
	return &handler.PodsCannotRun{Reason: c.Reason, Message: c.Message}
}

// Upsert records a function.
func (s *Store) Upsert(f *lambdapodv1alpha1.Function) {
	k := queue.Key{Namespace: f.Namespace, Name: f.Name}
	c := Config(f)
	s.mu.Lock()
	s.fns[k] = c
	s.mu.Unlock()
	if s.OnChange != nil {
		s.OnChange(k, c)
	}
}

// Delete forgets a function.
func (s *Store) Delete(namespace, name string) {
	s.mu.Lock()
	delete(s.fns, queue.Key{Namespace: namespace, Name: name})
	s.mu.Unlock()
}

// Lookup implements handler.Functions.
func (s *Store) Lookup(namespace, name string) (handler.Function, bool) {
	s.mu.RLock()
	c, ok := s.fns[queue.Key{Namespace: namespace, Name: name}]
	s.mu.RUnlock()
	return c, ok
}

// Concurrency returns a function's per-pod concurrency (1 if unknown).
func (s *Store) Concurrency(k queue.Key) int {
	if c, ok := s.Lookup(k.Namespace, k.Name); ok {
		return c.Concurrency
	}
	return lambdapodv1alpha1.DefaultConcurrency
}
