package controllers

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
)

// PendingCounter counts events in the queue per function, keyed
// namespace/name (eventqueue.Queue).
type PendingCounter interface {
	Pending(ctx context.Context) (map[string]int64, error)
}

// PendingEvents keeps every Function's status.pendingEvents: the Event
// invocations (and retries) of it in the activators' queue that have not
// ended. It runs on the leader, reads the queue every Interval (10 s by
// default) and writes a status only when its number changed.
type PendingEvents struct {
	Client   client.Client
	Queue    PendingCounter
	Interval time.Duration
}

// NeedLeaderElection: one writer.
func (p *PendingEvents) NeedLeaderElection() bool { return true }

// Start updates until ctx ends.
func (p *PendingEvents) Start(ctx context.Context) error {
	every := p.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		if err := p.update(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				log.FromContext(ctx).Info("pending events: cannot read the event queue; status.pendingEvents stays as it was", "err", err.Error())
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *PendingEvents) update(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	counts, err := p.Queue.Pending(rctx)
	cancel()
	if err != nil {
		return err
	}
	var fns lambdapodv1alpha1.FunctionList
	if err := p.Client.List(ctx, &fns); err != nil {
		return err
	}
	for i := range fns.Items {
		fn := &fns.Items[i]
		n := counts[fn.Namespace+"/"+fn.Name]
		if fn.Status.PendingEvents != nil && *fn.Status.PendingEvents == n {
			continue
		}
		before := fn.DeepCopy()
		fn.Status.PendingEvents = &n
		if err := p.Client.Status().Patch(ctx, fn, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
