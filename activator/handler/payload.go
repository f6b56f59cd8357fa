package handler

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
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
	// async counts background Event invocations, for a graceful stop.
	async sync.WaitGroup
}

func (h *Payload) serve(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	typ := invokeapi.RequestResponse
	if c.invoke {
		var ierr *invokeapi.Error
		if typ, ierr = invokeapi.ParseInvocationType(r.Header.Get(invokeapi.HeaderInvocationType)); ierr != nil {
			return refused(ierr)
		}
	}
	limit := typ.PayloadLimit()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		// The deadline stays: the server's reads of the rest fail too, and
		// it closes the connection.
		return &Failure{Kind: CallerGone, Err: err}
	}
	_ = rc.SetReadDeadline(time.Time{})
	if len(body) > limit {
		if c.invoke {
			return refused(typ.TooLarge(r.ContentLength))
		}
		return fail(TooLarge, "the body exceeds %d bytes", limit)
	}
	if !c.invoke {
		c.payload, err = event.Build(c.fn.EventFormat, &event.Request{
			HTTP: r, Body: body, Path: c.target.Path, Prefix: c.target.Prefix,
			RequestID: c.requestID, Namespace: c.target.Namespace, Function: c.target.Name,
			Time: c.start,
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
		return h.event(w, r, c)
	}
	return h.next.serve(w, r, c)
}

// event accepts an Event invocation and runs it in the background.
func (h *Payload) event(w http.ResponseWriter, r *http.Request, c *call) *Failure {
	// The queue place is taken before the 202, so that an accepted Event
	// never finds the queue full afterwards and is dropped.
	res, err := h.pools.Get(c.key).Reserve()
	if err != nil {
		return &Failure{Kind: Throttled, Message: "too many requests are waiting for function " + c.key.String(), RetryAfter: time.Second}
	}
	c.reservation = res
	w.Header().Set(invokeapi.HeaderRequestID, c.requestID)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	// The caller has its answer; the invocation outlives its request.
	r2 := r.Clone(context.WithoutCancel(r.Context()))
	r2.Header.Del(invokeapi.HeaderInvocationType)
	h.async.Add(1)
	go func() {
		defer h.async.Done()
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

func refused(e *invokeapi.Error) *Failure {
	return &Failure{Kind: Refused, Message: e.Message, Lambda: e}
}
