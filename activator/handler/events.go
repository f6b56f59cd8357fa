package handler

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/activator/eventqueue"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// durableEvents is where Event invocations go when the activator has a
// durable queue (package eventqueue): stored there before the 202, run by
// whichever activator pulls them. Without one they run from memory.
type durableEvents struct {
	on bool
	q  atomic.Pointer[eventqueue.Queue]
}

// UseDurableEvents makes Event invocations go to the durable queue: until
// SetEventQueue gives one (the activator connects in the background), an
// Event gets 503 and is not accepted.
func (ch *Chain) UseDurableEvents() { ch.payload.events.on = true }

// SetEventQueue gives the durable queue once it is connected.
func (ch *Chain) SetEventQueue(q *eventqueue.Queue) { ch.payload.events.q.Store(q) }

// enqueue stores an accepted Event in the durable queue and answers 202
// once the queue has it; if the queue cannot take it the caller gets an
// error, never a 202.
func (h *Payload) enqueue(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	q := h.events.q.Load()
	if q == nil {
		return &Failure{Kind: Overloaded, RetryAfter: time.Second,
			Message: "the activator is not connected to its event queue yet; the event was not accepted, retry"}
	}
	// Not cut short by a caller that leaves: the server's answer says
	// whether the event is stored, whoever hears the 202.
	err := q.Publish(context.WithoutCancel(r.Context()), &eventqueue.Event{
		RequestID: c.requestID, Namespace: c.key.Namespace, Name: c.key.Name, Attempt: 1, Accepted: c.start,
		ClientContext: r.Header.Get(invokeapi.HeaderClientContext), TraceID: r.Header.Get(invokeapi.HeaderTraceID),
		Payload: c.payload,
	})
	switch {
	case errors.Is(err, eventqueue.ErrFull):
		return &Failure{Kind: Throttled, RetryAfter: time.Second, Err: err,
			Message: "the event queue is full; the event was not accepted, retry later"}
	case err != nil:
		return &Failure{Kind: Overloaded, RetryAfter: time.Second, Err: err,
			Message: "the event queue did not store the event; it was not accepted, retry"}
	}
	w.Header().Set(invokeapi.HeaderRequestID, c.requestID)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// EventPolicy is the function's asynchronous invocation policy, for the
// queue; false if there is no such function.
func (ch *Chain) EventPolicy(namespace, name string) (eventqueue.Policy, bool) {
	fn, ok := ch.fns.Lookup(namespace, name)
	if !ok {
		return eventqueue.Policy{}, false
	}
	return fn.Async, true
}

// recordResponseLimit bounds the function answer kept for a destination's
// invocation record, so that the record (with a payload of up to 1 MB)
// still fits in one queued event; a longer answer leaves the record
// without responsePayload.
const recordResponseLimit = 1 << 20

// RunEvent runs an event from the durable queue through the same pools,
// holds and pods as a synchronous invocation (so queued events wake a
// function at zero and count toward its concurrency), and says how it
// ended, with the function's answer if keep.
func (ch *Chain) RunEvent(ctx context.Context, ev *eventqueue.Event, keep bool) eventqueue.Outcome {
	fn, ok := ch.fns.Lookup(ev.Namespace, ev.Name)
	if !ok {
		return eventqueue.Outcome{Result: eventqueue.Gone}
	}
	c := &call{start: time.Now(), requestID: ev.RequestID, invoke: true, region: ch.opts.Region,
		key: queue.Key{Namespace: ev.Namespace, Name: ev.Name}, found: true, fn: fn, payload: ev.Payload,
		target: route.Target{Kind: route.Invoke, Namespace: ev.Namespace, Name: ev.Name,
			Function: invokeapi.FunctionName{Name: ev.Namespace + "." + ev.Name}}}
	r := (&http.Request{
		Method: http.MethodPost, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		URL:    &url.URL{Path: "/2015-03-31/functions/" + ev.Namespace + "." + ev.Name + "/invocations"},
		Header: http.Header{"Content-Type": {"application/json"}},
	}).WithContext(ctx)
	if ev.ClientContext != "" {
		r.Header.Set(invokeapi.HeaderClientContext, ev.ClientContext)
	}
	if ev.TraceID != "" {
		r.Header.Set(invokeapi.HeaderTraceID, ev.TraceID)
	}
	d := &discard{h: http.Header{}}
	if keep {
		d.keep = recordResponseLimit
	}
	f := ch.wait.serve(d, r, c)
	out := eventqueue.Outcome{StatusCode: d.code, FunctionError: d.h.Get(invokeapi.HeaderFunctionError), Response: d.kept}
	switch {
	case f == nil && d.code == http.StatusOK && out.FunctionError == "":
		out.Result = eventqueue.Succeeded
		return out
	case f == nil:
		// The function failed (X-Amz-Function-Error), or the pod refused
		// the payload: an attempt.
		out.Result = eventqueue.Failed
		return out
	}
	switch f.Kind {
	case NotFound:
		return eventqueue.Outcome{Result: eventqueue.Gone}
	case FunctionTimeout, ConnectionLost, FunctionFailed:
		// An attempt; its record says what a synchronous caller would
		// have got (200, Unhandled, the timeout or crash document).
		d = &discard{h: http.Header{}, keep: d.keep}
		render(d, c, f)
		return eventqueue.Outcome{Result: eventqueue.Failed, StatusCode: d.code,
			FunctionError: d.h.Get(invokeapi.HeaderFunctionError), Response: d.kept}
	}
	// No pod took it (held past the activation timeout, a full queue,
	// pods that cannot run, the activator stopping): not an attempt.
	return eventqueue.Outcome{Result: eventqueue.NotRun}
}
