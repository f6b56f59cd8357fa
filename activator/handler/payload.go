package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/internal/invokeapi"
)

// Payload reads the request body and makes the invocation's payload: the
// body itself on the Invoke API, the event of the function's
// spec.http.eventFormat on HTTP routes. On the Invoke API it answers
// DryRun (204, without waking the function) and Event (202 at once; the
// invocation then runs in the background through the rest of the chain).
type Payload struct {
	pools       Pools
	next        stage
	bodyTimeout time.Duration
	budget      *budget
	// overflow is the Kind of a request refused for the budget.
	overflow Kind
	trusted  func(netip.Addr) bool
	// async counts background Event invocations, for a graceful stop.
	async sync.WaitGroup
	// events is the durable queue of Event invocations, when there is one.
	events durableEvents
}

func (h *Payload) serve(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	typ := invokeapi.RequestResponse
	if c.invoke {
		var ierr *invokeapi.Error
		if typ, ierr = invokeapi.ParseTypes(r.Header, c.target.Stream); ierr != nil {
			return refused(ierr)
		}
	}
	limit := typ.PayloadLimit()
	if r.ContentLength > int64(limit) {
		return h.tooLarge(c, typ, r.ContentLength, limit)
	}
	// The bytes this request may hold (its body, and on HTTP routes the
	// event made of it) are taken from the activator's budget before the
	// body is read: a flood of large bodies is refused at the door, not
	// held until the activator runs out of memory and loses every request.
	need := int64(limit)
	if r.ContentLength >= 0 {
		need = r.ContentLength
	}
	if !c.invoke {
		need *= 2
	}
	if !h.budget.take(need) {
		return &Failure{Kind: h.overflow, RetryAfter: time.Second, Message: fmt.Sprintf(
			"the activator holds at most %d MiB of request bodies at once, and that is spent; retry", h.budget.max>>20)}
	}
	c.held = need // the chain gives it back when the request ends
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyTimeout))
	body, err := readBody(r, limit)
	if err != nil {
		// The deadline stays: the server's reads of the rest fail too, and
		// it closes the connection.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// A caller still there but too slow is told so: with nothing
			// written, net/http would answer it 200 and an empty body.
			w.Header().Set("Connection", "close")
			return &Failure{Kind: SlowBody, Err: err,
				Message: fmt.Sprintf("the body did not arrive within %s (the activator's -body-timeout)", h.bodyTimeout)}
		}
		return &Failure{Kind: CallerGone, Err: err}
	}
	_ = rc.SetReadDeadline(time.Time{})
	if len(body) > limit {
		return h.tooLarge(c, typ, r.ContentLength, limit)
	}
	if c.verify != nil {
		if f := c.verify(body); f != nil {
			return f
		}
	}
	if !c.invoke {
		c.payload, err = event.Build(c.fn.EventFormat, &event.Request{
			HTTP: r, Body: body, Path: c.target.Path, Prefix: c.target.Prefix,
			RequestID: c.requestID, Namespace: c.target.Namespace, Function: c.target.Name,
			Time: c.start, Trusted: h.trusted,
		})
		if err != nil {
			return &Failure{Kind: Internal, Message: err.Error(), Err: err}
		}
		return h.next.serve(w, r, c)
	}
	if ierr := invokeapi.CheckPayload(body); ierr != nil {
		return refused(ierr)
	}
	if _, ierr := invokeapi.DecodeClientContext(r.Header.Get(invokeapi.HeaderClientContext)); ierr != nil {
		return refused(ierr)
	}
	c.payload = body
	switch typ {
	case invokeapi.DryRun:
		w.Header().Set(invokeapi.HeaderRequestID, c.requestID)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case invokeapi.Event:
		if h.events.on {
			return h.enqueue(w, r, c)
		}
		return h.event(w, r, c)
	}
	return h.next.serve(w, r, c)
}

// event accepts an Event invocation and runs it in the background, which
// gives its held bytes back to the budget when it ends.
func (h *Payload) event(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	// The queue place is taken before the 202, so that an accepted Event
	// never finds the queue full afterwards and is dropped.
	res, err := h.pools.Get(c.key).Reserve()
	var cannot *PodsCannotRun
	switch {
	case errors.As(err, &cannot):
		return cannot.failure(c, err)
	case err != nil:
		return &Failure{Kind: Throttled, Message: "too many requests are waiting for function " + c.key.String(), RetryAfter: time.Second}
	}
	c.reservation = res
	w.Header().Set(invokeapi.HeaderRequestID, c.requestID)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	// The caller has its answer; the invocation outlives its request.
	r2 := r.Clone(context.WithoutCancel(r.Context()))
	r2.Header.Del(invokeapi.HeaderInvocationType)
	held := c.held
	c.held = 0 // the background invocation gives the bytes back
	h.async.Add(1)
	go func() {
		defer h.async.Done()
		defer h.budget.give(held)
		defer res.Cancel() // if it was not used
		defer func() {
			if v := recover(); v != nil {
				slog.Error("panic running an asynchronous invocation", "function", c.key.String(), "requestId", c.requestID, "panic", v)
			}
		}()
		d := &discard{h: http.Header{}}
		if f := h.next.serve(d, r2, c); f != nil {
			slog.Warn("asynchronous invocation failed", "function", c.key.String(), "requestId", c.requestID, "err", f, "after", time.Since(c.start))
		} else if fe := d.h.Get(invokeapi.HeaderFunctionError); d.code != http.StatusOK || fe != "" {
			slog.Warn("asynchronous invocation failed", "function", c.key.String(), "requestId", c.requestID, "status", d.code, "functionError", fe, "after", time.Since(c.start))
		}
	}()
	return nil
}

func (h *Payload) tooLarge(c *call, typ invokeapi.InvocationType, size int64, limit int) *Failure {
	if c.invoke {
		return refused(typ.TooLarge(size))
	}
	return fail(TooLarge, "the body exceeds %d bytes", limit)
}

// readBody reads at most limit+1 bytes of the body, into one allocation of
// the declared length when there is one (reading into a growing buffer
// would hold up to twice the body for a while).
func readBody(r *http.Request, limit int) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= int64(limit) {
		b := make([]byte, n, n+1)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
}

// budget bounds the bytes of requests the activator holds at once.
type budget struct {
	used atomic.Int64
	max  int64
}

// take reserves n bytes, or reports that they are not there.
func (b *budget) take(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *budget) give(n int64) {
	if b != nil {
		b.used.Add(-n)
	}
}

func refused(e *invokeapi.Error) *Failure {
	return &Failure{Kind: Refused, Message: e.Message, Lambda: e}
}
