package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/queue"
)

// Wait takes a slot on a pod with free concurrency for the request,
// holding it in the function's bounded queue (at most ActivationTimeout)
// while there is none; a request that finds no ready pod at all makes the
// pool poke the autoscaler at once. The pool's Try owns the retries: a
// pod that refused without running anything is left for another. A
// function whose status says its pods cannot run (PodsCannotRun, set on
// its pool with Fail) holds no request while it has no ready pod: the
// request is answered at once with the cause.
type Wait struct {
	opts    Options
	pools   Pools
	metrics *metrics.Metrics
	next    *Proxy
	// parker, if set, parks requests that must wait (park.go).
	parker *park.Parker
	// finish ends a request that will not come back to the chain.
	finish func(*call, int)
}

func (h *Wait) serve(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	pool := h.pools.Get(c.key)
	run := func(l *queue.Lease) error {
		if l.Waited > 0 || l.Cold {
			h.metrics.Held(c.key.Namespace, c.key.Name, l.Waited, l.Cold)
		}
		return h.next.forward(w, r, c, l.Pod.Addr, l.StartBy)
	}
	var err error
	switch {
	case c.parked != nil:
		err = h.resume(r, c, pool, run)
	case c.reservation != nil:
		err = pool.TryReserved(r.Context(), c.reservation, h.opts.ActivationTimeout, maxAttempts, run)
	default:
		var away bool
		if away, err = h.park(w, r, c, pool, run); away {
			return parkedAway
		}
	}
	var f *Failure
	var unreachable *queue.Unreachable
	var cannot *PodsCannotRun
	switch {
	case err == nil:
		return nil
	case errors.As(err, &f):
		return f
	case r.Context().Err() != nil:
		return &Failure{Kind: CallerGone, Err: err}
	case errors.Is(err, queue.ErrQueueFull):
		why := fmt.Sprintf("too many requests are waiting for function %s (the activator holds at most %d per function while it has no free pod)", c.key, h.pools.MaxQueue())
		if h.opts.OverflowStatus == http.StatusTooManyRequests {
			return &Failure{Kind: Throttled, Message: why, RetryAfter: h.opts.RetryAfter}
		}
		return &Failure{Kind: Overloaded, Message: why, RetryAfter: h.opts.RetryAfter}
	case errors.As(err, &cannot):
		return cannot.failure(c, err)
	case errors.As(err, &unreachable):
		// Nothing reached a bootstrap: safe to answer 5xx (callers may retry).
		return &Failure{Kind: Unreachable, Err: err,
			Message: fmt.Sprintf("could not connect to any pod of function %s (%d attempts)", c.key, unreachable.Attempts)}
	case errors.Is(err, context.DeadlineExceeded):
		if pool.Ready() == 0 {
			return fail(ActivationTimeout, "activation timed out: function %s had no ready pod after %s", c.key, h.opts.ActivationTimeout)
		}
		return fail(ActivationTimeout, "activation timed out: no pod of function %s had a free concurrency slot within %s", c.key, h.opts.ActivationTimeout)
	}
	return &Failure{Kind: Internal, Message: err.Error(), Err: err}
}

// PodsCannotRun is why a function's pods cannot run, as its status says
// (package functions reads it): the error its pool fails requests with
// while it has no ready pod (queue.Pool.Fail).
type PodsCannotRun struct {
	// Reason is the Ready condition's reason, Message its message.
	Reason, Message string
}

func (e *PodsCannotRun) Error() string { return e.Reason + ": " + e.Message }

// failure is what a request for c's function gets while it cannot run.
func (e *PodsCannotRun) failure(c *call, err error) *Failure {
	return &Failure{Kind: CannotRun, Err: err, Message: fmt.Sprintf("function %s cannot run: %s", c.key, e.Message)}
}
