// Package handler is the activator's request path, a chain of small
// http.Handlers:
//
//	Route   finds the function (Invoke API, host or path routing) and its config
//	Payload reads the body and makes the event (or answers DryRun / Event)
//	Wait    takes a slot on a pod with free concurrency, holding the request
//	        in the function's bounded queue while there is none
//	Proxy   sends the invocation to the pod's sidecar and answers the caller
//
// Health, readiness and metrics live on a separate admin server (see
// package server).
package handler

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/lambdapod/lambdapod/activator/event"
	"github.com/lambdapod/lambdapod/activator/metrics"
	"github.com/lambdapod/lambdapod/activator/proxy"
	"github.com/lambdapod/lambdapod/activator/queue"
	"github.com/lambdapod/lambdapod/activator/route"
)

// Function is what the activator needs to know about a Function.
type Function struct {
	Timeout     time.Duration
	Concurrency int
	EventFormat event.Format
}

// Functions looks functions up (from an informer's cache).
type Functions interface {
	Lookup(namespace, name string) (Function, bool)
}

// Pools gives a function's pool of pods and wait queue.
type Pools interface {
	Get(queue.Key) *queue.Pool
}

// Invoker sends an invocation to a pod.
type Invoker interface {
	Invoke(ctx context.Context, addr string, r *proxy.Request) (*http.Response, error)
}

// Options configure the chain.
type Options struct {
	Route route.Config
	// ActivationTimeout bounds the wait for a slot on a ready pod.
	ActivationTimeout time.Duration
	// TimeoutGrace is added to the function's timeout before the activator
	// gives up on a pod, so that the sidecar's own Sandbox.Timedout answer
	// normally arrives first.
	TimeoutGrace time.Duration
	// OverflowStatus is what a request gets when its function's queue is
	// full: 429 (with Retry-After) or 503.
	OverflowStatus int
	// RetryAfter is the Retry-After of overflow answers.
	RetryAfter time.Duration
	// Region and AccountID make the ARNs of error messages.
	Region, AccountID string
}

// Sync and async payload limits of the Invoke API.
const (
	MaxSyncPayload  = 6 * 1024 * 1024
	MaxAsyncPayload = 256 * 1024
)

type ctxKey struct{}

// state is one request's progress through the chain.
type state struct {
	start     time.Time
	target    route.Target
	key       queue.Key
	fn        Function
	requestID string
	payload   []byte
	pool      *queue.Pool
	lease     *queue.Lease
	// redo is set by Proxy when the pod could not be reached or answered
	// that it is shutting down (nothing ran either way), so that Wait
	// retries on another pod.
	redo bool
	code int
}

func from(r *http.Request) *state { return r.Context().Value(ctxKey{}).(*state) }

// New returns the request chain.
func New(o Options, fns Functions, pools Pools, inv Invoker, m *metrics.Metrics) http.Handler {
	if o.ActivationTimeout <= 0 {
		o.ActivationTimeout = 2 * time.Minute
	}
	if o.OverflowStatus == 0 {
		o.OverflowStatus = http.StatusTooManyRequests
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AccountID == "" {
		o.AccountID = "000000000000"
	}
	p := &Proxy{Opts: o, Invoker: inv}
	w := &Wait{Opts: o, Pools: pools, Metrics: m, Next: p}
	pl := &Payload{Next: w, Pools: pools}
	return &Route{Opts: o, Functions: fns, Metrics: m, Next: pl}
}

// NewRequestID returns a random UUID (version 4), as Lambda uses for
// request ids.
func NewRequestID() string { return uuid.NewString() }

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// discard is the ResponseWriter of asynchronous (Event) invocations.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}
func (d *discard) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(b), nil
}

func (d *discard) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
