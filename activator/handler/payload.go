package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/route"
)

// Payload reads the request body and makes the invocation's payload: the
// body itself on the Invoke API, the event of the function's
// spec.http.eventFormat on HTTP routes. On the Invoke API it answers
// DryRun (204, without waking the function) and Event (202 at once; the
// invocation then runs in the background through the rest of the chain).
type Payload struct {
	Next http.Handler
	// Pools, if set, lets Event invocations be refused (429) rather than
	// accepted when the function's queue is full.
	Pools Pools
	// async counts background Event invocations, for a graceful stop.
	async sync.WaitGroup
}

// WaitAsync waits for background Event invocations to end.
func (h *Payload) WaitAsync() { h.async.Wait() }

func (h *Payload) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := from(r)
	invoke := st.target.Kind == route.Invoke
	typ := r.Header.Get("X-Amz-Invocation-Type")
	limit := int64(MaxSyncPayload)
	if invoke && typ == "Event" {
		limit = MaxAsyncPayload
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		st.code = 499
		return
	}
	if int64(len(body)) > limit {
		if invoke {
			op := "Invoke"
			if typ == "Event" {
				op = "InvokeAsync"
			}
			lambdaError(w, st.requestID, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "User",
				fmt.Sprintf("Request must be smaller than %d bytes for the %s operation", limit, op), nil)
		} else {
			httpError(w, st.requestID, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request Entity Too Large: the body exceeds %d bytes", limit))
		}
		return
	}
	if !invoke {
		st.payload, err = event.Build(st.fn.EventFormat, &event.Request{
			HTTP: r, Body: body, Path: st.target.Path, Prefix: st.target.Prefix,
			RequestID: st.requestID, Namespace: st.target.Namespace, Function: st.target.Name,
			Time: st.start,
		})
		if err != nil {
			httpError(w, st.requestID, http.StatusInternalServerError, "Internal Server Error: "+err.Error())
			return
		}
		h.Next.ServeHTTP(w, r)
		return
	}
	if len(body) > 0 && !json.Valid(body) {
		lambdaError(w, st.requestID, http.StatusBadRequest, "InvalidRequestContentException", "User",
			"Could not parse request body into json: the payload is not valid JSON", nil)
		return
	}
	st.payload = body
	switch typ {
	case "", "RequestResponse":
		h.Next.ServeHTTP(w, r)
	case "DryRun":
		w.Header().Set("X-Amzn-RequestId", st.requestID)
		w.WriteHeader(http.StatusNoContent)
	case "Event":
		if h.Pools != nil && h.Pools.Get(st.key).Full() {
			w.Header().Set("Retry-After", "1")
			lambdaError(w, st.requestID, http.StatusTooManyRequests, "TooManyRequestsException", "User",
				fmt.Sprintf("Rate Exceeded: too many requests are waiting for function %s", st.key),
				map[string]string{"Reason": "ConcurrentInvocationLimitExceeded"})
			return
		}
		w.Header().Set("X-Amzn-RequestId", st.requestID)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		// The caller has its answer; the invocation outlives its request.
		bg := context.WithValue(context.WithoutCancel(r.Context()), ctxKey{}, st)
		r2 := r.Clone(bg)
		r2.Header.Del("X-Amz-Invocation-Type")
		h.async.Add(1)
		go func() {
			defer h.async.Done()
			d := &discard{h: http.Header{}}
			h.Next.ServeHTTP(d, r2)
			if d.code != http.StatusOK || d.h.Get("X-Amz-Function-Error") != "" {
				slog.Warn("asynchronous invocation failed", "function", st.key.String(), "requestId", st.requestID, "status", d.code, "functionError", d.h.Get("X-Amz-Function-Error"), "after", time.Since(st.start))
			}
		}()
	default:
		lambdaError(w, st.requestID, http.StatusBadRequest, "InvalidParameterValueException", "User",
			fmt.Sprintf("1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", typ), nil)
	}
}
