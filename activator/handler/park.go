package handler

import (
	"context"
	"net/http"
	"time"

	"github.com/lambdapod/lambdapod/activator/park"
	"github.com/lambdapod/lambdapod/activator/queue"
)

// parkedAway is what Wait returns for a request it parked: the call
// belongs to the request's resumption from then on, and the handler that
// parked it returns without a word.
var parkedAway = &Failure{Kind: Internal, Message: "parked"}

// parked is a request waiting for a slot without its goroutine: its
// connection is hijacked and watched (package park), its place in the
// queue is a callback, and a timer ends the wait at the activation
// timeout. Whichever comes first resumes the request, through net/http
// again, where Wait goes on (resume).
type parked struct {
	ticket  *park.Ticket
	waiter  *queue.Waiter
	timer   *time.Timer
	startBy time.Time
	// lease is the slot handed over while parked; nil when the wait timed
	// out or failed. Written under the pool's lock before the ticket is
	// resumed.
	lease *queue.Lease
	// failure is why the wait failed, handed over with no lease when the
	// function's pods turned out not to run (queue.Pool.Fail); nil when
	// the wait timed out. Written like lease.
	failure error
}

// resumed returns the call of a parked request that was resumed, or nil.
func resumed(r *http.Request) *call {
	t := park.Resumed(r.Context())
	if t == nil {
		return nil
	}
	return t.Value.(*call)
}

// parkAbove is how many requests must wait already before another one
// that finds every pod busy is parked rather than held on its goroutine:
// parking costs a hijack and a second pass through net/http (a new
// goroutine, the request's head parsed again), worth it for a wait of
// seconds, not for the few milliseconds a busy pod takes to free a slot
// (in make bench-activator at 1,000 req/s, the requests that waited for
// a busy pod were parked and resumed on the hot path); and up to this many
// goroutines per function are cheap.
const parkAbove = 64

// park waits for a slot for the request without its goroutine when the
// wait is likely to be long (the function is at zero, or many wait): it
// returns parkedAway once the request is parked, else the result of
// trying the request here (a slot was free at once, the wait is likely
// short, or the request cannot be parked).
func (h *Wait) park(w http.ResponseWriter, r *http.Request, c *call, pool *queue.Pool, run func(*queue.Lease) error) (away bool, err error) {
	if h.parker == nil {
		return false, pool.Try(r.Context(), h.opts.ActivationTimeout, maxAttempts, run)
	}
	if lease := pool.TryAcquire(); lease != nil {
		return false, pool.TryLeased(r.Context(), lease, time.Now().Add(h.opts.ActivationTimeout), maxAttempts, run)
	}
	if !pool.LongWait(parkAbove) {
		return false, pool.Try(r.Context(), h.opts.ActivationTimeout, maxAttempts, run)
	}
	t, err := h.parker.NewTicket(r, c)
	if err != nil {
		return false, pool.Try(r.Context(), h.opts.ActivationTimeout, maxAttempts, run)
	}
	pk := &parked{ticket: t, startBy: time.Now().Add(h.opts.ActivationTimeout)}
	lease, wt, err := pool.Park(func(l *queue.Lease, err error) bool {
		pk.lease, pk.failure = l, err
		return t.Resume()
	})
	if err != nil {
		return false, err
	}
	if lease != nil {
		return false, pool.TryLeased(r.Context(), lease, pk.startBy, maxAttempts, run)
	}
	pk.waiter = wt
	pk.timer = time.AfterFunc(h.opts.ActivationTimeout, func() {
		if pool.Unpark(wt) {
			t.Resume()
		}
	})
	c.parked = pk
	gone := func() {
		// The client went away while parked: no slot was handed over.
		pk.timer.Stop()
		pool.Unpark(wt)
		h.finish(c, 499)
	}
	abandon := func() {
		// Resumed, but the connection closed before the handler ran (the
		// server stops).
		pk.timer.Stop()
		if pk.lease != nil {
			pk.lease.Release()
		}
		h.finish(c, 499)
	}
	if t.Park(w, gone, abandon) == nil {
		return true, nil
	}
	// The connection cannot be hijacked: wait here instead.
	c.parked = nil
	pk.timer.Stop()
	if pool.Unpark(wt) {
		return false, pool.TryLeased(r.Context(), nil, pk.startBy, maxAttempts, run)
	}
	if pk.failure != nil {
		return false, pk.failure
	}
	if pk.lease == nil {
		return false, context.DeadlineExceeded
	}
	return false, pool.TryLeased(r.Context(), pk.lease, pk.startBy, maxAttempts, run)
}

// resume goes on with a parked request, resumed with a slot, with the
// failure of its function's pods, or at the end of its wait.
func (h *Wait) resume(r *http.Request, c *call, pool *queue.Pool, run func(*queue.Lease) error) error {
	pk := c.parked
	c.parked = nil
	pk.timer.Stop()
	if pk.failure != nil {
		return pk.failure
	}
	if pk.lease == nil {
		return context.DeadlineExceeded
	}
	return pool.TryLeased(r.Context(), pk.lease, pk.startBy, maxAttempts, run)
}
