package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
)

// maxAttempts bounds the pods tried for one request when pods cannot be
// reached or are shutting down (a pod that went away, or began to, before
// the activator heard of it).
const maxAttempts = 3

// Wait takes a slot on a pod with free concurrency for the request,
// holding it in the function's bounded queue (at most ActivationTimeout)
// while there is none; a request that finds no ready pod at all makes the
// pool poke the autoscaler at once.
type Wait struct {
	Opts    Options
	Pools   Pools
	Metrics *metrics.Metrics
	Next    http.Handler
}

func (h *Wait) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := from(r)
	st.pool = h.Pools.Get(st.key)
	ctx, cancel := context.WithTimeout(r.Context(), h.Opts.ActivationTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		lease, err := st.pool.Acquire(ctx)
		if err != nil {
			h.fail(w, r, st, err)
			return
		}
		if lease.Waited > 0 || lease.Cold {
			h.Metrics.Held(st.key.Namespace, st.key.Name, lease.Waited, lease.Cold)
		}
		st.lease = lease
		st.redo = false
		h.Next.ServeHTTP(w, r)
		lease.Release()
		if !st.redo || attempt >= maxAttempts {
			if st.redo {
				// Every pod tried was unreachable and nothing reached a
				// bootstrap: safe to answer 5xx (callers may retry).
				h.unreachable(w, st)
			}
			return
		}
	}
}

func (h *Wait) fail(w http.ResponseWriter, r *http.Request, st *state, err error) {
	invoke := st.target.Kind == route.Invoke
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		why := fmt.Sprintf("too many requests are waiting for function %s (the activator holds at most %d per function while it has no free pod)", st.key, h.maxQueue())
		w.Header().Set("Retry-After", retryAfter(h.Opts.RetryAfter))
		if invoke {
			if h.Opts.OverflowStatus == http.StatusTooManyRequests {
				lambdaError(w, st.requestID, http.StatusTooManyRequests, "TooManyRequestsException", "User", "Rate Exceeded: "+why,
					map[string]string{"Reason": "ConcurrentInvocationLimitExceeded"})
			} else {
				lambdaError(w, st.requestID, h.Opts.OverflowStatus, "ServiceException", "Service", "Service Unavailable: "+why, nil)
			}
			return
		}
		msg := "Too Many Requests: " + why
		if h.Opts.OverflowStatus != http.StatusTooManyRequests {
			msg = "Service Unavailable: " + why
		}
		httpError(w, st.requestID, h.Opts.OverflowStatus, msg)
	case r.Context().Err() != nil:
		st.code = 499 // the caller went away while waiting
	default:
		var why string
		if st.pool.Ready() == 0 {
			why = fmt.Sprintf("activation timed out: function %s had no ready pod after %s", st.key, h.Opts.ActivationTimeout)
		} else {
			why = fmt.Sprintf("activation timed out: no pod of function %s had a free concurrency slot within %s", st.key, h.Opts.ActivationTimeout)
		}
		if invoke {
			lambdaError(w, st.requestID, http.StatusGatewayTimeout, "ServiceException", "Service", "Gateway Timeout: "+why, nil)
			return
		}
		httpError(w, st.requestID, http.StatusGatewayTimeout, "Gateway Timeout: "+why)
	}
}

func (h *Wait) unreachable(w http.ResponseWriter, st *state) {
	why := fmt.Sprintf("could not connect to any pod of function %s (%d attempts)", st.key, maxAttempts)
	if st.target.Kind == route.Invoke {
		lambdaError(w, st.requestID, http.StatusBadGateway, "ResourceNotReadyException", "Service", why, nil)
		return
	}
	httpError(w, st.requestID, http.StatusBadGateway, "Bad Gateway: "+why)
}

func (h *Wait) maxQueue() int {
	if m, ok := h.Pools.(interface{ MaxQueue() int }); ok {
		return m.MaxQueue()
	}
	return 0
}
