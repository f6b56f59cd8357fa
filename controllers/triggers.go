package controllers

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// Triggers carries "resolve this Function's revision now" from the push
// webhook to the reconciler, through a channel source: nothing is written
// to the Function, so GitOps tools see no drift.
type Triggers struct {
	ch    chan event.GenericEvent
	mu    sync.Mutex
	stale map[types.NamespacedName]bool
}

// NewTriggers returns an empty Triggers.
func NewTriggers() *Triggers {
	return &Triggers{ch: make(chan event.GenericEvent, 64), stale: map[types.NamespacedName]bool{}}
}

// Resolve makes the next pass over the Function ask git again, and asks
// for that pass now.
func (t *Triggers) Resolve(ctx context.Context, key types.NamespacedName) error {
	t.mu.Lock()
	t.stale[key] = true
	t.mu.Unlock()
	obj := &lambdapodv1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case t.ch <- event.GenericEvent{Object: obj}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// take reports whether key was marked stale, and clears the mark.
func (t *Triggers) take(key types.NamespacedName) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stale[key]
	delete(t.stale, key)
	return s
}
